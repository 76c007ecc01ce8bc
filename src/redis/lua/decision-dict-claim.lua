-- Claims (or confirms) a decision-record dictionary entry: ref → names JSON, written only if the ref is free, and
-- stamps the ref as seen now (Redis's clock) in the dictionary's last-seen zset, from which decision-dict-prune.lua
-- drops the entries no record can refer to any more.
-- NUMKEYS: 2
-- KEYS[1]      the dictionary hash (ref → names JSON)
-- KEYS[2]      its last-seen zset (ref by epoch ms)
-- ARGV[1]      ref
-- ARGV[2]      names JSON
-- Returns 1 when the ref holds this JSON (now or already), 0 when it holds another tuple's (a hash collision).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif cur ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return 1
