-- Replaces the rollup contribution of one or more traces: for each trace, subtracts what was applied last time
-- and adds the new contribution, in one step, so every rollup (customer, team, agent, model, day) is always the
-- sum of the same counted spans and a replay changes nothing. A contribution older than the one applied (two
-- requests racing on one trace) is ignored.
-- NUMKEYS: dynamic
-- KEYS[1..T]       per-trace "applied" strings: "<version>\n" .. contribution
-- KEYS[T+1..T+R]   rollup hashes `<p>:{costs}:rollup:<dim>:<day>`
-- ARGV[1]          T, the number of traces
-- ARGV[2]          TTL of the applied strings, in seconds
-- ARGV[3..2+R]     the rollup names `<dim>:<day>` of KEYS[T+1..T+R], in order
-- ARGV[3+R..]      pairs per trace: version, contribution (lines "name \x1e field \x1e value", then the price stamp
--                  line "\x1d<json>" that its cost tree is read with: never summed, but stored and compared with it)
-- Returns: the number of traces whose contribution was applied.
local T = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local R = #KEYS - T
local keyOf = {}
for r = 1, R do keyOf[ARGV[2 + r]] = KEYS[T + r] end

local function parse(s, into, sign)
  for name, field, value in string.gmatch(s, '([^\n\30]+)\30([^\n\30]+)\30(%-?%d+)') do
    local h = into[name]
    if not h then h = {}; into[name] = h end
    h[field] = (h[field] or 0) + sign * tonumber(value)
  end
end

local applied = 0
for t = 1, T do
  local ver = tonumber(ARGV[1 + R + 2 * t])
  local new = ARGV[2 + R + 2 * t]
  local old = redis.call('GET', KEYS[t])
  local oldVer = -1
  local oldBody = ''
  if old then
    local nl = string.find(old, '\n', 1, true)
    oldVer = tonumber(string.sub(old, 1, nl - 1))
    oldBody = string.sub(old, nl + 1)
  end
  if ver > oldVer or (ver == oldVer and new ~= oldBody) then
    local delta = {}
    parse(oldBody, delta, -1)
    parse(new, delta, 1)
    for name, h in pairs(delta) do
      local key = keyOf[name]
      if not key then return redis.error_reply('ERR cost-rollup: no key for rollup ' .. name) end
      for field, d in pairs(h) do
        if d ~= 0 then redis.call('HINCRBY', key, field, string.format('%.0f', d)) end
      end
    end
    redis.call('SET', KEYS[t], string.format('%.0f', ver) .. '\n' .. new, 'EX', ttl)
    applied = applied + 1
  else
    redis.call('EXPIRE', KEYS[t], ttl)
  end
end
return applied
