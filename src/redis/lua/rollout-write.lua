-- Writes one or more control-plane documents (an experiment, and with it possibly the pipeline it
-- promotes into, or the probe strategies it generates) as ONE change: one global version bump, one
-- announcement, one audit entry. Optimistic concurrency on exactly what the change depends on: every
-- document's version, and the guards it names. A guard is a counter in one hash (field = the guard's name,
-- e.g. the slots of one layer of one tenant, or the holdout of one pipeline) that every write changing
-- what the guard covers bumps: two writes that validated against the same guard (two experiments taking
-- ranges of one layer) never both apply on what they read; writes of unrelated experiments never meet.
-- NUMKEYS: dynamic
-- INCLUDE: expect
-- KEYS[1]        global config version
-- KEYS[2]        experiments write sequence (string counter; new experiments take it as their generation)
-- KEYS[3]        audit list of the experiment (newest first)
-- KEYS[4]        guards hash (guard name -> counter)
-- KEYS[5]        deleted experiments hash (experiment id -> the sequence its delete made)
-- KEYS[4+2k]     (k = 1..D) kind hash of the k-th document (id -> JSON)
-- KEYS[5+2k]     (k = 1..D) versions hash of the same kind
-- ARGV[1]        pub/sub channel
-- ARGV[2]        experiments sequence the change was computed from
-- ARGV[3]        audit entry (JSON) or "" for none
-- ARGV[4]        audit list cap
-- ARGV[5]        D, the number of documents
-- ARGV[6]        G, the number of guards
-- ARGV[4+3k]     (k = 1..D) document id
-- ARGV[5+3k]     (k = 1..D) document JSON, "" to delete it, or "-" to check its version only (never first)
-- ARGV[6+3k]     (k = 1..D) expected version (0 = must not exist), or -1 to skip the check
-- ARGV[5+3D+2j]  (j = 1..G) guard name
-- ARGV[6+3D+2j]  (j = 1..G) the guard's counter read (0 = absent); bumped when the change applies
-- The first document is the experiment; when it is deleted, so is its audit list (KEYS[3]), and its id is
-- recorded in KEYS[5] with the sequence of the delete: a create of that id computed from a read older than the
-- delete is refused (its version, 0, would match again), so a generation is never taken twice by one id.
-- Returns: the first document's new version (0 when it was deleted); -1 when a guard moved;
--          -(1 + k) when the k-th document's version was not the expected one.
local d = tonumber(ARGV[5])
local g = tonumber(ARGV[6])
for j = 1, g do
  local name = ARGV[5 + 3 * d + 2 * j]
  if tonumber(redis.call('HGET', KEYS[4], name) or '0') ~= tonumber(ARGV[6 + 3 * d + 2 * j]) then return -1 end
end
for k = 1, d do
  local expected = tonumber(ARGV[6 + 3 * k])
  if expected >= 0 then
    local id = ARGV[4 + 3 * k]
    if doc_version(KEYS[4 + 2 * k], KEYS[5 + 2 * k], id) ~= expected then return -(1 + k) end
  end
end
-- The first document (ARGV[7..9]) created: absent when read, written now.
local creates = tonumber(ARGV[9]) == 0 and ARGV[8] ~= '' and ARGV[8] ~= '-'
if creates then
  local gone = redis.call('HGET', KEYS[5], ARGV[7])
  if gone and tonumber(gone) > tonumber(ARGV[2]) then return -2 end
end
local first = 0
for k = 1, d do
  local id = ARGV[4 + 3 * k]
  local json = ARGV[5 + 3 * k]
  local v = 0
  if json == '-' then
    -- checked only (a document the change was validated against), not written
  elseif json == '' then
    redis.call('HDEL', KEYS[4 + 2 * k], id)
    redis.call('HDEL', KEYS[5 + 2 * k], id)
  else
    redis.call('HSET', KEYS[4 + 2 * k], id, json)
    v = redis.call('HINCRBY', KEYS[5 + 2 * k], id, 1)
  end
  if k == 1 then first = v end
end
for j = 1, g do
  redis.call('HINCRBY', KEYS[4], ARGV[5 + 3 * d + 2 * j], 1)
end
local seq = redis.call('INCR', KEYS[2])
if ARGV[8] == '' then
  -- The experiment itself was deleted: its audit trail goes with it, so an experiment created later under the
  -- same id (ids are global; possibly by another tenant) starts with an empty trail.
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[5], ARGV[7], seq)
else
  if creates then redis.call('HDEL', KEYS[5], ARGV[7]) end
  if ARGV[3] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[3])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
  end
end
local gv = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], gv)
return first
