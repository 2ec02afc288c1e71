-- wrk script for flashsale's purchase endpoint: every request is a new user
-- (random id in a ~1e12 range) with a unique request_id, so with a large
-- stock every request should be admitted (201) and wrk's "Non-2xx" line
-- should be absent. That is for a server in buyer_auth.mode = "body".
--
-- jwt mode: set TOKENS to a file of buyer tokens, one per line (e.g.
-- `flashsale token --user w --count 200000 --ttl 1h > tokens`); each request
-- then takes the next token (threads start at different offsets), sends it
-- as Authorization: Bearer, and leaves user_id out of the body. Tokens are
-- reused round the list, so the sale needs a per-user limit above one.
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
local tokens = nil

function init(args)
  if args[1] then sku = args[1] end
  -- Distinct seeds per thread; `id` is set by setup() above.
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.method = "POST"
  wrk.path = "/v1/sales/" .. sku .. "/purchase"
  wrk.headers["Content-Type"] = "application/json"
  local file = os.getenv("TOKENS")
  if file and file ~= "" then
    tokens = {}
    for line in io.lines(file) do
      if line ~= "" then tokens[#tokens + 1] = "Bearer " .. line end
    end
    assert(#tokens > 0, "no tokens in " .. file)
    counter = ((id or 0) * 7919) % #tokens
  end
end

function request()
  counter = counter + 1
  -- Two parts because LuaJIT's string.format("%d") is only safe to 2^31:
  -- user id = hi * 1e6 + lo, up to ~1e12.
  local hi = math.random(1, 1000000)
  local lo = math.random(0, 999999)
  if tokens then
    local body = string.format('{"qty":1,"request_id":"w%d-%d"}', id or 0, counter)
    local headers = { ["Authorization"] = tokens[counter % #tokens + 1] }
    return wrk.format(nil, nil, headers, body)
  end
  local body = string.format('{"user_id":"%d%06d","qty":1,"request_id":"w%d-%d"}',
    hi, lo, id or 0, counter)
  return wrk.format(nil, nil, nil, body)
end
