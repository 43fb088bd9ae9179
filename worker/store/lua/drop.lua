-- Forget the results of rows whose status is one of ARGV[1] (",failed,expired,"), taking back
-- what save.lua counted for them (keep the two in step). ARGV[2..]: row indices.
-- KEYS: results, stats, tallies.
-- As strings: a Lua number past 14 digits would turn into '1e+14' (and Redis refuses '-0').
local function take_back(stats, name, amount)
  if amount ~= '0' then redis.call('HINCRBY', stats, name, '-' .. amount) end
end
-- A token count: -(0) would be sent as '-0' too (a cancelled row has none), and a JSON null
-- is no number.
local function take_tokens(stats, name, amount)
  if type(amount) == 'number' and amount ~= 0 then redis.call('HINCRBY', stats, name, -amount) end
end
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    local r = cjson.decode(raw)
    -- Result.stored's array (status 1st; usage 4th: prompt, completion, total, ...), or the
    -- named form of rows stored by an earlier version.
    local status, prompt, completion, total
    if r.status then
      local u = r.usage or {}
      status, prompt, completion, total = r.status, u.prompt_tokens, u.completion_tokens,
        u.total_tokens
    else
      local u = r[4] or {}
      status, prompt, completion, total = r[1], u[1], u[2], u[3]
    end
    if string.find(ARGV[1], ',' .. status .. ',', 1, true) then
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HINCRBY', KEYS[2], 'done', -1)
      redis.call('HINCRBY', KEYS[2], 'status:' .. status, -1)
      take_tokens(KEYS[2], 'prompt_tokens', prompt)
      take_tokens(KEYS[2], 'completion_tokens', completion)
      take_tokens(KEYS[2], 'total_tokens', total)
      local tally = redis.call('HGET', KEYS[3], ARGV[i])
      if tally then
        local cost, unpriced, retries = string.match(tally, '^(%d+),(%d+),(%d+)$')
        take_back(KEYS[2], 'cost_nusd', cost)
        take_back(KEYS[2], 'unpriced', unpriced)
        take_back(KEYS[2], 'retries', retries)
        redis.call('HDEL', KEYS[3], ARGV[i])
      end
      n = n + 1
    end
  end
end
return n
