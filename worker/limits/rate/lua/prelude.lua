-- Read the budget's hash (KEYS[1]) on the server's clock; the same helpers as gcra.py.
-- Every script here starts with this prelude. RECOVER, BURST, MIN_FACTOR and SLOWDOWN are
-- gcra.py's constants, written in by redis.py.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'tat_r', 'tat_t', 'factor', 'hit_at', 'pause', 'out_sum',
                    'out_n')
local tat = {tonumber(h[1]) or 0, tonumber(h[2]) or 0}
local factor = tonumber(h[3]) or 1
local hit_at = tonumber(h[4]) or 0
local pause = tonumber(h[5]) or 0
local out_sum, out_n = tonumber(h[6]) or 0, tonumber(h[7]) or 0
local function recovered()
  return math.min(1, factor + RECOVER * math.max(0, now - hit_at))
end
local function shape(limit, f)
  local burst = math.max(1, math.floor(limit * BURST))
  return burst, math.max(limit - 2 * burst, limit / 2) / 60 * f
end
