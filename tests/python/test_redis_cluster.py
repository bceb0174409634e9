#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_redis_cluster.py: PortaRedisLock on a Redis Cluster that this test
# starts (3 masters, 3 replicas, on free loopback ports; see
# redis_cluster.py) and stops: routing to each master, exclusion across
# processes, hand-off latency beside one redis-server, a lock's slot moved
# while it is held and waited on, and a master killed while a lock on it
# is held and waited on (failover). The other processes are holders
# (test_redis.py --hold URI NAME LEASE_MS: "held FENCE", "lost MESSAGE",
# and "released" after a line on stdin if still held), and waiters:
#
#   test_redis_cluster.py --wait URI NAME TIMEOUT_MS
#       says "waiting", then "held FENCE" or "error MESSAGE"
#
# Each line is timed (time.monotonic()) as it arrives.

import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import redis_cluster  # noqa: E402

import gi  # noqa: E402

gi.require_version('Porta', '1')
from gi.repository import Gio, GLib, Porta  # noqa: E402

EXCLUSIVE = Porta.LockMode.EXCLUSIVE
PATIENCE = 30.0
TOOL = os.environ.get('PORTALOCK_TOOL', '')


# ----------------------------------------------------- the child processes

def child_wait(uri, name, timeout_ms):
    lock = Porta.RedisLock.new(uri, name, EXCLUSIVE)
    print('waiting', flush=True)
    try:
        lock.acquire(int(timeout_ms), None)
    except GLib.Error as error:
        print('error', error.message, flush=True)
        return
    print('held', lock.props.fencing_token, flush=True)
    lock.release()


class Child:
    """A holder (test_redis.py) or a waiter (this script) in another
    process; its lines are read and timed by a thread, so that every wait
    for one is bounded."""

    def __init__(self, *args):
        script = os.path.join(HERE, 'test_redis.py') if args[0] == '--hold' else __file__
        self.proc = subprocess.Popen([sys.executable, script] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.split()))
        self.lines.put(None)

    def expect(self, first, seconds=PATIENCE):
        """The next line, which must start with FIRST: (when it came, the
        words after FIRST)."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            raise AssertionError('no "%s" line in %.0f s' % (first, seconds))
        if line is None or line[1][0] != first:
            raise AssertionError('expected "%s", got %r' % (first, line))
        return line[0], line[1][1:]

    def say(self):
        self.proc.stdin.write('\n')
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=PATIENCE)
        self.proc.stdin.close()
        self.reader.join(PATIENCE)
        self.proc.stdout.close()


# --------------------------------------------------------------- the tests

def hand_offs(uri, name, rounds):
    """Release -> acquired, in ms, between two locks of this process in two
    threads: the waiter blocks in acquire() while the other holds."""
    holder = Porta.RedisLock.new(uri, name, EXCLUSIVE)
    times = []
    for _ in range(rounds):
        holder.acquire(-1, None)
        result = {}
        waiting = threading.Event()

        def wait():
            lock = Porta.RedisLock.new(uri, name, EXCLUSIVE)
            waiting.set()
            lock.acquire(int(PATIENCE * 1000), None)
            result['at'] = time.monotonic()
            lock.release()

        thread = threading.Thread(target=wait)
        thread.start()
        waiting.wait(PATIENCE)
        time.sleep(0.05)    # it waits in line
        released = time.monotonic()
        holder.release()
        thread.join(PATIENCE)
        times.append((result['at'] - released) * 1000)
    return times


class ClusterTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = redis_cluster.RedisCluster(masters=3, replicas=1, node_timeout_ms=1000)
        cls.uri = cls.cluster.uri

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def child(self, *args):
        child = Child(*args)
        self.addCleanup(child.stop)
        return child

    def assert_taken(self, name):
        lock = Porta.RedisLock.new(self.uri, name, EXCLUSIVE)
        with self.assertRaises(GLib.Error) as raised:
            lock.acquire(0, None)
        self.assertTrue(raised.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.WOULD_BLOCK),
                        raised.exception.message)

    def test_1_a_lock_on_each_master(self):
        names = self.cluster.names_on_masters('each')
        self.assertEqual(len(names), 3)
        for port, name in names.items():
            holder = self.child('--hold', self.uri, name, '30000')
            fence = int(holder.expect('held')[1][0])
            # The lock's keys are on the master of its slot, and only there.
            for other in self.cluster.masters():
                exists = self.cluster.cli(other, 'EXISTS', 'porta:{%s}:f' % name)
                if other == port:
                    self.assertEqual(exists, '1', (name, port))
                else:
                    self.assertTrue(exists.startswith('MOVED '), (name, port, other, exists))
            self.assert_taken(name)
            waiter = self.child('--wait', self.uri, name, str(int(PATIENCE * 1000)))
            waiter.expect('waiting')
            time.sleep(0.2)
            self.assert_taken(name)
            holder.say()
            holder.expect('released')
            self.assertGreater(int(waiter.expect('held')[1][0]), fence)

    def test_2_hand_off_beside_one_server(self):
        folder = tempfile.mkdtemp(prefix='porta-redis-single-')
        port = redis_cluster.free_ports(1)[0]
        server = subprocess.Popen(['redis-server', '--port', str(port), '--bind', '127.0.0.1',
                                   '--dir', folder, '--save', '', '--appendonly', 'no'],
                                  stdout=subprocess.DEVNULL)
        try:
            redis_cluster.RedisCluster.wait_for(
                lambda: self.cluster.cli(port, 'PING') == 'PONG', 'redis-server')
            single = hand_offs('redis://127.0.0.1:%d' % port, 'hand-off', 20)
            clustered = hand_offs(self.uri, 'hand-off', 20)
        finally:
            server.terminate()
            server.wait(timeout=PATIENCE)
            shutil.rmtree(folder, ignore_errors=True)
        print('hand-off p50: one server %.2f ms, cluster %.2f ms' % (
            statistics.median(single), statistics.median(clustered)), file=sys.stderr)
        # The same round trips to one node: comparable, with room for a
        # loaded machine.
        self.assertLess(statistics.median(clustered), max(5 * statistics.median(single), 50))

    def test_3_slot_moved_while_held_and_waited_on(self):
        name = 'moving'
        slot = redis_cluster.lock_slot(name)
        source = self.cluster.master_of(slot)
        target = [p for p in self.cluster.masters() if p != source][0]
        holder = self.child('--hold', self.uri, name, '3000')
        fence = int(holder.expect('held')[1][0])
        waiter = self.child('--wait', self.uri, name, str(int(PATIENCE * 1000)))
        waiter.expect('waiting')
        time.sleep(0.3)
        moved = time.monotonic()
        self.cluster.move_slot(slot, source, target)
        # The holder's liveness does not move with the slot, and the new
        # master cannot see it: the holder counts as alive there until its
        # lease runs out. It hears at its next renewal (a third of its
        # lease) that it lost the lock, before that; then the waiter, sent
        # on to the new master, takes it there, with a greater fencing
        # token (the counter moved with the keys). Never two holders.
        lost_at, _ = holder.expect('lost')
        got_at, got = waiter.expect('held')
        self.assertGreater(int(got[0]), fence)
        self.assertLess(lost_at - moved, 3.0 + 2.0)
        self.assertLess(lost_at, got_at)
        self.assertEqual(self.cluster.cli(target, 'EXISTS', 'porta:{%s}:f' % name), '1')
        print('slot moving from: waiter held after %.0f ms, holder lost after %.0f ms' % (
            (got_at - moved) * 1000, (lost_at - moved) * 1000), file=sys.stderr)
        # Taken again on the new master.
        lock = Porta.RedisLock.new(self.uri, name, EXCLUSIVE)
        lock.acquire(int(PATIENCE * 1000), None)
        self.assertGreater(lock.props.fencing_token, int(got[0]))
        lock.release()

    def test_3b_replicas_confirm_a_grant(self):
        name = 'confirmed'
        lock = Porta.RedisLock.new(self.uri, name, EXCLUSIVE)
        lock.props.replicas_to_confirm = 1    # each master has one
        lock.acquire(int(PATIENCE * 1000), None)
        self.assertTrue(lock.props.held)
        lock.release()
        lock.props.replicas_to_confirm = 2
        with self.assertRaises(GLib.Error) as raised:
            lock.acquire(int(PATIENCE * 1000), None)
        self.assertTrue(raised.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.FAILED),
                        raised.exception.message)
        self.assertIn('1 of the 2 replicas', raised.exception.message)
        self.assertFalse(lock.props.held)
        # The grant was given back.
        other = Porta.RedisLock.new(self.uri, name, EXCLUSIVE)
        other.acquire(int(PATIENCE * 1000), None)
        other.release()

    def test_4_command(self):
        if not TOOL or not os.access(TOOL, os.X_OK):
            self.fail('PORTALOCK_TOOL does not name the built portalock: %r' % TOOL)
        name = 'command'
        holder = self.child('--hold', self.uri, name, '30000')
        fence = int(holder.expect('held')[1][0])
        run = subprocess.run([TOOL, '--redis=' + self.uri, '-n', name, 'true'],
                             capture_output=True, text=True, timeout=PATIENCE)
        self.assertEqual((run.returncode, run.stderr), (1, ''))
        holder.say()
        holder.expect('released')
        run = subprocess.run([TOOL, '--redis=' + self.uri, '-w', str(PATIENCE), name,
                              'sh', '-c', 'echo "$PORTALOCK_FENCING_TOKEN"'],
                             capture_output=True, text=True, timeout=PATIENCE)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertGreater(int(run.stdout), fence)

    def test_5_failover(self):
        name = 'failing'
        slot = redis_cluster.lock_slot(name)
        master = self.cluster.master_of(slot)
        replicas = self.cluster.replica_of(master)
        self.assertEqual(len(replicas), 1)
        holder = self.child('--hold', self.uri, name, '30000')
        fence = int(holder.expect('held')[1][0])
        waiter = self.child('--wait', self.uri, name, str(int(PATIENCE * 1000)))
        waiter.expect('waiting')
        # A lock on another master, renewed every 3 s, through the
        # failover: the whole cluster answers CLUSTERDOWN for a second or
        # two, and a renewal refused so is no loss (the lease leaves room
        # for a slow failover on a loaded machine).
        bystander_name = [n for p, n in self.cluster.names_on_masters('bystander').items()
                          if p != master][0]
        bystander = Porta.RedisLock.new(self.uri, bystander_name, EXCLUSIVE)
        bystander.props.lease_ms = 9000
        bystander_lost = []
        bystander.connect('lost', lambda lock, error: bystander_lost.append(error.message))
        bystander.acquire(int(PATIENCE * 1000), None)
        time.sleep(0.3)
        # The grant must be on the replica for the token order below.
        self.assertEqual(self.cluster.cli(master, 'WAIT', '1', '5000'), '1')
        killed = time.monotonic()
        self.cluster.kill(master)
        lost_at, lost = holder.expect('lost')
        got_at, got = waiter.expect('held')
        self.assertGreater(int(got[0]), fence)
        self.assertEqual(self.cluster.master_of(slot), replicas[0])
        print('failover: holder lost after %.0f ms (%s), waiter held after %.0f ms' % (
            (lost_at - killed) * 1000, ' '.join(lost), (got_at - killed) * 1000),
            file=sys.stderr)
        self.assertLess(lost_at - killed, 5.0)
        holder.say()    # it no longer holds the lock: it leaves without a word
        self.assertEqual(holder.proc.wait(timeout=PATIENCE), 0)
        # A renewal more, then the `lost` it would have had is seen.
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            GLib.MainContext.default().iteration(False) or time.sleep(0.01)
        self.assertEqual(bystander_lost, [])
        self.assertTrue(bystander.props.held)
        bystander.release()
        # New acquires go to the new master.
        lock = Porta.RedisLock.new(self.uri, name, EXCLUSIVE)
        lock.acquire(int(PATIENCE * 1000), None)
        self.assertGreater(lock.props.fencing_token, int(got[0]))
        lock.release()


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--wait':
        child_wait(*sys.argv[2:])
    else:
        unittest.main(verbosity=2)
