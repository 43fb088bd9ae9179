-- gcra.book. ARGV: rpm, requests, tpm, prompt tokens, horizon, answer tokens expected.
-- A limit of -1 is the one learned from the headers (gcra.AUTO).
local given = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local limits, is_learned = {}, {}
for i = 1, 2 do limits[i], is_learned[i] = own(given[i], i) end
if (given[1] == -1 or given[2] == -1) and seen == 0 and given[1] <= 0 and given[2] <= 0 then
  if now - probe_at < PROBE_TTL_S then return view(-PROBE_WAIT_S, 0) end
  sent = sent + 1
  redis.call('HSET', KEYS[1], 'probe_at', now, 'sent', sent)
  redis.call('EXPIRE', KEYS[1], 86400)
  return view(0, 0)
end
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
    local burst, rate = shape(limits[i], f, is_learned[i])
    tat[i] = math.max(tat[i], now)
    start = math.max(start, tat[i] + (costs[i] - math.max(burst, costs[i])) / rate)
    rates[i] = rate
  end
end
local wait = start - now
if wait > horizon then return view(-(wait - horizon), 0) end
local fields = {'tat_r', 'tat_t'}
for i = 1, 2 do
  if rates[i] then
    redis.call('HSET', KEYS[1], fields[i], math.max(tat[i], start) + costs[i] / rates[i])
  end
end
sent = sent + 1
redis.call('HSET', KEYS[1], 'sent', sent)
redis.call('EXPIRE', KEYS[1], 86400)
return view(wait, costs[2])
