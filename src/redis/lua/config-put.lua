-- Writes one control-plane document and announces the change, if the state the caller read still holds.
-- NUMKEYS: dynamic
-- INCLUDE: expect
-- KEYS[1] kind hash (id -> JSON)
-- KEYS[2] kind versions hash (id -> version)
-- KEYS[3] global config version
-- KEYS[4] hash the document requires an entry in (e.g. the pipelines hash for a strategy); KEYS[1] when none
-- KEYS[5] owners hash of the kind (id -> owner, kept after a delete); KEYS[1] when no owner is given
-- KEYS[4+2c], KEYS[5+2c] (c = 1..C) kind hash and versions hash of the c-th expected document
-- ARGV[1] id
-- ARGV[2] JSON document
-- ARGV[3] id required in KEYS[4] ("" for none)
-- ARGV[4] pub/sub channel
-- ARGV[5] expected global config version, or "" for no check
-- ARGV[6] C, the number of expected documents
-- ARGV[7] owner of the id ("" for none): refused when the id is recorded for another owner, else recorded
-- ARGV[6+2c] id of the c-th expected document; ARGV[7+2c] its expected version (0 = must not exist)
-- Returns: the document's new version (>= 1); -1 when the required entry is missing; -2 when the global
-- version or an expected document's version is not the one the caller read; -3 when the id belongs to another
-- owner (nothing is written then).
if not expectation_holds(KEYS[3], ARGV[5], tonumber(ARGV[6]), 4, 6) then return -2 end
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0 then
  return -1
end
if ARGV[7] ~= '' then
  local owner = redis.call('HGET', KEYS[5], ARGV[1])
  if owner and owner ~= ARGV[7] then return -3 end
  if not owner then redis.call('HSET', KEYS[5], ARGV[1], ARGV[7]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local v = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local g = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], g)
return v
