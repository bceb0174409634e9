#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_redis.py: PortaRedisLock from Python through the Porta-1 typelib,
# against a redis-server this test starts on a Unix socket in a temporary
# folder and stops. The other holder is this script run as
#   test_redis.py --hold URI NAME LEASE_MS
# which says "held FENCE", "lost" if it loses the lock, and releases when a
# line comes on stdin.

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import gi

gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

EXCLUSIVE = Porta.LockMode.EXCLUSIVE
SHARED = Porta.LockMode.SHARED


def hold(uri, name, lease_ms):
    lock = Porta.RedisLock.new(uri, name, EXCLUSIVE)
    lock.props.lease_ms = int(lease_ms)
    lock.connect('lost', lambda lock, error: print('lost', error.message, flush=True))
    lock.acquire(-1, None)
    print('held', lock.props.fencing_token, flush=True)
    loop = GLib.MainLoop()
    GLib.io_add_watch(GLib.IOChannel.unix_new(0), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP,
                      lambda *args: loop.quit())
    loop.run()
    if lock.props.held:
        lock.release()
        print('released', flush=True)


class RedisServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='porta-redis-py-')
        self.sock = os.path.join(self.dir, 'redis.sock')
        self.uri = 'unix://' + self.sock
        self.proc = subprocess.Popen(
            ['redis-server', '--port', '0', '--unixsocket', self.sock,
             '--unixsocketperm', '700', '--dir', self.dir, '--save', '',
             '--appendonly', 'no'],
            stdout=subprocess.DEVNULL)
        for _ in range(1000):    # 20 s at most
            if self.cli('PING') == 'PONG':
                return
            time.sleep(0.02)
        raise RuntimeError('redis-server did not start')

    def cli(self, *args):
        result = subprocess.run(['redis-cli', '-s', self.sock] + list(args),
                                capture_output=True, text=True, timeout=30)
        return result.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def iterate_until(predicate, seconds):
    context = GLib.MainContext.default()
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        if not context.iteration(False):
            time.sleep(0.002)
    return predicate()


class TestRedisLock(unittest.TestCase):
    def setUp(self):
        self.server = RedisServer()
        self.uri = self.server.uri

    def tearDown(self):
        self.server.stop()

    def spawn_holder(self, name, lease_ms=30000):
        child = subprocess.Popen([sys.executable, __file__, '--hold', self.uri, name,
                                  str(lease_ms)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = child.stdout.readline()
        self.assertTrue(line.startswith('held '), line)
        return child, int(line.split()[1])

    def test_lockable_and_properties(self):
        lock = Porta.RedisLock.new('redis://bob:pw-xyz@127.0.0.1:1/2', 'n', SHARED)
        self.assertIsInstance(lock, Porta.Lockable)
        self.assertEqual(lock.props.uri, 'redis://bob@127.0.0.1:1/2')
        self.assertEqual(lock.props.name, 'n')
        self.assertEqual(lock.props.mode, SHARED)
        self.assertFalse(lock.props.held)
        self.assertEqual(lock.props.fencing_token, 0)
        counting = Porta.RedisLock.new_counting(self.uri, 'n', 3)
        self.assertEqual(counting.props.max_holders, 3)

    def test_exclusion_across_processes(self):
        child, fence = self.spawn_holder('job')
        lock = Porta.RedisLock.new(self.uri, 'job', EXCLUSIVE)
        with self.assertRaises(GLib.Error) as caught:
            lock.try_acquire()
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.WOULD_BLOCK))
        with self.assertRaises(GLib.Error) as caught:
            lock.acquire(200, None)
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT))
        child.stdin.write('\n')
        child.stdin.flush()
        self.assertEqual(child.stdout.readline().strip(), 'released')
        self.assertEqual(child.wait(timeout=30), 0)
        child.stdin.close()
        child.stdout.close()
        self.assertTrue(lock.acquire(10000, None))
        self.assertGreater(lock.props.fencing_token, fence)
        lock.release()

    def test_async_hand_off(self):
        holder = Porta.RedisLock.new(self.uri, 'h', EXCLUSIVE)
        waiter = Porta.RedisLock.new(self.uri, 'h', EXCLUSIVE)
        holder.acquire(0, None)
        results = []
        waiter.acquire_async(-1, GLib.PRIORITY_DEFAULT, None,
                             lambda lock, result: results.append(lock.acquire_finish(result)))
        iterate_until(lambda: False, 0.2)
        self.assertEqual(results, [])
        holder.release()
        self.assertTrue(iterate_until(lambda: results, 10))
        self.assertEqual(results, [True])
        self.assertTrue(waiter.props.held)
        waiter.release()

    def test_cancel_from_thread(self):
        holder = Porta.RedisLock.new(self.uri, 'c', EXCLUSIVE)
        waiter = Porta.RedisLock.new(self.uri, 'c', EXCLUSIVE)
        holder.acquire(0, None)
        cancellable = Gio.Cancellable()
        threading.Timer(0.2, cancellable.cancel).start()
        with self.assertRaises(GLib.Error) as caught:
            waiter.acquire(-1, cancellable)
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))
        self.assertFalse(waiter.props.held)
        holder.release()

    def test_shared_and_counting(self):
        readers = [Porta.RedisLock.new(self.uri, 's', SHARED) for _ in range(3)]
        for reader in readers:
            reader.try_acquire()
        writer = Porta.RedisLock.new(self.uri, 's', EXCLUSIVE)
        self.assertRaises(GLib.Error, writer.try_acquire)
        for reader in readers:
            reader.release()
        writer.try_acquire()
        writer.release()

        slots = [Porta.RedisLock.new_counting(self.uri, 'k', 2) for _ in range(3)]
        slots[0].try_acquire()
        slots[1].try_acquire()
        self.assertRaises(GLib.Error, slots[2].try_acquire)
        slots[0].release()
        slots[2].try_acquire()
        slots[1].release()
        slots[2].release()

    def test_lost_on_client_kill(self):
        lock = Porta.RedisLock.new(self.uri, 'l', EXCLUSIVE)
        lost = []
        lock.connect('lost', lambda lock, error: lost.append(error))
        lock.acquire(0, None)
        self.server.cli('CLIENT', 'KILL', 'TYPE', 'pubsub')
        self.assertTrue(iterate_until(lambda: lost, 10))
        self.assertFalse(lock.props.held)
        self.assertIn('lost', lost[0].message)

    def test_sigstopped_holder(self):
        child, fence = self.spawn_holder('stop', lease_ms=600)
        child.send_signal(19)    # SIGSTOP
        try:
            lock = Porta.RedisLock.new(self.uri, 'stop', EXCLUSIVE)
            self.assertTrue(lock.acquire(30000, None))
            self.assertGreater(lock.props.fencing_token, fence)
        finally:
            child.send_signal(18)    # SIGCONT
        self.assertTrue(child.stdout.readline().startswith('lost '))
        child.stdin.write('\n')
        child.stdin.flush()
        self.assertEqual(child.wait(timeout=30), 0)
        child.stdin.close()
        child.stdout.close()
        lock.release()


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--hold':
        hold(*sys.argv[2:])
        sys.exit(0)
    unittest.main(verbosity=2)
