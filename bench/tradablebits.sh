#!/usr/bin/env bash
# bench/tradablebits.sh — the tradablebits connector against its simulator answering at once
# (no rate limit): tickets pushed per second and per call (the bulk call through the outbox),
# fans pulled per second, and activities pulled onto their fans per second, each next to the
# simulator's own rate for a trivial client measured in the same run.
# bench/tradablebits_bench.py says how each figure is taken.
#
# Environment (defaults): BENCH_BIN (else build/release/stagedoor, built with the release
# preset), BENCH_FANS (20000), BENCH_TICKETS (5000), BENCH_SECONDS (5, the push reference),
# BENCH_ACTIVITIES (20000), BENCH_KEEP=1 (keep the temp dir). Needs python3 and a C toolchain.
# Exit: 0 figures printed, 1 a run failed (the reason on stderr), 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_need python3

bench_workdir tbbench

bench_binary
python3 "$ROOT/bench/tradablebits_bench.py" --bin "$BIN" --fans "${BENCH_FANS:-20000}" \
    --tickets "${BENCH_TICKETS:-5000}" --activities "${BENCH_ACTIVITIES:-20000}" \
    --seconds "${BENCH_SECONDS:-5}" --work "$WORK" || exit 1
