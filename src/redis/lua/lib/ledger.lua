-- Shared ledger helpers, prepended by src/redis/scripts.ts to every script that says `-- INCLUDE: ledger`.

local function i(x) return string.format('%d', x) end

-- The largest amount a budget's allocated, or its consumption (spent + debt), may reach: 2^53 − 1, the largest
-- integer Lua's numbers (doubles) and JSON hold exactly. Every other field is bounded by one of the two (remaining,
-- reserved, spent ≤ allocated; debt, overrun ≤ spent + debt), so no arithmetic here ever rounds. An operation that
-- would pass it is refused before anything is written (LEDGER_LIMIT_EXCEEDED).
local LEDGER_MAX = 9007199254740991

-- Returns a reservation's hold of `amt` to the budget hash `k` (skipped when the budget is gone):
-- reserved -= amt; remaining += amt, except what repays debt first (debt > 0 implies remaining = 0).
local function return_hold(k, amt)
  local b = redis.call('HMGET', k, 'r', 'd')
  if b[1] then
    local r = tonumber(b[1]) + amt
    local d = tonumber(b[2] or '0')
    local pay = math.min(r, d)
    redis.call('HINCRBY', k, 'v', i(-amt))
    redis.call('HSET', k, 'r', i(r - pay), 'd', i(d - pay))
    if pay > 0 then redis.call('HINCRBY', k, 's', pay) end
  end
end

-- Gives back the hold of reservation hash `rk` (amount `amt`, budget keys `ks`, parent key `par`):
-- a top-level reservation returns `amt` to every budget in `ks`; a draw (par set) returns it to its parent
-- reservation's free hold, or nowhere when the parent already finished (its hold went back with it).
local function drop_hold(amt, ks, par)
  if par and par ~= '' then
    if redis.call('HGET', par, 'st') == 'A' then redis.call('HINCRBY', par, 'ch', i(-amt)) end
  else
    for k in string.gmatch(ks, '%S+') do return_hold(k, amt) end
  end
end

-- Ends an ACTIVE reservation `rk` without a charge (released or expired): gives its hold back (drop_hold), sets
-- its final state, takes it off the tenant's deadlines and keeps the finished record for `retention_ms`.
local function end_hold(rk, state, amt, ks, par, deadlines, retention_ms)
  drop_hold(amt, ks, par)
  redis.call('HSET', rk, 'st', state)
  redis.call('ZREM', deadlines, rk)
  redis.call('PEXPIRE', rk, retention_ms)
end

-- The keys a reservation's hold involves besides its own hash: its budgets `ks`, and for a draw its parent `par`
-- and the parent's budgets `pks`. Scripts touch only keys they declare (Redis Cluster routes a call by its KEYS):
-- returns nil when all of them are among KEYS, else "K|<every such key, space-separated>", before anything was
-- written, for the caller to call again with them declared (they never change after the reservation is made).
local function undeclared(ks, pks, par)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local need = {}
  local missing = false
  local function want(k)
    if k and k ~= '' then
      need[#need + 1] = k
      if not declared[k] then missing = true end
    end
  end
  for k in string.gmatch(ks or '', '%S+') do want(k) end
  for k in string.gmatch(pks or '', '%S+') do want(k) end
  want(par)
  if missing then return 'K|' .. table.concat(need, ' ') end
  return nil
end

-- The optional idempotency key of a call whose KEYS are `base` fixed keys, then the optional idempotency record,
-- then `related` keys (see undeclared): KEYS[base + 1] when present, else nil.
local function optional_key(base, related)
  if #KEYS - related > base then return KEYS[base + 1] end
  return nil
end

-- Looks up idempotency record `k` ("<fingerprint>\n<answer>"): 'R' .. answer when it holds this fingerprint (a
-- replay), 'M' when the key was used for another payload, nil when the key is new.
local function idem_prior(k, fp)
  local prior = redis.call('GET', k)
  if not prior then return nil end
  local nl = string.find(prior, '\n', 1, true)
  if string.sub(prior, 1, nl - 1) == fp then return 'R' .. string.sub(prior, nl + 1) end
  return 'M'
end

-- A period key as a number (YYYY-MM-DD → YYYYMMDD, YYYY-MM → YYYYMM; 0 for none or unreadable): keys of one
-- period kind compare in calendar order as numbers, whatever collation locale Redis runs with.
local function pk_num(pk)
  return tonumber((string.gsub(pk or '', '-', ''))) or 0
end

-- period_due: the caller's period key when budget of period `per` (stored key `pk`) is due for a reset, else nil.
-- period_reset: the lazy calendar reset of budget `k` (period `per` = ""|day|month, period key `pk`, allocated `a`, reserved `v`):
-- when the caller's period (`day` / `month`, from the calling process's clock) is later than the stored one, it
-- starts the new one with nothing spent (active reservations stay held). Periods only move forward: a caller whose
-- clock is behind the stored period (another process already started the next day or month) changes nothing here,
-- and what it charges goes to the stored, current period.
-- Returns the new remaining, or nil when no reset was due.
local function period_due(per, pk, day, month)
  if not per or per == '' then return nil end
  local cur = day
  if per == 'month' then cur = month end
  if pk == cur or pk_num(pk) >= pk_num(cur) then return nil end
  return cur
end

local function period_reset(k, per, pk, a, v, day, month)
  local cur = period_due(per, pk, day, month)
  if not cur then return nil end
  local r = a - v
  redis.call('HSET', k, 's', '0', 'd', '0', 'r', i(r), 'al', '0', 'ov', '0', 'pk', cur)
  return r
end

-- Reads budget hash `k` as a row { a, r, v, s, d, p, o, al, f, per, ov } (nil when there is no budget), applying the
-- lazy calendar reset first: a scope whose period (day / month) has moved on starts it with nothing spent (forward
-- only, see period_reset).
local function read_budget(k, day, month)
  local b = redis.call('HMGET', k, 'a', 'r', 'v', 's', 'd', 'p', 'o', 'per', 'pk', 'al', 'f', 'ov')
  if not b[1] then return nil end
  local row = { a = tonumber(b[1]), r = tonumber(b[2]), v = tonumber(b[3]), s = tonumber(b[4]), d = tonumber(b[5] or '0'),
    p = b[6], o = tonumber(b[7] or '0'), al = tonumber(b[10] or '0'), f = b[11], per = b[8], ov = tonumber(b[12] or '0') }
  local reset = period_reset(k, b[8], b[9], row.a, row.v, day, month)
  if reset then
    row.s = 0; row.d = 0; row.al = 0; row.r = reset; row.ov = 0
  end
  return row
end

-- The threshold (0, 50, 80 or 100 %) that `used` of `allocated` has reached.
-- ceil(allocated * num / den) for an integer 0 <= allocated <= LEDGER_MAX, exactly: allocated * 80 passes 2^53 (where
-- doubles stop holding every integer) from allocated ~ 1.1e14, so `used * 100 >= allocated * 80` misjudged the
-- threshold by a few units on large budgets. Split allocated = q * den + r (every term stays below 2^53).
local function share_ceil(allocated, num, den)
  local q = math.floor(allocated / den)
  local r = allocated - q * den
  while r < 0 do q = q - 1; r = r + den end
  while r >= den do q = q + 1; r = r - den end
  return q * num + math.floor((r * num + den - 1) / den)
end

local function alert_level(used, allocated)
  if used <= 0 then return 0 end
  if used >= allocated then return 100 end
  if used >= share_ceil(allocated, 4, 5) then return 80 end
  if used >= share_ceil(allocated, 1, 2) then return 50 end
  return 0
end

-- When `used` takes budget `k` (row) past thresholds it had not reached: records the highest, and appends one event
-- per threshold crossed (50, 80, 100 in order: one operation may cross several) to the tenant's alerts stream and
-- to `out` ("<key>|<level>|<used>|<allocated>").
local function raise_alert(k, row, used, stream, now, out)
  local level = alert_level(used, row.a)
  if level <= row.al then return end
  redis.call('HSET', k, 'al', level)
  for _, t in ipairs({ 50, 80, 100 }) do
    if t > row.al and t <= level then
      redis.call('XADD', stream, 'MAXLEN', '~', 1000, '*', 'key', k, 'level', t, 'used', i(used), 'allocated', i(row.a), 'at', now)
      out[#out + 1] = k .. '|' .. t .. '|' .. i(used) .. '|' .. i(row.a)
    end
  end
end

-- Whether the request's deadline `deadline` (ms since the epoch, Redis server clock; "0" or "" for none) has
-- passed: a store that stalled may run a script after its caller was already answered 503, and a grant made then
-- would hold its amount until its TTL with nobody to commit or release it.
local function past_deadline(deadline)
  local dl = tonumber(deadline or '0') or 0
  if dl <= 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > dl
end

-- The first budget among `ks` (space-separated keys) whose consumption (spent + debt, as it is after a due calendar
-- reset) cannot take `amount` more without passing LEDGER_MAX: returns its key and consumption, or nil. Writes nothing.
local function over_ledger_max(ks, amount, day, month)
  for k in string.gmatch(ks or '', '%S+') do
    local b = redis.call('HMGET', k, 's', 'd', 'per', 'pk')
    if b[1] then
      local used = tonumber(b[1]) + tonumber(b[2] or '0')
      if period_due(b[3], b[4], day, month) then used = 0 end
      if amount > LEDGER_MAX - used then return k, used end
    end
  end
  return nil
end
