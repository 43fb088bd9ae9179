-- Save a result only if the row has none, and count it once: atomic on the Redis server.
-- Then drop the row's claim KEYS[3] if it is still ours (token ARGV[7]; '' when none is held).
-- KEYS: results, stats, claim. ARGV: index, result JSON, status, prompt, completion and total
-- tokens, token, TTL in seconds.
local saved = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if saved == 1 then
  redis.call('HINCRBY', KEYS[2], 'done', 1)
  redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[3], 1)
  redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[8], 'NX')
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[3]) == ARGV[7] then redis.call('DEL', KEYS[3]) end
return saved
