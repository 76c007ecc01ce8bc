-- Writes decision records whose ids the client chose (an allocation's `decisionId`, an SDK's local-mode records) into
-- one time bucket, each only if its field is free: a recorded decision is never overwritten (its outcome may already
-- have joined it), and of two writers racing for one id exactly one writes. Sets the bucket's absolute expiry when it
-- wrote anything. Nothing is written at or after the records' deadline (ARGV[3], as decisions-put.lua).
-- NUMKEYS: 1
-- KEYS[1]      the bucket hash <p>:{decisions:<epoch second>[:<shard>]}
-- ARGV[1]      expiry, epoch seconds (the bucket's second + the reward window + 1)
-- ARGV[2]      the records: a MessagePack array field, value, field, value… (as decisions-put.lua)
-- ARGV[3]      the deadline, epoch ms on this server's clock
-- Returns one integer per record: 1 written, 0 its field was taken (nothing written for it); or the one integer -1
-- when the deadline had passed (nothing written).
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= tonumber(ARGV[3]) then return { -1 } end
local fields = cmsgpack.unpack(ARGV[2])
local out = {}
local any = false
for i = 1, #fields, 2 do
  local w = redis.call('HSETNX', KEYS[1], fields[i], fields[i + 1])
  out[#out + 1] = w
  if w == 1 then any = true end
end
if any then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
return out
