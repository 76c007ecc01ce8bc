-- Reads the balances of budgets (applying due calendar resets first). The caller picks the budgets from the
-- tenant's index (a scope and its descendants), so every key the script touches is declared.
-- NUMKEYS: dynamic
-- INCLUDE: ledger
-- KEYS[1..]    budget hashes
-- ARGV[1]      day key   ARGV[2] month key
-- ARGV[2+j]    the index member ("<unit>:<scope>") of KEYS[j]
-- Returns a flat array: per existing budget, member, a, r, v, s, d, f, p, o, per, ov (overrun this period).
local out = {}
for j, k in ipairs(KEYS) do
  local row = read_budget(k, ARGV[1], ARGV[2])
  if row then
    out[#out + 1] = ARGV[2 + j]
    for _, v in ipairs({ i(row.a), i(row.r), i(row.v), i(row.s), i(row.d), row.f or '', row.p or '', i(row.o), row.per or '', i(row.ov) }) do
      out[#out + 1] = v
    end
  end
end
return out
