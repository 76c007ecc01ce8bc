-- Applies one outcome to the statistics of one or more arms (a strategy; later also experiment variants),
-- exactly once per decision: the applied-marker makes a replay (retry, killed worker, duplicate report) a no-op.
-- Markers live until the decision's reward window has passed plus a grace period, and no longer: past that
-- deadline the script refuses the outcome (returns 2) rather than risk counting it a second time.
-- An outcome of a decision made on a pipeline that has been deleted since (the pipeline's tombstone holds a version
-- at least the decision's) writes nothing (returns 3): it must neither bring back the deleted pipeline's keys, which
-- would then never expire, nor feed a pipeline re-created under the id. Likewise an arm whose object was deleted
-- (a strategy) is left alone while the rest of the outcome applies.
-- NUMKEYS: dynamic
-- KEYS[1]       applied-marker key of the decision (in the pipeline's slot): a set of decisions of one second
--               (member ARGV[2], see appliedMarker in src/feedback/processor.ts)
-- KEYS[2]       the pipeline's tombstone (string: highest deleted version of the pipeline; absent when never deleted)
-- KEYS[5k-2]    (k = 1..A) arm summary hash: n, q_mean, q_m2, c_n, c_mean, c_m2, c_sum (Welford moments), and on an
--               arm that keeps unit statistics `units` (units counted for the SRM test)
-- KEYS[5k-1]    (k = 1..A) arm per-agent hash: <agent> → MessagePack [n, util, consumed, allocated, trunc, hits, hit_q] (sums)
-- KEYS[5k]      (k = 1..A) the arm's tombstone (highest deleted version of its object), or any key when ARGV[8+k] is ""
-- KEYS[5k+1]    (k = 1..A) the arm's phase unit bitmap (Bloom-style, shared by the phase's arms; expires at the
--               latest marker deadline of the outcomes applied to it), or any key when ARGV[8+A+k] is ""
-- KEYS[5k+2]    (k = 1..A) the arm's unit-bucket hash: <bucket> → MessagePack [n, Σ quality, c_n, Σ cost, agents],
--               agents a flat list [name, n, hits, ...] (outcomes reporting the agent, ceiling hits among them; absent
--               in buckets written before it was kept), or any key when ARGV[8+A+k] is ""
-- KEYS[2+5A+j]  (j = 1..L) lists that receive one entry each (e.g. the learner's training buffer), capped
-- ARGV[1]       marker deadline, epoch seconds: the marker expires then, and an outcome applied at or after it is refused
-- ARGV[2]       the decision's member in the marker set
-- ARGV[3]       quality (0..1)
-- ARGV[4]       cost in USD, or "" when unknown
-- ARGV[5]       JSON array of per-agent observations [{ "a": name, "u": utilization, "h": 0|1, "t": 0|1,
--               "c": consumed, "b": allocated }]
-- ARGV[6]       A, the number of arms
-- ARGV[7]       cap of every list (LTRIM keeps the newest entries)
-- ARGV[8]       the pipeline version the decision was made with
-- ARGV[8+k]     the version of the k-th arm's object the decision was made with, or "" (the arm is never retired)
-- ARGV[8+A+k]   "1" when the k-th arm keeps unit statistics (bitmap and buckets), else ""
-- ARGV[9+2A]    the decision's unit: "<bucket> <bit> <bit> ..." (its cluster bucket and its bitmap bits, see
--               src/feedback/units.ts), or "" (no unit key: no unit statistics are written)
-- ARGV[9+2A+j]  entry pushed to the j-th list
-- Returns: 1 when applied, 0 when this decision's outcome was already applied, 2 when its marker deadline passed,
-- 3 when the decision's pipeline was deleted since.
local deadline = tonumber(ARGV[1])
local now = tonumber(redis.call('TIME')[1])
if now >= deadline then
  return 2
end

-- Everything is checked before the first write: a script that fails half-way keeps what it wrote (Redis does not
-- roll a script back), and a marker written before a failure would make every retry a "duplicate".
local q = tonumber(ARGV[3])
local cost = ARGV[4]
local ok, agents = pcall(cjson.decode, ARGV[5])
if not q or (cost ~= '' and not tonumber(cost)) or not ok or type(agents) ~= 'table' then
  return redis.error_reply('BAD_OUTCOME quality, cost or observations unreadable')
end
for _, o in ipairs(agents) do
  if type(o) ~= 'table' or type(o['a']) ~= 'string' or type(o['u']) ~= 'number' or type(o['c']) ~= 'number'
    or type(o['b']) ~= 'number' or type(o['t']) ~= 'number' or type(o['h']) ~= 'number' then
    return redis.error_reply('BAD_OUTCOME observation of agent ' .. tostring(type(o) == 'table' and o['a'] or '?') .. ' incomplete')
  end
end

local arms = tonumber(ARGV[6])
local unit = ARGV[9 + 2 * arms]
local bucket = nil
local bits = {}
if unit ~= nil and unit ~= '' then
  for w in string.gmatch(unit, '%S+') do
    local v = tonumber(w)
    if not v or v < 0 or v ~= math.floor(v) then
      return redis.error_reply('BAD_OUTCOME unit spec unreadable')
    end
    if bucket == nil then bucket = w else bits[#bits + 1] = v end
  end
  if bucket == nil or #bits == 0 then
    return redis.error_reply('BAD_OUTCOME unit spec unreadable')
  end
end
local function retired(key, version)
  if version == '' then return false end
  local dead = redis.call('GET', key)
  return dead ~= false and tonumber(version) <= tonumber(dead)
end
if retired(KEYS[2], ARGV[8]) then
  return 3
end

if redis.call('SADD', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('EXPIREAT', KEYS[1], deadline)

local function num(v) if v then return tonumber(v) end return 0 end
local function fmt(x) return string.format('%.17g', x) end

for k = 1, arms do
  local summary = KEYS[5 * k - 2]
  local per_agent = KEYS[5 * k - 1]
  if not retired(KEYS[5 * k], ARGV[8 + k]) then
    local s = redis.call('HMGET', summary, 'n', 'q_mean', 'q_m2', 'c_n', 'c_mean', 'c_m2', 'c_sum')
    local n = num(s[1]) + 1
    local mean = num(s[2])
    local d = q - mean
    mean = mean + d / n
    local m2 = num(s[3]) + d * (q - mean)
    redis.call('HSET', summary, 'n', n, 'q_mean', fmt(mean), 'q_m2', fmt(m2))
    if cost ~= '' then
      local c = tonumber(cost)
      local cn = num(s[4]) + 1
      local cmean = num(s[5])
      local cd = c - cmean
      cmean = cmean + cd / cn
      local cm2 = num(s[6]) + cd * (c - cmean)
      redis.call('HSET', summary, 'c_n', cn, 'c_mean', fmt(cmean), 'c_m2', fmt(cm2), 'c_sum', fmt(num(s[7]) + c))
    end
    -- Per-agent sums, one MessagePack array per agent [n, util, consumed, allocated, trunc, hits, hit_q]:
    -- one HMGET and one HSET of a few fields, and cmsgpack instead of string parsing and formatting,
    -- cost a fraction of a HINCRBY per metric (measured: ~8 µs instead of ~30 µs of Redis CPU for 5 agents).
    if #agents > 0 then
      local names = {}
      for i, o in ipairs(agents) do names[i] = o['a'] end
      local cur = redis.call('HMGET', per_agent, unpack(names))
      local out = {}
      for i, o in ipairs(agents) do
        local v = cur[i] and cmsgpack.unpack(cur[i]) or { 0, 0, 0, 0, 0, 0, 0 }
        v[1] = v[1] + 1
        v[2] = v[2] + o['u']
        v[3] = v[3] + o['c']
        v[4] = v[4] + o['b']
        v[5] = v[5] + o['t']
        v[6] = v[6] + o['h']
        if o['h'] == 1 then v[7] = v[7] + q end
        out[#out + 1] = names[i]
        out[#out + 1] = cmsgpack.pack(v)
      end
      redis.call('HSET', per_agent, unpack(out))
    end
    -- Unit statistics (docs/rollout.md, "Outcomes per unit"): the unit counts once per phase, when none of its bitmap
    -- bits was set before (SETBIT answers the old bit), and its outcome joins its bucket's sums, the clusters of the
    -- cluster-robust variance. Same atomic step as the moments, behind the same applied-marker: exactly once.
    if bucket ~= nil and ARGV[8 + arms + k] == '1' then
      local bitmap = KEYS[5 * k + 1]
      local buckets = KEYS[5 * k + 2]
      local fresh = false
      for _, b in ipairs(bits) do
        if redis.call('SETBIT', bitmap, b, 1) == 0 then fresh = true end
      end
      -- The bitmap is needed only while outcomes of the phase can still be applied: it expires at the latest
      -- applied-marker deadline of the outcomes that touched it (the unit counts stay in the summary).
      local ttl = redis.call('TTL', bitmap)
      if ttl < 0 or now + ttl < deadline then redis.call('EXPIREAT', bitmap, deadline) end
      if fresh then
        redis.call('HINCRBY', summary, 'units', 1)
      else
        redis.call('HINCRBY', summary, 'units', 0)
      end
      local cur = redis.call('HGET', buckets, bucket)
      local v = cur and cmsgpack.unpack(cur) or { 0, 0, 0, 0 }
      v[1] = v[1] + 1
      v[2] = v[2] + q
      if cost ~= '' then
        v[3] = v[3] + 1
        v[4] = v[4] + tonumber(cost)
      end
      -- Ceiling hits per agent in the same bucket (the clusters of the ceiling-hit rate's variance): a flat list
      -- [name, n, hits, ...] of the agents the bucket's outcomes reported (not the `<agent>@<model>` entries).
      if #agents > 0 then
        local ag = v[5] or {}
        for _, o in ipairs(agents) do
          local name = o['a']
          if not string.find(name, '@', 1, true) then
            local i = 1
            while i <= #ag and ag[i] ~= name do i = i + 3 end
            if i > #ag then
              ag[i] = name
              ag[i + 1] = 0
              ag[i + 2] = 0
            end
            ag[i + 1] = ag[i + 1] + 1
            ag[i + 2] = ag[i + 2] + o['h']
          end
        end
        if #ag > 0 then v[5] = ag end
      end
      redis.call('HSET', buckets, bucket, cmsgpack.pack(v))
    end
  end
end
local cap = tonumber(ARGV[7])
for j = 1, #KEYS - 2 - 5 * arms do
  local key = KEYS[2 + 5 * arms + j]
  redis.call('LPUSH', key, ARGV[9 + 2 * arms + j])
  redis.call('LTRIM', key, 0, cap - 1)
end
return 1
