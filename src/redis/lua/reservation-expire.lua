-- Sweeper: expires the tenant's ACTIVE reservations whose deadline has passed, returning their amounts
-- to every held scope. Bounded per call; the caller loops while a full batch was expired.
-- NUMKEYS: 1
-- INCLUDE: ledger
-- KEYS[1]      deadlines sorted set of the tenant (member = reservation key, score = deadline ms)
-- ARGV[1]      now in ms
-- ARGV[2]      batch size
-- ARGV[3]      retention of finished reservations in ms
-- Returns the number of reservations expired.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, rk in ipairs(due) do
  local rv = redis.call('HMGET', rk, 'st', 'amt', 'ks', 'par')
  if rv[1] == 'A' then
    -- A parent returns its whole hold (its draws' part included); a draw returns its amount to a live parent.
    end_hold(rk, 'E', tonumber(rv[2]), rv[3], rv[4], KEYS[1], tonumber(ARGV[3]))
    n = n + 1
  else
    redis.call('ZREM', KEYS[1], rk)
  end
end
return n
