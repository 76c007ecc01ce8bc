-- Reads the balances of a scope and its descendants (applying due calendar resets first).
-- NUMKEYS: 1
-- INCLUDE: ledger
-- KEYS[1]      the tenant's budget index (members "<unit>:<scope>")
-- ARGV[1]      key prefix of budget hashes ("<p>:{tenant:<t>}:b:")
-- ARGV[2]      scope; members whose scope equals it or starts with "<scope>/" are returned
-- ARGV[3]      unit filter, or "" for every unit
-- ARGV[4]      day key   ARGV[5] month key
-- Returns a flat array: per budget member, a, r, v, s, d, f, p, o, per, ov (overrun this period).
local members = redis.call('SMEMBERS', KEYS[1])
local scope = ARGV[2]
local child = scope .. '/'
local out = {}
for _, m in ipairs(members) do
  local c = string.find(m, ':', 1, true)
  local unit = string.sub(m, 1, c - 1)
  local sc = string.sub(m, c + 1)
  if (ARGV[3] == '' or ARGV[3] == unit) and (sc == scope or string.sub(sc, 1, #child) == child) then
    local k = ARGV[1] .. m
    local row = read_budget(k, ARGV[4], ARGV[5])
    if row then
      out[#out + 1] = m
      for _, v in ipairs({ i(row.a), i(row.r), i(row.v), i(row.s), i(row.d), row.f or '', row.p or '', i(row.o), row.per or '', i(row.ov) }) do
        out[#out + 1] = v
      end
    end
  end
end
return out
