"""The Lua scripts that make name claims atomic in Redis (each runs as one step there).

A name belongs to a node while that node's lease key (``<prefix><node>``, renewed by its
heartbeat, expiring after a few seconds) exists: a node that dies releases its members'
names when its lease runs out, without anyone having to notice that it died.
"""

CLAIM = """
-- KEYS: names hash, stream, this node's lease key
-- ARGV: name key, node, member record (JSON), lease ms, lease key prefix, stream max length
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local owner = cjson.decode(current)['node']
  if owner ~= ARGV[2] and redis.call('EXISTS', ARGV[5] .. owner) == 1 then
    return 0
  end
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'join', 'data', ARGV[3])
return 1
"""
"""Claim a name unless a live node holds it; one winner per race. The ``join`` entry is
appended in the same step, so every node learns of the member in stream order."""

RELEASE = """
-- KEYS: names hash, stream
-- ARGV: name key, claim token, stream max length, member record (JSON)
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and cjson.decode(current)['token'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'leave', 'data', ARGV[4])
return 1
"""
"""Give a name back, only if this very claim still holds it."""

HEARTBEAT = """
-- KEYS: names hash, this node's lease key
-- ARGV: node, lease ms, lease key prefix, then the name keys this node holds
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
local mine = {}
for i = 4, #ARGV do mine[ARGV[i]] = true end
local alive = {}
local live = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local key, value = all[i], all[i + 1]
  local ok, record = pcall(cjson.decode, value)
  local keep = false
  if ok and type(record) == 'table' and record['node'] then
    local node = record['node']
    if node == ARGV[1] then
      keep = mine[key] ~= nil
    else
      if alive[node] == nil then
        alive[node] = redis.call('EXISTS', ARGV[3] .. node) == 1
      end
      keep = alive[node]
    end
  end
  if keep then
    table.insert(live, value)
  else
    redis.call('HDEL', KEYS[1], key)
  end
end
return live
"""
"""Renew this node's lease, sweep claims of dead nodes (and this node's stale ones), and
return every live claim: each node's roster for ``/who`` and the file relay."""

GONE = """
-- KEYS: names hash, this node's lease key, stream
-- ARGV: node, stream max length
redis.call('DEL', KEYS[2])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, record = pcall(cjson.decode, all[i + 1])
  if ok and type(record) == 'table' and record['node'] == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'kind', 'leave', 'data', all[i + 1])
  end
end
return 1
"""
"""A node stopping cleanly gives back its lease and names at once, and says so in the
stream (``leave`` entries), so the other nodes' rosters follow at once too."""

APPEND = """
-- KEYS: stream
-- ARGV: stream max length, then kind and data of each entry
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[i], 'data', ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""
"""Append several entries in one call, each its own entry, in order: one command per burst
instead of one per message (each command costs a node far more CPU than Redis)."""
