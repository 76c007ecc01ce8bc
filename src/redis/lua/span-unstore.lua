-- Takes back spans a request stored in one trace but whose trace could not be rolled up (its counted tokens or cost
-- out of the rollups' range: see costs/ingest.ts), so the trace holds what its applied contribution counts. A span
-- is removed only if its stored line is still the one given (first write wins: a line another request stored stays).
-- NUMKEYS: 2
-- KEYS[1]   trace spans hash: spanId → compact span line
-- KEYS[2]   trace version (bumped when a span is removed, so a contribution read before is older)
-- ARGV[1]   the span lines joined by "\n"; each line starts with its spanId and "\x1f"
-- Returns: the number of spans removed.
local removed = 0
for line in string.gmatch(ARGV[1], '[^\n]+') do
  local id = string.match(line, '^([^\31]*)')
  if redis.call('HGET', KEYS[1], id) == line then
    redis.call('HDEL', KEYS[1], id)
    removed = removed + 1
  end
end
if removed > 0 then redis.call('INCR', KEYS[2]) end
return removed
