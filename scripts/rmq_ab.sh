#!/usr/bin/env bash
# Two skylark builds, interleaved: broker CPU per message of a
# rocketmq-client-rust send run (JSON headers) on each, three times.
#   BEFORE=path/to/old/skylark AFTER=target/release/skylark \
#   RMQ=target/release/examples/rocketmq_client_load bash scripts/rmq_ab.sh
set -u
TCK=$(getconf CLK_TCK)
for r in 1 2 3; do
  for v in before after; do
    [ $v = before ] && B=$BEFORE || B=$AFTER
    D=$(mktemp -d /tmp/jab.XXXX)
    SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO=0.99 SKYLARK_STORE__DISK_HARD_LIMIT_RATIO=0.999 $B --log-level error standalone --data-dir $D --namesrv-port 19876 --broker-port 19911 --namesrv-remoting-port 19886 --broker-remoting-port 19887 --no-dashboard --no-metrics > /dev/null 2>&1 &
    PID=$!
    for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19887) 2>/dev/null && break; sleep 0.1; done
    sleep 1
    c0=$(awk '{print $14+$15}' /proc/$PID/stat)
    out=$($RMQ --namesrv 127.0.0.1:19886 --topic J --mode send --count 200000 --inflight 32 --size 128)
    c1=$(awk '{print $14+$15}' /proc/$PID/stat)
    echo "run=$r $v $out broker_cpu_us_per_msg=$(python3 -c "print(round(($c1-$c0)/$TCK/200001*1e6,2))")"
    kill $PID; wait $PID 2>/dev/null; rm -rf $D
  done
done
