#!/usr/bin/env bash
# usage: consume.sh BIN LABEL COUNT : produce COUNT (batch 32), then bench consume them; prints consume json + broker cpu
BIN=$1; LABEL=$2; N=$3
D=$(mktemp -d /tmp/skybench.XXXX)
# Ports below 32768: the kernel hands out ephemeral ports from 32768 up, and
# a broker port taken by one (TIME_WAIT of an earlier run) fails the start.
NP=$((20000 + RANDOM % 5000)); BP=$((NP + 5000))
$BIN --log-level warn standalone --data-dir $D --namesrv-port $NP --broker-port $BP >$D/log 2>&1 &
PID=$!
for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$BP) 2>/dev/null && break; sleep 0.1; done
sleep 0.5
export SKYLARK_NAMESRV=127.0.0.1:$NP
T=C$RANDOM
for i in $(seq 1 50); do $BIN produce --topic $T --count 1 --body w >/dev/null 2>&1 && break; sleep 0.1; done
$BIN bench produce --topic $T --size 128 --clients 2 --batch 32 --inflight 4 --count $N --json >/dev/null 2>&1
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
OUT=$($BIN bench consume --topic $T --count $N --json 2>/dev/null | tail -1)
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
kill -TERM $PID; wait $PID 2>/dev/null; rm -rf $D
echo "$LABEL consume $OUT broker_cpu_s=$(echo "($t1-$t0)/100" | bc -l | xargs printf %.2f)"
