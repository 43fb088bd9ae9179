-- A worker coming to a row: its result if it has one, else the job's stop, else claim it as
-- a lease (KEYS[3], token ARGV[2] for ARGV[3] ms). All in one step, so a cancel, which marks
-- only unclaimed rows, and a worker can never both give the row a result.
-- KEYS: results, stop, claim, stats. ARGV: index, token, lease ms, '1' for a task's first row.
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[4], 'started', 1) end
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done then return {'done', done} end
local stop = redis.call('GET', KEYS[2])
if stop then return {'stop', stop} end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'claimed', ''} end
return {'busy', ''}
