#!/usr/bin/env bash
# bench/archtics.sh — the archtics connector against the ATS simulator answering at once: calls
# per synced record for a season backfill (the figure the vendor's quota makes decisive) and
# records per second, next to the simulator's own raw call rate measured in the same run (the
# ceiling any ATS client gets from it here). bench/archtics_bench.py says how each figure is
# taken.
#
# Environment (defaults): BENCH_BIN (else build/release/stagedoor, built with the release
# preset), BENCH_SECONDS (5, the reference run), BENCH_KEEP=1 (keep the temp dir).
# Exit: 0 figures printed, 1 a run failed (the reason on stderr), 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_REF=${BENCH_SECONDS:-5}
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_need python3

bench_workdir archticsbench

bench_binary
python3 "$ROOT/bench/archtics_bench.py" --bin "$BIN" --seconds "$SECONDS_REF" --work "$WORK" ||
    exit 1
