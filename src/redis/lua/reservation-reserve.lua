-- Reserves `amount` at every budgeted scope of a chain (tenant → workspace → workflow → agent) in one
-- atomic step, or denies naming the first scope that cannot cover it. All keys live in one tenant slot.
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      idempotency record (string "<fingerprint>\n<answer>", PX = idempotency TTL)
-- KEYS[2]      reservation hash (st, amt, ks, exp, x, sc, u)
-- KEYS[3]      deadlines sorted set of the tenant (member = reservation key, score = expiry ms)
-- KEYS[4..]    candidate budget hashes, root first; a missing hash is an unbudgeted level (skipped)
-- ARGV[1]      request fingerprint (op, scope, unit, amount, ttl)
-- ARGV[2]      idempotency TTL in ms
-- ARGV[3]      reservation id
-- ARGV[4]      amount (integer > 0)
-- ARGV[5]      ttl in ms
-- ARGV[6]      now in ms
-- ARGV[7]      "1" for a dry run (nothing is held or stored)
-- ARGV[8]      current day key (YYYY-MM-DD, UTC) ARGV[9] current month key (YYYY-MM)
-- ARGV[10]     canonical scope  ARGV[11] unit (kept on the reservation for reads)
-- ARGV[12]     the request's deadline, ms since the epoch ("0": none): past it the script does nothing
-- Budget hash fields: a allocated, r remaining, v reserved, s spent, d debt, f frozen 0|1, p policy R|A|O,
--   o overdraft limit, per period ""|day|month, pk period key, al alert level reached (0|50|80|100).
-- Returns the answer string (also stored under KEYS[1]):
--   "G|<id>|<expiresAt>|<mask>"            granted; mask has one 0/1 per candidate (1 = budgeted, held)
--   "D|<code>|<candidate index>|<remaining>" denied (BUDGET_EXCEEDED, BUDGET_FROZEN, BUDGET_NOT_FOUND)
--   prefixed with "R" when it is a replay of an earlier answer; "M" when the key was used for another payload;
--   "T" the deadline had passed when the script ran: nothing held, nothing stored (a retry with the same key
--   is a new request).
local prior = idem_prior(KEYS[1], ARGV[1])
if prior then return prior end
if past_deadline(ARGV[12]) then return 'T' end

local amount = tonumber(ARGV[4])
local now = tonumber(ARGV[6])
local dry = ARGV[7] == '1'
local n = #KEYS - 3
local mask = {}
local held = {}
local held_r = {}
local held_v = {}
local answer

-- Reads only the fields a reservation needs (read_budget reads the whole row): this is the hot path.
for c = 1, n do
  local k = KEYS[c + 3]
  local b = redis.call('HMGET', k, 'r', 'f', 'per', 'pk', 'a', 'v')
  if not b[1] then
    mask[c] = '0'
  else
    mask[c] = '1'
    local r = period_reset(k, b[3], b[4], tonumber(b[5]), tonumber(b[6]), ARGV[8], ARGV[9]) or tonumber(b[1])
    if b[2] == '1' then
      answer = 'D|BUDGET_FROZEN|' .. (c - 1) .. '|' .. i(r)
      break
    end
    if r < amount then
      answer = 'D|BUDGET_EXCEEDED|' .. (c - 1) .. '|' .. i(r)
      break
    end
    held[#held + 1] = k
    held_r[#held_r + 1] = r
    held_v[#held_v + 1] = tonumber(b[6])
  end
end

if not answer and #held == 0 then answer = 'D|BUDGET_NOT_FOUND|-1|0' end

if not answer then
  local exp = now + tonumber(ARGV[5])
  answer = 'G|' .. ARGV[3] .. '|' .. i(exp) .. '|' .. table.concat(mask)
  if dry then return answer end
  for j = 1, #held do
    redis.call('HSET', held[j], 'r', i(held_r[j] - amount), 'v', i(held_v[j] + amount))
  end
  redis.call('HSET', KEYS[2], 'st', 'A', 'amt', ARGV[4], 'ks', table.concat(held, ' '), 'exp', i(exp), 'x', '0',
    'sc', ARGV[10], 'u', ARGV[11])
  redis.call('ZADD', KEYS[3], exp, KEYS[2])
elseif dry then
  return answer
end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. answer, 'PX', tonumber(ARGV[2]))
return answer
