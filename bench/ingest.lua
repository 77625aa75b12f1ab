-- ingest.lua — wrk script: POST /v1/{client}/ingest with BENCH_BATCH sales per request.
--
-- Every sale gets a new invoice number "B<run>-<thread>-<n>" (run tag from BENCH_RUN, thread
-- number handed out in setup(), n a per-thread counter), so a request is never a duplicate
-- and any 409 is a real finding. Only 202 counts as accepted; every other status is counted
-- per thread and reported by done() on one "BENCH_RESULT" line that bench/ingest.sh parses.
--
-- Environment: BENCH_KEY (required), BENCH_CLIENT (bench), BENCH_BATCH (1), BENCH_RUN (r),
-- BENCH_EVENT (EVT-BENCH-1), BENCH_CUSTOMER (ANON; every other sale uses it, the rest ANON).

local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local key = os.getenv("BENCH_KEY")
local client = os.getenv("BENCH_CLIENT") or "bench"
local run = os.getenv("BENCH_RUN") or "r"
local event_id = os.getenv("BENCH_EVENT") or "EVT-BENCH-1"
local customer_id = os.getenv("BENCH_CUSTOMER") or "ANON"
if not key or key == "" then
   error("BENCH_KEY is not set")
end

local path = "/v1/" .. client .. "/ingest"
local headers = {
   ["Authorization"] = "Bearer " .. key,
   ["Content-Type"] = "application/json",
}

-- main state: the threads, for done()
local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

-- thread state
local n = 0
local head, tail_anon, tail_customer
accepted = 0
rejected = 0
statuses = ""
first_error = ""
local status_counts = {}

function init(args)
   head = '{"invoice_number":"B' .. run .. "-" .. id .. "-"
   local rest = '","event_id":"' .. event_id .. '","customer_id":"'
   local tail = '","purchase_datetime":"2026-04-15T11:08:42Z","ticket_category":"regular",'
      .. '"quantity":2,"sales_price":"89.00","base_price":"75.00","currency":"EUR"}'
   tail_anon = rest .. "ANON" .. tail
   tail_customer = rest .. customer_id .. tail
end

function request()
   local parts = {}
   for i = 1, batch do
      n = n + 1
      parts[i] = head .. n .. ((n % 2 == 0) and tail_customer or tail_anon)
   end
   local body = '{"sales":[' .. table.concat(parts, ",") .. "]}"
   return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
   if status == 202 then
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
