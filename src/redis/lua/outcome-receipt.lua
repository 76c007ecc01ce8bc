-- The outcome receipt of one decision, beside its record in the decision's bucket (same hash, so the same slot and
-- the record's expiry): written by outcome intake before the outcome is queued, and claimed by the learner's
-- default-reward sweep. Whichever comes first decides which reward is the decision's one learner event: an outcome
-- received before the default claim is the decision's event (flag L) if its job is applied before the sweep's watch
-- ends (learner-default.lua; else the default reward stands and the outcome is dropped as late), one received after
-- the claim is counted in the statistics but not logged for the learner (flag N). The receipt also holds the first accepted report's
-- fingerprint: an identical report is a retry (answered as the first), a different one a conflict.
-- NUMKEYS: 1
-- KEYS[1]  the decision's bucket hash (<p>:{decisions:<second>[:<shard>]})
-- ARGV[1]  'put' (intake) or 'drop' (intake withdraws a receipt whose outcome was certainly not queued)
-- ARGV[2]  the record's field in the bucket
-- ARGV[3]  the receipt's field (the record's field and '!')
-- put:  ARGV[4] the report's fingerprint (11 characters)
--   Returns { 'gone' } when there is no record; { 'new', flag, receivedAt ms, previous receipt or '' } when written;
--   { 'same', flag, receivedAt ms } when the same report was received before; { 'conflict' } for a different report.
-- drop: ARGV[4] the receipt written, ARGV[5] what it replaced ('' or 'D'); restores it only if the receipt is still
--   the one written. Returns { 'dropped' } or { 'kept' }.
-- Receipt: 'D' (defaulted, no outcome yet), or flag (L/N) .. fingerprint (11) .. receivedAt (ms, Redis clock).
if ARGV[1] == 'drop' then
  if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return { 'kept' } end
  if ARGV[5] == '' then redis.call('HDEL', KEYS[1], ARGV[3]) else redis.call('HSET', KEYS[1], ARGV[3], ARGV[5]) end
  return { 'dropped' }
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return { 'gone' } end
local cur = redis.call('HGET', KEYS[1], ARGV[3])
if cur and cur ~= 'D' then
  if string.sub(cur, 2, 12) == ARGV[4] then return { 'same', string.sub(cur, 1, 1), string.sub(cur, 13) } end
  return { 'conflict' }
end
local t = redis.call('TIME')
local ms = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local flag = cur and 'N' or 'L'
redis.call('HSET', KEYS[1], ARGV[3], flag .. ARGV[4] .. ms)
return { 'new', flag, ms, cur or '' }
