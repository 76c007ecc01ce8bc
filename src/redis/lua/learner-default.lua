-- Gives the default reward to due learned decisions whose events the caller built from their decision records
-- (learner-ingest.lua returned their tickets). A ticket is defaulted only if it is still pending, so a sweep
-- that runs twice, or two workers sweeping at once, default each decision exactly once.
-- A decision whose outcome was received in time (its receipt, decision-claim.lua) is *watched*: the outcome is its
-- learner event if its job was applied (the decision's applied-marker, set in the same script that pushes the
-- outcome's event, apply-outcome.lua) before the watch ends; until then its ticket stays pending (rescheduled to the
-- watch's end), and once the watch has ended without the marker it gets the default reward and is marked defaulted, so
-- that outcome's event, if its job is applied later after all, is dropped as late by ingest. The marker and the
-- pending set are read and written in this one script, in the pipeline's slot: exactly one learner event whichever
-- comes first. (Before, such a decision was left to its outcome unconditionally, and one whose job was lost — a
-- 503 OUTCOME_UNCONFIRMED never retried — got no learner event at all.)
-- NUMKEYS: dynamic (4 + M)
-- KEYS[1]  pending zset (ticket → deadline)
-- KEYS[2]  training buffer list (event JSON, newest first)
-- KEYS[3]  defaulted zset (ticket → time it was defaulted; a late outcome for it is dropped)
-- KEYS[4]  the pipeline's tombstone (highest deleted version; src/pipelines/tombstone.ts)
-- KEYS[4+m] (m = 1..M) applied-marker sets of the watched decisions (src/feedback/processor.ts appliedMarker)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  buffer cap (LTRIM keeps the newest)
-- ARGV[3]  the pipeline version the caller works for: when the tombstone holds it or a newer one (the pipeline was
--          deleted meanwhile) nothing is written, so its purged keys do not come back
-- ARGV[4..] groups of five: ticket; default-reward event JSON ('' when the decision record is gone, was not a learned
--          decision, or was made on a deleted pipeline: the ticket is then only taken off the pending set); the end of
--          the watch, epoch ms ('' when not watched: defaulted now); the index m of its marker set (0 when not
--          watched); its member in that set ('' when not watched)
-- Returns: { defaulted, without a record }
local dead = redis.call('GET', KEYS[4])
if dead and tonumber(ARGV[3]) <= tonumber(dead) then
  return { 0, 0 }
end
local now = tonumber(ARGV[1])
local defaulted, lost = 0, 0
for i = 4, #ARGV, 5 do
  local ticket, ev, watch = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[1], ticket) then
    local decide = true
    if watch ~= '' then
      if redis.call('SISMEMBER', KEYS[4 + tonumber(ARGV[i + 3])], ARGV[i + 4]) == 1 then
        -- Its outcome was applied: that is its event (in the incoming list or already in the buffer). Not defaulted.
        redis.call('ZREM', KEYS[1], ticket)
        decide = false
      elseif now < tonumber(watch) then
        -- Its outcome's job may still be applied: the ticket waits for the watch's end.
        redis.call('ZADD', KEYS[1], 'XX', tonumber(watch), ticket)
        decide = false
      end
    end
    if decide then
      redis.call('ZREM', KEYS[1], ticket)
      if ev ~= '' then
        redis.call('LPUSH', KEYS[2], ev)
        defaulted = defaulted + 1
      else
        lost = lost + 1
      end
      redis.call('ZADD', KEYS[3], now, ticket)
    end
  end
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return { defaulted, lost }
