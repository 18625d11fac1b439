#!/usr/bin/env bash
# compare.sh: superd's per-connection hot path (accept -> checks -> start
# handler -> close -> reap) against xinetd and tcpserver (ucspi-tcp), on
# this machine, in one run.
#
# Every server runs the same handler, "/bin/echo hi" as root, behind a
# nowait TCP service on 127.0.0.1; bench/loadgen connects, reads to EOF
# and closes, and reports connections/s and connect-to-EOF latency. Runs
# alternate between the servers (the order rotates every round) at each
# concurrency, and the table shows the median of the rounds.
#
# Servers measured:
#   superd       stderr = "log" (the default: a pipe + a reader goroutine per connection)
#   superd-null  stderr = "null" (same daemon, second service)
#   xinetd       -dontfork, its own config, log_type FILE, PID HOST EXIT DURATION
#   tcpserver    -v (a "pid", "ok" and "end" line per connection) to a file
# All four log a line when a handler starts and one when it ends.
#
# Knobs (environment): ROUNDS (7), N connections per run (3000),
# CONCS concurrencies ("1 16"), KEEP=1 keeps the temp dir with logs.
# Needs: go, xinetd, tcpserver (apt-get install -y xinetd ucspi-tcp), ss.
# Traffic goes to 127.0.0.1 only. Every run is bounded by N and by a
# 60 s -duration; the script stops exactly the processes it started.
set -euo pipefail

ROUNDS=${ROUNDS:-7}
N=${N:-3000}
CONCS=${CONCS:-"1 16"}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d /tmp/superd-bench.XXXXXX)
PIDS=()

# running PID reports whether PID is one of this script's background jobs
# and has not ended yet. Unlike kill -0, it cannot mistake a process that
# reused the pid of a reaped job for ours.
running() {
	jobs -rp | grep -qx "$1"
}

cleanup() {
	local status=$? pid i
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		if running "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 50; i++)); do
			running "$pid" || break
			sleep 0.1
		done
		if running "$pid"; then
			echo "compare.sh: pid $pid ignored SIGTERM, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP == 1 || $status != 0 ]]; then
		echo "compare.sh: logs kept in $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

for tool in go xinetd tcpserver ss; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y xinetd ucspi-tcp iproute2)"
done

echo "== building superd and loadgen"
(cd "$ROOT" && go build -o "$TMP/superd" ./cmd/superd && go build -o "$TMP/loadgen" ./bench/loadgen)
LOADGEN=$TMP/loadgen

# freeport prints a random unprivileged port nothing listens on and that
# no earlier call returned.
USED_PORTS=" "
freeport() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 10000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htln "sport = :$p") ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}
P_SUPERD=$(freeport)
P_NULL=$(freeport)
P_XINETD=$(freeport)
P_TCPSERVER=$(freeport)

cat >"$TMP/superd.toml" <<EOF
[superd]
log = "stderr"

[services.bench]
protocol = "tcp"
address = "127.0.0.1"
port = $P_SUPERD
path = "/bin/echo"
args = ["hi"]
user = "root"
instances = 1000

[services.bench-null]
protocol = "tcp"
address = "127.0.0.1"
port = $P_NULL
path = "/bin/echo"
args = ["hi"]
user = "root"
instances = 1000
stderr = "null"
EOF

cat >"$TMP/xinetd.conf" <<EOF
defaults
{
	instances = UNLIMITED
	log_type = FILE $TMP/xinetd-service.log
}

service superd-bench
{
	type = UNLISTED
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	bind = 127.0.0.1
	port = $P_XINETD
	server = /bin/echo
	server_args = hi
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 100000 1
	log_type = FILE $TMP/xinetd-service.log
	log_on_success = PID HOST EXIT DURATION
	log_on_failure = HOST
}
EOF

echo "== starting servers (ports: superd $P_SUPERD, superd-null $P_NULL, xinetd $P_XINETD, tcpserver $P_TCPSERVER)"
# All three start with the same minimal environment. xinetd and tcpserver
# pass theirs on to the handler (superd builds the handler's from
# scratch), and an inherited LANG makes /bin/echo load locale files:
# about 170 us more per connection, which is not the superserver's cost.
CLEANENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
"${CLEANENV[@]}" "$TMP/superd" run --config "$TMP/superd.toml" --log stderr 2>"$TMP/superd.log" &
PIDS+=($!)
SUPERD_PID=$!
"${CLEANENV[@]}" xinetd -dontfork -f "$TMP/xinetd.conf" -filelog "$TMP/xinetd-daemon.log" &
PIDS+=($!)
XINETD_PID=$!
"${CLEANENV[@]}" tcpserver -v -c 1000 -H -R -l 0 127.0.0.1 "$P_TCPSERVER" /bin/echo hi 2>"$TMP/tcpserver.log" &
PIDS+=($!)
TCPSERVER_PID=$!

# waitserve polls until the server answers "hi" (at most 10 s).
waitserve() {
	local name=$1 port=$2 pid=$3 i
	for ((i = 0; i < 100; i++)); do
		running "$pid" || die "$name (pid $pid) exited; see $TMP"
		if "$LOADGEN" -addr "127.0.0.1:$port" -n 1 -timeout 1s -expect hi -name probe >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	die "$name did not answer on 127.0.0.1:$port within 10 s"
}
waitserve superd "$P_SUPERD" "$SUPERD_PID"
waitserve superd-null "$P_NULL" "$SUPERD_PID"
waitserve xinetd "$P_XINETD" "$XINETD_PID"
waitserve tcpserver "$P_TCPSERVER" "$TCPSERVER_PID"

# Each server must have logged the probe: proof that it, and not some
# other process on the port, served the reply.
sleep 0.2 # let the exit lines of the probes land
grep -q 'service=bench event=exit' "$TMP/superd.log" || die "superd logged no exit for service bench"
grep -q 'service=bench-null event=exit' "$TMP/superd.log" || die "superd logged no exit for service bench-null"
grep -q 'START: superd-bench' "$TMP/xinetd-service.log" || die "xinetd logged no START"
grep -q ' end [0-9]* status 0' "$TMP/tcpserver.log" || die "tcpserver logged no end"

SERVERS=(superd superd-null xinetd tcpserver)
declare -A PORT=([superd]=$P_SUPERD [superd-null]=$P_NULL [xinetd]=$P_XINETD [tcpserver]=$P_TCPSERVER)
declare -A PID=([superd]=$SUPERD_PID [superd-null]=$SUPERD_PID [xinetd]=$XINETD_PID [tcpserver]=$TCPSERVER_PID)
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# cputicks PID prints the daemon's own CPU ticks (utime+stime, all its
# threads) and those of its reaped children (cutime+cstime: the handlers,
# including what the daemon's child did before exec).
cputicks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13, $14 + $15 }' "/proc/$1/stat"
}

RESULTS=$TMP/results.txt
: >"$RESULTS"
ERRORS=0

# runone NAME C N ROUND: one measured (or warm-up, ROUND=0) run.
runone() {
	local name=$1 c=$2 n=$3 round=$4 line self0 kids0 self1 kids1 conns
	running "${PID[$name]}" || die "$name (pid ${PID[$name]}) is gone before round $round; see $TMP"
	read -r self0 kids0 < <(cputicks "${PID[$name]}")
	line=$("$LOADGEN" -addr "127.0.0.1:${PORT[$name]}" -n "$n" -c "$c" -timeout 5s -duration 60s \
		-expect hi -name "$name" 2>>"$TMP/loadgen.log") || true
	[[ $line == result* ]] || die "loadgen printed no result for $name c=$c; see $TMP/loadgen.log"
	sleep 0.05 # the last handlers' exits reach the daemon's and its children's counters
	running "${PID[$name]}" || die "$name (pid ${PID[$name]}) exited during round $round; see $TMP"
	read -r self1 kids1 < <(cputicks "${PID[$name]}")
	conns=0
	[[ $line =~ \ conns=([0-9]+)\  ]] && conns=${BASH_REMATCH[1]}
	if ((conns > 0)); then
		line+=" cpu_self_us=$(((self1 - self0) * TICK_US / conns)) cpu_children_us=$(((kids1 - kids0) * TICK_US / conns))"
	fi
	if [[ $line != *" errors=0 "* || $line != *" truncated=0"* ]]; then
		echo "compare.sh: $name c=$c round $round had errors: $line" >&2
		ERRORS=$((ERRORS + 1))
	fi
	if ((round > 0)); then
		echo "$line round=$round" >>"$RESULTS"
		printf '  round %d c=%-3s %-12s %s\n' "$round" "$c" "$name" "${line#result name=* c=* }"
	fi
}

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
echo "== warm-up"
for name in "${SERVERS[@]}"; do
	for c in $CONCS; do
		runone "$name" "$c" 300 0
	done
done

echo "== $ROUNDS rounds of N=$N connections per server and concurrency"
for ((r = 1; r <= ROUNDS; r++)); do
	for c in $CONCS; do
		for ((k = 0; k < ${#SERVERS[@]}; k++)); do
			# Rotate the order every round so no server always runs first.
			name=${SERVERS[$(((k + r - 1) % ${#SERVERS[@]}))]}
			runone "$name" "$c" "$N" "$r"
		done
	done
done

for pid in "$SUPERD_PID" "$XINETD_PID" "$TCPSERVER_PID"; do
	running "$pid" || die "a server (pid $pid) died during the runs; see $TMP"
done

echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== medians over $ROUNDS rounds (N=$N per run)"
echo "   conn/s: completed connections per second; p50/p99: connect-to-EOF latency in us;"
echo "   cpu_self: the daemon's CPU per connection in us; cpu_kids: its children's (pre-exec work + /bin/echo)"
awk -v concs="$CONCS" '
function field(k,   i, kv) {
	for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] }
	return ""
}
function median(key,   n, i, j, t, a) {
	n = cnt[key]
	if (n == 0) return 0
	for (i = 1; i <= n; i++) a[i] = vals[key, i]
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function extreme(key, want,   n, i, e) {
	n = cnt[key]
	e = vals[key, 1]
	for (i = 2; i <= n; i++) if ((want == "min") ? vals[key, i] < e : vals[key, i] > e) e = vals[key, i]
	return e + 0
}
function ratio(x, y) { return y == 0 ? "-" : sprintf("%.2f", x / y) }
{
	name = field("name"); c = field("c")
	nm = split("rate p50_us p99_us cpu_self_us cpu_children_us", metric, " ")
	for (i = 1; i <= nm; i++) {
		k = name SUBSEP c SUBSEP metric[i]
		vals[k, ++cnt[k]] = field(metric[i]) + 0
	}
}
END {
	ns = split("superd superd-null xinetd tcpserver", names, " ")
	nc = split(concs, cs, " ")
	nm = split("rate p50_us p99_us cpu_self_us cpu_children_us", metric, " ")
	printf "%-12s %4s %9s %15s %8s %8s %9s %9s\n", "server", "c", "conn/s", "(min-max)", "p50_us", "p99_us", "cpu_self", "cpu_kids"
	for (i = 1; i <= nc; i++) {
		for (j = 1; j <= ns; j++) {
			for (q = 1; q <= nm; q++) m[names[j], cs[i], metric[q]] = median(names[j] SUBSEP cs[i] SUBSEP metric[q])
			k = names[j] SUBSEP cs[i] SUBSEP "rate"
			printf "%-12s %4s %9.1f %15s %8d %8d %9d %9d\n", names[j], cs[i], m[names[j], cs[i], "rate"], \
				sprintf("(%d-%d)", extreme(k, "min"), extreme(k, "max")), \
				m[names[j], cs[i], "p50_us"], m[names[j], cs[i], "p99_us"], \
				m[names[j], cs[i], "cpu_self_us"], m[names[j], cs[i], "cpu_children_us"]
		}
	}
	print ""
	print "ratios of the medians, A/B (conn/s: above 1 = A serves more; p50, p99, cpu_self: above 1 = A is slower / costs more)"
	printf "%-24s %4s %7s %7s %7s %9s\n", "A/B", "c", "conn/s", "p50", "p99", "cpu_self"
	npair = split("superd/xinetd superd/tcpserver superd-null/xinetd superd-null/tcpserver superd-null/superd", pairs, " ")
	for (i = 1; i <= nc; i++) {
		c = cs[i]
		for (p = 1; p <= npair; p++) {
			split(pairs[p], ab, "/"); x = ab[1]; y = ab[2]
			printf "%-24s %4s %7s %7s %7s %9s\n", pairs[p], c, ratio(m[x, c, "rate"], m[y, c, "rate"]), \
				ratio(m[x, c, "p50_us"], m[y, c, "p50_us"]), ratio(m[x, c, "p99_us"], m[y, c, "p99_us"]), \
				ratio(m[x, c, "cpu_self_us"], m[y, c, "cpu_self_us"])
		}
	}
}' "$RESULTS"

echo
echo "== served connections counted from the servers' own logs (probes and warm-up included)"
printf 'superd       exit lines: %d (bench) + %d (bench-null)\n' \
	"$(grep -c 'service=bench event=exit' "$TMP/superd.log")" "$(grep -c 'service=bench-null event=exit' "$TMP/superd.log")"
printf 'xinetd       EXIT lines: %d\n' "$(grep -c 'EXIT: superd-bench' "$TMP/xinetd-service.log")"
printf 'tcpserver    end lines:  %d\n' "$(grep -c ' end [0-9]* status' "$TMP/tcpserver.log")"

if ((ERRORS > 0)); then
	die "$ERRORS run(s) had connection errors; see $TMP/loadgen.log"
fi
