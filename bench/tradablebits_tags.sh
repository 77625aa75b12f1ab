#!/usr/bin/env bash
# bench/tradablebits_tags.sh — a segment synced to a Tradable Bits fan tag: fans tagged per
# second and calls per sync (first sync, then a diff after a few members left), next to the pull
# of the same fans from the same simulator in the same run (the reference);
# bench/tradablebits_tags.py says how each figure is taken.
#
# Builds build/release/stagedoor (release preset) unless BENCH_BIN names a binary.
# Environment (defaults): BENCH_BIN, BENCH_FANS (20000), BENCH_CHANGE (1: % of members leaving).
# Exit: 0 figures printed, 1 a run failed, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
command -v python3 >/dev/null || die "'python3' not found"

if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    BIN="$ROOT/build/release/stagedoor"
    (cd "$ROOT" && cmake --preset release >/dev/null && cmake --build build/release -j2 \
        --target stagedoor >/dev/null) || die "release build failed"
fi
[[ -x $BIN ]] || die "no binary at '$BIN'"

python3 "$ROOT/bench/tradablebits_tags.py" --bin "$BIN" --fans "${BENCH_FANS:-20000}" \
    --change "${BENCH_CHANGE:-1}" || exit 1
