-- Renews or releases a pipeline's retrain lock (learner/train-lock.ts), only while it is still the caller's: a lock
-- that expired and was taken by another process's retrain is neither extended nor deleted.
-- NUMKEYS: 1
-- KEYS[1]  the lock (string: the holder's random token; taken with SET NX PX)
-- ARGV[1]  the caller's token
-- ARGV[2]  'renew' or 'release'
-- ARGV[3]  the new time to live in ms (renew)
-- Returns: 1 when the lock was the caller's (renewed, or released), 0 when it is not
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
