-- Registers learned decisions awaiting their outcome (a batch from one process), unless their outcome was
-- already ingested (the registration is batched, so it can arrive after a fast outcome).
-- NUMKEYS: 3
-- KEYS[1]  pending zset (ticket → wait-window deadline, epoch ms)
-- KEYS[2]  pending-data hash (ticket → default-reward event JSON)
-- KEYS[3]  resolved zset (tickets whose outcome was ingested before their registration, → time)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  the batch: records `<ticket>\31<deadline>\31<event JSON>` joined by \30 (one argument: cheaper to
--          send than three per decision; JSON never contains the raw control characters \30 or \31)
-- Returns: number of tickets registered.
local now = tonumber(ARGV[1])
local added = 0
for rec in string.gmatch(ARGV[2], '[^\30]+') do
  local a = string.find(rec, '\31', 1, true)
  local b = string.find(rec, '\31', a + 1, true)
  local ticket = string.sub(rec, 1, a - 1)
  if redis.call('ZSCORE', KEYS[3], ticket) then
    redis.call('ZREM', KEYS[3], ticket)
  else
    redis.call('HSET', KEYS[2], ticket, string.sub(rec, b + 1))
    redis.call('ZADD', KEYS[1], tonumber(string.sub(rec, a + 1, b - 1)), ticket)
    added = added + 1
  end
end
-- Registrations arrive within seconds of their decision: an hour of memory is plenty.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)
return added
