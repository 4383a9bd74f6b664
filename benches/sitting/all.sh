#!/usr/bin/env bash
# The issue-12 sitting: base and new interleaved, fresh standalone per run.
cd "$(dirname "$0")"
echo "## dd dsync"; for i in 1 2 3; do dd if=/dev/zero of=/tmp/ddtest bs=4k count=500 oflag=dsync 2>&1 | tail -1; done; rm -f /tmp/ddtest
echo "## A async 1-msg"; ./compare.sh 3 async -- produce --size 128 --clients 2 --batch 1 --inflight 32 --count 300000
echo "## B sync 1-msg"; ./compare.sh 3 sync -- produce --size 128 --clients 2 --batch 1 --inflight 32 --count 150000
echo "## C async batch32"; ./compare.sh 2 async -- produce --size 128 --clients 2 --batch 32 --inflight 4 --count 1000000
echo "## C sync batch32"; ./compare.sh 2 sync -- produce --size 128 --clients 2 --batch 32 --inflight 4 --count 500000
echo "## D latency 1KiB"; ./compare.sh 3 async -- produce --size 1024 --clients 1 --batch 1 --inflight 1 --count 20000
echo "## E consume 1M"; for i in 1 2; do ./consume.sh "${BIN_DIR:-.}"/skylark-base base 1000000; ./consume.sh "${BIN_DIR:-.}"/skylark-new new 1000000; done
echo "## F e2e (new)"; for r in 10000 50000; do for i in 1 2; do ./run.sh "${BIN_DIR:-.}"/skylark-new async "new-e2e-$r" -- e2e --size 128 --count $((r*6)) --rate $r; done; done
