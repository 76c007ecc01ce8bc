-- Sweeper: expires the tenant's ACTIVE reservations whose deadline has passed, returning their amounts
-- to every held scope. Bounded per call; the caller loops while a full batch was expired.
-- NUMKEYS: 1
-- KEYS[1]      deadlines sorted set of the tenant (member = reservation key, score = deadline ms)
-- ARGV[1]      now in ms
-- ARGV[2]      batch size
-- ARGV[3]      retention of finished reservations in ms
-- Returns the number of reservations expired.
local function i(x) return string.format('%d', x) end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, rk in ipairs(due) do
  local rv = redis.call('HMGET', rk, 'st', 'amt', 'ks')
  if rv[1] == 'A' then
    local amt = tonumber(rv[2])
    for k in string.gmatch(rv[3], '%S+') do
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
    redis.call('HSET', rk, 'st', 'E')
    redis.call('PEXPIRE', rk, tonumber(ARGV[3]))
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], rk)
end
return n
