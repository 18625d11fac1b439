#!/bin/bash
# upgrade-under-load.sh: three binary upgrades (SIGUSR2) in a row while two
# load generators (c=8 each) keep connecting to a /bin/cat handler and a
# built-in echo for 8 s; every reply is checked. Prints both loadgen
# results (errors= must be 0) and the number of upgrades done.
# Run as root from the repository: bash bench/upgrade-under-load.sh
# Ports 7410 and 7411 on 127.0.0.1 must be free.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
(cd "$repo" && go build -o "$work/superd" ./cmd/superd && go build -o "$work/loadgen" ./bench/loadgen) || exit 1
cat > "$work/lg.toml" <<'TOML'
[defaults]
address = "127.0.0.1"
user = "nobody"

[services.cat]
port = 7410
path = "/bin/cat"

[services.echo]
builtin = "echo"
port = 7411
TOML
cd "$work"
./superd run --config lg.toml --log stderr 2>lg.log &
P=$!
for _ in $(seq 100); do grep -q 'event=ready' lg.log && break; sleep 0.05; done
./loadgen -addr 127.0.0.1:7410 -c 8 -n 100000 -duration 8s -name cat > lg-cat.out 2>&1 &
L1=$!
./loadgen -addr 127.0.0.1:7411 -c 8 -n 200000 -duration 8s -name echo -source 127.2.0.0/16 > lg-echo.out 2>&1 &
L2=$!
for i in 1 2 3; do
  sleep 2
  kill -USR2 $P
  NP=
  for _ in $(seq 200); do
    NP=$(grep -o 'event=upgraded new_pid=[0-9]*' lg.log | sed -n "${i}p" | cut -d= -f3)
    [ -n "$NP" ] && break
    sleep 0.05
  done
  [ -n "$NP" ] || { echo "upgrade $i did not happen" >&2; grep upgrade lg.log >&2; break; }
  # The old process exits once its last connection has ended.
  while [ -e /proc/$P ] && [ "$(cut -d' ' -f3 /proc/$P/stat)" != Z ]; do sleep 0.05; done
  wait $P 2>/dev/null
  P=$NP
done
wait $L1 $L2
cat lg-cat.out lg-echo.out
echo "upgrades: $(grep -c 'event=upgraded' lg.log); failed: $(grep -c 'event=upgrade_failed' lg.log)"
kill $P
for _ in $(seq 100); do [ -e /proc/$P ] || break; sleep 0.05; done
