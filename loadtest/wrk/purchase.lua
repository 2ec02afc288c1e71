-- wrk script for flashsale's purchase endpoint: every request is a new user
-- (random id in a ~1e12 range) with a unique request_id, so with a large
-- stock every request should be admitted (201) and wrk's "Non-2xx" line
-- should be absent.
--
--   wrk -t2 -c256 -d10s -s loadtest/wrk/purchase.lua http://127.0.0.1:8080 -- SKU
--
-- SKU defaults to "bench"; create it first with a large stock, e.g.
--   curl -H 'Authorization: Bearer change-me' --json '{"sku":"bench","stock":1000000000000,"per_user_limit":1}' \
--        http://127.0.0.1:8080/v1/admin/sales
--
-- One sale makes at most engine.max_orders_per_sale orders (10 million by
-- default, about 2.5 minutes of this script at 70k req/s); for longer runs
-- start the server with e.g. FLASHSALE_ENGINE_MAX_ORDERS_PER_SALE=1000000000.

local threads_started = 0

function setup(thread)
  threads_started = threads_started + 1
  thread:set("id", threads_started)
end

local sku = "bench"
local counter = 0

function init(args)
  if args[1] then sku = args[1] end
  -- Distinct seeds per thread; `id` is set by setup() above.
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.method = "POST"
  wrk.path = "/v1/sales/" .. sku .. "/purchase"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  -- Two parts because LuaJIT's string.format("%d") is only safe to 2^31:
  -- user id = hi * 1e6 + lo, up to ~1e12.
  local hi = math.random(1, 1000000)
  local lo = math.random(0, 999999)
  local body = string.format('{"user_id":%d%06d,"qty":1,"request_id":"w%d-%d"}',
    hi, lo, id or 0, counter)
  return wrk.format(nil, nil, nil, body)
end
