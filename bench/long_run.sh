#!/usr/bin/env bash
# A long run of the toy task, to watch memory: trains 20,000 steps (ten times the default,
# default model and data, an evaluation and a checkpoint every 1000 steps) in the
# background and samples the process's resident memory (VmRSS) once a second. A flat
# curve after warm-up says nothing grows with the step count (graphs released after
# backward, optimizer state, checkpoints, the metrics record).
#
#   bench/long_run.sh [BIN]     BIN: the xtgrad-align program (default build/bin/xtgrad-align)
#
# Environment: STEPS (20000), EVAL_EVERY (1000), THREADS (1), OUT (runs/long_run).
# Writes OUT/memory.csv, one row a second:
#   elapsed_s,rss_mb,step,progress_step
# step: the last step in OUT/metrics.jsonl (every EVAL_EVERY steps); progress_step: the last
# "step N/M" progress line (every EVAL_EVERY/5 steps). Then prints, and writes to
# OUT/memory_summary.txt, one line: peak RSS, the median RSS over steps 2000-2999 and over
# the last 1000 steps, their ratio (a leak shows as a ratio above 1), the last sample; and
# the run's final line (test P@1 and grounding). Takes 5-10 minutes on 2 cores.
set -euo pipefail

BIN=${1:-build/bin/xtgrad-align}
STEPS=${STEPS:-20000}
EVAL_EVERY=${EVAL_EVERY:-1000}
THREADS=${THREADS:-1}
OUT=${OUT:-runs/long_run}
[ -x "$BIN" ] || { echo "long_run.sh: no program at $BIN (build first, or pass its path)" >&2; exit 2; }

mkdir -p "$OUT"
# A fresh run: no record of an earlier one may be read as this one's.
rm -f "$OUT/metrics.jsonl" "$OUT/memory.csv" "$OUT/memory_summary.txt" "$OUT/train.log"
CSV="$OUT/memory.csv"
LOG="$OUT/train.log"

"$BIN" train --steps "$STEPS" --eval-every "$EVAL_EVERY" --threads "$THREADS" --out "$OUT" >"$LOG" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM EXIT

start=$(date +%s.%N)
echo "elapsed_s,rss_mb,step,progress_step" >"$CSV"
while kill -0 "$pid" 2>/dev/null; do
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss_kb" ] || break  # exited (or a zombie without memory) between the test and the read
  step=$(tail -n 1 "$OUT/metrics.jsonl" 2>/dev/null | sed -n 's/^{"step": \([0-9]*\),.*/\1/p' || true)
  progress=$(grep -o '^step [0-9]*' "$LOG" 2>/dev/null | tail -n 1 | cut -d' ' -f2 || true)
  awk -v now="$(date +%s.%N)" -v start="$start" -v kb="$rss_kb" -v step="${step:-0}" -v progress="${progress:-0}" \
    'BEGIN { printf "%.1f,%.1f,%d,%d\n", now - start, kb / 1024, step, progress }' >>"$CSV"
  sleep 1
done
status=0
wait "$pid" || status=$?
trap - INT TERM EXIT

# The median of the samples whose progress step is in [lo, hi): outside evaluations most
# samples are; a single sample may catch an evaluation's temporary peak.
median_rss() {
  awk -F, -v lo="$1" -v hi="$2" 'NR > 1 && $4 >= lo && $4 < hi { print $2 }' "$CSV" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int((NR + 1) / 2)]; else print "nan" }'
}
last_step=$(tail -n 1 "$CSV" | cut -d, -f4 | tr -cd 0-9)
last_step=${last_step:-0}
early_lo=2000 early_hi=3000 late_lo=$((last_step - 1000)) late_hi=$((last_step + 1))
if [ "$last_step" -lt 4000 ]; then early_lo=0 early_hi=$((last_step / 2)) late_lo=$((last_step / 2)); fi
early=$(median_rss "$early_lo" "$early_hi")
late=$(median_rss "$late_lo" "$late_hi")
summary=$(awk -F, -v status="$status" -v early="$early" -v late="$late" -v elo="$early_lo" -v ehi="$early_hi" \
  -v llo="$late_lo" -v lhi="$late_hi" '
  NR == 1 { next }
  { rows++; if ($2 > peak) { peak = $2; peak_t = $1; peak_step = $4 }
    end = $2; end_t = $1; end_step = $4 }
  END {
    if (rows == 0) { print "no samples (the run ended within a second; exit " status ")"; exit }
    printf "%d samples over %.0f s; peak RSS %.1f MB (at %.0f s, step ~%d); median RSS over steps %d-%d %s MB, over steps %d-%d %s MB, ratio %.3f; last sample (step %d) %.1f MB; exit %d\n",
           rows, end_t, peak, peak_t, peak_step, elo, ehi - 1, early, llo, lhi - 1, late, (early > 0 ? late / early : 0),
           end_step, end, status
  }' "$CSV")
{
  echo "$summary"
  grep '^done: ' "$LOG" || tail -n 3 "$LOG"
} | tee "$OUT/memory_summary.txt"
exit "$status"
