#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Feature tests through the typelib: reentrant locks, DELETE_ON_RELEASE,
# shared/exclusive conversion, holder queries, descriptor and stream
# locking, and Porta.Lockable. Run by /usr/bin/python3 (the interpreter
# PyGObject is built for) with GI_TYPELIB_PATH and LD_LIBRARY_PATH reaching
# the built Porta-1.typelib and libportalock-1.so.

import fcntl
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import gi
gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

FLOCK = shutil.which('flock')
PYTHON = '/usr/bin/python3'
F_OFD_SETLK = 37          # Linux, every architecture
TIME_FACTOR = max(1, int(os.environ.get('PORTA_TEST_TIME_FACTOR', '1') or 1))
FAILSAFE_S = 60 * TIME_FACTOR
EX = Porta.LockMode.EXCLUSIVE
SH = Porta.LockMode.SHARED


def ofd_try(path, mode):
    """True if a new open file description of this process could take an
    OFD lock of @mode at once (OFD locks conflict inside one process)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        typ = fcntl.F_RDLCK if mode == SH else fcntl.F_WRLCK
        try:
            fcntl.fcntl(fd, F_OFD_SETLK, struct.pack('hhqqi', typ, 0, 0, 0, 0))
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


class OfdHolder:
    """An OFD lock held by this process on a description of its own."""

    def __init__(self, path, mode):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        typ = fcntl.F_RDLCK if mode == SH else fcntl.F_WRLCK
        fcntl.fcntl(self.fd, F_OFD_SETLK, struct.pack('hhqqi', typ, 0, 0, 0, 0))

    def release(self):
        os.close(self.fd)


def flock_try(path, shared=False):
    """0 if another process could take the flock(2) lock at once, 1 if not."""
    args = [FLOCK, '-n'] + (['-s'] if shared else []) + [path, 'true']
    status = subprocess.run(args, stdout=subprocess.DEVNULL, timeout=FAILSAFE_S).returncode
    assert status in (0, 1), status
    return status


class Child:
    """A process that prints 'locked' once it holds a lock and lets go when
    a line arrives on its stdin."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != 'locked':
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('child did not lock: %r' % line)

    @property
    def pid(self):
        return self.proc.pid

    def release(self):
        try:
            self.proc.stdin.write('\n')
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        status = self.proc.wait(timeout=FAILSAFE_S)
        self.proc.stdout.close()
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if not f.closed:
                f.close()


def flock_holder(path):
    return Child([FLOCK, path, '-c', 'echo locked; read x'])


# A PortaLock held by another process, with DELETE_ON_RELEASE.
PORTA_HOLDER = textwrap.dedent('''
    import sys
    import gi
    gi.require_version('Porta', '1')
    from gi.repository import Gio, Porta
    lock = Porta.Lock.new_full(Gio.File.new_for_path(sys.argv[1]), Porta.LockMode.EXCLUSIVE,
                               Porta.Backend.FLOCK, Porta.LockFlags.DELETE_ON_RELEASE)
    lock.acquire(0, None)
    print('locked', flush=True)
    sys.stdin.readline()
    lock.release()
''')


def has_waiter(st):
    needle = ' %02x:%02x:%d ' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open('/proc/locks') as f:
        return any('->' in line and needle in line for line in f)


def wait_for_waiter(st):
    deadline = time.monotonic() + 30 * TIME_FACTOR
    while not has_waiter(st):
        if time.monotonic() > deadline:
            raise AssertionError('nobody waits for the lock')
        time.sleep(0.005)


def locked_fd(lock):
    stream = lock.get_stream()
    return stream.get_input_stream().get_fd()


class FeatureTestCase(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='portalock-features-py-')
        self.addCleanup(self.tmp.cleanup)
        self.dir = os.path.realpath(self.tmp.name)
        self.path = os.path.join(self.dir, 'lock')

    def new_lock(self, mode=EX, backend=Porta.Backend.FLOCK, flags=Porta.LockFlags.NONE,
                 path=None):
        lock = Porta.Lock.new_full(Gio.File.new_for_path(path or self.path), mode, backend, flags)
        self.addCleanup(self._release_all, lock)
        return lock

    @staticmethod
    def _release_all(lock):
        while lock.get_held():
            lock.release()

    def assertIOError(self, code, func, *args):
        with self.assertRaises(GLib.Error) as cm:
            func(*args)
        self.assertTrue(cm.exception.matches(Gio.io_error_quark(), code),
                        '%s is not %s' % (cm.exception, code))
        return cm.exception

    def assertLockError(self, code, func, *args):
        with self.assertRaises(GLib.Error) as cm:
            func(*args)
        self.assertTrue(cm.exception.matches(Porta.lock_error_quark(), code),
                        '%s is not %s' % (cm.exception, code))
        return cm.exception

    def run_until(self, predicate):
        ctx = GLib.MainContext.default()
        deadline = time.monotonic() + FAILSAFE_S
        while not predicate():
            self.assertLess(time.monotonic(), deadline, 'main loop wait timed out')
            ctx.iteration(True)


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestReentrant(FeatureTestCase):

    def test_depth_and_release(self):
        lock = self.new_lock(flags=Porta.LockFlags.REENTRANT)
        notified = []
        lock.connect('notify::held', lambda *a: notified.append(lock.props.held))

        self.assertEqual(lock.get_depth(), 0)
        for depth in (1, 2, 3):
            self.assertTrue(lock.acquire(0, None))
            self.assertEqual(lock.get_depth(), depth)
        self.assertEqual(notified, [True])
        self.assertEqual(flock_try(self.path, shared=True), 1)

        for depth in (2, 1):
            self.assertTrue(lock.release())
            self.assertEqual(lock.get_depth(), depth)
            self.assertTrue(lock.get_held())
            self.assertEqual(flock_try(self.path), 1)
        self.assertEqual(notified, [True])

        self.assertTrue(lock.release())
        self.assertEqual(lock.get_depth(), 0)
        self.assertEqual(notified, [True, False])
        self.assertEqual(flock_try(self.path), 0)
        self.assertLockError(Porta.LockError.NOT_HELD, lock.release)

    def test_other_thread_already_held(self):
        lock = self.new_lock(flags=Porta.LockFlags.REENTRANT)
        lock.acquire(0, None)
        errors = []

        def other():
            try:
                lock.acquire(0, None)
            except GLib.Error as e:
                errors.append(e)

        t = threading.Thread(target=other, daemon=True)
        t.start()
        t.join(FAILSAFE_S)
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].matches(Porta.lock_error_quark(), Porta.LockError.ALREADY_HELD))
        self.assertEqual(lock.get_depth(), 1)

    def test_without_flag(self):
        lock = self.new_lock()
        lock.acquire(0, None)
        self.assertLockError(Porta.LockError.ALREADY_HELD, lock.acquire, 0, None)
        self.assertEqual(lock.get_depth(), 1)


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestDeleteOnRelease(FeatureTestCase):

    def test_exclusive_deletes_shared_keeps(self):
        lock = self.new_lock(flags=Porta.LockFlags.DELETE_ON_RELEASE)
        lock.acquire(0, None)
        self.assertTrue(os.path.isfile(self.path))
        lock.release()
        self.assertFalse(os.path.exists(self.path))

        shared = self.new_lock(mode=SH, flags=Porta.LockFlags.DELETE_ON_RELEASE)
        shared.acquire(0, None)
        shared.release()
        self.assertTrue(os.path.isfile(self.path))

    def test_waiter_gets_new_file_after_other_process_deletes(self):
        holder = Child([PYTHON, '-c', PORTA_HOLDER, self.path])
        self.addCleanup(holder.kill)
        old = os.stat(self.path)

        waiter = self.new_lock(flags=Porta.LockFlags.DELETE_ON_RELEASE)
        result = []

        def wait():
            try:
                result.append(waiter.acquire(30000 * TIME_FACTOR, None))
            except GLib.Error as e:
                result.append(e)

        t = threading.Thread(target=wait, daemon=True)
        t.start()
        wait_for_waiter(old)
        self.assertEqual(holder.release(), 0)
        t.join(FAILSAFE_S)
        self.assertEqual(result, [True])

        at_path = os.stat(self.path)
        locked = os.fstat(locked_fd(waiter))
        self.assertEqual((at_path.st_dev, at_path.st_ino), (locked.st_dev, locked.st_ino))
        self.assertEqual(locked.st_nlink, 1)
        self.assertEqual(flock_try(self.path), 1)
        waiter.release()
        self.assertFalse(os.path.exists(self.path))


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestConvert(FeatureTestCase):

    def test_ofd_upgrade_downgrade(self):
        lock = self.new_lock(mode=SH, backend=Porta.Backend.OFD)
        modes = []
        lock.connect('notify::mode', lambda *a: modes.append(lock.props.mode))
        lock.acquire(0, None)

        self.assertTrue(lock.convert(EX, 0, None))
        self.assertEqual(lock.get_mode(), EX)
        self.assertFalse(ofd_try(self.path, SH))
        self.assertTrue(lock.convert(SH, 0, None))
        self.assertTrue(ofd_try(self.path, SH))
        self.assertFalse(ofd_try(self.path, EX))
        self.assertEqual(modes, [EX, SH])

        other = OfdHolder(self.path, SH)
        self.addCleanup(lambda: other.fd is None or os.close(other.fd))
        self.assertIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.convert, EX, 0, None)
        start = time.monotonic()
        e = self.assertIOError(Gio.IOErrorEnum.TIMED_OUT, lock.convert, EX, 100, None)
        self.assertGreaterEqual(time.monotonic() - start, 0.095)
        self.assertIn(self.path, e.message)
        # still held shared
        self.assertTrue(lock.get_held())
        self.assertEqual(lock.get_mode(), SH)
        self.assertTrue(ofd_try(self.path, SH))
        self.assertFalse(ofd_try(self.path, EX))
        self.assertEqual(modes, [EX, SH])

        other.release()
        other.fd = None
        self.assertTrue(lock.convert(EX, 5000 * TIME_FACTOR, None))
        self.assertFalse(ofd_try(self.path, SH))
        self.assertEqual(modes, [EX, SH, EX])
        lock.release()
        self.assertTrue(ofd_try(self.path, EX))

    def test_ofd_convert_async(self):
        lock = self.new_lock(mode=SH, backend=Porta.Backend.OFD)
        lock.acquire(0, None)
        other = OfdHolder(self.path, SH)
        self.addCleanup(lambda: other.fd is None or os.close(other.fd))
        results = []

        def done(source, result):
            try:
                results.append(source.convert_finish(result))
            except GLib.Error as e:
                results.append(e)

        def let_go():
            other.release()
            other.fd = None
            return GLib.SOURCE_REMOVE

        lock.convert_async(EX, 30000 * TIME_FACTOR, GLib.PRIORITY_DEFAULT, None, done)
        GLib.idle_add(let_go)
        self.run_until(lambda: results)
        self.assertEqual(results, [True])
        self.assertEqual(lock.get_mode(), EX)
        self.assertFalse(ofd_try(self.path, SH))

    def test_flock_not_atomic(self):
        lock = self.new_lock(mode=SH)
        lock.acquire(0, None)
        self.assertLockError(Porta.LockError.NOT_ATOMIC, lock.convert, EX, 0, None)
        self.assertTrue(lock.get_held())
        self.assertEqual(lock.get_mode(), SH)
        self.assertEqual(flock_try(self.path, shared=True), 0)
        self.assertEqual(flock_try(self.path), 1)

    def test_not_held(self):
        lock = self.new_lock(mode=SH, backend=Porta.Backend.OFD)
        self.assertLockError(Porta.LockError.NOT_HELD, lock.convert, EX, 0, None)


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestQueryHolder(FeatureTestCase):

    def test_flock_holder(self):
        lock = self.new_lock()
        holder = flock_holder(self.path)
        self.addCleanup(holder.kill)

        held, pid, command = lock.query_holder()
        self.assertTrue(held)
        if pid != holder.pid:
            # the sh child of flock(1) shares its description
            with open('/proc/%d/stat' % pid) as f:
                ppid = int(f.read().rpartition(')')[2].split()[1])
            self.assertEqual(ppid, holder.pid)
        self.assertIn(command, ('flock', 'sh'))

        e = self.assertIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.try_acquire)
        self.assertIn('process %d' % pid, e.message)

        holder.release()
        self.assertEqual(tuple(lock.query_holder()), (False, 0, None))

    def test_missing_file(self):
        lock = self.new_lock()
        self.assertEqual(tuple(lock.query_holder()), (False, 0, None))
        self.assertFalse(os.path.exists(self.path))


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestDescriptors(FeatureTestCase):

    def test_fd_lock_unlock(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.addCleanup(os.close, fd)
        self.assertTrue(Porta.fd_lock(fd, EX, Porta.Backend.FLOCK, 0, None))
        self.assertEqual(flock_try(self.path, shared=True), 1)

        fd2 = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self.addCleanup(os.close, fd2)
        e = self.assertIOError(Gio.IOErrorEnum.WOULD_BLOCK,
                               Porta.fd_lock, fd2, SH, Porta.Backend.FLOCK, 0, None)
        self.assertIn(self.path, e.message)
        self.assertIOError(Gio.IOErrorEnum.TIMED_OUT,
                           Porta.fd_lock, fd2, SH, Porta.Backend.FLOCK, 100, None)

        self.assertTrue(Porta.fd_unlock(fd, Porta.Backend.FLOCK))
        self.assertEqual(flock_try(self.path), 0)
        self.assertTrue(Porta.fd_lock(fd2, SH, Porta.Backend.FLOCK, 0, None))
        self.assertEqual(flock_try(self.path, shared=True), 0)
        self.assertEqual(flock_try(self.path), 1)
        self.assertTrue(Porta.fd_unlock(fd2, Porta.Backend.FLOCK))

    def test_stream_lock_append(self):
        f = Gio.File.new_for_path(self.path)
        out = f.append_to(Gio.FileCreateFlags.NONE, None)
        self.assertTrue(Porta.stream_lock(out, EX, Porta.Backend.DEFAULT, 5000 * TIME_FACTOR, None))
        self.assertEqual(flock_try(self.path, shared=True), 1)
        out.write_all(b'record\n', None)
        self.assertTrue(Porta.stream_unlock(out, Porta.Backend.DEFAULT))
        self.assertEqual(flock_try(self.path), 0)
        out.close(None)
        with open(self.path, 'rb') as fh:
            self.assertEqual(fh.read(), b'record\n')


@unittest.skipIf(FLOCK is None, 'flock(1) is not installed')
class TestLockable(FeatureTestCase):

    def test_lockable_methods(self):
        a = self.new_lock()
        b = self.new_lock()
        self.assertIsInstance(a, Porta.Lockable)
        held = []
        a.connect('notify::held', lambda *x: held.append(a.props.held))

        self.assertTrue(Porta.Lockable.acquire(a, 0, None))
        self.assertTrue(Porta.Lockable.get_held(a))
        self.assertEqual(held, [True])
        self.assertEqual(flock_try(self.path, shared=True), 1)
        self.assertIOError(Gio.IOErrorEnum.WOULD_BLOCK, Porta.Lockable.try_acquire, b)
        self.assertIOError(Gio.IOErrorEnum.TIMED_OUT, Porta.Lockable.acquire, b, 100, None)

        results = []

        def done(source, result):
            try:
                results.append(Porta.Lockable.acquire_finish(source, result))
            except GLib.Error as e:
                results.append(e)

        Porta.Lockable.acquire_async(b, 30000 * TIME_FACTOR, GLib.PRIORITY_DEFAULT, None, done)
        self.assertTrue(Porta.Lockable.release(a))
        self.assertEqual(held, [True, False])
        self.assertFalse(Porta.Lockable.get_held(a))
        self.run_until(lambda: results)
        self.assertEqual(results, [True])
        self.assertTrue(Porta.Lockable.get_held(b))
        self.assertTrue(b.props.held)
        self.assertTrue(Porta.Lockable.release(b))
        self.assertEqual(flock_try(self.path), 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
