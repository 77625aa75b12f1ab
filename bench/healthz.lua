-- healthz.lua — wrk script: GET /healthz, the reference figure (what the HTTP layer alone
-- can answer on this machine). Only 200 counts; other statuses are counted per thread and
-- reported by done() on one "BENCH_RESULT" line that bench/ingest.sh parses.
-- Give wrk the URL of /healthz itself: no request() here keeps wrk's request static, so the
-- figure measures the server, not Lua.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").count(200, 1)
