-- gcra.learn, and gcra.probe_failed when ARGV[3] is '1'. ARGV: rpm, tpm from the headers
-- (0: not sent).
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'probe_at', 0)
  return view(0, 0)
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if rpm > 0 or tpm > 0 then
  if rpm > 0 then learned[1] = rpm end
  if tpm > 0 then learned[2] = tpm end
  seen = 1
elseif seen == 0 then
  seen = 2
end
redis.call('HSET', KEYS[1], 'l_r', learned[1], 'l_t', learned[2], 'seen', seen, 'probe_at', 0)
redis.call('EXPIRE', KEYS[1], 86400)
return view(0, 0)
