-- Commits an ACTIVE reservation with the actual amount, applying each held scope's overage policy, or
-- answers why not. Exactly one of commit / release / expiry wins: the state field is the arbiter.
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      reservation hash (st A|C|R|E, amt, ks space-separated budget keys, exp, x, cf, ca; a draw has
--              par = its parent reservation's key and no ks; a parent has ch = amount held by its active draws)
-- KEYS[2]      deadlines sorted set of the tenant
-- KEYS[3]      alerts stream of the tenant
-- KEYS[4]      optional explicit idempotency record ("<fingerprint>\n<answer>")
-- ARGV[1]      fingerprint of this commit (id + amount)
-- ARGV[2]      idempotency / finished-reservation retention in ms
-- ARGV[3]      actual amount (integer >= 0)
-- ARGV[4]      now in ms
-- ARGV[5]      day key  ARGV[6] month key
-- Budget fields as in reservation-reserve.lua. Policies: R reject any overage; A allow overage covered by
-- remaining; O allow overage, the uncovered part becomes debt up to the overdraft limit o.
-- Returns { answer, alerts... } where answer is
--   "C|<reserved>|<charged>|<debtAdded>"   committed (prefixed "R" on replay)
--   "D|<code>|<budget key>|<remaining>"   overage refused, the reservation stays ACTIVE
--   "D|RESERVATION_EXHAUSTED|<parent key>|<covered>"   a draw's amount exceeds its hold plus the parent's free hold
--   "D|RESERVATION_HAS_ACTIVE_DRAWS|<key>|<held by draws>"   a parent with active draws (commit them first)
--   "F|<state>"  already finished (C, R or E);  "N" no such reservation;  "M" idempotency key reused
-- and each alert is "<budget key>|<level>|<used>|<allocated>" for a scope that crossed 50/80/100 %.

if KEYS[4] then
  local prior = idem_prior(KEYS[4], ARGV[1])
  if prior then return { prior } end
end

local rv = redis.call('HMGET', KEYS[1], 'st', 'amt', 'ks', 'exp', 'cf', 'ca', 'par', 'ch')
if not rv[1] then return { 'N' } end
local st = rv[1]
local amt = tonumber(rv[2])
local now = tonumber(ARGV[4])
local par = rv[7]
if par == '' then par = nil end

local function give_back(state)
  end_hold(KEYS[1], state, amt, rv[3], par, KEYS[2], tonumber(ARGV[2]))
end

if st == 'A' and tonumber(rv[4]) <= now then
  give_back('E')
  st = 'E'
end
if st == 'C' and rv[5] == ARGV[1] then return { 'R' .. rv[6] } end
if st ~= 'A' then return { 'F|' .. st } end

local actual = tonumber(ARGV[3])
-- What the commit turns into spend at the budgets: `hold` comes out of reserved, `actual` goes into spent.
local hold = amt
local ks = rv[3]
local pv
if par then
  pv = redis.call('HMGET', par, 'st', 'amt', 'ks', 'ch')
  if pv[1] ~= 'A' then
    -- The parent finished (it can only expire while it has active draws): this draw's hold went with it.
    give_back('E')
    return { 'F|E' }
  end
  local cover = amt + tonumber(pv[2]) - tonumber(pv[4] or '0')
  if actual > cover then return { 'D|RESERVATION_EXHAUSTED|' .. par .. '|' .. i(cover) } end
  -- The parent's hold shrinks by what was used; the draw's own hold goes back to the parent's free hold.
  hold = actual
  ks = pv[3]
else
  local ch = tonumber(rv[8] or '0')
  if ch > 0 then return { 'D|RESERVATION_HAS_ACTIVE_DRAWS|' .. KEYS[1] .. '|' .. i(ch) } end
end
local keys = {}
for k in string.gmatch(ks, '%S+') do keys[#keys + 1] = k end
local extra = actual - hold
local rows = {}
for j, k in ipairs(keys) do
  local row = read_budget(k, ARGV[5], ARGV[6])
  if extra > 0 then
    if row.p == 'O' then
      local short = extra - row.r
      if short > 0 and row.d + short > row.o then
        return { 'D|OVERDRAFT_LIMIT_EXCEEDED|' .. k .. '|' .. i(row.r) }
      end
    elseif row.p == 'A' then
      if row.r < extra then return { 'D|BUDGET_EXCEEDED|' .. k .. '|' .. i(row.r) } end
    else
      return { 'D|BUDGET_EXCEEDED|' .. k .. '|' .. i(row.r) }
    end
  end
  rows[j] = row
end

local out = { '' }
local debt_added = 0
for j, k in ipairs(keys) do
  local row = rows[j]
  local r = row.r + hold
  local covered = math.min(actual, r)
  local short = actual - covered
  r = r - covered
  local s = row.s + covered
  local d = row.d + short
  if short > debt_added then debt_added = short end
  redis.call('HSET', k, 'r', i(r), 'v', i(row.v - hold), 's', i(s), 'd', i(d))
  raise_alert(k, row, s + d, KEYS[3], ARGV[4], out)
end

if par then
  redis.call('HSET', par, 'amt', i(tonumber(pv[2]) - actual), 'ch', i(tonumber(pv[4] or '0') - amt))
end
local answer = 'C|' .. i(amt) .. '|' .. i(actual) .. '|' .. i(debt_added)
redis.call('HSET', KEYS[1], 'st', 'C', 'cf', ARGV[1], 'ca', answer)
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[1] .. '\n' .. answer, 'PX', tonumber(ARGV[2])) end
out[1] = answer
return out
