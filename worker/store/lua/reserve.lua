-- Hold `amount` (ARGV[1]) only if spent + held + amount stays within the cap (ARGV[2]): one
-- atomic step, so two workers can never both take the last of the budget.
-- KEYS[2] holds each row's hold (ARGV[3] the row): a hold left by a worker that died with the
-- row is given back first, since the row is being asked again now. ARGV[4]: TTL in seconds.
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
if old > 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'held_nusd', -old)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent_nusd') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held_nusd') or '0')
if spent + held + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'held_nusd', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
