-- gcra.slow. ARGV: pause in seconds, '1' after a 429.
local pause_s, limited = tonumber(ARGV[1]), ARGV[2] == '1'
redis.call('HSET', KEYS[1], 'pause', math.max(pause, now + pause_s))
if limited and now - hit_at > 1 then
  redis.call('HSET', KEYS[1], 'factor', math.max(MIN_FACTOR, recovered() * SLOWDOWN),
             'hit_at', now)
end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
