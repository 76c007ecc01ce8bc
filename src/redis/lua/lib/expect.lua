-- Shared control-plane helpers, prepended by src/redis/scripts.ts to every script that says `-- INCLUDE: expect`.

-- The version of document `id` (0 when it does not exist): its kind hash `kh`, the kind's versions hash `vh`.
local function doc_version(kh, vh, id)
  if redis.call('HEXISTS', kh, id) == 0 then return 0 end
  return tonumber(redis.call('HGET', vh, id) or '1')
end

-- Whether the state a write was computed from still holds: the global version at key `gk` is `g` ("" for no check),
-- and each of the `c` expected documents has its expected version (the c-th: kind hash KEYS[k0 + 2c], versions hash
-- KEYS[k0 + 1 + 2c], id ARGV[a0 + 2c], version ARGV[a0 + 1 + 2c]; 0 = must not exist).
local function expectation_holds(gk, g, c, k0, a0)
  if g ~= '' and tonumber(redis.call('GET', gk) or '0') ~= tonumber(g) then return false end
  for k = 1, c do
    if doc_version(KEYS[k0 + 2 * k], KEYS[k0 + 1 + 2 * k], ARGV[a0 + 2 * k]) ~= tonumber(ARGV[a0 + 1 + 2 * k]) then return false end
  end
  return true
end
