-- Records that an object was deleted: its tombstone holds the highest deleted version (never lowered) and expires
-- after ARGV[2] ms, once nothing made for the deleted object can still be written; the keys of the object's data
-- named after it are deleted in the same step, so a writer that checks the tombstone in its own script (apply-outcome,
-- learner-ingest, learner-default) either ran before (its write is deleted here) or sees the tombstone.
-- NUMKEYS: dynamic
-- KEYS[1]      the tombstone (string)
-- KEYS[2..]    keys deleted with it (same slot)
-- ARGV[1]      the deleted version
-- ARGV[2]      the tombstone's lifetime, ms
-- Returns the version the tombstone holds.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = math.max(cur, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', v), 'PX', ARGV[2])
if #KEYS > 1 then
  redis.call('UNLINK', unpack(KEYS, 2))
end
return v
