-- gcra.settle. ARGV: tpm (-1: the learned one), tokens to give back (< 0) or pay for, answer
-- tokens (-1: none).
local given, delta, output = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if output >= 0 then
  redis.call('HSET', KEYS[1], 'out_sum', out_sum + output, 'out_n', out_n + 1)
end
local tpm, is_learned = own(given, 2)
if tpm > 0 and delta ~= 0 and tat[2] ~= 0 then
  local burst, rate = shape(tpm, recovered(), is_learned)
  redis.call('HSET', KEYS[1], 'tat_t', tat[2] + delta / rate)
end
return 1
