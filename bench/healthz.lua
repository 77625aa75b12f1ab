-- healthz.lua — wrk script: GET /healthz, the reference figure (what the HTTP layer alone
-- can answer on this machine). Only 200 counts; other statuses are counted per thread and
-- reported by done() on one "BENCH_RESULT" line that bench/ingest.sh parses.
-- Give wrk the URL of /healthz itself: no request() here keeps wrk's request static, so the
-- figure measures the server, not Lua.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

accepted = 0
rejected = 0
statuses = ""
local status_counts = {}

function response(status, hdrs, body)
   if status == 200 then
      accepted = accepted + 1
      return
   end
   rejected = rejected + 1
   status_counts[status] = (status_counts[status] or 0) + 1
   local parts = {}
   for s, c in pairs(status_counts) do
      parts[#parts + 1] = s .. "x" .. c
   end
   statuses = table.concat(parts, ",")
end

function done(summary, latency, requests)
   local acc, rej, st = 0, 0, {}
   for _, t in ipairs(threads) do
      acc = acc + t:get("accepted")
      rej = rej + t:get("rejected")
      local s = t:get("statuses")
      if s ~= "" then
         st[#st + 1] = "t" .. t:get("id") .. ":" .. s
      end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT accepted=%d rejected=%d responses=%d duration_us=%d batch=1 "
         .. "p50_us=%d p99_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d "
         .. "err_timeout=%d statuses=%s\n",
      acc, rej, summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.timeout, (#st > 0) and table.concat(st, ";") or "-"))
end
