#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The portalock command with --redis: a job under a lock on a Redis server,
# the distributed cron job. The test starts its own redis-server on a Unix
# socket in a temporary folder and stops it; every wait is bounded.

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

TOOL = os.environ.get('PORTALOCK_TOOL', '')
PATIENCE = 30.0
HOLD = 'echo "locked $PORTALOCK_FENCING_TOKEN"; read x || :'


def default_signals():
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def env():
    result = dict(os.environ, LC_ALL='C.UTF-8', SHELL='/bin/sh')
    result.pop('LANGUAGE', None)
    return result


class RedisCommandTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='portalock-redis-cli-')
        cls.sock = os.path.join(cls.dir, 'redis.sock')
        cls.uri = 'unix://' + cls.sock
        cls.server = subprocess.Popen(
            ['redis-server', '--port', '0', '--unixsocket', cls.sock, '--unixsocketperm', '700',
             '--dir', cls.dir, '--save', '', '--appendonly', 'no'],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + PATIENCE
        while cls.cli('PING') != 'PONG':
            if time.monotonic() > deadline:
                raise RuntimeError('redis-server did not start')
            time.sleep(0.02)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=PATIENCE)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def cli(cls, *args):
        r = subprocess.run(['redis-cli', '-s', cls.sock] + list(args),
                           capture_output=True, text=True, timeout=PATIENCE)
        return r.stdout.strip()

    def setUp(self):
        if not TOOL or not os.access(TOOL, os.X_OK):
            self.fail('PORTALOCK_TOOL does not name the built portalock: %r' % TOOL)
        self.name = self.id().rsplit('.', 1)[-1]

    def run_tool(self, *args):
        return subprocess.run([TOOL] + list(args), capture_output=True, text=True, env=env(),
                              timeout=PATIENCE, preexec_fn=default_signals)

    def hold(self, *options, name=None):
        """A portalock holding the lock, until its stdin is closed; returns
        it and the fencing token its command was given."""
        proc = subprocess.Popen([TOOL, '--redis=' + self.uri] + list(options) +
                                [name or self.name, '-c', HOLD],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env(), preexec_fn=default_signals)
        self.addCleanup(self.reap, proc)
        line = proc.stdout.readline().decode()
        self.assertTrue(line.startswith('locked '), line)
        return proc, int(line.split()[1])

    @staticmethod
    def reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def test_exclusion_and_hand_off(self):
        holder, token = self.hold()
        r = self.run_tool('--redis=' + self.uri, '-n', self.name, '-c', 'echo ran')
        self.assertEqual((r.returncode, r.stdout, r.stderr), (1, '', ''))
        # -E 0 never means "ran": the command must not run beside the holder.
        r = self.run_tool('--redis=' + self.uri, '-n', '-E', '0', self.name, '-c', 'echo ran')
        self.assertEqual((r.returncode, r.stdout), (0, ''))
        r = self.run_tool('--redis=' + self.uri, '-w', '0.3', '-E', '7', self.name, 'true')
        self.assertEqual(r.returncode, 7)

        waiter = subprocess.Popen([TOOL, '--redis=' + self.uri, '-w', str(PATIENCE), self.name,
                                   'sh', '-c', 'echo "$PORTALOCK_FENCING_TOKEN"'],
                                  stdout=subprocess.PIPE, env=env(), preexec_fn=default_signals)
        self.addCleanup(self.reap, waiter)
        holder.stdin.close()
        self.assertEqual(holder.wait(timeout=PATIENCE), 0)
        self.assertEqual(waiter.wait(timeout=PATIENCE), 0)
        # Each grant's fencing token is greater than every earlier one.
        self.assertGreater(int(waiter.stdout.read()), token)

    def test_held_through_a_quiet_spell(self):
        # Nothing is published while a lock is merely held: the connections
        # must not time out (the connect timeout is 10 s) and lose it.
        holder, _ = self.hold()
        time.sleep(12)
        self.assertEqual(self.run_tool('--redis=' + self.uri, '-n', self.name, 'true').returncode, 1)
        holder.stdin.close()
        self.assertEqual(holder.wait(timeout=PATIENCE), 0)
        self.assertEqual(holder.stderr.read(), b'')

    def test_shared_and_counting(self):
        self.hold('-s')
        self.hold('-s')
        self.assertEqual(self.run_tool('--redis=' + self.uri, '-n', self.name, 'true').returncode, 1)
        self.assertEqual(self.run_tool('--redis=' + self.uri, '-s', '-n', self.name,
                                       'true').returncode, 0)
        counted = self.name + '-counted'
        self.hold('--max-holders', '2', name=counted)
        self.hold('--max-holders', '2', name=counted)
        r = self.run_tool('--redis=' + self.uri, '--max-holders', '2', '-n', counted, 'true')
        self.assertEqual(r.returncode, 1)

    def test_portalocker_protocol(self):
        # portalocker's RedisLock holds channel NAME while it has a
        # subscriber there: a redis-cli subscribed to it plays portalocker.
        other = subprocess.Popen(['redis-cli', '-s', self.sock, 'SUBSCRIBE', self.name],
                                 stdout=subprocess.PIPE, text=True)
        self.addCleanup(self.reap, other)
        self.assertEqual([other.stdout.readline().strip() for _ in range(3)],
                         ['subscribe', self.name, '1'])
        r = self.run_tool('--redis=' + self.uri, '--redis-protocol=portalocker', '-n',
                          self.name, 'true')
        self.assertEqual((r.returncode, r.stderr), (1, ''))
        # The default protocol does not see portalocker's lock.
        r = self.run_tool('--redis=' + self.uri, '-n', self.name, 'true')
        self.assertEqual(r.returncode, 0)
        other.kill()
        other.wait()
        holder, _ = self.hold('--redis-protocol=portalocker')
        self.assertEqual(self.cli('PUBSUB', 'NUMSUB', self.name).split('\n'), [self.name, '1'])
        holder.stdin.close()
        self.assertEqual(holder.wait(timeout=PATIENCE), 0)
        self.assertEqual(self.cli('PUBSUB', 'NUMSUB', self.name).split('\n'), [self.name, '0'])
        # Shared locks do not exist in portalocker's protocol.
        r = self.run_tool('--redis=' + self.uri, '--redis-protocol=portalocker', '-s',
                          self.name, 'true')
        self.assertEqual(r.returncode, 64)
        self.assertIn('portalocker', r.stderr)

    def test_killed_holder_frees_the_lock(self):
        holder, _ = self.hold()
        start = time.monotonic()
        holder.kill()
        holder.wait()
        r = self.run_tool('--redis=' + self.uri, '-w', str(PATIENCE), self.name, 'true')
        self.assertEqual(r.returncode, 0, r.stderr)
        # Its connections closed with it: no lease to wait out (30 s).
        self.assertLess(time.monotonic() - start, 10.0)

    def test_lost_lock_stops_the_command(self):
        proc = subprocess.Popen([TOOL, '--redis=' + self.uri, '--lease', '1', self.name, 'sh', '-c',
                                 'echo started; trap "echo got-term; exit 3" TERM; '
                                 'while :; do sleep 0.05; done'],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
                                preexec_fn=default_signals)
        self.addCleanup(self.reap, proc)
        self.assertEqual(proc.stdout.readline(), b'started\n')
        # The server drops the connections that show the holder alive.
        self.cli('CLIENT', 'KILL', 'TYPE', 'pubsub')
        self.assertEqual(proc.wait(timeout=PATIENCE), 75)
        self.assertEqual(proc.stdout.read(), b'got-term\n')
        err = proc.stderr.read().decode()
        self.assertRegex(err, r'portalock: .*lost')
        self.assertIn('no longer held the lock', err)
        # Never taken again behind the command's back: the lock is free.
        self.assertEqual(self.run_tool('--redis=' + self.uri, '-n', self.name, 'true').returncode, 0)

    def test_errors(self):
        missing = os.path.join(self.dir, 'no-server.sock')
        r = self.run_tool('--redis=unix://' + missing, '-n', self.name, 'true')
        self.assertEqual(r.returncode, 69)
        self.assertIn(missing, r.stderr)
        r = self.run_tool('--redis=bogus://x', self.name, 'true')
        self.assertEqual(r.returncode, 64)
        self.assertTrue(r.stderr.startswith('portalock: '), r.stderr)
        for args in (['-F'], ['-u'], ['--status']):
            with self.subTest(args=args):
                r = self.run_tool('--redis=' + self.uri, *args, self.name, 'true')
                self.assertEqual(r.returncode, 64)
        r = self.run_tool('--redis=' + self.uri, '--redis-protocol=pl', self.name, 'true')
        self.assertEqual(r.returncode, 64)
        self.assertIn('pl', r.stderr)
        for args in (['--max-holders', '2'], ['--lease', '5'], ['--redis-ca', '/nonexistent'],
                     ['--redis-protocol', 'portalocker']):
            with self.subTest(args=args):
                r = self.run_tool(*args, 'file.lock', 'true')
                self.assertEqual(r.returncode, 64)
        self.assertEqual(self.run_tool('--redis=' + self.uri, self.name).returncode, 64)
        self.assertEqual(self.run_tool('--redis=' + self.uri, '--lease', '0', self.name,
                                       'true').returncode, 64)
        self.assertEqual(self.run_tool('--redis=' + self.uri, '--max-holders', '0', self.name,
                                       'true').returncode, 64)

    def test_password_never_shown(self):
        r = self.run_tool('--redis=redis://user:s3cret-pass@127.0.0.1:1/', '--verbose', '-n',
                          self.name, 'true')
        self.assertEqual(r.returncode, 69)
        self.assertNotIn('s3cret-pass', r.stderr + r.stdout)


if __name__ == '__main__':
    unittest.main(verbosity=2)
