-- Baseline (c): the classic Redis "seckill" stock deduction, done atomically
-- in one Lua script (what many flash-sale systems put behind their API).
--
-- KEYS[1] = remaining stock (an integer string)
-- KEYS[2] = set of user ids who already bought (per-user limit 1)
-- ARGV[1] = user id
-- ARGV[2] = quantity (optional, default 1)
--
-- Returns  1 admitted, 0 sold out, -1 limit exceeded.
-- Note what it does NOT do, unlike flashsale: no order id, no reservation
-- TTL, no idempotency key, and durability only as good as Redis's AOF.
local qty = tonumber(ARGV[2] or '1')
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return -1
end
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock < qty then
  return 0
end
redis.call('DECRBY', KEYS[1], qty)
redis.call('SADD', KEYS[2], ARGV[1])
return 1
