-- Writes one or more control-plane documents (an experiment, and with it possibly the pipeline it
-- promotes into, or the probe strategies it generates) as ONE change: one global version bump, one
-- announcement, one audit entry. Optimistic concurrency: the write applies only when the experiments
-- sequence and every document's version are still the ones the caller read.
-- NUMKEYS: dynamic
-- INCLUDE: expect
-- KEYS[1]        global config version
-- KEYS[2]        experiments write sequence (string counter)
-- KEYS[3]        audit list of the experiment (newest first)
-- KEYS[2+2k]     (k = 1..D) kind hash of the k-th document (id -> JSON)
-- KEYS[3+2k]     (k = 1..D) versions hash of the same kind
-- ARGV[1]        pub/sub channel
-- ARGV[2]        expected experiments sequence
-- ARGV[3]        audit entry (JSON) or "" for none
-- ARGV[4]        audit list cap
-- ARGV[5]        D, the number of documents
-- ARGV[3+3k]     (k = 1..D) document id
-- ARGV[4+3k]     (k = 1..D) document JSON, "" to delete it, or "-" to check its version only (never first)
-- ARGV[5+3k]     (k = 1..D) expected version (0 = must not exist), or -1 to skip the check
-- The first document is the experiment; when it is deleted, so is its audit list (KEYS[3]).
-- Returns: the first document's new version (0 when it was deleted); -1 when the sequence moved;
--          -(1 + k) when the k-th document's version was not the expected one.
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq ~= tonumber(ARGV[2]) then return -1 end
local d = tonumber(ARGV[5])
for k = 1, d do
  local expected = tonumber(ARGV[5 + 3 * k])
  if expected >= 0 then
    local id = ARGV[3 + 3 * k]
    if doc_version(KEYS[2 + 2 * k], KEYS[3 + 2 * k], id) ~= expected then return -(1 + k) end
  end
end
local first = 0
for k = 1, d do
  local id = ARGV[3 + 3 * k]
  local json = ARGV[4 + 3 * k]
  local v = 0
  if json == '-' then
    -- checked only (a document the change was validated against), not written
  elseif json == '' then
    redis.call('HDEL', KEYS[2 + 2 * k], id)
    redis.call('HDEL', KEYS[3 + 2 * k], id)
  else
    redis.call('HSET', KEYS[2 + 2 * k], id, json)
    v = redis.call('HINCRBY', KEYS[3 + 2 * k], id, 1)
  end
  if k == 1 then first = v end
end
redis.call('INCR', KEYS[2])
if ARGV[7] == '' then
  -- The experiment itself was deleted: its audit trail goes with it, so an experiment created later under the
  -- same id (ids are global; possibly by another tenant) starts with an empty trail.
  redis.call('DEL', KEYS[3])
elseif ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
end
local g = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], g)
return first
