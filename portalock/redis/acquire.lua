-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- ACQUIRE: grants the lock KEYS to ARGV[1] if it can go now, else queues it.
--
-- KEYS: h (holders: token -> lease deadline, ms of the server's clock),
--       i (holder info: token -> "mode|liveness|fence"),
--       q (waiters: token -> arrival), w (waiter info: token ->
--       "mode|capacity|liveness|deadline"), f (fencing counter).
-- ARGV: token, mode ("x" exclusive, "s" shared), capacity (0: unlimited),
--       lease ms, liveness channel, enqueue ("1": wait in line), waiter
--       lease ms, wake-up channel, sharded ("1": wake-ups go out with
--       SPUBLISH, as on a cluster node; else PUBLISH), and on a cluster
--       the masters of the caller's map ("host:port host:port...", see
--       common.lua).
-- Returns {1, fence} when granted, else {0, retry_ms, first, liveness...}:
-- retry_ms is how long until the earliest lease that blocks the caller
-- runs out, first is 1 when the caller is first in line, and the liveness
-- channels are the holders': while they all have a subscriber and no lease
-- has run out, the lock stays taken.
local h, i, q, w, f = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, mode = ARGV[1], ARGV[2]
local cap, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local live, enqueue, wlease, wake = ARGV[5], ARGV[6] == '1', tonumber(ARGV[7]), ARGV[8]
local publish = ARGV[9] == '1' and 'SPUBLISH' or 'PUBLISH'

local now = server_now()
set_here(live)
if ARGV[10] ~= nil and ARGV[10] ~= '' then
  masters = {}
  for node in string.gmatch(ARGV[10], '%S+') do masters[node] = true end
end

local function can_go(m, c, count, excl)
  if m == 'x' then
    return count == 0
  end
  return (not excl) and (c == 0 or count < c)
end

local freed = false
local count, excl, earliest = 0, false, nil
local watch, watched = {}, {}
local holders = redis.call('ZRANGE', h, 0, -1, 'WITHSCORES')
for k = 1, #holders, 2 do
  local tok, deadline = holders[k], tonumber(holders[k + 1])
  local info = redis.call('HGET', i, tok) or 'x||0'
  local m, l = string.match(info, '^([^|]*)|([^|]*)|')
  if deadline <= now or not is_alive(l) then
    redis.call('ZREM', h, tok)
    redis.call('HDEL', i, tok)
    freed = true
  else
    count = count + 1
    if m == 'x' then excl = true end
    if earliest == nil or deadline < earliest then earliest = deadline end
    -- Only this node's channels can be looked at by the first waiter.
    if not watched[l] and node_of(l) == here then
      watched[l] = true
      watch[#watch + 1] = l
    end
  end
end

-- Waiters ahead of the caller that could go before it count as holders:
-- nobody overtakes a waiter that is first in line and can go.
local blocked, first = false, true
local waiters = redis.call('ZRANGE', q, 0, -1)
for _, tok in ipairs(waiters) do
  -- Behind a waiter that blocks the caller nothing changes the answer;
  -- dead waiters there are dropped when wake_next() reaches them.
  if blocked then break end
  local info = redis.call('HGET', w, tok) or 'x|0||0'
  local m, c, l, deadline = string.match(info, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if tok ~= token then
    if tonumber(deadline) <= now or not is_alive(l) then
      redis.call('ZREM', q, tok)
      redis.call('HDEL', w, tok)
      freed = true
    else
      first = false
      if can_go(m, tonumber(c), count, excl) then
        count = count + 1
        if m == 'x' then excl = true end
      else
        blocked = true
      end
    end
  else
    break
  end
end

if not blocked and can_go(mode, cap, count, excl) then
  local fence = redis.call('INCR', f)
  redis.call('ZADD', h, now + lease, token)
  redis.call('HSET', i, token, mode .. '|' .. live .. '|' .. fence)
  redis.call('ZREM', q, token)
  redis.call('HDEL', w, token)
  -- Shared holders behind this one may go too.
  if (freed or mode ~= 'x') and redis.call('ZCARD', q) > 0 then
    wake_next(h, i, q, w, wake, now, publish)
  end
  return {1, fence}
end

if enqueue then
  if redis.call('ZSCORE', q, token) == false then
    redis.call('ZADD', q, now, token)
  end
  redis.call('HSET', w, token, mode .. '|' .. cap .. '|' .. live .. '|' .. (now + wlease))
end
if freed then
  wake_next(h, i, q, w, wake, now, publish)
end
local retry = -1
if earliest ~= nil then retry = earliest - now end
local result = {0, retry, first and 1 or 0}
for _, l in ipairs(watch) do
  result[#result + 1] = l
end
return result
