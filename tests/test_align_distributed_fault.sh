#!/bin/bash
# One rank of `mpiexec -np 2 xtgrad-align train` killed with SIGKILL mid-run: mpiexec must
# exit non-zero within 30 s with OpenMPI's report naming the lost rank, and the run
# directory must hold a complete checkpoint (eval loads it, a resume on 2 ranks continues
# it). Usage (tests/CMakeLists.txt): test_align_distributed_fault.sh XTGRAD_ALIGN MPIEXEC [FLAGS...]
set -u
align=$1
shift
mpiexec=("$@")
dir=$(mktemp -d "${TMPDIR:-/tmp}/xtgrad-dp-fault-XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail() {
  echo "FAIL: $*"
  echo "--- mpiexec's output:"
  cat "$dir/log"
  exit 1
}

run=(train --eval-every 3 --train-size 400 --test-size 100 --batch 16 --dim 16 --heads 2 --out "$dir/run")
"${mpiexec[@]}" -np 2 "$align" "${run[@]}" --steps 1000000 >"$dir/log" 2>&1 &
launcher=$!

# Two checkpoints written, then the rank 1 process (the launcher's child or grandchild whose
# environment says OMPI_COMM_WORLD_RANK=1) is killed.
for _ in $(seq 1 600); do
  [ "$(grep -c '"step"' "$dir/run/metrics.jsonl" 2>/dev/null)" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c '"step"' "$dir/run/metrics.jsonl" 2>/dev/null)" -ge 2 ] || fail "no two checkpoints within 60 s"
victim=""
for p in $(pgrep -P "$launcher") $(for c in $(pgrep -P "$launcher"); do pgrep -P "$c"; done); do
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
done
[ -n "$victim" ] || fail "rank 1's process not found among mpiexec's children"
start=$(date +%s%N)
kill -9 "$victim"
wait "$launcher"
code=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "mpiexec exited with $code ${elapsed_ms} ms after rank 1 was killed"

[ "$code" -ne 0 ] || fail "mpiexec exited 0"
[ "$elapsed_ms" -lt 30000 ] || fail "mpiexec took ${elapsed_ms} ms to stop"
grep -Eq "process rank 1 with PID [0-9]+ on node .* exited on signal 9" "$dir/log" || fail "the lost rank is not named"

eval_out=$("$align" eval --checkpoint "$dir/run" 2>&1) || fail "eval of the checkpoint left on disk: $eval_out"
echo "eval: $eval_out"
step=$(tr -c '[:print:]' '\n' <"$dir/run/model.safetensors" | grep -o '"step":"[0-9]*"' | grep -o '[0-9]*')
[ -n "$step" ] && [ $((step % 3)) -eq 0 ] && [ "$step" -ge 6 ] || fail "the checkpoint's step is '$step'"
"${mpiexec[@]}" -np 2 "$align" train --resume "$dir/run" --steps $((step + 3)) >"$dir/log" 2>&1 ||
  fail "a resume on 2 ranks from step $step failed"
grep -q "done: step $((step + 3))" "$dir/log" || fail "the resume did not reach step $((step + 3))"
echo "PASS: checkpoint at step $step loads and resumes"
