-- Deletes control-plane documents (possibly of several kinds, e.g. a pipeline and its strategies) in one step,
-- if the state the caller read still holds.
-- Versions are kept: a re-created document continues its version sequence, so decision records stay unambiguous.
-- NUMKEYS: dynamic
-- KEYS[1] global config version; KEYS[1+k] (k = 1..D) the kind hash of the k-th document;
-- KEYS[D+2c], KEYS[D+1+2c] (c = 1..C) kind hash and versions hash of the c-th expected document
-- ARGV[1] pub/sub channel; ARGV[2] expected global config version, or "" for no check; ARGV[3] D; ARGV[4] C;
-- ARGV[4+k] the id of the k-th document; ARGV[3+D+2c] id of the c-th expected document, ARGV[4+D+2c] its
-- expected version (0 = must not exist)
-- Returns: number of documents deleted (0 when none existed; nothing is announced then); -2 when the global
-- version or an expected document's version is not the one the caller read (nothing is deleted then).
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[2]) then
  return -2
end
local d = tonumber(ARGV[3])
local c = tonumber(ARGV[4])
for k = 1, c do
  local id = ARGV[3 + d + 2 * k]
  local v = 0
  if redis.call('HEXISTS', KEYS[d + 2 * k], id) == 1 then
    v = tonumber(redis.call('HGET', KEYS[1 + d + 2 * k], id) or '1')
  end
  if v ~= tonumber(ARGV[4 + d + 2 * k]) then return -2 end
end
local deleted = 0
for k = 1, d do
  deleted = deleted + redis.call('HDEL', KEYS[1 + k], ARGV[4 + k])
end
if deleted > 0 then
  local g = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], g)
end
return deleted
