-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- RELEASE: ARGV[1] gives up the lock, and the waiters are woken.
-- KEYS: h, i, q, w (see acquire.lua); ARGV[2]: the wake-up channel,
-- ARGV[3]: sharded (see acquire.lua).
-- Returns 1 if ARGV[1] held the lock, 0 if it no longer did.
local h, i, q, w = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, wake = ARGV[1], ARGV[2]
local publish = ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH'
if redis.call('ZREM', h, token) == 0 then
  return 0
end
local waiting = redis.call('ZCARD', q) > 0
if waiting then set_here(holder_liveness(redis.call('HGET', i, token))) end
redis.call('HDEL', i, token)
if waiting then
  wake_next(h, i, q, w, wake, server_now(), publish)
end
return 1
