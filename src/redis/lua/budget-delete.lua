-- Deletes a scope's budget when nothing is reserved at it (a reservation holding there would otherwise return
-- its amount to a budget that no longer exists). Reservations made afterwards skip the level.
-- When it was the tenant's last budget and no reservation of the tenant is active, the tenant's alert and overrun
-- streams go with it (nothing else would ever trim or expire them), and the caller takes the tenant off the
-- budget-tenants index (another slot: src/budgets/ledger.ts).
-- NUMKEYS: 5
-- KEYS[1]      budget hash
-- KEYS[2]      the tenant's budget index (set of "<unit>:<scope>" members)
-- KEYS[3]      the tenant's deadlines zset (its ACTIVE reservations)
-- KEYS[4]      the tenant's alerts stream
-- KEYS[5]      the tenant's overruns stream
-- ARGV[1]      index member
-- Returns { 1, a, r, v, s, d, last } deleted (the last balance; last = 1 when the tenant has no budget and no
-- active reservation left, its streams deleted), { 0 } no such budget, { -1, reserved } still held.
local b = redis.call('HMGET', KEYS[1], 'a', 'r', 'v', 's', 'd')
if not b[1] then return { 0 } end
local v = tonumber(b[3])
if v > 0 then return { -1, v } end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
local last = 0
if redis.call('SCARD', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[4], KEYS[5])
  last = 1
end
return { 1, tonumber(b[1]), tonumber(b[2]), v, tonumber(b[4]), tonumber(b[5] or '0'), last }
