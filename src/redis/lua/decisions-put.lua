-- Writes a batch of decision records into one time bucket (a hash: record field → compact record) and sets the
-- bucket's absolute expiry. One call per bucket per event-loop turn instead of one SET per decision.
-- Nothing is written at or after the records' deadline (ARGV[3], on this server's clock, `TIME`): a record answered
-- `recorded: false` lands only before it, and outcome intake answers DECISION_NOT_FOUND only after it (see
-- src/allocation/decisions.ts, "pending deadline").
-- NUMKEYS: 1
-- KEYS[1]      the bucket hash <p>:{decisions:<epoch second>}
-- ARGV[1]      expiry, epoch seconds (the bucket's second + the reward window + 1)
-- ARGV[2]      the records: a MessagePack array field, value, field, value… (one argument: the client pays per
--              argument; fields and values are binary, see src/allocation/record-codec.ts)
-- ARGV[3]      the deadline, epoch ms on this server's clock
-- Returns the number of records written, or -1 when the deadline had passed (nothing written).
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= tonumber(ARGV[3]) then return -1 end
local fields = cmsgpack.unpack(ARGV[2])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return #fields / 2
