#!/usr/bin/env bash
# usage: compare.sh ROUNDS FLUSH -- bench args
# Interleaves base and new, one fresh standalone per run.
R=$1; F=$2; shift 3
for i in $(seq 1 $R); do
  for b in base new; do
    "$(dirname "$0")/run.sh" "${BIN_DIR:-.}/skylark-$b" $F "$b" -- "$@"
  done
done
