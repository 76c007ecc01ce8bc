-- Releases an ACTIVE reservation (its amount goes back to every held scope), or expires it when called
-- by the sweeper / after its deadline. Exactly one of commit / release / expiry wins.
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      reservation hash
-- KEYS[2]      deadlines sorted set of the tenant
-- KEYS[3]      optional explicit idempotency record ("<fingerprint>\n<answer>")
-- KEYS[..]     the related keys (budgets ks / pks, parent par; see ledger.lua's undeclared), ARGV[4] of them
-- ARGV[1]      fingerprint of this release (id)
-- ARGV[2]      retention of finished reservations / idempotency records in ms
-- ARGV[3]      now in ms
-- ARGV[4]      number of related keys at the end of KEYS
-- A draw's amount goes back to its parent's free hold; a parent with active draws is not released.
-- Returns "L|<amount>" released (prefixed "R" on replay), "F|<state>" already finished (C or E),
--   "D|<held by draws>" a parent with active draws (release or commit them first),
--   "N" no such reservation, "M" idempotency key reused for another payload, "K|<keys>" related keys were not
--   declared (nothing done: call again with them).

local idem = optional_key(2, tonumber(ARGV[4]))
if idem then
  local prior = idem_prior(idem, ARGV[1])
  if prior then return prior end
end

local rv = redis.call('HMGET', KEYS[1], 'st', 'amt', 'ks', 'exp', 'par', 'ch', 'pks')
if not rv[1] then return 'N' end
local missing = undeclared(rv[3], rv[7], rv[5])
if missing then return missing end
local st = rv[1]
local amt = tonumber(rv[2])
if st == 'R' then return 'RL|' .. i(amt) end
if st ~= 'A' then return 'F|' .. st end

local expired = tonumber(rv[4]) <= tonumber(ARGV[3])
if not expired and tonumber(rv[6] or '0') > 0 then return 'D|' .. rv[6] end
local state = 'R'
if expired then state = 'E' end
end_hold(KEYS[1], state, amt, rv[3], rv[5], KEYS[2], tonumber(ARGV[2]))
if expired then return 'F|E' end
local answer = 'L|' .. i(amt)
if idem then redis.call('SET', idem, ARGV[1] .. '\n' .. answer, 'PX', tonumber(ARGV[2])) end
return answer
