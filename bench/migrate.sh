#!/usr/bin/env bash
# bench/migrate.sh — `stagedoor migrate` of the demo season (200 performances, 20,000 customers
# with their profiles, 150,000 sales) into PostgreSQL, next to a plain `COPY` of the same rows
# into the same tables in the same run.
#
# One run: build (release) if needed; `stagedoor demo` fills a fresh data dir (stopped as soon as
# it serves); then
#   (m)  `stagedoor migrate --from DATA --to` a fresh database: rows, copy and verification
#        times as the command prints them (the copy: BEGIN … COMMIT, locks and checks included)
#   (r)  the reference: every table of (m)'s database written to a file with psql `\copy … TO`,
#        then read into a second fresh database (its schema applied by the binary) with
#        `\copy … FROM` in one transaction (psql -1), in migrate's table order, timed
# and prints both, rows/s, and the ratio of (m)'s copy time to (r)'s.
#
# Environment: STAGEDOOR_TEST_PG (admin URL of a cluster, postgresql://USER@HOST:PORT/DB without
# a query; unset: scripts/pg-cluster starts one in a temp dir and stops it at the end),
# BENCH_BIN (a stagedoor binary; default build/release/stagedoor, built), KEEP=1 keeps the temp
# dir. Exit: 0 figures printed (migrate verified its copy), 1 migrate failed, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_need psql
bench_workdir migrate
bench_binary

PGDIR=
DBS=()
ADMIN=${STAGEDOOR_TEST_PG:-}
cleanup_all() {
    local db
    for db in "${DBS[@]}"; do
        psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    if [[ -n $PGDIR ]]; then
        "$ROOT/scripts/pg-cluster" stop "$PGDIR" >/dev/null 2>&1 || true
        rm -rf "$PGDIR"
    fi
    bench_cleanup
}
trap cleanup_all EXIT
if [[ -z $ADMIN ]]; then
    PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-migrate-pg.XXXXXX")
    ADMIN=$("$ROOT/scripts/pg-cluster" start "$PGDIR") || die "cannot start a PostgreSQL cluster"
fi

new_db() { # new_db NAME: create it, print its URL
    psql -X -q -v ON_ERROR_STOP=1 "$ADMIN" -c "CREATE DATABASE $1" >/dev/null ||
        die "cannot create database $1"
    DBS+=("$1")
    echo "${ADMIN%/*}/$1"
}

# The demo season, loaded once by `stagedoor demo`, which then serves: stop it there.
"$BIN" demo --data "$DATA" --listen 127.0.0.1:0 >"$WORK/demo.out" 2>"$LOG" &
SERVER_PID=$!
for _ in $(seq 1 6000); do
    grep -q 'msg="serving"' "$LOG" && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "stagedoor demo exited (see $LOG)"
    sleep 0.1
done
grep -q 'msg="serving"' "$LOG" || die "stagedoor demo did not load its season in 10 minutes"
stop_server

# (m) the migrate
M_URL=$(new_db "sd_bench_migrate_m_$$")
if ! "$BIN" migrate --from "$DATA" --to "$M_URL" >"$WORK/migrate.out" 2>"$WORK/migrate.err"; then
    cat "$WORK/migrate.out" "$WORK/migrate.err" >&2
    echo "bench: migrate failed" >&2
    exit 1
fi
summary=$(tail -n 1 "$WORK/migrate.out")
rows=$(sed -E 's/^migrated ([0-9]+) rows.*/\1/' <<<"$summary")
copy_s=$(sed -E 's/.*copy ([0-9.]+) s .*/\1/' <<<"$summary")
verify_s=$(sed -E 's/.*verification ([0-9.]+) s$/\1/' <<<"$summary")
sales=$(awk '$1 == "sales" { print $2 }' "$WORK/migrate.out")
mapfile -t tables < <(awk '$3 == "rows" && $4 == "sha256" { print $1 }' "$WORK/migrate.out")

# (r) the reference: the same rows, out of (m)'s database and into a fresh one with \copy.
R_URL=$(new_db "sd_bench_migrate_r_$$")
"$BIN" tenant list --store "$R_URL" >/dev/null 2>>"$WORK/setup.log" ||
    die "cannot apply the schema to the reference database"
: >"$WORK/reference.sql"
for t in "${tables[@]}"; do
    psql -X -q -v ON_ERROR_STOP=1 "$M_URL" -c "\\copy $t TO '$WORK/$t.copy'" ||
        die "cannot export $t"
    echo "\\copy $t FROM '$WORK/$t.copy'" >>"$WORK/reference.sql"
done
start=$(date +%s.%N)
psql -X -q -1 -v ON_ERROR_STOP=1 "$R_URL" -f "$WORK/reference.sql" >/dev/null ||
    die "the reference COPY failed"
end=$(date +%s.%N)
ref_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')

awk -v rows="$rows" -v sales="$sales" -v c="$copy_s" -v v="$verify_s" -v r="$ref_s" \
    -v n="${#tables[@]}" 'BEGIN {
    printf "rows             %d in %d tables (%d sales)\n", rows, n, sales
    printf "(m) migrate      copy %.2f s = %.0f rows/s; verification %.2f s\n", c, rows / c, v
    printf "(r) plain COPY   %.2f s = %.0f rows/s\n", r, rows / r
    printf "ratio (r)/(m)    %.2f (1.00: migrate copies as fast as COPY alone)\n", r / c
}'
