-- Shared ledger helpers, prepended by src/redis/scripts.ts to every script that says `-- INCLUDE: ledger`.

local function i(x) return string.format('%d', x) end

-- Returns a reservation's hold of `amt` to the budget hash `k` (skipped when the budget is gone):
-- reserved -= amt; remaining += amt, except what repays debt first (debt > 0 implies remaining = 0).
local function return_hold(k, amt)
  local b = redis.call('HMGET', k, 'r', 'd')
  if b[1] then
    local r = tonumber(b[1]) + amt
    local d = tonumber(b[2] or '0')
    local pay = math.min(r, d)
    redis.call('HINCRBY', k, 'v', -amt)
    redis.call('HSET', k, 'r', i(r - pay), 'd', i(d - pay))
    if pay > 0 then redis.call('HINCRBY', k, 's', pay) end
  end
end

-- Gives back the hold of reservation hash `rk` (amount `amt`, budget keys `ks`, parent key `par`):
-- a top-level reservation returns `amt` to every budget in `ks`; a draw (par set) returns it to its parent
-- reservation's free hold, or nowhere when the parent already finished (its hold went back with it).
local function drop_hold(amt, ks, par)
  if par and par ~= '' then
    if redis.call('HGET', par, 'st') == 'A' then redis.call('HINCRBY', par, 'ch', -amt) end
  else
    for k in string.gmatch(ks, '%S+') do return_hold(k, amt) end
  end
end

-- Looks up idempotency record `k` ("<fingerprint>\n<answer>"): 'R' .. answer when it holds this fingerprint (a
-- replay), 'M' when the key was used for another payload, nil when the key is new.
local function idem_prior(k, fp)
  local prior = redis.call('GET', k)
  if not prior then return nil end
  local nl = string.find(prior, '\n', 1, true)
  if string.sub(prior, 1, nl - 1) == fp then return 'R' .. string.sub(prior, nl + 1) end
  return 'M'
end
