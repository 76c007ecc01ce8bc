-- Draws a child reservation from an ACTIVE reservation's hold (a sub-agent in another process taking part of
-- the request budget its orchestrator reserved). Nothing moves at the budgets: the parent already holds the
-- amount there; the draw earmarks `amount` of the parent's free hold (amt − ch). Committing the draw turns what
-- it used into spend at the parent's scopes; releasing or expiring it gives the amount back to the parent.
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      idempotency record (string "<fingerprint>\n<answer>", PX = idempotency TTL)
-- KEYS[2]      the draw's reservation hash (st, amt, ks "", par, pks = the parent's budget keys, exp, x, sc, u)
-- KEYS[3]      deadlines sorted set of the tenant
-- KEYS[4]      parent reservation hash (st, amt, ks, exp, ch = held by active draws, par)
-- ARGV[1]      request fingerprint   ARGV[2] idempotency TTL in ms   ARGV[3] draw id
-- ARGV[4]      amount (integer > 0)  ARGV[5] ttl in ms   ARGV[6] now in ms   ARGV[7] "1" for a dry run
-- ARGV[8]      the request's deadline, ms since the epoch ("0": none): past it the script does nothing
-- Returns:
--   "G|<id>|<expiresAt>|<scope>|<unit>"   granted (expiresAt never after the parent's deadline)
--   "D|RESERVATION_EXHAUSTED|<free>"     the parent's free hold cannot cover the amount
--   "F|<state>"  the parent is finished (C, R or E);  "N" no such parent;  "P" the parent is itself a draw
--   prefixed with "R" when it is a replay; "M" when the key was used for another payload;
--   "T" the deadline had passed when the script ran (nothing held, nothing stored).
local prior = idem_prior(KEYS[1], ARGV[1])
if prior then return prior end
if past_deadline(ARGV[8]) then return 'T' end
local pv = redis.call('HMGET', KEYS[4], 'st', 'amt', 'exp', 'ch', 'par', 'sc', 'u', 'ks')
if not pv[1] then return 'N' end
if pv[5] and pv[5] ~= '' then return 'P' end
local now = tonumber(ARGV[6])
if pv[1] == 'A' and tonumber(pv[3]) <= now then return 'F|E' end
if pv[1] ~= 'A' then return 'F|' .. pv[1] end
local amount = tonumber(ARGV[4])
local free = tonumber(pv[2]) - tonumber(pv[4] or '0')
local answer
if free < amount then
  answer = 'D|RESERVATION_EXHAUSTED|' .. i(free)
else
  local exp = math.min(now + tonumber(ARGV[5]), tonumber(pv[3]))
  answer = 'G|' .. ARGV[3] .. '|' .. i(exp) .. '|' .. pv[6] .. '|' .. pv[7]
  if ARGV[7] == '1' then return answer end
  redis.call('HINCRBY', KEYS[4], 'ch', amount)
  -- pks: a commit that arrives after the parent's record is gone still knows where to charge.
  redis.call('HSET', KEYS[2], 'st', 'A', 'amt', ARGV[4], 'ks', '', 'par', KEYS[4], 'pks', pv[8] or '', 'exp', i(exp), 'x', '0',
    'sc', pv[6], 'u', pv[7])
  redis.call('ZADD', KEYS[3], exp, KEYS[2])
end
if ARGV[7] == '1' then return answer end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. answer, 'PX', tonumber(ARGV[2]))
return answer
