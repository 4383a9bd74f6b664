#!/usr/bin/env bash
# usage: [STANDALONE_ARGS=...] run.sh BIN FLUSH LABEL -- bench args...
# Starts a fresh standalone, runs `bench` with the args, prints one line:
# label, bench json, broker cpu secs, broker cpu us/msg
set -u
BIN=$1; FLUSH=$2; LABEL=$3; shift 4
D=$(mktemp -d /tmp/skybench.XXXX)
# Ports below 32768: the kernel hands out ephemeral ports from 32768 up, and
# a broker port taken by one (TIME_WAIT of an earlier run) fails the start.
NP=$((20000 + RANDOM % 5000)); BP=$((NP + 5000))
$BIN --log-level warn standalone --data-dir $D --namesrv-port $NP --broker-port $BP --flush $FLUSH ${STANDALONE_ARGS:-} >$D/log 2>&1 &
PID=$!
for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$BP) 2>/dev/null && break; sleep 0.1; done
sleep 0.5
export SKYLARK_NAMESRV=127.0.0.1:$NP
# warm-up: create topic
T=T$RANDOM
$BIN produce --topic $T --count 1 --body w >/dev/null 2>&1
for i in $(seq 1 50); do $BIN produce --topic $T --count 1 --body w >/dev/null 2>&1 && break; sleep 0.1; done
if ! kill -0 $PID 2>/dev/null; then
  echo "$LABEL broker did not start: $(tail -3 $D/log | tr '\n' ' ')"; rm -rf $D; exit 1
fi
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
OUT=$($BIN bench "$@" --topic $T --json 2>/dev/null | tail -1)
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
HZ=$(getconf CLK_TCK)
CPU=$(echo "($t1-$t0)/$HZ" | bc -l)
N=$(echo "$OUT" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["msgs_per_sec"])' 2>/dev/null || echo 0)
kill -TERM $PID; wait $PID 2>/dev/null
rm -rf $D
echo "$LABEL $OUT broker_cpu_s=$(printf %.2f $CPU)"
