-- Moves joined outcomes into a pipeline's training buffer, and finds the learned decisions whose wait window
-- passed without an outcome (Personalizer's semantics: they get the default reward, a late outcome is dropped).
-- NUMKEYS: 6
-- KEYS[1]  incoming list (`<ticket>|<event JSON>`, newest first; ticket empty when none was registered; no event:
--          a late marker, an outcome received after its decision's wait window, counted as dropped and
--          otherwise ignored, so its ticket stays pending for the default reward)
-- KEYS[2]  training buffer list (event JSON, newest first)
-- KEYS[3]  pending zset (ticket → deadline, epoch ms; the ticket is the decision id)
-- KEYS[4]  defaulted zset (ticket → time it was defaulted, epoch ms)
-- KEYS[5]  resolved zset (tickets ingested before their batched registration arrived → time)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  buffer cap (LTRIM keeps the newest)
-- ARGV[3]  most incoming entries and due tickets handled per call
-- ARGV[4]  how long defaulted tickets are remembered, ms
-- ARGV[5]  how long resolved tickets are remembered, ms
-- KEYS[6]  the pipeline's tombstone (highest deleted version; src/pipelines/tombstone.ts)
-- ARGV[6]  the pipeline version the caller works for: when the tombstone holds it or a newer one (the pipeline was
--          deleted meanwhile) nothing is read or written, so its purged keys do not come back
-- Due tickets are returned: the caller builds their events from the decision records and commits them with
-- learner-default.lua (which defaults a ticket only if it is still pending, so concurrent or repeated sweeps
-- default it once).
-- Returns: { moved, dropped (late), incoming left, { due tickets } }
local dead = redis.call('GET', KEYS[6])
if dead and tonumber(ARGV[6]) <= tonumber(dead) then
  return { 0, 0, 0, {} }
end
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local batch = tonumber(ARGV[3])
local moved, dropped = 0, 0

-- Oldest entries sit at the tail: take up to `batch` of them, oldest first.
local items = redis.call('LRANGE', KEYS[1], -batch, -1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], 0, -(#items + 1))
end
for i = #items, 1, -1 do
  local v = items[i]
  local bar = string.find(v, '|', 1, true)
  local ticket = string.sub(v, 1, bar - 1)
  local json = string.sub(v, bar + 1)
  if json == '' or (ticket ~= '' and redis.call('ZSCORE', KEYS[4], ticket)) then
    dropped = dropped + 1
  else
    if ticket ~= '' then
      if redis.call('ZREM', KEYS[3], ticket) == 0 then
        -- Its registration has not arrived yet: remember, so it is not registered (and defaulted) later.
        redis.call('ZADD', KEYS[5], now, ticket)
      end
    end
    redis.call('LPUSH', KEYS[2], json)
    moved = moved + 1
  end
end

local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, batch)
local build = {}
for _, ticket in ipairs(due) do
  if redis.call('ZREM', KEYS[5], ticket) == 1 then
    -- Its outcome was ingested before this registration arrived: nothing to default.
    redis.call('ZREM', KEYS[3], ticket)
  else
    build[#build + 1] = ticket
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[4]))
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[5]))
redis.call('LTRIM', KEYS[2], 0, cap - 1)
return { moved, dropped, redis.call('LLEN', KEYS[1]), build }
