-- Delete a claim (KEYS[1]) only while it is still ours (token ARGV[1]).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
