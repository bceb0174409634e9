-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- RENEW: pushes the lease of holder ARGV[1] to ARGV[2] ms from now, if it
-- still holds the lock and its lease has not run out.
-- KEYS: h, i, q, w (see acquire.lua); ARGV[3]: the wake-up channel,
-- ARGV[4]: sharded (see acquire.lua).
-- Returns 1 if renewed, 0 if the lock was no longer held.
local h, i, q, w = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, lease, wake = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local publish = ARGV[4] == '1' and 'SPUBLISH' or 'PUBLISH'
local now = server_now()
local deadline = redis.call('ZSCORE', h, token)
if deadline == false then
  return 0
end
if tonumber(deadline) <= now then
  redis.call('ZREM', h, token)
  local waiting = redis.call('ZCARD', q) > 0
  if waiting then set_here(holder_liveness(redis.call('HGET', i, token))) end
  redis.call('HDEL', i, token)
  if waiting then
    wake_next(h, i, q, w, wake, now, publish)
  end
  return 0
end
redis.call('ZADD', h, 'XX', now + lease, token)
return 1
