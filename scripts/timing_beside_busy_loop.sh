#!/bin/bash
# Issue 31's check: the timing tests (marker `timing`) N times in a row beside a one-core busy loop.
# Usage: scripts/timing_beside_busy_loop.sh [RUNS] [OUT_DIR]   (from the repository root,
# after `make test` built .venv). Each run's output goes to OUT_DIR/runK.txt, one line per
# run to OUT_DIR/summary.txt. Run it on a machine with no other job.
runs=${1:-10}
out=${2:-timing-runs}
mkdir -p "$out"
python3 -c "while True: pass" &
busy=$!
trap 'kill $busy' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  .venv/bin/pytest -q -p no:cacheprovider -s -m timing > "$out/run$i.txt" 2>&1
  rc=$?
  echo "run $i rc=$rc $(( $(date +%s) - start )) s load $(cut -d' ' -f1-3 /proc/loadavg)" \
    ":: $(tail -1 "$out/run$i.txt")" | tee -a "$out/summary.txt"
done
