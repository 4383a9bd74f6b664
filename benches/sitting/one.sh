#!/bin/bash
# one.sh SUFFIX FLUSH COUNT -- bench args   (binary $BIN_DIR/skylark-SUFFIX, default ./skylark-SUFFIX); prints msgs/s, p50, p99 and broker/client CPU per message
S=$1; F=$2; C=$3; shift 4
L=$($(dirname "$0")/run.sh ${BIN_DIR:-.}/skylark-$S $F $S -- produce --count $C "$@")
echo "$L" | python3 -c '
import json,sys,re
l=sys.stdin.read().strip(); lab=l.split(" ",1)[0]
m=re.search(r"(\{.*\})",l); cpu=float(re.search(r"broker_cpu_s=([0-9.]+)",l).group(1))
d=json.loads(m.group(1)); n='$C'
print("%s %s %.0f p50=%s p99=%s broker_us=%.2f client_us=%.2f err=%s"%(lab,"'$F'",d["msgs_per_sec"],d["p50_us"],d["p99_us"],cpu*1e6/n,d.get("client_cpu_secs",0)*1e6/n,d.get("errors")))' 2>/dev/null || echo "$S FAILED: $L"
