-- Sweeper: expires the tenant's ACTIVE reservations whose deadline has passed, returning their amounts
-- to every held scope. The caller reads a batch of due reservations and their related keys first, so every key
-- the script touches is declared; the script re-checks each candidate (still due, still ACTIVE, keys declared).
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      deadlines sorted set of the tenant (member = reservation key, score = deadline ms)
-- KEYS[2..1+N] candidate reservation hashes (due when the caller read them)
-- KEYS[2+N..]  their related keys (budget hashes ks / pks, parent hashes par; see ledger.lua's undeclared)
-- ARGV[1]      now in ms
-- ARGV[2]      N, the number of candidates
-- ARGV[3]      retention of finished reservations in ms
-- Returns { expired, handled }: reservations expired, and candidates taken off the deadlines set (expired, or
-- already finished).
local now = tonumber(ARGV[1])
local n = 0
local handled = 0
for c = 1, tonumber(ARGV[2]) do
  local rk = KEYS[1 + c]
  local due = redis.call('ZSCORE', KEYS[1], rk)
  if due and tonumber(due) <= now then
    local rv = redis.call('HMGET', rk, 'st', 'amt', 'ks', 'par', 'pks')
    if rv[1] == 'A' then
      -- A parent returns its whole hold (its draws' part included); a draw returns its amount to a live parent.
      if not undeclared(rv[3], rv[5], rv[4]) then
        end_hold(rk, 'E', tonumber(rv[2]), rv[3], rv[4], KEYS[1], tonumber(ARGV[3]))
        n = n + 1
        handled = handled + 1
      end
    else
      redis.call('ZREM', KEYS[1], rk)
      handled = handled + 1
    end
  end
end
return { n, handled }
