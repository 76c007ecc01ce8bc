-- Deletes control-plane documents (possibly of several kinds, e.g. a pipeline and its strategies) in one step,
-- if the state the caller read still holds.
-- Versions are kept: a re-created document continues its version sequence, so decision records stay unambiguous.
-- NUMKEYS: dynamic
-- INCLUDE: expect
-- KEYS[1] global config version; KEYS[1+k] (k = 1..D) the kind hash of the k-th document;
-- KEYS[D+2c], KEYS[D+1+2c] (c = 1..C) kind hash and versions hash of the c-th expected document
-- ARGV[1] pub/sub channel; ARGV[2] expected global config version, or "" for no check; ARGV[3] D; ARGV[4] C;
-- ARGV[4+k] the id of the k-th document; ARGV[3+D+2c] id of the c-th expected document, ARGV[4+D+2c] its
-- expected version (0 = must not exist)
-- Optionally a journal entry written with the delete (so that the data kept elsewhere under the deleted id is
-- removed even if the deleting process dies right after this step): KEYS[2+D+2C] the journal hash,
-- ARGV[5+D+2C] the entry's field, ARGV[6+D+2C] its value; written only when a document was deleted.
-- Returns: number of documents deleted (0 when none existed; nothing is announced then); -2 when the global
-- version or an expected document's version is not the one the caller read (nothing is deleted then).
local d = tonumber(ARGV[3])
if not expectation_holds(KEYS[1], ARGV[2], tonumber(ARGV[4]), d, 3 + d) then return -2 end
local deleted = 0
for k = 1, d do
  deleted = deleted + redis.call('HDEL', KEYS[1 + k], ARGV[4 + k])
end
local c = tonumber(ARGV[4])
if deleted > 0 and #KEYS == 2 + d + 2 * c then
  redis.call('HSET', KEYS[2 + d + 2 * c], ARGV[5 + d + 2 * c], ARGV[6 + d + 2 * c])
end
if deleted > 0 then
  local g = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], g)
end
return deleted
