-- Swap row ARGV[1]'s hold for what it cost (ARGV[2]). KEYS: stats, holds.
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held_nusd', -held)
redis.call('HINCRBY', KEYS[1], 'spent_nusd', ARGV[2])
return held
