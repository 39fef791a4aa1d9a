#!/usr/bin/env bash
# Runs every fuzz target once, one at a time, single job, under `nice -n 10`: each for
# 10,000,000 executions or 30 minutes, whichever comes first (-runs / -max_total_time). With
# STOP_AT=HH:MM (UTC) the time left is shared evenly among the targets not yet run, so that all
# of them run before then; each run's final libFuzzer statistics go to logs/TARGET.log.
# Usage (from fuzz/): ./run_all.sh [TARGET...]
set -u
cd "$(dirname "$0")"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(proofs checkpoint statement envelope crl signal hash_list sync_cursor journal bundle)
fi
mkdir -p logs
left=${#targets[@]}
for t in "${targets[@]}"; do
  budget=1800
  if [ -n "${STOP_AT:-}" ]; then
    remaining=$(( $(date -u -d "$STOP_AT" +%s) - $(date -u +%s) ))
    share=$(( remaining / left ))
    if [ "$share" -lt "$budget" ]; then budget=$share; fi
  fi
  left=$((left - 1))
  if [ "$budget" -le 0 ]; then echo "$t: no time left" | tee logs/$t.log; continue; fi
  echo "$(date -u +%H:%M:%S) $t: up to $budget s" | tee logs/$t.log
  nice -n 10 cargo +nightly fuzz run -s none -a "$t" "corpus/$t" -- \
    -max_total_time="$budget" -runs=10000000 -print_final_stats=1 -rss_limit_mb=2048 \
    >> "logs/$t.log" 2>&1
  echo "$(date -u +%H:%M:%S) $t: exit $?" >> logs/$t.log
done
