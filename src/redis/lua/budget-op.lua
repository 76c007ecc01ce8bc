-- Administrative ledger operations on one scope (fund, reset, freeze, unfreeze) or a chain (debit).
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1]      idempotency record ("<fingerprint>\n<answer>")
-- KEYS[2]      alerts stream of the tenant
-- KEYS[3..]    budget hashes: the target scope (fund/reset/freeze/unfreeze), or the candidate chain root
--              first (debit; missing hashes are unbudgeted levels)
-- ARGV[1]      op: fund | debit | reset | freeze | unfreeze
-- ARGV[2]      fingerprint   ARGV[3] idempotency TTL ms   ARGV[4] amount (fund, debit)
-- ARGV[5]      day key   ARGV[6] month key   ARGV[7] now ms
-- Returns { answer, alerts... }: answer "OK|<mask>" applied (prefixed "R" on replay), "M" key reused for
--   another payload, "D|<code>|<index>|<remaining>" denied (BUDGET_NOT_FOUND, BUDGET_FROZEN,
--   BUDGET_EXCEEDED; OVERDRAFT_LIMIT_EXCEEDED adds "|<overdraft limit>|<debt>"), or "D|LEDGER_LIMIT_EXCEEDED|<index>|<allocated (fund) or
--   spent + debt (debit)>" when the result would pass LEDGER_MAX; alerts as in reservation-commit.lua.
--   A denial writes nothing (the idempotency key included).
local prior = idem_prior(KEYS[1], ARGV[2])
if prior then return { prior } end
local op = ARGV[1]
local amount = tonumber(ARGV[4])
local rows = {}
local mask = {}
local any = false
for j = 3, #KEYS do
  local k = KEYS[j]
  local row = read_budget(k, ARGV[5], ARGV[6])
  if row then
    any = true
    mask[j - 2] = '1'
    row.k = k
    rows[#rows + 1] = row
    if op == 'fund' and amount > LEDGER_MAX - row.a then return { 'D|LEDGER_LIMIT_EXCEEDED|' .. (j - 3) .. '|' .. i(row.a) } end
    if op == 'debit' then
      if amount > LEDGER_MAX - row.s - row.d then return { 'D|LEDGER_LIMIT_EXCEEDED|' .. (j - 3) .. '|' .. i(row.s + row.d) } end
      if row.f == '1' then return { 'D|BUDGET_FROZEN|' .. (j - 3) .. '|' .. i(row.r) } end
      if row.r < amount then
        if row.p ~= 'O' then return { 'D|BUDGET_EXCEEDED|' .. (j - 3) .. '|' .. i(row.r) } end
        if row.d + amount - row.r > row.o then return { 'D|OVERDRAFT_LIMIT_EXCEEDED|' .. (j - 3) .. '|' .. i(row.r) .. '|' .. i(row.o) .. '|' .. i(row.d) } end
      end
    end
  else
    mask[j - 2] = '0'
  end
end
if not any then return { 'D|BUDGET_NOT_FOUND|-1|0' } end

local out = { '' }
for _, row in ipairs(rows) do
  local k = row.k
  if op == 'fund' then
    local r = row.r + amount
    local pay = math.min(r, row.d)
    redis.call('HSET', k, 'a', i(row.a + amount), 'r', i(r - pay), 'd', i(row.d - pay), 's', i(row.s + pay))
  elseif op == 'reset' then
    redis.call('HSET', k, 's', '0', 'd', '0', 'r', i(row.a - row.v), 'al', '0', 'ov', '0')
  elseif op == 'freeze' then
    redis.call('HSET', k, 'f', '1')
  elseif op == 'unfreeze' then
    redis.call('HSET', k, 'f', '0')
  elseif op == 'debit' then
    local covered = math.min(amount, row.r)
    local s = row.s + covered
    local d = row.d + amount - covered
    redis.call('HSET', k, 'r', i(row.r - covered), 's', i(s), 'd', i(d))
    raise_alert(k, row, s + d, KEYS[2], ARGV[7], out)
  end
end
local answer = 'OK|' .. table.concat(mask)
redis.call('SET', KEYS[1], ARGV[2] .. '\n' .. answer, 'PX', tonumber(ARGV[3]))
out[1] = answer
return out
