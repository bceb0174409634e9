#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_portalocker.py: PortaRedisLock with PORTA_REDIS_PROTOCOL_PORTALOCKER
# against Debian's python3-portalocker RedisLock (with python3-redis), on a
# redis-server this test starts on a Unix socket in a temporary folder and
# stops. Each side must exclude the other. portalocker runs in processes of
# its own, this script run as
#   test_portalocker.py --portalocker SOCKET NAME TIMEOUT
# which says "held" (then releases when a line comes on stdin and says
# "released") or "locked" if it could not take the lock in TIMEOUT seconds,
# and as
#   test_portalocker.py --count SOCKET|URI NAME FILE N portalocker|portalock
# which adds 1 to the number in FILE N times under the lock.

import os
import subprocess
import sys
import threading
import time
import unittest

import gi

gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_redis import RedisServer, iterate_until  # noqa: E402

EXCLUSIVE = Porta.LockMode.EXCLUSIVE
PORTALOCKER = Porta.RedisProtocol.PORTALOCKER


def portalocker_lock(sock, name, timeout):
    import portalocker.redis
    import redis
    connection = redis.Redis(unix_socket_path=sock)
    return portalocker.redis.RedisLock(name, connection=connection, timeout=timeout,
                                       fail_when_locked=False)


def portalocker_hold(sock, name, timeout):
    import portalocker.exceptions
    lock = portalocker_lock(sock, name, float(timeout))
    try:
        lock.acquire()
    except portalocker.exceptions.AlreadyLocked:
        print('locked', flush=True)
        return
    print('held', flush=True)
    sys.stdin.readline()
    lock.release()
    print('released', flush=True)


def new_lock(uri, name):
    lock = Porta.RedisLock.new(uri, name, EXCLUSIVE)
    lock.props.protocol = PORTALOCKER
    return lock


def count(where, name, path, n, kind):
    n = int(n)
    if kind == 'portalocker':
        lock = portalocker_lock(where, name, 60.0)
        take, give = lock.acquire, lock.release
    else:
        lock = new_lock(where, name)
        take, give = (lambda: lock.acquire(60000, None)), lock.release
    for _ in range(n):
        take()
        with open(path) as f:
            value = int(f.read())
        time.sleep(0.01)       # a window for a second holder to spoil it
        with open(path + '.tmp', 'w') as f:
            f.write(str(value + 1))
        os.rename(path + '.tmp', path)
        give()


class Portalocker:
    """portalocker's RedisLock in a process of its own."""

    def __init__(self, server, name, timeout):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, '--portalocker', server.sock, name, str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def said(self):
        line = self.proc.stdout.readline().strip()
        return line

    def said_while_iterating(self):
        """What it says next, while this process's main context runs (a
        holder here answers portalocker's pings on its worker thread, but
        would emit ::lost in this context)."""
        said = []
        thread = threading.Thread(target=lambda: said.append(self.said()))
        thread.start()
        while thread.is_alive():
            iterate_until(lambda: False, 0.05)
        return said[0]

    def release(self):
        self.proc.stdin.write('\n')
        self.proc.stdin.flush()
        return self.said()

    def wait(self):
        self.proc.stdin.close()
        status = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        return status


class PortalockerInterop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_default_protocol(self):
        lock = Porta.RedisLock.new(self.server.uri, 'p-default', EXCLUSIVE)
        self.assertEqual(lock.props.protocol, Porta.RedisProtocol.PORTALOCK)

    def test_waits_for_portalocker(self):
        other = Portalocker(self.server, 'p-first', 5)
        self.assertEqual(other.said(), 'held')
        lock = new_lock(self.server.uri, 'p-first')
        with self.assertRaises(GLib.Error) as caught:
            lock.acquire(0, None)
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(),
                                                 Gio.IOErrorEnum.WOULD_BLOCK))
        self.assertIn('p-first', caught.exception.message)
        started = time.monotonic()
        with self.assertRaises(GLib.Error) as caught:
            lock.acquire(300, None)
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(),
                                                 Gio.IOErrorEnum.TIMED_OUT))
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertFalse(lock.props.held)
        # The grant of portalock's own lock was given back meanwhile.
        plain = Porta.RedisLock.new(self.server.uri, 'p-first', EXCLUSIVE)
        plain.acquire(0, None)
        plain.release()

        results = []
        lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, None,
                           lambda lock, result: results.append(lock.acquire_finish(result)))
        self.assertFalse(iterate_until(lambda: results, 0.3))
        released = time.monotonic()
        self.assertEqual(other.release(), 'released')
        self.assertTrue(iterate_until(lambda: results, 10))
        self.assertEqual(results, [True])
        print(f'# taken {1000 * (time.monotonic() - released):.0f} ms after portalocker '
              'released it', flush=True)
        self.assertTrue(lock.props.held)
        self.assertEqual(other.wait(), 0)
        lock.release()
        self.assertFalse(lock.props.held)

    def test_portalocker_waits_for_us(self):
        # A name that JSON escapes: the holder must still read the pings.
        name = 'p-"second"\\-lock'
        lock = new_lock(self.server.uri, name)
        lost = []
        lock.connect('lost', lambda lock, error: lost.append(error.message))
        self.assertTrue(lock.acquire(0, None))
        # portalocker pings the holder, gets the answer, and gives up after
        # its timeout instead of killing the holder's connection.
        other = Portalocker(self.server, name, 2.5)
        self.assertEqual(other.said_while_iterating(), 'locked')
        self.assertEqual(other.wait(), 0)
        iterate_until(lambda: lost, 0.2)
        self.assertEqual(lost, [])
        self.assertTrue(lock.props.held)
        self.assertIn(name + '-lock', self.server.cli('CLIENT', 'LIST', 'TYPE', 'pubsub'))
        # portalocker 2.2.1 takes its own subscription's confirmation for
        # the holder's answer, so ping the holder here as portalocker does,
        # with a response channel that JSON escapes, and wait for the answer.
        import json
        import redis
        connection = redis.Redis(unix_socket_path=self.server.sock)
        pubsub = connection.pubsub()
        response_channel = name + '-0.25 ✓'
        pubsub.subscribe(response_channel)
        connection.publish(name, json.dumps(dict(response_channel=response_channel,
                                                 message='ping')))
        answers = []
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.05)
            if message is not None and message['type'] == 'message':
                answers.append(float(message['data']))
        pubsub.close()
        connection.close()
        self.assertEqual(len(answers), 1)
        self.assertLess(abs(answers[0] - time.time()), 60)
        lock.release()
        self.assertEqual(self.server.cli('PUBSUB', 'NUMSUB', name).split('\n')[-1], '0')
        other = Portalocker(self.server, name, 5)
        self.assertEqual(other.said(), 'held')
        self.assertEqual(other.release(), 'released')
        self.assertEqual(other.wait(), 0)

    def test_killed_connection_is_lost(self):
        lock = new_lock(self.server.uri, 'p-killed')
        lost = []
        lock.connect('lost', lambda lock, error: lost.append(error))
        lock.acquire(-1, None)
        token = lock.props.fencing_token
        self.assertGreater(token, 0)
        # What a portalocker waiter does to a holder that does not answer:
        # kill the connection named after the channel, and only that one.
        import redis
        connection = redis.Redis(unix_socket_path=self.server.sock)
        named = [client for client in connection.client_list('pubsub')
                 if client.get('name') == 'p-killed-lock']
        self.assertEqual(len(named), 1)
        connection.client_kill_filter(named[0]['id'])
        connection.close()
        self.assertTrue(iterate_until(lambda: lost, 10))
        self.assertFalse(lock.props.held)
        self.assertTrue(lost[0].matches(Gio.io_error_quark(), lost[0].code))
        self.assertIn('p-killed', lost[0].message)
        other = Portalocker(self.server, 'p-killed', 5)
        self.assertEqual(other.said(), 'held')
        self.assertEqual(other.release(), 'released')
        self.assertEqual(other.wait(), 0)
        lock.acquire(10000, None)
        self.assertGreater(lock.props.fencing_token, token)
        lock.release()

    def test_name_redis_cannot_give_a_client(self):
        # Redis refuses such a client name; the holder goes unnamed and
        # still answers the pings of portalocker's waiters (portalocker
        # itself cannot take such a lock: its CLIENT SETNAME fails).
        name = 'p-sëcond ✓'
        lock = new_lock(self.server.uri, name)
        self.assertTrue(lock.acquire(0, None))
        other = Portalocker(self.server, name, 1.5)
        self.assertEqual(other.said_while_iterating(), 'locked')
        self.assertEqual(other.wait(), 0)
        self.assertTrue(lock.props.held)
        lock.release()

    def test_cluster_refused(self):
        # Refused before anything is connected: no cluster is needed.
        lock = Porta.RedisLock.new('redis+cluster://127.0.0.1:1/', 'p-cluster', EXCLUSIVE)
        lock.props.protocol = PORTALOCKER
        with self.assertRaises(GLib.Error) as caught:
            lock.acquire(0, None)
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(),
                                                 Gio.IOErrorEnum.INVALID_ARGUMENT))
        self.assertIn('Cluster', caught.exception.message)

    def test_shared_refused(self):
        for lock in (Porta.RedisLock.new(self.server.uri, 'p-shared', Porta.LockMode.SHARED),
                     Porta.RedisLock.new_counting(self.server.uri, 'p-shared', 3)):
            lock.props.protocol = PORTALOCKER
            with self.assertRaises(GLib.Error) as caught:
                lock.acquire(0, None)
            self.assertTrue(caught.exception.matches(Gio.io_error_quark(),
                                                     Gio.IOErrorEnum.INVALID_ARGUMENT))
            self.assertIn('portalocker', caught.exception.message)
            self.assertFalse(lock.props.held)

    def test_counter_exact(self):
        path = os.path.join(self.server.dir, 'counter')
        with open(path, 'w') as f:
            f.write('0')
        procs = []
        for kind in ('portalocker', 'portalock', 'portalocker', 'portalock'):
            where = self.server.sock if kind == 'portalocker' else self.server.uri
            procs.append(subprocess.Popen(
                [sys.executable, __file__, '--count', where, 'p-counter', path, '25', kind]))
        for proc in procs:
            self.assertEqual(proc.wait(timeout=120), 0)
        with open(path) as f:
            self.assertEqual(f.read(), '100')


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--portalocker':
        portalocker_hold(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == '--count':
        count(*sys.argv[2:7])
    else:
        unittest.main(verbosity=2)
