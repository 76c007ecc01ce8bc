-- Stores a batch of spans of ONE trace, each at most once (idempotent on (traceId, spanId): first write wins),
-- and returns the whole trace so the caller can rebuild its tree and contribution.
-- NUMKEYS: 2
-- KEYS[1]   trace spans hash: spanId → compact span line
-- KEYS[2]   trace version (bumped when at least one span was newly stored)
-- ARGV[1]   retention in seconds (EXPIRE on both keys)
-- ARGV[2]   most spans a trace may hold
-- ARGV[3..] pairs: spanId, line
-- Returns: { version, statuses, line1, line2, … } where statuses is a string with one character per input span:
--          '1' newly stored, '0' duplicate, 'F' refused because the trace is full; then every line of the trace.
local spans = KEYS[1]
local n = redis.call('HLEN', spans)
local max = tonumber(ARGV[2])
local statuses = {}
local added = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HEXISTS', spans, id) == 1 then
    statuses[#statuses + 1] = '0'
  elseif n >= max then
    statuses[#statuses + 1] = 'F'
  else
    redis.call('HSET', spans, id, ARGV[i + 1])
    n = n + 1
    added = added + 1
    statuses[#statuses + 1] = '1'
  end
end
local ver
if added > 0 then
  ver = redis.call('INCR', KEYS[2])
else
  ver = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local ttl = tonumber(ARGV[1])
redis.call('EXPIRE', spans, ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local out = { ver, table.concat(statuses) }
local vals = redis.call('HVALS', spans)
for i = 1, #vals do out[#out + 1] = vals[i] end
return out
