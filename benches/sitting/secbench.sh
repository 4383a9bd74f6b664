#!/bin/bash
# The send-path cost of ACL and TLS. CERTS holds acl.toml (accounts broker / app with the
# secrets below), ca.pem, server.pem, server.key for 127.0.0.1, e.g.:
#   openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ca
#   openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
#   openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
#     -days 2 -extfile <(echo subjectAltName=IP:127.0.0.1)
# [BIN=..] [CERTS=dir] secbench.sh MODE(plain|acl|acltls) LABEL [COUNT] : namesrv + broker processes, one 1-msg async produce bench; prints msgs/s, p99, broker CPU us/msg
MODE=$1; LABEL=$2; N=${3:-300000}; BIN=${BIN:-target/release/skylark}; K=${CERTS:-/tmp/tlsb}
D=$(mktemp -d /tmp/secb.XXXX); NP=$((21000 + RANDOM % 4000)); BP=$((NP + 5000)) # below the ephemeral range (32768+)
E=(); C=()
if [ $MODE != plain ]; then E+=(SKYLARK_ACL_ENABLED=true SKYLARK_ACL_FILE=$K/acl.toml); C+=(SKYLARK_ACCESS_KEY=app SKYLARK_SECRET_KEY=app-secret-0123456789); fi
if [ $MODE = acltls ]; then E+=(SKYLARK_TLS_MODE=enforcing SKYLARK_TLS_CERT_FILE=$K/server.pem SKYLARK_TLS_KEY_FILE=$K/server.key); C+=(SKYLARK_TLS_CA=$K/ca.pem); BTLS=(SKYLARK_TLS_CA_FILE=$K/ca.pem); else BTLS=(); fi
env "${E[@]}" $BIN --log-level warn namesrv --port $NP >$D/ns.log 2>&1 &
NSP=$!
env "${E[@]}" "${BTLS[@]}" SKYLARK_ACCESS_KEY=broker SKYLARK_SECRET_KEY=broker-secret-0123456789 SKYLARK_STORE__SEGMENT_SIZE=268435456 $BIN --log-level warn broker --namesrv 127.0.0.1:$NP --port $BP --data-dir $D/data >$D/b.log 2>&1 &
PID=$!
for i in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$BP) 2>/dev/null && break; sleep 0.1; done
export SKYLARK_NAMESRV=127.0.0.1:$NP
T=S$RANDOM
for i in $(seq 1 100); do env "${C[@]}" $BIN produce --topic $T --count 1 --body w >/dev/null 2>&1 && break; sleep 0.2; done
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
OUT=$(env "${C[@]}" $BIN bench produce --size 128 --clients 2 --batch 1 --inflight 32 --count $N --topic $T --json 2>$D/err | tail -1)
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
kill $PID $NSP; wait $PID $NSP 2>/dev/null
echo "$OUT" | python3 -c "
import sys,json; d=json.loads(sys.stdin.read()); print('$LABEL', round(d['msgs_per_sec']), 'p99', d['p99_us'], 'errors', d['errors'], 'cpu_us/msg', round(($t1-$t0)/100/$N*1e6,2))" || { echo "$LABEL failed"; tail -3 $D/err $D/b.log; }
rm -rf $D
