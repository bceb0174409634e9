-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- common.lua: what the lock's scripts share. The library puts it in front
-- of each of them (acquire.lua, release.lua, renew.lua, withdraw.lua)
-- before loading it; a script sets `here` before it asks is_alive().

-- The server's clock, in ms.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A liveness channel is "porta:live:UUID" on one server, and
-- "porta:live:UUID@HOST:PORT" on a cluster, naming the node on which its
-- process subscribes to it. PUBSUB NUMSUB counts the subscribers of this
-- node only, so a channel of another node (its lock's slot moved here
-- with the holders and waiters in it) cannot be checked: it counts as
-- alive until its lease or its place in line runs out, unless its node
-- is no master any more (failed over: its subscribers were cut off, and
-- they were told). `here` is this node's part, taken from the caller's own
-- channel (nil: unknown, nothing can be checked); `masters` the set of the
-- masters' parts in the caller's map, or nil if not given.
local here = nil
local masters = nil
local function node_of(channel)
  return string.match(channel, '@([^@]*)$') or ''
end

-- A liveness channel without a subscriber: its process is gone.
local alive = {}
local function is_alive(channel)
  if alive[channel] == nil then
    local node = node_of(channel)
    if here == nil then
      alive[channel] = true
    elseif node ~= here then
      alive[channel] = masters == nil or masters[node] == true
    else
      alive[channel] = tonumber(redis.call('PUBSUB', 'NUMSUB', channel)[2]) > 0
    end
  end
  return alive[channel]
end

-- Publishes, on the wake-up channel, the tokens of the waiters that can go
-- now, from the head of the line: only they try again. Waiters whose
-- process is gone or whose place in line ran out are dropped on the way.
-- Keys h, i, q, w as in acquire.lua; publish is PUBLISH, or SPUBLISH on a
-- cluster node.
local function wake_next(h, i, q, w, wake, now, publish)
  local count, excl = 0, false
  for _, tok in ipairs(redis.call('ZRANGE', h, 0, -1)) do
    count = count + 1
    if string.sub(redis.call('HGET', i, tok) or 'x', 1, 1) == 'x' then excl = true end
  end
  local go = {}
  for _, tok in ipairs(redis.call('ZRANGE', q, 0, -1)) do
    local info = redis.call('HGET', w, tok) or 'x|0||0'
    local m, c, l, deadline = string.match(info, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
    if tonumber(deadline) <= now or not is_alive(l) then
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

-- The liveness channel in a holder's ("mode|liveness|fence") or waiter's
-- ("mode|capacity|liveness|deadline") record.
local function holder_liveness(info)
  return string.match(info or '', '^[^|]*|([^|]*)|')
end
local function waiter_liveness(info)
  return string.match(info or '', '^[^|]*|[^|]*|([^|]*)|')
end

-- Learns `here` from the caller's own liveness channel, if it has one.
-- Scripts ask only when they are about to wake waiters: a release or a
-- renewal with nobody in line costs no lookup.
local function set_here(channel)
  if channel ~= nil then here = node_of(channel) end
end

-- ---------------------------------------------------------------------
