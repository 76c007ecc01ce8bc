-- Shared ledger helpers, prepended by src/redis/scripts.ts to every script that says `-- INCLUDE: ledger`.

local function i(x) return string.format('%d', x) end

-- Returns a reservation's hold of `amt` to the budget hash `k` (skipped when the budget is gone):
-- reserved -= amt; remaining += amt, except what repays debt first (debt > 0 implies remaining = 0).
local function return_hold(k, amt)
  local b = redis.call('HMGET', k, 'r', 'd')
  if b[1] then
    local r = tonumber(b[1]) + amt
    local d = tonumber(b[2] or '0')
    local pay = math.min(r, d)
    redis.call('HINCRBY', k, 'v', -amt)
    redis.call('HSET', k, 'r', i(r - pay), 'd', i(d - pay))
    if pay > 0 then redis.call('HINCRBY', k, 's', pay) end
  end
end
