#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_semaphore.py: PortaSemaphore as Python programs see it, through
# PyGObject and the Porta-1 typelib.
#
# Run it with /usr/bin/python3 (the interpreter PyGObject is built for),
# with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the built
# portalock/ folder when the library is not installed; `meson test --suite
# semaphore` does that.
#
# The holders in other processes are this same file run as
#   test_semaphore.py --holder DIR NAME N COUNT
# which acquires COUNT slots of the semaphore NAME (of N) in DIR with as
# many Porta.Semaphore objects, prints "locked" and the slots, holds them
# until a line (or end-of-file) arrives on stdin, releases them and prints
# "released".
#   test_semaphore.py --flock-holder PATH
# holds PATH with fcntl.flock the same way, as any flock(2) user would.

import fcntl
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import gi
gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

THIS_FILE = os.path.abspath(__file__)

# A holder gives up and exits by itself after this long, so that a test
# that fails half-way never leaves a process behind.
HOLDER_LIFETIME_S = 60

# How long to wait for a child to say something before failing the test.
CHILD_REPLY_S = 20

# The hand-off to a waiting acquire must come well within this.
HANDOFF_S = 1.0


def _wait_for_line_or_lifetime():
    ready, _, _ = select.select([sys.stdin], [], [], HOLDER_LIFETIME_S)
    if ready:
        sys.stdin.readline()


def run_holder(directory, name, n, count):
    folder = Gio.File.new_for_path(directory)
    sems = [Porta.Semaphore.new(name, n, folder) for _ in range(count)]
    for sem in sems:
        sem.acquire(CHILD_REPLY_S * 1000, None)
    print('locked', ' '.join(str(sem.get_slot()) for sem in sems), flush=True)
    _wait_for_line_or_lifetime()
    for sem in sems:
        sem.release()
    print('released', flush=True)
    return 0


def run_flock_holder(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print('locked', flush=True)
    _wait_for_line_or_lifetime()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    print('released', flush=True)
    return 0


class Child:
    """A holder in another process, reaped by close()."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, THIS_FILE] + list(args),
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     text=True)

    def read_line(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], CHILD_REPLY_S)
        if not ready:
            raise AssertionError('the child said nothing within %d s' % CHILD_REPLY_S)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(CHILD_REPLY_S)
            raise AssertionError('the child exited with %d: %s'
                                 % (self.proc.returncode, self.proc.stderr.read()))
        return line.strip()

    def expect_locked(self):
        words = self.read_line().split()
        assert words[0] == 'locked', words
        return [int(w) for w in words[1:]]

    def let_go(self):
        self.proc.stdin.write('\n')
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(CHILD_REPLY_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


class SemaphoreTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='porta-semaphore-')
        self.folder = Gio.File.new_for_path(self.tmp)
        self.children = []

    def tearDown(self):
        for child in self.children:
            child.close()
        shutil.rmtree(self.tmp)

    def spawn(self, *args):
        child = Child(*args)
        self.children.append(child)
        return child

    def hold_all(self, name, n):
        child = self.spawn('--holder', self.tmp, name, str(n), str(n))
        slots = child.expect_locked()
        self.assertEqual(sorted(slots), list(range(n)))
        return child

    def assertIOError(self, error, code):
        self.assertTrue(error.matches(Gio.io_error_quark(), code),
                        '%s is not %s' % (error, code))

    def test_acquire_release(self):
        sem = Porta.Semaphore.new('py', 2, self.folder)
        notes = []
        sem.connect('notify::held', lambda obj, pspec: notes.append(obj.props.held))

        self.assertEqual(sem.props.name, 'py')
        self.assertEqual(sem.props.max_holders, 2)
        self.assertTrue(sem.props.directory.equal(self.folder))
        self.assertFalse(sem.props.held)
        self.assertEqual(sem.props.slot, -1)
        self.assertIsInstance(sem, Porta.Lockable)

        self.assertTrue(sem.acquire(0, None))
        self.assertTrue(sem.get_held())
        slot = sem.get_slot()
        self.assertIn(slot, (0, 1))
        self.assertEqual(sem.props.slot, slot)
        self.assertTrue(os.path.exists(os.path.join(self.tmp, 'py.%d.lock' % slot)))

        other = Porta.Semaphore.new('py', 2, self.folder)
        self.assertTrue(other.try_acquire())
        self.assertEqual(other.get_slot(), 1 - slot)
        other.release()

        self.assertTrue(sem.release())
        self.assertFalse(sem.props.held)
        self.assertEqual(sem.get_slot(), -1)
        self.assertEqual(notes, [True, False])

        with self.assertRaises(GLib.Error) as caught:
            sem.release()
        self.assertTrue(caught.exception.matches(Porta.lock_error_quark(),
                                                 Porta.LockError.NOT_HELD))

    def test_invalid_name(self):
        sem = Porta.Semaphore.new('a/b', 2, self.folder)
        with self.assertRaises(GLib.Error) as caught:
            sem.acquire(0, None)
        self.assertIOError(caught.exception, Gio.IOErrorEnum.INVALID_FILENAME)
        self.assertIn('a/b', caught.exception.message)

    def test_would_block(self):
        self.hold_all('busy', 2)
        sem = Porta.Semaphore.new('busy', 2, self.folder)

        with self.assertRaises(GLib.Error) as caught:
            sem.try_acquire()
        self.assertIOError(caught.exception, Gio.IOErrorEnum.WOULD_BLOCK)
        self.assertIn('busy', caught.exception.message)
        self.assertIn(self.tmp, caught.exception.message)
        self.assertFalse(sem.get_held())

        start = time.monotonic()
        with self.assertRaises(GLib.Error) as caught:
            sem.acquire(100, None)
        self.assertIOError(caught.exception, Gio.IOErrorEnum.TIMED_OUT)
        self.assertGreaterEqual(time.monotonic() - start, 0.099)

    def test_would_block_against_flock(self):
        # A slot file held with plain flock(2) is a taken slot.
        holder = self.spawn('--flock-holder', os.path.join(self.tmp, 'plain.0.lock'))
        self.assertEqual(holder.read_line(), 'locked')
        sem = Porta.Semaphore.new('plain', 1, self.folder)
        with self.assertRaises(GLib.Error) as caught:
            sem.try_acquire()
        self.assertIOError(caught.exception, Gio.IOErrorEnum.WOULD_BLOCK)

    def test_async_acquire_handed_over(self):
        holder = self.hold_all('handoff', 2)
        sem = Porta.Semaphore.new('handoff', 2, self.folder)
        loop = GLib.MainLoop()
        state = {}

        def on_acquired(source, result, user_data):
            state['got_at'] = time.monotonic()
            try:
                state['ok'] = source.acquire_finish(result)
            except GLib.Error as e:
                state['error'] = e
            loop.quit()

        def let_go():
            self.assertNotIn('got_at', state)
            state['sent_at'] = time.monotonic()
            holder.let_go()
            return GLib.SOURCE_REMOVE

        def fail_safe():
            state['expired'] = True
            loop.quit()
            return GLib.SOURCE_REMOVE

        sem.acquire_async(CHILD_REPLY_S * 1000, GLib.PRIORITY_DEFAULT, None, on_acquired, None)
        GLib.timeout_add(100, let_go)
        fail_safe_id = GLib.timeout_add_seconds(CHILD_REPLY_S, fail_safe)
        loop.run()
        GLib.source_remove(fail_safe_id)

        self.assertNotIn('expired', state)
        self.assertNotIn('error', state)
        self.assertTrue(state['ok'])
        self.assertTrue(sem.get_held())
        self.assertIn(sem.get_slot(), (0, 1))
        self.assertLess(state['got_at'] - state['sent_at'], HANDOFF_S)
        self.assertEqual(holder.read_line(), 'released')
        sem.release()


if __name__ == '__main__':
    if len(sys.argv) == 6 and sys.argv[1] == '--holder':
        sys.exit(run_holder(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    if len(sys.argv) == 3 and sys.argv[1] == '--flock-holder':
        sys.exit(run_flock_holder(sys.argv[2]))
    unittest.main(verbosity=2)
