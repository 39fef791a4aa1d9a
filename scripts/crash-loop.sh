#!/usr/bin/env bash
# The crash loop at full scale (issue 11, item 7): SIGKILL the hub 20 times at random moments
# (each hub lives up to 2 s) under 3 concurrent `coalition submit` runs and a `coalition sync
# --follow`, then check that no acknowledged statement was lost or duplicated, that the
# follower's output equals the log and that `coalition audit verify` passes on the final export.
# CI runs the same test at a small scale (5 kills, hubs up at most 0.8 s) as part of `cargo test`.
#
#   scripts/crash-loop.sh                  # 20 kills, a fresh seed (printed)
#   CRASH_LOOP_SEED=1234 scripts/crash-loop.sh   # replay the kill moments of an earlier run
#   CRASH_LOOP_KILLS=50 scripts/crash-loop.sh    # more
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_LOOP_KILLS="${CRASH_LOOP_KILLS:-20}"
export CRASH_LOOP_MAX_UP_MS="${CRASH_LOOP_MAX_UP_MS:-2000}"
exec cargo test --locked --test integration crash_loop:: -- --nocapture
