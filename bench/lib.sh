# bench/lib.sh — shell helpers the segment benchmarks share; sourced, not run.
#
# die MSG…        print "bench: MSG" on stderr and exit 2 (setup failed, no figure).
# stop_server     SIGTERM the server in $SERVER_PID, wait up to 30 s, then SIGKILL; clears it.
# bench_binary    sets BIN: $BENCH_BIN if set, else build/release/stagedoor of $ROOT, built
#                 with the release preset (build output in $WORK/build.log); dies if none.

die() {
    echo "bench: $*" >&2
    exit 2
}

stop_server() {
    [[ -n ${SERVER_PID:-} ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

bench_binary() {
    if [[ -n ${BENCH_BIN:-} ]]; then
        BIN=$BENCH_BIN
    else
        BIN="$ROOT/build/release/stagedoor"
        if ! (
            cd "$ROOT"
            [[ -f build/release/CMakeCache.txt ]] || cmake --preset release
            cmake --build build/release -j2 --target stagedoor
        ) >"$WORK/build.log" 2>&1; then
            tail -n 30 "$WORK/build.log" >&2
            die "release build failed (cmake --preset release && cmake --build build/release)"
        fi
    fi
    [[ -x $BIN ]] || die "no binary at '$BIN'"
}
