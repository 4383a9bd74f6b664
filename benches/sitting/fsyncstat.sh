#!/bin/bash
# fsyncstat.sh BIN -- bench produce args : sync-flush run, prints bench json + fsync count/mean
BIN=$1; shift 2
D=$(mktemp -d /tmp/skyfs.XXXX); NP=$((20000 + RANDOM % 5000)); BP=$((NP + 5000)); MP=$((NP + 7500)) # below the ephemeral range (32768+)
$BIN --log-level warn standalone --data-dir $D --namesrv-port $NP --broker-port $BP --metrics-port $MP --flush sync >$D/log 2>&1 &
PID=$!
for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$BP) 2>/dev/null && break; sleep 0.1; done
export SKYLARK_NAMESRV=127.0.0.1:$NP
T=T$RANDOM
for i in $(seq 1 50); do $BIN produce --topic $T --count 1 --body w >/dev/null 2>&1 && break; sleep 0.1; done
m0=$(curl -s 127.0.0.1:$MP/metrics | grep -E '^skylark_commitlog_flush_latency_seconds_(sum|count)' | awk '{print $2}' | tr '\n' ' ')
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
OUT=$($BIN bench produce "$@" --topic $T --json 2>/dev/null | tail -1)
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
m1=$(curl -s 127.0.0.1:$MP/metrics | grep -E '^skylark_commitlog_flush_latency_seconds_(sum|count)' | awk '{print $2}' | tr '\n' ' ')
kill $PID; wait $PID 2>/dev/null; rm -rf $D
python3 - "$OUT" "$m0" "$m1" "$t0" "$t1" <<'P'
import json,sys
d=json.loads(sys.argv[1]); a=list(map(float,sys.argv[2].split())); b=list(map(float,sys.argv[3].split()))
n=b[1]-a[1]; s=b[0]-a[0]; cpu=(float(sys.argv[5])-float(sys.argv[4]))/100
tot=d["msgs_per_sec"]
print("msgs/s=%.0f p50=%s p99=%s fsyncs=%d mean_fsync_us=%.0f broker_cpu_s=%.2f client_cpu=%.2f"%(tot,d["p50_us"],d["p99_us"],n,s/n*1e6 if n else 0,cpu,d.get("client_cpu_secs",0)))
P
