-- Read the budget's hash (KEYS[1]) on the server's clock; the same helpers as gcra.py.
-- Every script here starts with this prelude. The upper-case names are gcra.py's constants,
-- written in by redis.py.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'tat_r', 'tat_t', 'factor', 'hit_at', 'pause', 'out_sum',
                    'out_n', 'l_r', 'l_t', 'seen', 'probe_at', 'sent')
local tat = {tonumber(h[1]) or 0, tonumber(h[2]) or 0}
local factor = tonumber(h[3]) or 1
local hit_at = tonumber(h[4]) or 0
local pause = tonumber(h[5]) or 0
local out_sum, out_n = tonumber(h[6]) or 0, tonumber(h[7]) or 0
local learned = {tonumber(h[8]) or 0, tonumber(h[9]) or 0}
local seen, probe_at, sent = tonumber(h[10]) or 0, tonumber(h[11]) or 0, tonumber(h[12]) or 0
local function recovered()
  return math.min(1, factor + RECOVER * math.max(0, now - hit_at))
end
local function shape(limit, f, is_learned)
  if is_learned then
    return math.max(1, math.floor(limit * LEARNED_BURST_S / 60)), limit * LEARNED_SHARE / 60 * f
  end
  local burst = math.max(1, math.floor(limit * BURST))
  return burst, math.max(limit - 2 * burst, limit / 2) / 60 * f
end
-- (limit, learned?) for a limit as given: a number, 0 for none, or AUTO (-1): the learned one.
local function own(given, i)
  if given == -1 then return learned[i], learned[i] > 0 end
  return math.max(0, given), false
end
-- What the caller sees of the state (gcra.View): learned limits, seen, factor, sent.
local function view(wait, booked)
  return {tostring(wait), tostring(booked), tostring(learned[1]), tostring(learned[2]),
          tostring(seen), tostring(recovered()), tostring(sent)}
end
