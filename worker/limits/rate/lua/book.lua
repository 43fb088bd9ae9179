-- gcra.book. ARGV: rpm, requests, tpm, prompt tokens, horizon, answer tokens expected.
local limits = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local costs = {tonumber(ARGV[2]), 0}
if limits[2] > 0 then
  local expected = tonumber(ARGV[6])
  if out_n > 0 then expected = out_sum / out_n end
  costs[2] = tonumber(ARGV[4]) + expected
end
local horizon = tonumber(ARGV[5])
local f = recovered()
local start = math.max(now, pause)
local rates = {}
for i = 1, 2 do
  if limits[i] > 0 then
    local burst, rate = shape(limits[i], f)
    tat[i] = math.max(tat[i], now)
    start = math.max(start, tat[i] + (costs[i] - math.max(burst, costs[i])) / rate)
    rates[i] = rate
  end
end
local wait = start - now
if wait > horizon then return {tostring(-(wait - horizon)), '0'} end
local fields = {'tat_r', 'tat_t'}
for i = 1, 2 do
  if rates[i] then
    redis.call('HSET', KEYS[1], fields[i], math.max(tat[i], start) + costs[i] / rates[i])
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
return {tostring(wait), tostring(costs[2])}
