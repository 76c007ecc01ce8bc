-- Writes a batch of decision records into one time bucket (a hash: decision id → record JSON) and sets the
-- bucket's absolute expiry. One call per bucket per event-loop turn instead of one SET per decision.
-- NUMKEYS: 1
-- KEYS[1]      the bucket hash <p>:{decisions:<epoch second>}
-- ARGV[1]      expiry, epoch seconds (the bucket's second + the reward window + 1)
-- ARGV[2]      the records: `<id>\31<JSON>` joined by \30 (one argument: the client pays per argument, and
--              JSON never contains the raw control characters \30 or \31)
-- Returns the number of records written.
local batch = ARGV[2]
local fields = {}
local pos = 1
local len = #batch
while pos <= len do
  local stop = string.find(batch, '\30', pos, true) or (len + 1)
  local sep = string.find(batch, '\31', pos, true)
  fields[#fields + 1] = string.sub(batch, pos, sep - 1)
  fields[#fields + 1] = string.sub(batch, sep + 1, stop - 1)
  pos = stop + 1
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return #fields / 2
