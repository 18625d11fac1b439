#!/usr/bin/env bash
# bench.sh: superd side by side with its peers and with the floors of what
# a superserver can cost, on this machine, in one run (issue 9).
# `make bench` runs it as is; `make bench-quick` with tiny settings.
#
# Every process-spawning target serves the same handler, bench/floors/
# handler.c built with gcc -static -O2 (read one line, write it back,
# exit), on 127.0.0.1, with its limits lifted; the in-process ones echo
# one line themselves:
#   cfloor    bench/floors/cspawn.c: accept, posix_spawn, close, SIGCHLD reap
#   gofloor   bench/floors/gospawn: accept4 on a locked thread, syscall.ForkExec, wait4 loop
#   busybox   busybox inetd built from Debian's source (bench/busybox-inetd.sh), nowait.1000000000, -q 4096
#   tcpserver ucspi-tcp: -c 100000 -b 4096 -H -R -l 0, -v (a log line per start and end)
#   xinetd    instances/per_source UNLIMITED, cps 1000000, NOLIBWRAP, PID HOST EXIT DURATION to a file
#             (its listen backlog is fixed at 64; no setting lifts it)
#   superd    default settings (stderr = "log", start and exit lines) logging to a file
#   inproc    bench/floors/inproc: Go, accept, echo one line, close, goroutine per connection
#   builtin   superd's builtin = "echo", default settings
# All start under `env -i PATH=...`, so no handler inherits a locale.
#
# bench/loadgen drives each in turn: one line per connection, the reply
# read to EOF and compared, sources spread over 127.1.0.0/16. Each round
# visits every concurrency and, at each, every target, in an order that
# rotates from round to round. Around every run the script reads
# /proc/PID/stat of the target's daemon: utime+stime is the daemon's CPU,
# cutime+cstime its reaped handlers'; it waits until the daemon has no
# child left before the second reading. bench/report prints the medians,
# min–max, p50/p99, CPU per connection and the ratios. STRACE=1 adds
# system calls per connection of the daemon's own threads (strace -f -ff;
# the handlers' files are left out).
#
# Knobs (environment): ROUNDS (3), DURATION seconds per run (5), CONCS
# ("1 8 64"), N connections at most per run (10000000: DURATION bounds),
# WARMUP connections per target (300), TARGETS (all of the above),
# STRACE=1 and STRACE_N (500), QUICK=1 (busybox may be skipped if its
# source cannot be had; said loudly), KEEP=1 keeps the temp dir.
#
# It asserts nothing about time: it exits non-zero when a target fails to
# start, dies, leaves a handler unreaped (a child still there 10 s after
# a run), or any reply was wrong or missing. Everything is bounded:
# each run by N and DURATION (plus loadgen's 30 s per connection), each
# wait by a count. It needs root (xinetd and busybox inetd switch users;
# missing packages are apt-get installed). Traffic goes to loopback only.
# It stops exactly the processes it started, by pid, also on Ctrl-C or
# failure. Builds go to a temp dir, busybox to bench/.cache (gitignored);
# the last table and raw results are copied to bench/.cache/last/.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONCS=${CONCS:-"1 8 64"}
N=${N:-10000000}
WARMUP=${WARMUP:-300}
STRACE=${STRACE:-0}
STRACE_N=${STRACE_N:-500}
QUICK=${QUICK:-0}
KEEP=${KEEP:-0}
read -r -a TARGETS <<<"${TARGETS:-cfloor gofloor busybox tcpserver xinetd superd inproc builtin}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/bench/.cache
PIDS=()
TMP=

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
			echo "bench.sh: pid $pid ignored SIGTERM for 5 s, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $TMP ]]; then
		if [[ $KEEP == 1 || $status != 0 ]]; then
			echo "bench.sh: logs kept in $TMP" >&2
		else
			rm -rf "$TMP"
		fi
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "bench.sh: $*" >&2
	exit 1
}

for v in ROUNDS DURATION N WARMUP STRACE_N; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive whole number"
done
for c in $CONCS; do
	[[ $c =~ ^[1-9][0-9]*$ ]] || die "CONCS=\"$CONCS\": want positive whole numbers"
done
for name in "${TARGETS[@]}"; do
	case $name in
	cfloor | gofloor | busybox | tcpserver | xinetd | superd | inproc | builtin) ;;
	*) die "TARGETS: unknown target $name (known: cfloor gofloor busybox tcpserver xinetd superd inproc builtin)" ;;
	esac
done
((${#TARGETS[@]} > 0)) || die "TARGETS is empty"
[[ $(id -u) == 0 ]] || die "needs root: xinetd and busybox inetd run handlers as a user, and missing packages are apt-get installed"

wants() {
	local t
	for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] && return 0; done
	return 1
}

echo "== tools"
need=()
command -v ss >/dev/null || need+=(iproute2)
if wants xinetd; then command -v xinetd >/dev/null || need+=(xinetd); fi
if wants tcpserver; then command -v tcpserver >/dev/null || need+=(ucspi-tcp); fi
if wants busybox && [[ ! -x $CACHE/busybox-inetd ]]; then
	command -v make >/dev/null || need+=(make)
	command -v dpkg-source >/dev/null || need+=(dpkg-dev)
	command -v bzip2 >/dev/null || need+=(bzip2)
	command -v xz >/dev/null || need+=(xz-utils)
fi
if [[ $STRACE == 1 ]]; then command -v strace >/dev/null || need+=(strace); fi
if ((${#need[@]} > 0)); then
	echo "apt-get install ${need[*]}"
	# Installing xinetd must not start the system's xinetd: a process
	# this script did not start could not be stopped by it.
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
	[[ -z $made_policy ]] || rm -f "$policy"
fi
command -v gcc >/dev/null || die "gcc not found"
command -v go >/dev/null || die "go not found"

TMP=$(mktemp -d /tmp/superd-bench.XXXXXX)
BIN=$TMP/bin
mkdir -p "$BIN"

echo "== building (into $TMP/bin)"
SECONDS=0
gcc -static -O2 -Wall -o "$BIN/handler" "$ROOT/bench/floors/handler.c"
gcc -O2 -Wall -o "$BIN/cspawn" "$ROOT/bench/floors/cspawn.c"
# One go build for all five: the packages build in parallel.
(
	cd "$ROOT"
	CGO_ENABLED=0 go build -o "$BIN/" ./cmd/superd ./bench/floors/gospawn ./bench/floors/inproc ./bench/loadgen ./bench/report
) || die "go build failed"
SKIPPED=
if wants busybox; then
	if BUSYBOX=$(bash "$ROOT/bench/busybox-inetd.sh" "$CACHE"); then
		echo "busybox: $BUSYBOX ($(head -1 "$CACHE/busybox-inetd.stamp"))"
	elif [[ $QUICK == 1 ]]; then
		echo >&2
		echo "bench.sh: !!! SKIPPING busybox inetd: it could not be built (see above). Quick mode only; make bench fails here." >&2
		echo >&2
		SKIPPED="busybox (could not be built)"
		kept=()
		for t in "${TARGETS[@]}"; do [[ $t == busybox ]] || kept+=("$t"); done
		TARGETS=("${kept[@]}")
	else
		die "busybox inetd could not be built (see above)"
	fi
fi

echo "built in $SECONDS s"

# freeport NAME sets PORT[NAME] to a port nothing listens on and that no
# other target got, from 30000-32699: below the ephemeral range (32768-),
# where tests binding port 0 land, and above the 20000s that other
# benchmarks here use. (Not called in $(...): the ports taken must stay
# known to the next call.)
declare -A PORT PID
USED_PORTS=" "
freeport() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((30000 + RANDOM % 2700))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htln "sport = :$p") ]]; then
			USED_PORTS+="$p "
			PORT[$1]=$p
			return 0
		fi
	done
	die "no free port found for $1"
}
for name in "${TARGETS[@]}"; do
	freeport "$name"
done
H=$BIN/handler

cat >"$TMP/superd.toml" <<EOF
# Default settings but for what a root superd requires (user).
[superd]
log = "stderr"

[services.bench]
protocol = "tcp"
address = "127.0.0.1"
port = ${PORT[superd]:-1}
path = "$H"
user = "root"
EOF
cat >"$TMP/builtin.toml" <<EOF
[superd]
log = "stderr"

[services.echo]
protocol = "tcp"
address = "127.0.0.1"
port = ${PORT[builtin]:-1}
builtin = "echo"
EOF
cat >"$TMP/xinetd.conf" <<EOF
defaults
{
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 1000000 1
}

service superd-bench
{
	type = UNLISTED
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	bind = 127.0.0.1
	port = ${PORT[xinetd]:-1}
	server = $H
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 1000000 1
	flags = NOLIBWRAP
	log_type = FILE $TMP/xinetd-service.log
	log_on_success = PID HOST EXIT DURATION
	log_on_failure = HOST
}
EOF
cat >"$TMP/inetd.conf" <<EOF
127.0.0.1:${PORT[busybox]:-1} stream tcp nowait.1000000000 root $H handler
EOF

CLEANENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
# start NAME CMD...: starts one target as a job of this shell, its output
# to T/NAME.log.
start() {
	local name=$1
	shift
	"${CLEANENV[@]}" "$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=("$!")
	PID[$name]=$!
}

echo "== starting targets"
for name in "${TARGETS[@]}"; do
	a=127.0.0.1:${PORT[$name]}
	case $name in
	cfloor) start cfloor "$BIN/cspawn" "$a" "$H" ;;
	gofloor) start gofloor "$BIN/gospawn" "$a" "$H" ;;
	busybox) start busybox "$BUSYBOX" inetd -f -e -q 4096 "$TMP/inetd.conf" ;;
	tcpserver) start tcpserver tcpserver -v -c 100000 -b 4096 -H -R -l 0 127.0.0.1 "${PORT[tcpserver]}" "$H" ;;
	xinetd) start xinetd xinetd -dontfork -f "$TMP/xinetd.conf" ;;
	superd) start superd "$BIN/superd" run --config "$TMP/superd.toml" --log stderr ;;
	inproc) start inproc "$BIN/inproc" "$a" ;;
	builtin) start builtin "$BIN/superd" run --config "$TMP/builtin.toml" --log stderr ;;
	esac
done

# listening NAME waits (at most 20 s) until NAME's own pid listens on its
# port: then the replies come from it and from no other process.
listening() {
	local name=$1 i
	for ((i = 0; i < 200; i++)); do
		running "${PID[$name]}" || die "$name (pid ${PID[$name]}) exited at start: $(tail -5 "$TMP/$name.log")"
		if ss -Htlnp "sport = :${PORT[$name]}" | grep -q "pid=${PID[$name]},"; then
			return 0
		fi
		sleep 0.1
	done
	die "$name (pid ${PID[$name]}) does not listen on 127.0.0.1:${PORT[$name]} after 20 s: $(tail -5 "$TMP/$name.log")"
}
for name in "${TARGETS[@]}"; do
	listening "$name"
	echo "$name: pid ${PID[$name]}, 127.0.0.1:${PORT[$name]}"
done

TICK_US=$((1000000 / $(getconf CLK_TCK)))
# cputicks PID prints the daemon's own CPU ticks (utime+stime, all its
# threads) and those of its reaped children (cutime+cstime).
cputicks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13, $14 + $15 }' "/proc/$1/stat"
}

# settle NAME waits (at most 10 s) until NAME's daemon has no child left,
# alive or zombie, so that every handler of the run is in cutime+cstime.
# Children still there after that are reported, remembered in STUCK (not
# waited for again) and counted in UNREAPED: a superserver must reap every
# handler (and one that does not soon runs out of instance slots).
declare -A STUCK
UNREAPED=
settle() {
	local name=$1 pid=${PID[$1]} i k kids left=() states=
	for ((i = 0; i < 200; i++)); do
		left=()
		kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null) || true
		for k in $kids; do
			[[ -n ${STUCK[$pid:$k]:-} ]] || left+=("$k")
		done
		((${#left[@]} == 0)) && return 0
		sleep 0.05
	done
	for k in "${left[@]}"; do
		STUCK[$pid:$k]=1
	done
	for k in "${left[@]:0:5}"; do
		states+=" $k:$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$k/stat" 2>/dev/null || echo gone)"
	done
	UNREAPED+="$name:${#left[@]} "
	echo "bench.sh: $name (pid $pid) still has ${#left[@]} child(ren) 10 s after a run (pid:state${states}$( ((${#left[@]} > 5)) && echo ' ...')); its CPU figures miss them" >&2
}

RESULTS=$TMP/results.txt
: >"$RESULTS"
ERRORS=0

# loadgen NAME C N LABEL [SECONDS]: one loadgen run against NAME (at most
# SECONDS, default DURATION), as a job, so that a signal to this script is
# acted on at once. Leaves the result line in LINE and counts a failed run
# (loadgen's exit status, errors, no connection at all) in ERRORS.
LINE=
loadgen() {
	local name=$1 c=$2 n=$3 label=$4 secs=${5:-$DURATION} lg rc=0
	"$BIN/loadgen" -addr "127.0.0.1:${PORT[$name]}" -n "$n" -c "$c" -duration "${secs}s" \
		-name "$name" >"$TMP/run.out" 2>>"$TMP/loadgen.log" &
	lg=$!
	PIDS+=("$lg")
	wait "$lg" || rc=$?
	LINE=$(<"$TMP/run.out")
	[[ $LINE == result* ]] || die "loadgen printed no result for $name c=$c ($label); see $TMP/loadgen.log"
	if ((rc != 0)) || [[ $LINE != *" errors=0 "* || $LINE == *" conns=0 "* ]]; then
		echo "bench.sh: $name c=$c ($label) FAILED: exit $rc, $LINE" >&2
		grep -A3 "^$name: " "$TMP/loadgen.log" | tail -4 >&2 || true
		ERRORS=$((ERRORS + 1))
	fi
}

# runone NAME C N ROUND: one measured (or, ROUND=0, warm-up) run.
runone() {
	local name=$1 c=$2 n=$3 round=$4 pid=${PID[$1]} self0 kids0 self1 kids1
	running "$pid" || die "$name (pid $pid) is gone before round $round: $(tail -5 "$TMP/$name.log")"
	settle "$name"
	read -r self0 kids0 < <(cputicks "$pid")
	loadgen "$name" "$c" "$n" "round $round"
	settle "$name"
	running "$pid" || die "$name (pid $pid) exited during round $round: $(tail -5 "$TMP/$name.log")"
	read -r self1 kids1 < <(cputicks "$pid")
	LINE+=" round=$round daemon_cpu_us=$(((self1 - self0) * TICK_US)) handler_cpu_us=$(((kids1 - kids0) * TICK_US))"
	if ((round > 0)); then
		echo "$LINE" >>"$RESULTS"
		printf '  round %d c=%-3s %-9s %s\n' "$round" "$c" "$name" "${LINE#result name=* c=* }"
	fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START_TIME=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "== load average before: $LOAD_BEFORE (other work on the machine skews the figures)"
echo "== warm-up: $WARMUP connections per target at c=8"
for name in "${TARGETS[@]}"; do
	runone "$name" 8 "$WARMUP" 0
done

read -r -a CS <<<"$CONCS"
T=${#TARGETS[@]}
echo "== $ROUNDS round(s), c = $CONCS, ${DURATION} s (at most N=$N connections) per run"
for ((r = 1; r <= ROUNDS; r++)); do
	for ((ci = 0; ci < ${#CS[@]}; ci++)); do
		for ((k = 0; k < T; k++)); do
			# Rotate the order every round and concurrency, so that no
			# target always runs first or right after the same one.
			runone "${TARGETS[$(((k + r - 1 + ci) % T))]}" "${CS[$ci]}" "$N" "$r"
		done
	done
done

if [[ $STRACE == 1 ]]; then
	echo "== system calls of the daemon's threads: strace -f -ff, $STRACE_N connections at c=1 per target"
	for name in "${TARGETS[@]}"; do
		pid=${PID[$name]}
		dir=$TMP/strace/$name
		mkdir -p "$dir"
		settle "$name"
		tids=" "
		for t in /proc/"$pid"/task/*; do tids+="${t##*/} "; done
		strace -f -ff -qq -o "$dir/t" -p "$pid" 2>"$dir/strace.log" &
		spid=$!
		PIDS+=("$spid")
		# Wait (at most 10 s) until strace traces every thread.
		for ((i = 0; i < 200; i++)); do
			untraced=0
			for t in /proc/"$pid"/task/*; do
				grep -q "^TracerPid:[[:space:]]*$spid\$" "$t/status" 2>/dev/null || untraced=1
			done
			((untraced == 0)) && break
			running "$spid" || die "strace -p $pid ($name) exited: $(cat "$dir/strace.log")"
			sleep 0.05
		done
		((untraced == 0)) || die "strace did not attach to every thread of $name (pid $pid) within 10 s"
		# N, not time, ends this run (strace slows the daemon down many
		# times); 120 s is only the bound.
		loadgen "$name" 1 "$STRACE_N" strace 120
		settle "$name"
		for t in /proc/"$pid"/task/*; do # threads born during the run too
			[[ $tids == *" ${t##*/} "* ]] || tids+="${t##*/} "
		done
		kill -INT "$spid"
		wait "$spid" || true
		calls=0 threads=0
		for tid in $tids; do
			f=$dir/t.$tid
			[[ -f $f ]] || continue
			# One line per system call; signal (---) and exit (+++)
			# lines are not calls.
			calls=$((calls + $(grep -cv -e '^---' -e '^+++' "$f" || true)))
			threads=$((threads + 1))
		done
		[[ $LINE =~ \ conns=([0-9]+)\  ]] || die "no conns= in: $LINE"
		echo "syscalls name=$name conns=${BASH_REMATCH[1]} calls=$calls threads=$threads" | tee -a "$RESULTS"
	done
fi

for name in "${TARGETS[@]}"; do
	running "${PID[$name]}" || die "$name (pid ${PID[$name]}) died during the runs: $(tail -5 "$TMP/$name.log")"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The ratios asked for: superd against every peer and both spawn floors,
# the Go floor against the C floor, the built-in against the in-process floor.
pairs=()
for p in superd/cfloor superd/gofloor superd/busybox superd/tcpserver superd/xinetd gofloor/cfloor builtin/inproc; do
	wants "${p%/*}" && wants "${p#*/}" && pairs+=("$p")
done

mkdir -p "$CACHE/last"
{
	echo "$START_TIME, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)'), $(uname -r), $(nproc) CPUs"
	echo "ROUNDS=$ROUNDS DURATION=$DURATION CONCS=\"$CONCS\" N=$N WARMUP=$WARMUP STRACE=$STRACE bash bench/bench.sh"
	echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
	[[ -z $SKIPPED ]] || echo "SKIPPED: $SKIPPED"
	echo
	"$BIN/report" -targets "${TARGETS[*]}" -ratios "${pairs[*]}" "$RESULTS"
} >"$CACHE/last/table.md"
cp "$RESULTS" "$CACHE/last/results.txt"
echo
echo "== medians over $ROUNDS round(s) (also in bench/.cache/last/table.md)"
cat "$CACHE/last/table.md"

if ((ERRORS > 0)); then
	die "$ERRORS run(s) had wrong or missing replies; see $TMP/loadgen.log${UNREAPED:+; children never reaped: $UNREAPED}"
fi
if [[ -n $UNREAPED ]]; then
	die "children never reaped (zombies or hung handlers), per target and run: $UNREAPED"
fi
[[ -z $SKIPPED ]] || echo "bench.sh: !!! $SKIPPED was SKIPPED" >&2
echo "== every target served every reply correctly"
