-- Reads the balances of a scope and its descendants (applying due calendar resets first).
-- NUMKEYS: 1
-- KEYS[1]      the tenant's budget index (members "<unit>:<scope>")
-- ARGV[1]      key prefix of budget hashes ("<p>:{tenant:<t>}:b:")
-- ARGV[2]      scope; members whose scope equals it or starts with "<scope>/" are returned
-- ARGV[3]      unit filter, or "" for every unit
-- ARGV[4]      day key   ARGV[5] month key
-- Returns a flat array: per budget member, a, r, v, s, d, f, p, o, per.
local function i(x) return string.format('%d', x) end
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
    local b = redis.call('HMGET', k, 'a', 'r', 'v', 's', 'd', 'f', 'p', 'o', 'per', 'pk')
    if b[1] then
      if b[9] and b[9] ~= '' then
        local cur = ARGV[4]
        if b[9] == 'month' then cur = ARGV[5] end
        if b[10] ~= cur then
          b[2] = i(tonumber(b[1]) - tonumber(b[3])); b[4] = '0'; b[5] = '0'
          redis.call('HSET', k, 's', '0', 'd', '0', 'r', b[2], 'al', '0', 'pk', cur)
        end
      end
      out[#out + 1] = m
      for j = 1, 9 do out[#out + 1] = b[j] or '' end
    end
  end
end
return out
