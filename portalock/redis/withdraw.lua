-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- WITHDRAW: waiter ARGV[1] leaves the line (timed out or cancelled); the
-- waiters behind it are woken, since it may have been what blocked them.
-- KEYS: h, i, q, w (see acquire.lua); ARGV[2]: the wake-up channel,
-- ARGV[3]: sharded (see acquire.lua).
local h, i, q, w = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, wake = ARGV[1], ARGV[2]
local publish = ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH'
local waiting = redis.call('ZREM', q, token) == 1 and redis.call('ZCARD', q) > 0
if waiting then set_here(waiter_liveness(redis.call('HGET', w, token))) end
redis.call('HDEL', w, token)
if waiting then
  wake_next(h, i, q, w, wake, server_now(), publish)
end
return 1
