#!/bin/sh
# The measurements behind docs/scaling.md, one JSON line each on stdout (rank 0's), with
# `uptime` lines as {"uptime": ...} between runs:
#   sh bench/scaling/scaling_measure.sh [BUILD_DIR] > bench/scaling/scaling_measurements.jsonl
# 1. Side by side, in rotating orders: 1 rank x 1 thread (A), 1 rank x 2 threads (B) and
#    2 ranks x 1 thread (C), both models at their bench batches (align 32, vqa 64).
# 2. For the paper model (one process, one thread, no communication): the compute of rank
#    0's share of an N-rank step, N = 1 to 64, with the per-rank batch fixed (align 32,
#    vqa 64: global 32N, 64N) and with the global batch fixed (align 256, vqa 512).
set -e
BIN=${1:-build}/bin/xtgrad-ddp-bench
MPI="mpiexec --allow-run-as-root --oversubscribe --mca plm_rsh_agent false --bind-to none"
ROUNDS=${ROUNDS:-6}
REPEATS=${REPEATS:-30}
load() { printf '{"uptime": "%s", "date": "%s"}\n' "$(uptime | sed 's/^ *//')" "$(date -u +%H:%M:%S)"; }
run() {
  case $1 in
    A) $MPI -np 1 "$BIN" --threads 1 --repeats "$REPEATS" ;;
    B) $MPI -np 1 "$BIN" --threads 2 --repeats "$REPEATS" ;;
    C) $MPI -np 2 "$BIN" --threads 1 --repeats "$REPEATS" ;;
  esac
}
round=0
while [ $round -lt "$ROUNDS" ]; do
  case $((round % 3)) in
    0) order="A B C" ;;
    1) order="C B A" ;;
    2) order="B C A" ;;
  esac
  for config in $order; do load; run $config; done
  round=$((round + 1))
done
for n in 1 2 4 8 16 32 64; do
  load
  "$BIN" --model align --as-share-of $n --batch $((32 * n)) --repeats 5
  "$BIN" --model vqa --as-share-of $n --batch $((64 * n)) --repeats 5
  "$BIN" --model align --as-share-of $n --batch 256 --repeats 5
  "$BIN" --model vqa --as-share-of $n --batch 512 --repeats 5
done
load
