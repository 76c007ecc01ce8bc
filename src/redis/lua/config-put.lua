-- Writes one control-plane document and announces the change.
-- NUMKEYS: 4
-- KEYS[1] kind hash (id -> JSON)
-- KEYS[2] kind versions hash (id -> version)
-- KEYS[3] global config version
-- KEYS[4] hash the document requires an entry in (e.g. the pipelines hash for a strategy); KEYS[1] when none
-- ARGV[1] id
-- ARGV[2] JSON document
-- ARGV[3] id required in KEYS[4] ("" for none)
-- ARGV[4] pub/sub channel
-- Returns: the document's new version (>= 1), or -1 when the required entry is missing.
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local v = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local g = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], g)
return v
