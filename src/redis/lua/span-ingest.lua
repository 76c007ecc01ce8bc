-- Stores a batch of spans of ONE trace, each at most once (idempotent on (traceId, spanId): first write wins),
-- and returns the trace's other spans so the caller can rebuild its tree and contribution.
-- NUMKEYS: 2
-- KEYS[1]   trace spans hash: spanId → compact span line
-- KEYS[2]   trace version (bumped when at least one span was newly stored)
-- ARGV[1]   retention in seconds (EXPIRE on both keys)
-- ARGV[2]   most spans a trace may hold
-- ARGV[3]   the batch's span lines joined by "\n"; each line starts with its spanId and "\x1f"
-- Returns: { version, statuses, line… } where statuses has one character per input line: '1' newly stored,
--          '0' duplicate (already stored, or earlier in this batch), 'F' refused because the trace is full;
--          then every stored line of the trace EXCEPT those newly stored by this call (the caller has them).
local spans = KEYS[1]
local n = redis.call('HLEN', spans)
local before = n
local max = tonumber(ARGV[2])
local statuses = {}
local added = {}
local nadded = 0
for line in string.gmatch(ARGV[3], '[^\n]+') do
  local id = string.match(line, '^([^\31]*)')
  if added[id] or redis.call('HEXISTS', spans, id) == 1 then
    statuses[#statuses + 1] = '0'
  elseif n >= max then
    statuses[#statuses + 1] = 'F'
  else
    redis.call('HSET', spans, id, line)
    added[id] = true
    n = n + 1
    nadded = nadded + 1
    statuses[#statuses + 1] = '1'
  end
end
local ver
if nadded > 0 then
  ver = redis.call('INCR', KEYS[2])
else
  ver = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local ttl = tonumber(ARGV[1])
redis.call('EXPIRE', spans, ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local out = { ver, table.concat(statuses) }
if before > 0 then
  local all = redis.call('HGETALL', spans)
  for i = 1, #all, 2 do
    if not added[all[i]] then out[#out + 1] = all[i + 1] end
  end
end
return out
