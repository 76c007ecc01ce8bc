-- Replaces the rollup contribution of one or more traces: for each trace, subtracts what was applied last time
-- and adds the new contribution, in one step, so every rollup (customer, team, agent, model, day) is always the
-- sum of the same counted spans and a replay changes nothing. A contribution older than the one applied (two
-- requests racing on one trace) is ignored. Then removes the request's repair intents (KEYS[T+1]): the trace's
-- rollup is done.
-- All or nothing per trace: a contribution with a value that is not an integer of at most 2^53 - 1 (exact in Lua's
-- doubles) writes nothing, and so does one that would take a rollup field past what HINCRBY holds (its increments
-- already made are taken back before the next trace), so the "applied" string always says what was added.
-- NUMKEYS: dynamic
-- KEYS[1..T]       per-trace "applied" strings: "<version>\n" .. contribution
-- KEYS[T+1]        the shard's repair intents (zset "<nonce>/<traceId>" by epoch ms; see costs/ingest.ts)
-- KEYS[T+2..T+1+R] rollup hashes `<p>:{costs}:rollup:<dim>:<day>`
-- ARGV[1]          T, the number of traces
-- ARGV[2]          TTL of the applied strings, in seconds
-- ARGV[3]          M, the number of intents to remove
-- ARGV[4..3+R]     the rollup names `<dim>:<day>` of KEYS[T+2..T+1+R], in order
-- ARGV[4+R..3+R+2T] pairs per trace: version, contribution (lines "name \x1e field \x1e value", then the price
--                  stamp line "\x1d<json>" that its cost tree is read with: never summed, but stored and compared)
-- ARGV[4+R+2T..]   the M intent members to remove from KEYS[T+1]
-- Returns: one status per trace, in order: 1 applied, 0 not applied (an equal or newer contribution is applied),
--          -1 refused and nothing written for it (a value out of range, or a rollup field that would overflow).
-- Any other error of a write (OOM: Redis refuses a script's first write when it is over maxmemory with noeviction)
-- fails the call with that error, nothing of the failing trace written and the intents kept; traces before it in
-- the call stay applied with their "applied" strings, so a retry or the repair does not apply them twice.
local T = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local M = tonumber(ARGV[3])
local R = #KEYS - T - 1
local keyOf = {}
for r = 1, R do keyOf[ARGV[3 + r]] = KEYS[T + 1 + r] end
local MAX = 9007199254740991

-- What an earlier contribution added (read as the script that applied it read it), taken back.
local function subtract(s, into)
  for name, field, value in string.gmatch(s, '([^\n\30]+)\30([^\n\30]+)\30(%-?%d+)') do
    local h = into[name]
    if not h then h = {}; into[name] = h end
    h[field] = (h[field] or 0) - tonumber(value)
  end
end

-- The new contribution, every line checked whole: false when one is not "name \x1e field \x1e <safe integer>".
local function add(s, into)
  for line in string.gmatch(s, '[^\n]+') do
    if string.byte(line, 1) ~= 29 then
      local name, field, value = string.match(line, '^([^\30]+)\30([^\30]+)\30(%-?%d+)$')
      if not name or #value > 17 then return false end
      local v = tonumber(value)
      if not keyOf[name] or v > MAX or v < -MAX then return false end
      local h = into[name]
      if not h then h = {}; into[name] = h end
      h[field] = (h[field] or 0) + v
    end
  end
  return true
end

-- Takes back the increments made for one trace, last first.
local function undo(done)
  for i = #done, 1, -1 do
    local x = done[i]
    redis.call('HINCRBY', x[1], x[2], x[3])
    -- A field this trace created goes again (rather than staying as "0").
    if x[4] then redis.call('HDEL', x[1], x[2]) end
  end
end

local statuses = {}
for t = 1, T do
  local ver = tonumber(ARGV[2 + R + 2 * t])
  local new = ARGV[3 + R + 2 * t]
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
    subtract(oldBody, delta)
    local ok = add(new, delta)
    local done = {}
    if ok then
      for name, h in pairs(delta) do
        local key = keyOf[name]
        if not key then ok = false; break end
        for field, d in pairs(h) do
          if d ~= 0 then
            local by = string.format('%.0f', d)
            local r = redis.pcall('HINCRBY', key, field, by)
            if type(r) == 'table' and r.err then
              if string.find(r.err, 'would overflow', 1, true) then ok = false; break end
              -- Any other error is not the trace's: OOM (refused on a script's first write only, so nothing is
              -- written yet), or a state this script cannot handle. This trace's increments are taken back and the
              -- call fails (a 503 for OOM): the intents stay, so a retry or the repair applies the trace.
              undo(done)
              return redis.error_reply(r.err)
            end
            done[#done + 1] = { key, field, string.format('%.0f', -d), r == d }
          end
        end
        if not ok then break end
      end
    end
    if ok then
      redis.call('SET', KEYS[t], string.format('%.0f', ver) .. '\n' .. new, 'EX', ttl)
      statuses[t] = 1
    else
      undo(done)
      statuses[t] = -1
    end
  else
    redis.call('EXPIRE', KEYS[t], ttl)
    statuses[t] = 0
  end
end
for i = 1, M do redis.call('ZREM', KEYS[T + 1], ARGV[3 + R + 2 * T + i]) end
return statuses
