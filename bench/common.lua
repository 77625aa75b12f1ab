-- common.lua — what both wrk scripts share: thread bookkeeping, counting answers (only the
-- expected status is "accepted"; every other status is counted per thread, with the first
-- error body kept), and done() printing one "BENCH_RESULT" line that bench/ingest.sh parses.
-- Loaded with dofile() from the script's own folder; sets the globals wrk calls.

local M = {}

function M.count(ok_status, batch)
   local threads = {}

   -- main state: the threads, for done()
   function setup(thread)
      thread:set("id", #threads + 1)
      table.insert(threads, thread)
   end

   -- thread state
   accepted = 0
   rejected = 0
   statuses = ""
   first_error = ""
   local status_counts = {}

   function response(status, hdrs, body)
      if status == ok_status then
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
      if first_error == "" and body then
         first_error = string.sub(string.gsub(body, "%s+", " "), 1, 300)
      end
   end

   function done(summary, latency, requests)
      local acc, rej, st, fe = 0, 0, {}, ""
      for _, t in ipairs(threads) do
         acc = acc + t:get("accepted")
         rej = rej + t:get("rejected")
         local s = t:get("statuses")
         if s ~= "" then
            st[#st + 1] = "t" .. t:get("id") .. ":" .. s
         end
         if fe == "" then
            fe = t:get("first_error")
         end
      end
      local e = summary.errors
      io.write(string.format(
         "BENCH_RESULT accepted=%d rejected=%d responses=%d duration_us=%d batch=%d "
            .. "p50_us=%d p99_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d "
            .. "err_timeout=%d statuses=%s\n",
         acc, rej, summary.requests, summary.duration, batch,
         latency:percentile(50), latency:percentile(99), latency.max,
         e.connect, e.read, e.write, e.timeout, (#st > 0) and table.concat(st, ";") or "-"))
      if fe ~= "" then
         io.write("BENCH_FIRST_ERROR " .. fe .. "\n")
      end
   end
end

return M
