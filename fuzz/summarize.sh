#!/usr/bin/env bash
# Prints one Markdown table row per target from logs/TARGET.log (run_all.sh) and the corpus:
# executions, seconds, exec/s, corpus files and bytes, crash artifacts.
cd "$(dirname "$0")"
echo "| target | executions | time (s) | exec/s | corpus files | corpus bytes | crashes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for log in logs/*.log; do
  t=$(basename "$log" .log)
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | awk '{print $2}')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
  if [ -z "$secs" ] && [ -n "$runs" ] && [ -n "$eps" ] && [ "$eps" -gt 0 ]; then secs=$((runs / eps)); fi
  files=$(ls "corpus/$t" 2>/dev/null | wc -l)
  bytes=$(du -sb "corpus/$t" 2>/dev/null | awk '{print $1}')
  crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  echo "| $t | ${runs:-?} | ${secs:-?} | ${eps:-?} | $files | $bytes | $crashes |"
done
