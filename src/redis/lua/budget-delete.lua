-- Deletes a scope's budget when nothing is reserved at it (a reservation holding there would otherwise return
-- its amount to a budget that no longer exists). Reservations made afterwards skip the level.
-- NUMKEYS: 2
-- KEYS[1]      budget hash
-- KEYS[2]      the tenant's budget index (set of "<unit>:<scope>" members)
-- ARGV[1]      index member
-- Returns { 1, a, r, v, s, d } deleted (the last balance), { 0 } no such budget, { -1, reserved } still held.
local b = redis.call('HMGET', KEYS[1], 'a', 'r', 'v', 's', 'd')
if not b[1] then return { 0 } end
local v = tonumber(b[3])
if v > 0 then return { -1, v } end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return { 1, tonumber(b[1]), tonumber(b[2]), v, tonumber(b[4]), tonumber(b[5] or '0') }
