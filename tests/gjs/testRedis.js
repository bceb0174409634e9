// SPDX-License-Identifier: LGPL-2.1-or-later
//
// testRedis.js: PortaRedisLock from JavaScript through GJS and the Porta-1
// typelib, against a redis-server it starts on a Unix socket in a
// temporary folder and stops. Prints TAP; exits 1 if a test failed.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Porta from 'gi://Porta?version=1';
import System from 'system';

let failed = 0;
let count = 0;

function check(condition, name) {
    count++;
    print(`${condition ? 'ok' : 'not ok'} ${count} - ${name}`);
    if (!condition)
        failed++;
}

function iterateUntil(predicate, ms) {
    const context = GLib.MainContext.default();
    const deadline = GLib.get_monotonic_time() + ms * 1000;
    while (!predicate() && GLib.get_monotonic_time() < deadline) {
        if (!context.iteration(false))
            GLib.usleep(2000);
    }
    return predicate();
}

const dir = GLib.dir_make_tmp('porta-redis-js-XXXXXX');
const sock = GLib.build_filenamev([dir, 'redis.sock']);
const uri = `unix://${sock}`;
const server = Gio.Subprocess.new(
    ['redis-server', '--port', '0', '--unixsocket', sock, '--unixsocketperm', '700',
        '--dir', dir, '--save', '', '--appendonly', 'no'],
    Gio.SubprocessFlags.STDOUT_SILENCE);

function serverAnswers() {
    try {
        const client = new Gio.SocketClient();
        client.connect(Gio.UnixSocketAddress.new(sock), null).close(null);
        return true;
    } catch (e) {
        return false;
    }
}

try {
    check(iterateUntil(serverAnswers, 20000), 'redis-server started');

    const holder = Porta.RedisLock.new(uri, 'js', Porta.LockMode.EXCLUSIVE);
    const waiter = Porta.RedisLock.new(uri, 'js', Porta.LockMode.EXCLUSIVE);
    check(holder instanceof Porta.Lockable, 'a PortaRedisLock is a PortaLockable');
    check(holder.acquire(0, null) && holder.held, 'acquire with timeout 0');
    const fence = holder.fencing_token;

    let error = null;
    try {
        waiter.try_acquire();
    } catch (e) {
        error = e;
    }
    check(error !== null && error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.WOULD_BLOCK),
        'try_acquire of a taken lock fails with WOULD_BLOCK');

    let result = null;
    waiter.acquire_async(-1, GLib.PRIORITY_DEFAULT, null, (lock, res) => {
        result = lock.acquire_finish(res);
    });
    iterateUntil(() => false, 200);
    check(result === null, 'the waiter waits while the lock is held');
    holder.release();
    check(iterateUntil(() => result !== null, 10000) && result === true && waiter.held,
        'a release hands the lock to the async waiter');
    check(waiter.fencing_token > fence, 'the fencing token grows');

    let lost = null;
    waiter.connect('lost', (lock, e) => {
        lost = e;
    });
    GLib.spawn_command_line_sync(`redis-cli -s ${sock} CLIENT KILL TYPE pubsub`);
    check(iterateUntil(() => lost !== null, 10000) && !waiter.held,
        'CLIENT KILL of the subscriber connection emits lost');
} finally {
    server.send_signal(15);
    server.wait(null);
    for (const name of ['redis.sock', 'dump.rdb'])
        GLib.unlink(GLib.build_filenamev([dir, name]));
    GLib.rmdir(dir);
}

print(`1..${count}`);
System.exit(failed ? 1 : 0);
