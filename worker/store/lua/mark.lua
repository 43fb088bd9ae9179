-- Give a row a result only if it has none and nobody holds its claim (a cancel must not
-- overwrite a row being answered): KEYS[1] results, KEYS[2] stats, KEYS[3..] claim keys;
-- ARGV pairs of (index, result JSON), then the status.
local n = 0
for i = 3, #KEYS do
  local idx, raw = ARGV[2 * (i - 2) - 1], ARGV[2 * (i - 2)]
  if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('HSETNX', KEYS[1], idx, raw) == 1 then
    redis.call('HINCRBY', KEYS[2], 'done', 1)
    redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[#ARGV], 1)
    n = n + 1
  end
end
return n
