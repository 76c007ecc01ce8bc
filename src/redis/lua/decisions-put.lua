-- Writes a batch of decision records into one time bucket (a hash: record field → compact record) and sets the
-- bucket's absolute expiry. One call per bucket per event-loop turn instead of one SET per decision.
-- NUMKEYS: 1
-- KEYS[1]      the bucket hash <p>:{decisions:<epoch second>}
-- ARGV[1]      expiry, epoch seconds (the bucket's second + the reward window + 1)
-- ARGV[2]      the records: a MessagePack array field, value, field, value… (one argument: the client pays per
--              argument; fields and values are binary, see src/allocation/record-codec.ts)
-- Returns the number of records written.
local fields = cmsgpack.unpack(ARGV[2])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return #fields / 2
