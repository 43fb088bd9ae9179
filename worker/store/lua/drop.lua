-- Forget the results of rows whose status is one of ARGV[1] (",failed,expired,"), taking back
-- what save.lua counted for them (keep the two in step). ARGV[2..]: row indices.
-- KEYS: results, stats.
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    local r = cjson.decode(raw)
    if string.find(ARGV[1], ',' .. r.status .. ',', 1, true) then
      local u = r.usage or {}
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HINCRBY', KEYS[2], 'done', -1)
      redis.call('HINCRBY', KEYS[2], 'status:' .. r.status, -1)
      redis.call('HINCRBY', KEYS[2], 'prompt_tokens', -(u.prompt_tokens or 0))
      redis.call('HINCRBY', KEYS[2], 'completion_tokens', -(u.completion_tokens or 0))
      redis.call('HINCRBY', KEYS[2], 'total_tokens', -(u.total_tokens or 0))
      n = n + 1
    end
  end
end
return n
