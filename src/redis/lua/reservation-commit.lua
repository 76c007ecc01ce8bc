-- Commits a reservation with the amount actually used. Spend that happened is always recorded, exactly once:
-- a commit above the hold is charged in full (the overage is marked and alerted when the policy did not allow
-- it), and a commit that arrives after the reservation expired is charged as late spend. Exactly one of
-- commit / release wins: the state field is the arbiter (a COMMITTED reservation replays the same amount).
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      reservation hash (st A|C|R|E, amt, ks space-separated budget keys, exp, x, cf, ca, ov; a draw has
--              par = its parent reservation's key, pks = the parent's budget keys and no ks; a parent has ch =
--              amount held by its active draws)
-- KEYS[2]      deadlines sorted set of the tenant
-- KEYS[3]      alerts stream of the tenant (threshold crossings)
-- KEYS[4]      overruns stream of the tenant (overrun events: kept apart, so they never push out threshold alerts)
-- KEYS[5]      optional explicit idempotency record ("<fingerprint>\n<answer>")
-- KEYS[..]     the related keys (ledger.lua's undeclared): the reservation's budget hashes (ks; for a draw the
--              parent's, pks) and its parent's hash (par); the last ARGV says how many
-- ARGV[1]      fingerprint of this commit (id + amount)
-- ARGV[2]      idempotency / finished-reservation retention in ms
-- ARGV[3]      actual amount (integer >= 0)
-- ARGV[4]      now in ms
-- ARGV[5]      day key  ARGV[6] month key
-- ARGV[7]      number of related keys at the end of KEYS
-- Budget fields as in reservation-reserve.lua, plus ov (overrun charged this period). Policies (p): R reject
-- any overage, A allow overage the budgets can cover, O allow overage, the uncovered part becoming debt up to
-- the overdraft limit o. The policy of the most specific held scope decides whether an overage is allowed;
-- every held scope pays it from its remaining, and what remaining cannot cover becomes debt there (within the
-- scope's own overdraft limit when its policy is O). The part no policy allowed is the overrun: it is charged
-- all the same, added to ov, and reported as an alert.
-- Returns { answer, alerts... } where answer is
--   "C|<reserved>|<charged>|<debtAdded>|<overrun>|<released>|<late 0|1>"   committed (prefixed "R" on replay)
--   "D|RESERVATION_HAS_ACTIVE_DRAWS|<key>|<held by draws>"   a parent with active draws (commit them first)
--   "D|LEDGER_LIMIT_EXCEEDED|<budget key>|<spent + debt>"   the charge would take that scope's consumption past
--                                                          LEDGER_MAX (ledger.lua); nothing written
--   "F|<state>"  already finished (R released, or C with another amount);  "N" no such reservation;
--   "M" idempotency key reused;  "K|<keys>" related keys were not declared (nothing done: call again with them)
-- and each alert is "<budget key>|<level>|<used>|<allocated>" for a scope that crossed 50/80/100 %, or
-- "<budget key>|overrun|<overrun>|<allocated>|<used>" for a scope charged beyond what its policy allowed.

local idem = optional_key(4, tonumber(ARGV[7]))
if idem then
  local prior = idem_prior(idem, ARGV[1])
  if prior then return { prior } end
end

local rv = redis.call('HMGET', KEYS[1], 'st', 'amt', 'ks', 'exp', 'cf', 'ca', 'par', 'ch', 'pks')
if not rv[1] then return { 'N' } end
local missing = undeclared(rv[3], rv[9], rv[7])
if missing then return { missing } end
if rv[7] and rv[7] ~= '' then
  -- A draw is charged at its parent's budgets: those the parent's record names must be declared too.
  missing = undeclared(redis.call('HGET', rv[7], 'ks'), rv[9], rv[7])
  if missing then return { missing } end
end
local st = rv[1]
local amt = tonumber(rv[2])
local now = tonumber(ARGV[4])
local par = rv[7]
if par == '' then par = nil end
local retention = tonumber(ARGV[2])

if st == 'C' and rv[5] == ARGV[1] then return { 'R' .. rv[6] } end
if st == 'C' or st == 'R' then return { 'F|' .. st } end
do
  -- Every scope the commit charges takes `actual` more consumption: refused, before anything is written, where that
  -- would pass LEDGER_MAX (amounts beyond it cannot be kept exactly).
  local charged_ks = rv[3]
  if par then charged_ks = redis.call('HGET', par, 'ks') or rv[9] end
  local k, used = over_ledger_max(charged_ks, tonumber(ARGV[3]), ARGV[5], ARGV[6])
  if k then return { 'D|LEDGER_LIMIT_EXCEEDED|' .. k .. '|' .. i(used) } end
end
if st == 'A' and tonumber(rv[4]) <= now then
  -- Overdue: its hold goes back first (as the sweeper would have done); the commit is then late spend.
  end_hold(KEYS[1], 'E', amt, rv[3], par, KEYS[2], retention)
  st = 'E'
end
if st == 'A' and not par then
  local ch = tonumber(rv[8] or '0')
  if ch > 0 then return { 'D|RESERVATION_HAS_ACTIVE_DRAWS|' .. KEYS[1] .. '|' .. i(ch) } end
end

local actual = tonumber(ARGV[3])
local late = st == 'E'
-- `hold`: what this commit takes out of reserved at the budgets (its own hold, or for a draw what the parent's
-- hold covers); `back`: what the commit returns to remaining beyond it.
local hold = 0
local ks = rv[3]
local pv
if par then
  pv = redis.call('HMGET', par, 'st', 'amt', 'ks', 'ch')
  ks = pv[3] or rv[9] or ''
  if pv[1] == 'A' then
    -- The draw's own earmark (when still ACTIVE) plus the parent's free hold cover it; the parent's hold shrinks
    -- by what was used of it.
    local own = 0
    if not late then own = amt end
    local cover = own + tonumber(pv[2]) - tonumber(pv[4] or '0')
    hold = math.min(actual, cover)
    redis.call('HSET', par, 'amt', i(tonumber(pv[2]) - hold), 'ch', i(tonumber(pv[4] or '0') - own))
  end
  -- A finished parent took the draw's hold back with it: the whole use is charged as new spend.
elseif not late then
  hold = amt
end

local keys = {}
for k in string.gmatch(ks, '%S+') do keys[#keys + 1] = k end
-- The policy of the most specific held scope that still has a budget decides whether an overage is allowed.
local rows = {}
local leaf = 'R'
for j, k in ipairs(keys) do
  rows[j] = read_budget(k, ARGV[5], ARGV[6])
  if rows[j] then leaf = rows[j].p or 'R' end
end
-- A top-level reservation returns its whole hold and is charged `actual`; a draw's hold is part of its parent's.
local returned = hold
if not par and not late then returned = amt end
local extra = actual - returned
if extra < 0 then extra = 0 end

local out = { '' }
local debt_added = 0
local overrun = 0
for j, k in ipairs(keys) do
  local row = rows[j]
  if row then
    local r = row.r + returned
    local covered = math.min(actual, r)
    local short = actual - covered
    r = r - covered
    local d = row.d + short
    -- Funds coming back repay outstanding debt first (debt > 0 implies remaining = 0).
    local pay = math.min(r, d)
    r = r - pay
    d = d - pay
    local s = row.s + covered + pay
    local over = 0
    if extra > 0 then
      if leaf == 'R' then
        over = extra
      else
        local allowed = 0
        if row.p == 'O' then allowed = math.max(0, row.o - row.d) end
        over = math.max(0, short - allowed)
      end
    end
    if short > debt_added then debt_added = short end
    if over > overrun then overrun = over end
    redis.call('HSET', k, 'r', i(r), 'v', i(row.v - returned), 's', i(s), 'd', i(d))
    if over > 0 then
      redis.call('HINCRBY', k, 'ov', over)
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'key', k, 'level', 'overrun', 'overrun', i(over), 'used', i(s + d),
        'allocated', i(row.a), 'reservation', KEYS[1], 'at', ARGV[4])
      out[#out + 1] = k .. '|overrun|' .. i(over) .. '|' .. i(row.a) .. '|' .. i(s + d)
    end
    raise_alert(k, row, s + d, KEYS[3], ARGV[4], out)
  end
end

local released = 0
if not late then released = math.max(0, amt - actual) end
local lt = '0'
if late then lt = '1' end
local answer = 'C|' .. i(amt) .. '|' .. i(actual) .. '|' .. i(debt_added) .. '|' .. i(overrun) .. '|' .. i(released) .. '|' .. lt
redis.call('HSET', KEYS[1], 'st', 'C', 'cf', ARGV[1], 'ca', answer, 'ov', i(overrun))
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[1], retention)
if idem then redis.call('SET', idem, ARGV[1] .. '\n' .. answer, 'PX', retention) end
out[1] = answer
return out
