-- Registers learned decisions in their pipeline's pending set (decision id → wait-window deadline), except those
-- made on a pipeline deleted since: a registration batch that lands after the delete must neither bring back the
-- purged pending set (nothing would ever service or expire it) nor put the deleted pipeline's decisions into the
-- pending set of a pipeline re-created under the id.
-- NUMKEYS: 2
-- KEYS[1]  pending zset (ticket → deadline, epoch ms)
-- KEYS[2]  the pipeline's tombstone (highest deleted version; src/pipelines/tombstone.ts); for a batch whose
--          registrations are all unchecked, any key of the slot (read only when it is a string)
-- ARGV     triples: deadline, decision id, the pipeline version the decision was made with ("" = not checked)
-- Returns the number of decisions registered.
local dead = -1
if redis.call('TYPE', KEYS[2])['ok'] == 'string' then
  dead = tonumber(redis.call('GET', KEYS[2])) or -1
end
local add = {}
for i = 1, #ARGV, 3 do
  if ARGV[i + 2] == '' or tonumber(ARGV[i + 2]) > dead then
    add[#add + 1] = ARGV[i]
    add[#add + 1] = ARGV[i + 1]
  end
end
if #add > 0 then
  redis.call('ZADD', KEYS[1], unpack(add))
end
return #add / 2
