#!/usr/bin/env bash
# One sitting: a release standalone, Skylark bench vs RocketMQ-protocol load
# (rmq_load.py) vs the rocketmq-client-rust crate (examples/
# rocketmq_client_load.rs), interleaved, broker CPU per message from
# /proc/PID/stat. Build first:
#   cargo build --release --bin skylark --example rocketmq_client_load
set -u
BIN=${BIN:-target/release/skylark}
RMQ=${RMQ:-target/release/examples/rocketmq_client_load}
D=$(mktemp -d /tmp/rmqbench.XXXX)
SKYLARK_DEFAULT_TOPIC_QUEUES=4 SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO=0.99 SKYLARK_STORE__DISK_HARD_LIMIT_RATIO=0.999 \
  $BIN --log-level error standalone --data-dir $D --namesrv-port 19876 --broker-port 19911 \
  --namesrv-remoting-port 19886 --broker-remoting-port 19887 --no-dashboard --no-metrics &
PID=$!
trap "kill $PID; wait $PID 2>/dev/null; rm -rf $D" EXIT
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19887) 2>/dev/null && break; sleep 0.1; done
$BIN --log-level error produce --namesrv 127.0.0.1:19876 --topic SkyBench --body w >/dev/null
$BIN --log-level error produce --namesrv 127.0.0.1:19876 --topic RmqBench --body w >/dev/null
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
TCK=$(getconf CLK_TCK)
for r in 1 2 3; do
  c0=$(cpu); out=$($BIN --log-level error bench produce --namesrv 127.0.0.1:19876 --topic SkyBench --clients 1 --batch 1 --inflight 32 --size 128 --count 200000 --json); c1=$(cpu)
  rate=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["msgs_per_sec"]))')
  echo "run=$r skylark-send msgs_per_sec=$rate broker_cpu_us_per_msg=$(python3 -c "print(round(($c1-$c0)/$TCK/200000*1e6,2))")"
  python3 scripts/rmq_load.py --port 19887 --pid $PID --mode send --count 200000 --window 32 | sed "s/^/run=$r rocketmq-send /"
  c0=$(cpu); out=$($RMQ --namesrv 127.0.0.1:19886 --topic RmqClientBench --mode send --count 200000 --inflight 32 --size 128); c1=$(cpu)
  echo "run=$r rocketmq-client-rust-send $out broker_cpu_us_per_msg=$(python3 -c "print(round(($c1-$c0)/$TCK/200000*1e6,2))")"
done
for r in 1 2 3; do
  c0=$(cpu); out=$($BIN --log-level error bench consume --namesrv 127.0.0.1:19876 --topic SkyBench --group g$r --count 200000 --json); c1=$(cpu)
  rate=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["msgs_per_sec"]))')
  echo "run=$r skylark-consume msgs_per_sec=$rate broker_cpu_us_per_msg=$(python3 -c "print(round(($c1-$c0)/$TCK/200000*1e6,2))")"
  python3 scripts/rmq_load.py --port 19887 --pid $PID --mode pull --count 200000 --window 8 | sed "s/^/run=$r rocketmq-pull /"
  c0=$(cpu); out=$($RMQ --namesrv 127.0.0.1:19886 --topic RmqClientBench --mode consume --count 200000 --group rc$r); c1=$(cpu)
  echo "run=$r rocketmq-client-rust-consume $out broker_cpu_us_per_msg=$(python3 -c "print(round(($c1-$c0)/$TCK/200000*1e6,2))")"
done
