#!/usr/bin/env bash
# bench/outbox.sh — items per second through the generic outbox to a local receiver that
# answers at once, next to the receiver's own request rate measured in the same run (the HTTP
# ceiling: what any sender gets from it here). bench/outbox_bench.py says how each figure is
# taken.
#
# One run:
#   1. builds build/bench-outbox/stagedoor (RelWithDebInfo, like the release preset, plus
#      STAGEDOOR_TEST_CONNECTORS=ON for the test_contacts connector the figure goes through)
#      unless BENCH_BIN names such a binary;
#   2. runs bench/outbox_bench.py on a fresh temporary data dir.
#
# Environment (defaults): BENCH_BIN, BENCH_ITEMS (5000), BENCH_SECONDS (5, the ceiling run),
# BENCH_KEEP=1 (keep the temp dir). Needs python3 and a C toolchain.
# Exit: 0 figures printed, 1 a run failed (the reason on stderr), 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ITEMS=${BENCH_ITEMS:-5000}
SECONDS_CEIL=${BENCH_SECONDS:-5}
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_need python3

bench_workdir outboxbench

if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    BIN="$ROOT/build/bench-outbox/stagedoor"
    if ! (
        cd "$ROOT"
        cmake -S . -B build/bench-outbox -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DSTAGEDOOR_TEST_CONNECTORS=ON
        cmake --build build/bench-outbox -j2 --target stagedoor
    ) >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        die "build failed (cmake -B build/bench-outbox -DSTAGEDOOR_TEST_CONNECTORS=ON)"
    fi
fi
[[ -x $BIN ]] || die "no binary at '$BIN'"

python3 "$ROOT/bench/outbox_bench.py" --bin "$BIN" --items "$ITEMS" --seconds "$SECONDS_CEIL" \
    --work "$WORK" || exit 1
