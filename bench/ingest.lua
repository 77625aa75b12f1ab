-- ingest.lua — wrk script: POST /v1/{client}/ingest with BENCH_BATCH sales per request.
--
-- Every sale gets a new invoice number "B<run>-<thread>-<n>" (run tag from BENCH_RUN, thread
-- number handed out in setup(), n a per-thread counter), so a request is never a duplicate
-- and any 409 is a real finding. Only 202 counts as accepted; every other status is counted
-- per thread and reported by done() on one "BENCH_RESULT" line that bench/ingest.sh parses.
--
-- Environment: BENCH_KEY (required), BENCH_CLIENT (bench), BENCH_BATCH (1), BENCH_RUN (r),
-- BENCH_EVENT (EVT-BENCH-1), BENCH_CUSTOMER (ANON; every other sale uses it, the rest ANON),
-- BENCH_DELAY_MS (0: as fast as the connections go).

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

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua").count(202, batch)

-- BENCH_DELAY_MS (optional): each connection waits this long before every request, for a
-- paced load instead of a saturating one (bench/segments_hostile.sh).
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end

-- thread state
local n = 0
local head, tail_anon, tail_customer

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
