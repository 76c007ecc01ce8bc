-- Creates a scope's budget, or changes its allocation and settings (used amounts are kept).
-- NUMKEYS: 2
-- INCLUDE: ledger
-- KEYS[1]      budget hash (fields as in reservation-reserve.lua)
-- KEYS[2]      the tenant's budget index (set of "<unit>:<scope>" members)
-- ARGV[1]      index member   ARGV[2] allocated   ARGV[3] policy R|A|O   ARGV[4] overdraft limit
-- ARGV[5]      period "" | day | month   ARGV[6] day key   ARGV[7] month key
-- Returns { created 0|1, a, r, v, s, d, f }; { -1, reserved + spent } when the new allocation is below
-- what is already reserved and spent; { -2, debt − overrun } when the debt left after the new allocation repays
-- what it can is more than the new settings' overdraft limit (0 unless the policy is O) plus the recorded overrun
-- (the ledger's bound debt ≤ overdraft limit + overrun would break: fund, reset or raise the allocation first).
local alloc = tonumber(ARGV[2])
local per = ARGV[5]
local cur = ''
if per == 'day' then cur = ARGV[6] elseif per == 'month' then cur = ARGV[7] end
local b = redis.call('HMGET', KEYS[1], 'a', 'r', 'v', 's', 'd', 'f', 'per', 'pk', 'ov')
if not b[1] then
  redis.call('HSET', KEYS[1], 'a', i(alloc), 'r', i(alloc), 'v', '0', 's', '0', 'd', '0', 'f', '0',
    'p', ARGV[3], 'o', ARGV[4], 'per', per, 'pk', cur, 'al', '0')
  redis.call('SADD', KEYS[2], ARGV[1])
  return { 1, alloc, alloc, 0, 0, 0, 0 }
end
local v = tonumber(b[3])
local s = tonumber(b[4])
local d = tonumber(b[5])
-- A period of the OLD settings that has ended is rolled first (as any script would); changing the period
-- setting itself does not reset what was spent.
local old_per = b[7] or ''
local old_cur = ''
if old_per == 'day' then old_cur = ARGV[6] elseif old_per == 'month' then old_cur = ARGV[7] end
local rolled = old_per ~= '' and pk_num(b[8]) < pk_num(old_cur)
-- Periods only move forward: when the stored period is later than the caller's clock says (another process
-- already started it), the budget stays in it, written in the new setting's form (a day's month, a month's first day).
if old_per ~= '' and per ~= '' and not rolled then
  local kept = b[8] or ''
  if per == 'month' and old_per == 'day' then kept = string.sub(kept, 1, 7) end
  if per == 'day' and old_per == 'month' then kept = kept .. '-01' end
  if pk_num(kept) > pk_num(cur) then cur = kept end
end
local ov = tonumber(b[9] or '0')
if rolled then s = 0; d = 0; ov = 0 end
if alloc < v + s then return { -1, v + s } end
local r = alloc - v - s
local pay = math.min(r, d)
r = r - pay; d = d - pay; s = s + pay
local limit = 0
if ARGV[3] == 'O' then limit = tonumber(ARGV[4]) end
if d > limit + ov then return { -2, d - ov } end
local al = redis.call('HGET', KEYS[1], 'al')
if rolled or per ~= old_per or alloc ~= tonumber(b[1]) then al = '0' end
redis.call('HSET', KEYS[1], 'a', i(alloc), 'r', i(r), 's', i(s), 'd', i(d), 'p', ARGV[3], 'o', ARGV[4],
  'per', per, 'pk', cur, 'al', al, 'ov', i(ov))
redis.call('SADD', KEYS[2], ARGV[1])
return { 0, alloc, r, v, s, d, tonumber(b[6]) }
