-- Save a result only if the row has none, and count it once: atomic on the Redis server.
-- Then drop the row's claim KEYS[3] if it is still ours (token ARGV[7]; '' when none is held).
-- The row's cost (nano-dollars), unpriced flag and retries are counted too, and kept per row
-- in KEYS[4] ("cost,unpriced,retries") so that drop.lua takes back exactly what was added.
-- KEYS: results, stats, claim, tallies. ARGV: index, result JSON, status, prompt, completion
-- and total tokens, token, TTL in seconds, cost, unpriced (0/1), retries.
local saved = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if saved == 1 then
  redis.call('HINCRBY', KEYS[2], 'done', 1)
  redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[3], 1)
  redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[8], 'NX')
  if ARGV[9] ~= '0' or ARGV[10] ~= '0' or ARGV[11] ~= '0' then
    redis.call('HINCRBY', KEYS[2], 'cost_nusd', ARGV[9])
    redis.call('HINCRBY', KEYS[2], 'unpriced', ARGV[10])
    redis.call('HINCRBY', KEYS[2], 'retries', ARGV[11])
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[9] .. ',' .. ARGV[10] .. ',' .. ARGV[11])
    redis.call('EXPIRE', KEYS[4], ARGV[8], 'NX')
  end
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[3]) == ARGV[7] then redis.call('DEL', KEYS[3]) end
return saved
