-- The learner's default-reward sweep claims due decisions in one bucket: a decision with no outcome receipt gets the
-- receipt 'D' (an outcome received from now on is counted in the statistics but not logged for the learner; see
-- outcome-receipt.lua), so a decision gets exactly one learner event. Nothing is written for a decision whose record
-- is gone (nor into a bucket that expired).
-- NUMKEYS: 1
-- KEYS[1]  the bucket hash (<p>:{decisions:<second>[:<shard>]})
-- ARGV     pairs: the record's field, the receipt's field
-- Returns one string per pair: '' (no record), 'D' (claimed for the default reward, now or before), or the outcome's
-- receipt (flag L/N .. fingerprint .. receivedAt ms). A receipt is not trusted for ever: the caller has
-- learner-default.lua watch such a decision's applied-marker, and default it when the outcome's job was not applied
-- before the watch ends (a job lost after a 503 OUTCOME_UNCONFIRMED that was never retried).
local out = {}
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    out[#out + 1] = ''
  else
    local cur = redis.call('HGET', KEYS[1], ARGV[i + 1])
    if not cur then
      redis.call('HSET', KEYS[1], ARGV[i + 1], 'D')
      cur = 'D'
    end
    out[#out + 1] = cur
  end
end
return out
