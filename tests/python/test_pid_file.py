#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_pid_file.py: PortaPidFile as Python programs see it, through
# PyGObject and the Porta-1 typelib.
#
# Run it with /usr/bin/python3 (the interpreter PyGObject is built for),
# with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the built
# portalock/ folder when the library is not installed; `meson test --suite
# pidfile` does that.
#
# The other process is this same file run as
#   test_pid_file.py --holder PATH
# which acquires the PID file at PATH with Porta.PidFile, prints "locked",
# waits for a line on stdin, releases it, prints "released" and exits 0;
# at end-of-file on stdin (the test died) it exits without releasing.

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

THIS_FILE = os.path.abspath(__file__)

# A holder gives up and exits by itself after this long, so that a test
# that fails half-way never leaves a process behind.
HOLDER_LIFETIME_S = 60

# How long to wait for a child, or an async result, before failing.
DEADLINE_S = 20


def run_holder(path):
    signal.alarm(HOLDER_LIFETIME_S)
    pid_file = Porta.PidFile.new_for_path(path)
    pid_file.acquire(-1, None)
    print('locked', flush=True)
    if not sys.stdin.readline():
        os._exit(3)  # the test went away: keep the file, as a crash would
    pid_file.release()
    print('released', flush=True)
    return 0


def proc_start_time(pid):
    with open('/proc/%d/stat' % pid) as f:
        stat = f.read()
    # the command name (field 2) may hold spaces and parentheses
    return int(stat[stat.rindex(')') + 2:].split()[19])


def proc_comm(pid):
    with open('/proc/%d/comm' % pid) as f:
        return f.read().rstrip('\n')


def pid_file_text(pid):
    return '%d\n%d\n' % (pid, proc_start_time(pid))


def read_text(path):
    with open(path) as f:
        return f.read()


def write_text(path, text):
    # in place: os.replace() would put a new, unlocked file at the path
    with open(path, 'w') as f:
        f.write(text)


class Holder:
    """Another process holding the PID file at @path."""

    def __init__(self, path):
        self.proc = subprocess.Popen(
            [sys.executable, THIS_FILE, '--holder', path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    @property
    def pid(self):
        return self.proc.pid

    def expect(self, expected):
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE_S)
        if not ready:
            raise AssertionError('the holder wrote no line in %d s' % DEADLINE_S)
        line = self.proc.stdout.readline().rstrip('\n')
        if line != expected:
            raise AssertionError('the holder wrote %r, not %r' % (line, expected))

    def let_go(self):
        self.proc.stdin.write('release\n')
        self.proc.stdin.flush()

    def kill(self):
        self.proc.kill()

    def wait(self):
        return self.proc.wait(timeout=DEADLINE_S)

    def close(self):
        """Reaps the holder whatever happened."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def run_until(done):
    """Iterates the default main context until done() is true."""
    context = GLib.MainContext.default()
    deadline = GLib.get_monotonic_time() + DEADLINE_S * 1000000
    while not done():
        if GLib.get_monotonic_time() > deadline:
            raise AssertionError('no result in %d s' % DEADLINE_S)
        context.iteration(False)
        GLib.usleep(1000)


def is_would_block(error):
    return error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.WOULD_BLOCK)


class PidFileTests(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='porta-pidfile-')
        self.path = os.path.join(self.dir, 'daemon.pid')
        self.file = Gio.File.new_for_path(self.path)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def holder(self):
        holder = Holder(self.path)
        self.addCleanup(holder.close)
        holder.expect('locked')
        return holder

    def query(self):
        return tuple(Porta.PidFile.query_holder(self.file))

    def test_acquire_release(self):
        pid_file = Porta.PidFile.new(self.file)
        notified = []
        pid_file.connect('notify::held', lambda obj, pspec: notified.append(obj.props.held))
        self.assertFalse(pid_file.get_held())
        self.assertEqual(pid_file.get_file().get_path(), self.path)
        self.assertEqual(pid_file.props.file.get_path(), self.path)

        self.assertTrue(pid_file.try_acquire())
        self.assertTrue(pid_file.props.held)
        self.assertEqual(notified, [True])
        self.assertEqual(read_text(self.path), pid_file_text(os.getpid()))
        self.assertEqual(self.query(),
                         (True, os.getpid(), proc_start_time(os.getpid()),
                          proc_comm(os.getpid())))

        with self.assertRaises(GLib.Error) as cm:
            pid_file.acquire(0, None)
        self.assertTrue(cm.exception.matches(Porta.lock_error_quark(),
                                             Porta.LockError.ALREADY_HELD))

        self.assertTrue(pid_file.release())
        self.assertFalse(pid_file.props.held)
        self.assertEqual(notified, [True, False])
        self.assertEqual(read_text(self.path), '')
        self.assertEqual(self.query(), (False, 0, 0, None))

    def test_lockable_interface(self):
        pid_file = Porta.PidFile.new_for_path(self.path)
        self.assertIsInstance(pid_file, Porta.Lockable)
        self.assertTrue(Porta.Lockable.try_acquire(pid_file))
        self.assertTrue(Porta.Lockable.get_held(pid_file))
        self.assertEqual(read_text(self.path), pid_file_text(os.getpid()))
        self.assertTrue(Porta.Lockable.release(pid_file))
        self.assertFalse(pid_file.props.held)
        self.assertEqual(read_text(self.path), '')

    def test_second_process(self):
        holder = self.holder()
        holder_text = pid_file_text(holder.pid)
        self.assertEqual(read_text(self.path), holder_text)

        pid_file = Porta.PidFile.new_for_path(self.path)
        with self.assertRaises(GLib.Error) as cm:
            pid_file.try_acquire()
        self.assertTrue(is_would_block(cm.exception), cm.exception.message)
        self.assertFalse(pid_file.props.held)
        self.assertEqual(read_text(self.path), holder_text)

        self.assertEqual(self.query(),
                         (True, holder.pid, proc_start_time(holder.pid),
                          proc_comm(holder.pid)))

        holder.let_go()
        holder.expect('released')
        self.assertEqual(holder.wait(), 0)
        self.assertEqual(self.query(), (False, 0, 0, None))
        self.assertTrue(pid_file.acquire(0, None))
        self.assertEqual(read_text(self.path), pid_file_text(os.getpid()))

    def test_killed_holder(self):
        holder = self.holder()
        holder_text = pid_file_text(holder.pid)
        self.assertEqual(self.query()[1], holder.pid)

        holder.kill()
        self.assertEqual(holder.wait(), -signal.SIGKILL)
        self.assertEqual(read_text(self.path), holder_text)
        self.assertEqual(self.query(), (False, 0, 0, None))

        pid_file = Porta.PidFile.new_for_path(self.path)
        self.assertTrue(pid_file.try_acquire())

    def test_async(self):
        holder = self.holder()
        holder_text = pid_file_text(holder.pid)
        pid_file = Porta.PidFile.new_for_path(self.path)
        results = []

        def done(source, result, data):
            try:
                results.append(source.acquire_finish(result))
            except GLib.Error as e:
                results.append(e)

        pid_file.acquire_async(0, GLib.PRIORITY_DEFAULT, None, done, None)
        run_until(lambda: results)
        self.assertIsInstance(results[0], GLib.Error)
        self.assertTrue(is_would_block(results[0]))
        results.clear()

        pid_file.acquire_async(-1, GLib.PRIORITY_DEFAULT, None, done, None)
        for _ in range(10):
            GLib.MainContext.default().iteration(False)
            GLib.usleep(1000)
        self.assertEqual(results, [])
        self.assertEqual(read_text(self.path), holder_text)

        holder.let_go()
        run_until(lambda: results)
        self.assertEqual(results, [True])
        self.assertTrue(pid_file.props.held)
        self.assertEqual(read_text(self.path), pid_file_text(os.getpid()))
        holder.expect('released')
        self.assertEqual(holder.wait(), 0)

    def test_unlocked_file_is_not_held(self):
        # the right PID and start time of a live process, but no lock
        write_text(self.path, pid_file_text(os.getpid()))
        self.assertEqual(self.query(), (False, 0, 0, None))
        write_text(self.path, 'garbage\n')
        self.assertEqual(self.query(), (False, 0, 0, None))

    def test_missing_file(self):
        self.assertEqual(self.query(), (False, 0, 0, None))
        self.assertFalse(os.path.exists(self.path))

    def test_query_error(self):
        write_text(os.path.join(self.dir, 'file'), '')
        below = Gio.File.new_for_path(os.path.join(self.dir, 'file', 'x.pid'))
        with self.assertRaises(GLib.Error) as cm:
            Porta.PidFile.query_holder(below)
        self.assertTrue(cm.exception.matches(Gio.io_error_quark(),
                                             Gio.IOErrorEnum.NOT_DIRECTORY))
        self.assertIn('x.pid', cm.exception.message)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--holder':
        sys.exit(run_holder(sys.argv[2]))
    unittest.main(verbosity=2)
