-- Gives the default reward to due learned decisions whose events the caller built from their decision records
-- (learner-ingest.lua returned their tickets). A ticket is defaulted only if it is still pending, so a sweep
-- that runs twice, or two workers sweeping at once, default each decision exactly once.
-- NUMKEYS: 4
-- KEYS[1]  pending zset (ticket → deadline)
-- KEYS[2]  training buffer list (event JSON, newest first)
-- KEYS[3]  defaulted zset (ticket → time it was defaulted; a late outcome for it is dropped)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  buffer cap (LTRIM keeps the newest)
-- KEYS[4]  the pipeline's tombstone (highest deleted version; src/pipelines/tombstone.ts)
-- ARGV[3]  the pipeline version the caller works for: when the tombstone holds it or a newer one (the pipeline was
--          deleted meanwhile) nothing is written, so its purged keys do not come back
-- ARGV[4..] pairs: ticket, default-reward event JSON ('' when the decision record is gone, was not a learned
--           decision, or was made on a deleted pipeline: the ticket is then only taken off the pending set; '~' when
--           an outcome received in time is the decision's learner event, its job not yet applied: the ticket is taken
--           off the pending set and not marked defaulted, so that outcome's event is taken in when it arrives)
-- Returns: { defaulted, without a record }
local dead = redis.call('GET', KEYS[4])
if dead and tonumber(ARGV[3]) <= tonumber(dead) then
  return { 0, 0 }
end
local now = tonumber(ARGV[1])
local defaulted, lost = 0, 0
for i = 4, #ARGV, 2 do
  local ticket = ARGV[i]
  if redis.call('ZREM', KEYS[1], ticket) == 1 then
    local ev = ARGV[i + 1]
    if ev == '~' then
      -- Not defaulted: the outcome stands in.
    elseif ev ~= '' then
      redis.call('LPUSH', KEYS[2], ev)
      defaulted = defaulted + 1
    else
      lost = lost + 1
    end
    if ev ~= '~' then redis.call('ZADD', KEYS[3], now, ticket) end
  end
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return { defaulted, lost }
