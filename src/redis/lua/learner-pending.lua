-- Registers learned decisions awaiting their outcome (a batch from one process), unless their outcome was
-- already ingested (the registration is batched, so it can arrive after a fast outcome).
-- NUMKEYS: 3
-- KEYS[1]  pending zset (ticket → wait-window deadline, epoch ms)
-- KEYS[2]  pending-data hash (ticket → default-reward event JSON)
-- KEYS[3]  resolved zset (tickets whose outcome was ingested before their registration, → time)
-- ARGV[1]  now, epoch ms
-- ARGV[2+3i], ARGV[3+3i], ARGV[4+3i]  (i = 0..) ticket, deadline, event JSON
-- Returns: number of tickets registered.
local now = tonumber(ARGV[1])
local added = 0
for i = 2, #ARGV, 3 do
  local ticket = ARGV[i]
  if redis.call('ZSCORE', KEYS[3], ticket) then
    redis.call('ZREM', KEYS[3], ticket)
  else
    redis.call('HSET', KEYS[2], ticket, ARGV[i + 2])
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 1]), ticket)
    added = added + 1
  end
end
-- Registrations arrive within seconds of their decision: an hour of memory is plenty.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)
return added
