#!/usr/bin/env bash
# bench/wal_reader.sh — webhook latency with and without a 60 s outside reader, same run.
#
# Runs tests/e2e/test_wal_reader.py against a release build: 4 clients post small batches
# (2 events + 3 customers, 10 ms apart) for 10 s (the reference: no reader), then an outside
# Python sqlite3 connection holds one read transaction for WAL_READER_SECONDS (60) while they
# go on, with the WAL reset threshold lowered (STAGEDOOR_WAL_RESTART_FRAMES=1000) so the log
# passes it within seconds. Prints p50/p99 of both phases and the peak WAL size; every webhook
# must be answered 202 or the run fails.
#
# Environment: BENCH_BIN (build/release/stagedoor, built if unset), WAL_READER_SECONDS (60).
# Exit: 0 figures printed, 1 the test failed, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BENCH_BIN:-}
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cmake --preset release >/dev/null && cmake --build build/release -j2 \
        --target stagedoor >/dev/null) || exit 2
    BIN="$ROOT/build/release/stagedoor"
fi
[ -x "$BIN" ] || { echo "bench: no binary $BIN" >&2; exit 2; }

echo "wal_reader: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), binary $BIN"
out=$(WAL_READER_SECONDS=${WAL_READER_SECONDS:-60} python3 "$ROOT/tests/e2e/test_wal_reader.py" \
    --bin "$BIN" 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | sed -n '/^wal_reader:/,/peak WAL/p'
