-- Drops the decision-record dictionary entries not claimed or confirmed for ARGV[1] ms (Redis's clock): every
-- record that refers to one has expired by then. Entries that have no last-seen stamp (written before stamps
-- existed) are stamped now first, so they are dropped one period after, unless a writer confirms them.
-- NUMKEYS: 2
-- KEYS[1]      the dictionary hash (ref → names JSON)
-- KEYS[2]      its last-seen zset (ref by epoch ms)
-- ARGV[1]      keep, ms
-- ARGV[2]      most entries dropped by one call
-- Returns the number of entries dropped.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HLEN', KEYS[1]) > redis.call('ZCARD', KEYS[2]) then
  for _, ref in ipairs(redis.call('HKEYS', KEYS[1])) do
    redis.call('ZADD', KEYS[2], 'NX', now, ref)
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[1])), 'LIMIT', 0, tonumber(ARGV[2]))
for _, ref in ipairs(old) do
  redis.call('HDEL', KEYS[1], ref)
  redis.call('ZREM', KEYS[2], ref)
end
return #old
