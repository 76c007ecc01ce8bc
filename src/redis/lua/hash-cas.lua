-- Replaces (or deletes) one field of a hash only if it still holds the value the caller read: a journal entry
-- updated by a sweep is not overwritten when a newer delete wrote the field meanwhile.
-- NUMKEYS: 1
-- KEYS[1]      the hash
-- ARGV[1]      field
-- ARGV[2]      the value the caller read
-- ARGV[3]      the new value, or "" to delete the field
-- Returns 1 when changed, 0 when the field held another value.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
