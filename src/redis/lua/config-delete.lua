-- Deletes control-plane documents (possibly of several kinds, e.g. a pipeline and its strategies) in one step.
-- Versions are kept: a re-created document continues its version sequence, so decision records stay unambiguous.
-- NUMKEYS: dynamic
-- KEYS[1] global config version; KEYS[1+k] the kind hash of the k-th document
-- ARGV[1] pub/sub channel; ARGV[1+k] the id of the k-th document
-- Returns: number of documents deleted (0 when none existed; nothing is announced then).
local deleted = 0
for k = 2, #KEYS do
  deleted = deleted + redis.call('HDEL', KEYS[k], ARGV[k])
end
if deleted > 0 then
  local g = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], g)
end
return deleted
