-- Extends an ACTIVE reservation's deadline to now + ttl (a draw: never past its parent's), at most `max` times.
-- An extension never shortens a reservation: a deadline already later than now + ttl is kept (and the call is
-- not counted as an extension).
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      reservation hash
-- KEYS[2]      deadlines sorted set of the tenant
-- KEYS[3]      optional explicit idempotency record ("<fingerprint>\n<answer>")
-- KEYS[..]     the related keys (budgets ks / pks, parent par; see ledger.lua's undeclared), ARGV[6] of them
-- ARGV[1]      fingerprint (id + ttl)
-- ARGV[2]      retention of finished reservations / idempotency records in ms
-- ARGV[3]      now in ms
-- ARGV[4]      ttl in ms
-- ARGV[5]      maximum number of extensions
-- ARGV[6]      number of related keys at the end of KEYS
-- A reservation held at a frozen scope (its budgets ks; a draw: its parent's, pks) is not extended: a frozen scope
-- takes no new reservations, and a later deadline would keep its hold from going back.
-- Returns "X|<expiresAt>|<extensions>" (prefixed "R" on replay), "F|<state>" finished (an overdue ACTIVE
--   reservation is expired here first), "D|BUDGET_FROZEN|<budget key>" a held scope is frozen (nothing changed),
--   "L" the extension limit is reached, "N" no such reservation,
--   "M" idempotency key reused for another payload, "K|<keys>" related keys were not declared (nothing done:
--   call again with them).

local idem = optional_key(2, tonumber(ARGV[6]))
if idem then
  local prior = idem_prior(idem, ARGV[1])
  if prior then return prior end
end

local rv = redis.call('HMGET', KEYS[1], 'st', 'amt', 'ks', 'exp', 'x', 'par', 'pks')
if not rv[1] then return 'N' end
local missing = undeclared(rv[3], rv[7], rv[6])
if missing then return missing end
local st = rv[1]
local now = tonumber(ARGV[3])
if st == 'A' and tonumber(rv[4]) <= now then
  end_hold(KEYS[1], 'E', tonumber(rv[2]), rv[3], rv[6], KEYS[2], tonumber(ARGV[2]))
  st = 'E'
end
if st ~= 'A' then return 'F|' .. st end
for _, ks in ipairs({ rv[3], rv[7] }) do
  for k in string.gmatch(ks or '', '%S+') do
    if redis.call('HGET', k, 'f') == '1' then return 'D|BUDGET_FROZEN|' .. k end
  end
end
local x = tonumber(rv[5] or '0')
if x >= tonumber(ARGV[5]) then return 'L' end
local cur = tonumber(rv[4])
local exp = now + tonumber(ARGV[4])
-- A draw never outlives its parent: extend the parent first.
if rv[6] and rv[6] ~= '' then
  local pexp = tonumber(redis.call('HGET', rv[6], 'exp') or '0')
  if pexp < exp then exp = pexp end
end
if exp > cur then
  x = x + 1
  redis.call('HSET', KEYS[1], 'exp', i(exp), 'x', x)
  redis.call('ZADD', KEYS[2], exp, KEYS[1])
else
  exp = cur
end
local answer = 'X|' .. i(exp) .. '|' .. x
if idem then redis.call('SET', idem, ARGV[1] .. '\n' .. answer, 'PX', tonumber(ARGV[2])) end
return answer
