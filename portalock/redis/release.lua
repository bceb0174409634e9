-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- RELEASE: ARGV[1] gives up the lock, and the waiters are woken.
-- KEYS: h, i, q, w (see acquire.lua); ARGV[2]: the wake-up channel,
-- ARGV[3]: sharded (see acquire.lua).
-- Returns 1 if ARGV[1] held the lock, 0 if it no longer did.
-- Publishes, on the wake-up channel, the tokens of the waiters that can go
-- now, from the head of the line: only they try again. Waiters whose
-- process is gone or whose place in line ran out are dropped on the way.
local function wake_next(h, i, q, w, wake, now, publish)
  local count, excl = 0, false
  for _, tok in ipairs(redis.call('ZRANGE', h, 0, -1)) do
    count = count + 1
    if string.sub(redis.call('HGET', i, tok) or 'x', 1, 1) == 'x' then excl = true end
  end
  local go, alive = {}, {}
  for _, tok in ipairs(redis.call('ZRANGE', q, 0, -1)) do
    local info = redis.call('HGET', w, tok) or 'x|0||0'
    local m, c, l, deadline = string.match(info, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
    if alive[l] == nil then
      alive[l] = tonumber(redis.call('PUBSUB', 'NUMSUB', l)[2]) > 0
    end
    if tonumber(deadline) <= now or not alive[l] then
      redis.call('ZREM', q, tok)
      redis.call('HDEL', w, tok)
    else
      c = tonumber(c)
      if m == 'x' then
        if count > 0 then break end
      elseif excl or (c ~= 0 and count >= c) then
        break
      end
      count = count + 1
      if m == 'x' then excl = true end
      go[#go + 1] = tok
    end
  end
  if #go > 0 then
    redis.call(publish, wake, table.concat(go, ' '))
  end
end

local h, i, q, w = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, wake = ARGV[1], ARGV[2]
local publish = ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH'
if redis.call('ZREM', h, token) == 0 then
  return 0
end
redis.call('HDEL', i, token)
if redis.call('ZCARD', q) > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  wake_next(h, i, q, w, wake, now, publish)
end
return 1
