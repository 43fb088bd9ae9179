-- Renew a claim (KEYS[1]) for ARGV[2] ms only while it is still ours (token ARGV[1]): it may
-- have lapsed and been retaken.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
