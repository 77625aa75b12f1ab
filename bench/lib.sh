# bench/lib.sh — shell helpers the bench scripts share; sourced, not run.
# shellcheck shell=bash
#
# die MSG…        print "bench: MSG" on stderr and exit 2 (setup failed, no figure).
# stop_server     SIGTERM the server in $SERVER_PID, wait up to 30 s, then SIGKILL; clears it.
# bench_binary    sets BIN: $BENCH_BIN if set, else build/release/stagedoor of $ROOT, built
#                 with the release preset (build output in $WORK/build.log); dies if none.
# bench_need TOOL…
#                 dies unless every TOOL is on PATH.
# bench_workdir NAME
#                 sets WORK (a new temp dir stagedoor-NAME.XXXXXX), DATA (WORK/data, made),
#                 LOG (WORK/server.log) and traps: on exit the server is stopped and WORK removed
#                 (kept when KEEP=1); SIGINT and SIGTERM exit 130 and 143 through that.
# bench_tenant CLIENT
#                 in $DATA with $BIN: tenant CLIENT with its limits raised out of the way; sets
#                 KEY to a new TEST key (setup output in $WORK/setup.log).
# bench_serve     starts `serve --listen 127.0.0.1:0` on $DATA (plus $BENCH_SERVE_ARGS, log in
#                 $LOG) in the background; sets SERVER_PID and BASE (http://127.0.0.1:PORT).

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

bench_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install $*)"
    done
}

bench_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-$1.XXXXXX")
    DATA="$WORK/data"
    LOG="$WORK/server.log"
    SERVER_PID=
    mkdir -p "$DATA"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    stop_server
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "bench: kept $WORK (data/, server.log)" >&2
    else
        rm -rf "$WORK"
    fi
}

bench_tenant() {
    "$BIN" tenant create "$1" --data "$DATA" >"$WORK/setup.log" 2>&1 ||
        die "tenant create failed: $(cat "$WORK/setup.log")"
    "$BIN" tenant limits "$1" --per-minute 100000000 --burst 100000000 --data "$DATA" \
        >>"$WORK/setup.log" 2>&1 || die "tenant limits failed: $(cat "$WORK/setup.log")"
    KEY=$("$BIN" key create "$1" --env test --data "$DATA" 2>>"$WORK/setup.log" | tail -n 1)
    [[ -n $KEY ]] || die "key create printed no key: $(cat "$WORK/setup.log")"
}

bench_serve() {
    # shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of words
    "$BIN" serve --data "$DATA" --listen 127.0.0.1:0 ${BENCH_SERVE_ARGS:-} >"$LOG" 2>&1 &
    SERVER_PID=$!
    BASE=
    for _ in $(seq 1 300); do
        BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$LOG" | head -n 1)
        [[ -n $BASE ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -n 20 "$LOG")"
        sleep 0.1
    done
    die "server did not report its address: $(tail -n 20 "$LOG")"
}
