# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_porta.py: portalock as Python programs see it, through PyGObject and
# the Porta-1 typelib.
#
# Run it with /usr/bin/python3 (the interpreter PyGObject is built for),
# with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the built
# portalock/ folder when the library is not installed; `meson test --suite
# python` does that, with the source's bindings/python on PYTHONPATH too:
# the calls here are the C-shaped ones of the bare typelib (milliseconds,
# Gio.File arguments, GLib.Error), and so check that they keep working
# through the PyGObject overrides. test_pythonic.py tests the Pythonic API.
#
# The other processes that hold or probe a lock are this same file run as
#   test_porta.py --holder KIND MODE PATH   (locks, prints "locked", waits
#                                            for a line on stdin, unlocks,
#                                            prints "released")
#   test_porta.py --probe KIND MODE PATH    (tries once, prints "busy" or
#                                            "free")
# with KIND one of flock (fcntl.flock), fcntl (fcntl.lockf: POSIX record
# locks, which ofd locks see too), portalocker, filelock; MODE exclusive or
# shared.

import fcntl
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

THIS_FILE = os.path.abspath(__file__)

# A holder gives up and exits by itself after this long, so that a test
# that fails half-way never leaves a process behind.
HOLDER_LIFETIME_S = 60

# How long to wait for a child to say something before failing the test.
CHILD_REPLY_S = 20

# A blocked acquire that should end early (cancelled, or handed the lock)
# must end well before this; the fail-safes release or give up after it.
FAILSAFE_S = 15


# ---------------------------------------------------------------------------
# The child side: holder and probe, with no dependency on gi.

def _child_open(path):
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _child_lock(kind, mode, path, blocking):
    """Locks @path; returns a function that unlocks it, or None if it is
    taken (only when not @blocking)."""
    exclusive = mode == 'exclusive'
    if kind in ('flock', 'fcntl'):
        fd = _child_open(path)
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            op |= fcntl.LOCK_NB
        func = fcntl.flock if kind == 'flock' else fcntl.lockf
        try:
            func(fd, op)
        except (BlockingIOError, PermissionError):
            # lockf reports a conflict with EACCES or EAGAIN
            os.close(fd)
            return None

        def unlock():
            func(fd, fcntl.LOCK_UN)
            os.close(fd)
        return unlock
    if kind == 'portalocker':
        import portalocker
        flags = portalocker.LOCK_EX if exclusive else portalocker.LOCK_SH
        if not blocking:
            flags |= portalocker.LOCK_NB
        fh = open(path, 'a')
        try:
            portalocker.lock(fh, flags)
        except portalocker.exceptions.LockException:
            fh.close()
            return None

        def unlock():
            portalocker.unlock(fh)
            fh.close()
        return unlock
    if kind == 'filelock':
        import filelock
        if not exclusive:
            raise SystemExit('filelock has no shared locks')
        lock = filelock.FileLock(path)
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except filelock.Timeout:
            return None
        return lock.release
    raise SystemExit('unknown lock kind %r' % kind)


def child_main(argv):
    role, kind, mode, path = argv
    if role == '--probe':
        unlock = _child_lock(kind, mode, path, blocking=False)
        print('free' if unlock is not None else 'busy', flush=True)
        if unlock is not None:
            unlock()
        return 0
    unlock = _child_lock(kind, mode, path, blocking=True)
    print('locked', flush=True)
    # Wait for a line (or EOF) on stdin, but not forever.
    select.select([sys.stdin], [], [], HOLDER_LIFETIME_S)
    unlock()
    print('released', flush=True)
    return 0


if __name__ == '__main__' and len(sys.argv) == 5 and sys.argv[1] in ('--holder', '--probe'):
    sys.exit(child_main(sys.argv[1:]))


# ---------------------------------------------------------------------------
# The test side.

import gc  # noqa: E402

import gi  # noqa: E402

gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
try:
    gi.require_version('Porta', '1')
except ValueError as e:
    sys.exit('test_porta.py: cannot find the Porta-1 typelib (%s); set '
             'GI_TYPELIB_PATH and LD_LIBRARY_PATH to the built portalock/ '
             'folder, or run it with `meson test --suite python`' % e)
from gi.repository import GLib, Gio, Porta  # noqa: E402

IO_ERROR = Gio.io_error_quark()
PORTA_ERROR = Porta.LockError.quark()

BACKENDS = (Porta.Backend.FLOCK, Porta.Backend.OFD, Porta.Backend.POSIX)


def kind_for_backend(backend):
    """The lock a plain Python program takes to contend with @backend."""
    return 'flock' if backend == Porta.Backend.FLOCK else 'fcntl'


def require_module(name, package):
    try:
        __import__(name)
    except ImportError as e:
        raise AssertionError(
            'Python module %r is missing (%s): install the Debian package %s '
            '(build-aux/deps.sh installs it); the interoperability tests need it'
            % (name, e, package)) from None


class Child:
    """Another process, whose stdout lines we read with a deadline."""

    def __init__(self, testcase, args):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0,
                                     close_fds=True)
        self.args = args
        self._buf = b''
        testcase.addCleanup(self.stop)

    def readline(self, timeout=CHILD_REPLY_S):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('%r said nothing within %d s' % (self.args, timeout))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError('%r exited (status %r) before saying a line'
                                         % (self.args, self.proc.wait()))
                self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        return line.decode()

    def expect(self, word):
        line = self.readline()
        if line != word:
            raise AssertionError('%r said %r, expected %r' % (self.args, line, word))

    def send_line(self):
        """Writes a line to the child's stdin. Never blocks: safe from a
        main-loop callback or another thread."""
        try:
            self.proc.stdin.write(b'\n')
        except (BrokenPipeError, ValueError):
            pass

    def wait(self, timeout=CHILD_REPLY_S):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.send_line()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class Holder(Child):
    """Another process that holds a lock until told to release it."""

    def __init__(self, testcase, kind, path, mode='exclusive', args=None):
        super().__init__(testcase, args or [sys.executable, THIS_FILE, '--holder', kind, mode, path])
        self.expect('locked')

    def release(self):
        """Tells the holder to release, and waits until it has."""
        self.send_line()
        self.expect('released')
        self.wait()


def probe(testcase, kind, path, mode='exclusive'):
    """'busy' or 'free': whether another process can take the lock now."""
    child = Child(testcase, [sys.executable, THIS_FILE, '--probe', kind, mode, path])
    answer = child.readline()
    testcase.assertEqual(child.wait(), 0)
    return answer


class PortaTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='porta-python-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, 'test.lock')

    def new_lock(self, mode=Porta.LockMode.EXCLUSIVE, backend=None, path=None):
        path = path or self.path
        if backend is None:
            lock = Porta.Lock.new_for_path(path, mode)
        else:
            lock = Porta.Lock.new_full(Gio.File.new_for_path(path), mode, backend,
                                       Porta.LockFlags.NONE)
        self.addCleanup(self._release_quietly, lock)
        return lock

    @staticmethod
    def _release_quietly(lock):
        if lock.props.held:
            lock.release()

    def assertIOError(self, error, code):
        self.assertTrue(error.matches(IO_ERROR, code),
                        'expected G_IO_ERROR %s, got %s:%d: %s'
                        % (code.value_nick, error.domain, error.code, error.message))

    def assertRaisesIOError(self, code, func, *args):
        with self.assertRaises(GLib.Error) as cm:
            func(*args)
        self.assertIOError(cm.exception, code)
        return cm.exception

    def run_loop(self, loop, failsafe_s=FAILSAFE_S):
        """Runs @loop until something quits it; fails if nothing does in
        @failsafe_s."""
        timed_out = []

        def on_failsafe():
            timed_out.append(True)
            loop.quit()
            return GLib.SOURCE_REMOVE
        source = GLib.timeout_add_seconds(failsafe_s, on_failsafe)
        loop.run()
        if not timed_out:
            GLib.source_remove(source)
        self.assertFalse(timed_out, 'the main loop was still waiting after %d s' % failsafe_s)

    def iterate(self, seconds):
        """Runs the default main context for @seconds."""
        loop = GLib.MainLoop()
        GLib.timeout_add(int(seconds * 1000), loop.quit)
        loop.run()


class TestSync(PortaTestCase):
    def test_acquire_release(self):
        lock = self.new_lock()
        self.assertFalse(lock.props.held)
        self.assertFalse(lock.get_held())
        self.assertTrue(lock.acquire(-1, None))
        self.assertTrue(lock.props.held)
        self.assertTrue(os.path.exists(self.path), 'acquire creates the lock file')
        self.assertEqual(os.stat(self.path).st_size, 0)
        self.assertEqual(probe(self, 'flock', self.path), 'busy')
        self.assertTrue(lock.release())
        self.assertFalse(lock.props.held)
        self.assertEqual(probe(self, 'flock', self.path), 'free')
        # and again, with each timeout form
        self.assertTrue(lock.acquire(0, None))
        self.assertTrue(lock.release())
        self.assertTrue(lock.acquire(1000, None))
        self.assertTrue(lock.release())

    def test_properties(self):
        lock = self.new_lock(Porta.LockMode.SHARED)
        self.assertEqual(lock.props.mode, Porta.LockMode.SHARED)
        self.assertEqual(lock.get_mode(), Porta.LockMode.SHARED)
        self.assertEqual(lock.props.file.get_path(), self.path)
        self.assertEqual(lock.get_file().get_path(), self.path)
        self.assertEqual(lock.props.flags, Porta.LockFlags.NONE)

    def test_default_backend_is_flock(self):
        lock = self.new_lock()
        self.assertEqual(lock.props.backend, Porta.Backend.FLOCK)
        self.assertEqual(lock.get_backend(), Porta.Backend.FLOCK)
        lock = Porta.Lock.new(Gio.File.new_for_path(self.path), Porta.LockMode.EXCLUSIVE)
        self.assertEqual(lock.props.backend, Porta.Backend.FLOCK)
        lock = self.new_lock(backend=Porta.Backend.DEFAULT)
        self.assertEqual(lock.props.backend, Porta.Backend.FLOCK)
        for backend in BACKENDS:
            self.assertEqual(self.new_lock(backend=backend).props.backend, backend)

    def test_already_held_and_not_held(self):
        lock = self.new_lock()
        with self.assertRaises(GLib.Error) as cm:
            lock.release()
        self.assertTrue(cm.exception.matches(PORTA_ERROR, Porta.LockError.NOT_HELD), cm.exception)
        lock.acquire(-1, None)
        with self.assertRaises(GLib.Error) as cm:
            lock.acquire(0, None)
        self.assertTrue(cm.exception.matches(PORTA_ERROR, Porta.LockError.ALREADY_HELD), cm.exception)
        self.assertTrue(lock.props.held, 'a failed second acquire keeps the lock')
        self.assertEqual(probe(self, 'flock', self.path), 'busy')

    def test_try_acquire_would_block(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        error = self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.try_acquire)
        self.assertIn(self.path, error.message)
        self.assertFalse(lock.props.held)
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.acquire, 0, None)
        holder.release()
        self.assertTrue(lock.try_acquire())
        self.assertTrue(lock.props.held)
        lock.release()

    def test_timeout(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        for timeout_ms in (1, 300):
            start = time.monotonic()
            error = self.assertRaisesIOError(Gio.IOErrorEnum.TIMED_OUT, lock.acquire, timeout_ms, None)
            elapsed_ms = (time.monotonic() - start) * 1000
            self.assertIn(self.path, error.message)
            self.assertFalse(lock.props.held)
            self.assertGreaterEqual(elapsed_ms, timeout_ms - 5)
            self.assertLessEqual(elapsed_ms, timeout_ms + 2000)
        # the wait that timed out keeps nothing
        holder.release()
        self.assertEqual(probe(self, 'flock', self.path), 'free')

    def test_wait_handed_over_by_other_process(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        timer = threading.Timer(0.2, holder.send_line)
        timer.start()
        self.addCleanup(timer.cancel)
        start = time.monotonic()
        self.assertTrue(lock.acquire(FAILSAFE_S * 1000, None))
        elapsed = time.monotonic() - start
        self.assertTrue(lock.props.held)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, FAILSAFE_S - 1)
        holder.expect('released')
        holder.wait()

    def test_cancel_from_other_thread(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        cancellable = Gio.Cancellable()
        timer = threading.Timer(0.2, cancellable.cancel)
        # If cancelling fails to end the wait, the holder lets go after a
        # while, so the test fails instead of hanging.
        failsafe = threading.Timer(FAILSAFE_S, holder.send_line)
        timer.start()
        failsafe.start()
        self.addCleanup(timer.cancel)
        self.addCleanup(failsafe.cancel)
        start = time.monotonic()
        error = self.assertRaisesIOError(Gio.IOErrorEnum.CANCELLED, lock.acquire, -1, cancellable)
        elapsed = time.monotonic() - start
        timer.join()
        self.assertFalse(lock.props.held)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, FAILSAFE_S - 1)
        self.assertTrue(error.message)
        # the abandoned wait keeps nothing: once the holder lets go, the
        # file is free for everyone, and the lock can be taken again
        failsafe.cancel()
        holder.release()
        self.assertEqual(probe(self, 'flock', self.path), 'free')
        self.assertTrue(lock.acquire(0, None))

    def test_cancelled_before(self):
        Holder(self, 'flock', self.path)
        lock = self.new_lock()
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        start = time.monotonic()
        self.assertRaisesIOError(Gio.IOErrorEnum.CANCELLED, lock.acquire, -1, cancellable)
        self.assertLess(time.monotonic() - start, 5)
        self.assertFalse(lock.props.held)

    def test_two_locks_in_one_process_two_threads(self):
        first = self.new_lock()
        second = self.new_lock()
        first.acquire(-1, None)
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, second.try_acquire)
        done = []

        def wait_in_thread():
            try:
                done.append(second.acquire(FAILSAFE_S * 1000, None))
            except GLib.Error as e:
                done.append(e)
        thread = threading.Thread(target=wait_in_thread)
        thread.start()
        time.sleep(0.2)
        self.assertEqual(done, [], 'the second lock waits while the first is held')
        first.release()
        thread.join(FAILSAFE_S + 5)
        self.assertFalse(thread.is_alive())
        self.assertEqual(done, [True])
        self.assertTrue(second.props.held)
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, first.try_acquire)

    def test_dispose_releases(self):
        lock = Porta.Lock.new_for_path(self.path, Porta.LockMode.EXCLUSIVE)
        lock.acquire(-1, None)
        self.assertEqual(probe(self, 'flock', self.path), 'busy')
        del lock
        gc.collect()
        self.assertEqual(probe(self, 'flock', self.path), 'free')

    def test_shared(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend.value_nick):
                holder = Holder(self, kind_for_backend(backend), self.path, 'shared')
                shared = self.new_lock(Porta.LockMode.SHARED, backend)
                self.assertTrue(shared.try_acquire(), 'shared locks coexist')
                shared.release()
                exclusive = self.new_lock(Porta.LockMode.EXCLUSIVE, backend)
                self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, exclusive.try_acquire)
                holder.release()
                self.assertTrue(exclusive.try_acquire())
                exclusive.release()
                # and the other way round
                shared.acquire(-1, None)
                kind = kind_for_backend(backend)
                self.assertEqual(probe(self, kind, self.path, 'shared'), 'free')
                self.assertEqual(probe(self, kind, self.path, 'exclusive'), 'busy')
                shared.release()

    def test_every_backend_excludes_other_process(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend.value_nick):
                kind = kind_for_backend(backend)
                lock = self.new_lock(backend=backend)
                self.assertEqual(lock.props.backend, backend)
                # another process holds it: we cannot have it
                holder = Holder(self, kind, self.path)
                self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.try_acquire)
                self.assertRaisesIOError(Gio.IOErrorEnum.TIMED_OUT, lock.acquire, 50, None)
                holder.release()
                # we hold it: another process cannot have it
                self.assertTrue(lock.try_acquire())
                self.assertEqual(probe(self, kind, self.path), 'busy')
                lock.release()
                self.assertEqual(probe(self, kind, self.path), 'free')
                # and a waiter in this process is handed it by the other one
                holder = Holder(self, kind, self.path)
                timer = threading.Timer(0.1, holder.send_line)
                timer.start()
                self.addCleanup(timer.cancel)
                self.assertTrue(lock.acquire(FAILSAFE_S * 1000, None))
                holder.expect('released')
                holder.wait()
                lock.release()

    def test_posix_second_lock_in_process_is_busy(self):
        first = self.new_lock(backend=Porta.Backend.POSIX)
        second = self.new_lock(backend=Porta.Backend.POSIX)
        first.acquire(-1, None)
        self.assertRaisesIOError(Gio.IOErrorEnum.BUSY, second.try_acquire)
        self.assertTrue(first.props.held)
        self.assertEqual(probe(self, 'fcntl', self.path), 'busy',
                         'the failed second lock did not drop the first one')
        first.release()
        self.assertTrue(second.try_acquire())


class TestErrors(PortaTestCase):
    def test_missing_folder(self):
        path = os.path.join(self.dir, 'no-such-folder', 'test.lock')
        lock = self.new_lock(path=path)
        notified = []
        lock.connect('notify::held', lambda *a: notified.append(a))
        for call in (lambda: lock.acquire(-1, None), lock.try_acquire,
                     lambda: lock.acquire(100, None)):
            error = self.assertRaisesIOError(Gio.IOErrorEnum.NOT_FOUND, call)
            self.assertIn(path, error.message)
        self.assertFalse(lock.props.held)
        self.assertEqual(notified, [])
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    def test_not_local(self):
        lock = Porta.Lock.new(Gio.File.new_for_uri('http://example.com/test.lock'),
                              Porta.LockMode.EXCLUSIVE)
        error = self.assertRaisesIOError(Gio.IOErrorEnum.NOT_SUPPORTED, lock.acquire, -1, None)
        self.assertIn('example.com', error.message)
        self.assertFalse(lock.props.held)

    def test_missing_folder_async(self):
        path = os.path.join(self.dir, 'no-such-folder', 'test.lock')
        lock = self.new_lock(path=path)
        loop = GLib.MainLoop()
        errors = []

        def on_done(source, result):
            try:
                source.acquire_finish(result)
                errors.append(None)
            except GLib.Error as e:
                errors.append(e)
            loop.quit()
        lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, None, on_done)
        self.run_loop(loop)
        self.assertEqual(len(errors), 1)
        self.assertIsNotNone(errors[0])
        self.assertIOError(errors[0], Gio.IOErrorEnum.NOT_FOUND)
        self.assertIn(path, errors[0].message)


class TestHeldNotify(PortaTestCase):
    def test_notify_once_per_change(self):
        lock = self.new_lock()
        events = []
        lock.connect('notify::held', lambda obj, pspec: events.append(obj.props.held))
        lock.acquire(-1, None)
        self.assertEqual(events, [True])
        with self.assertRaises(GLib.Error):
            lock.acquire(0, None)
        self.assertEqual(events, [True], 'a failed acquire changes nothing')
        lock.release()
        self.assertEqual(events, [True, False])
        with self.assertRaises(GLib.Error):
            lock.release()
        self.assertEqual(events, [True, False])
        lock.try_acquire()
        lock.release()
        self.assertEqual(events, [True, False, True, False])

    def test_no_notify_when_failing(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        events = []
        lock.connect('notify::held', lambda obj, pspec: events.append(obj.props.held))
        with self.assertRaises(GLib.Error):
            lock.try_acquire()
        with self.assertRaises(GLib.Error):
            lock.acquire(50, None)
        self.assertEqual(events, [])
        holder.release()

    def test_notify_async(self):
        lock = self.new_lock()
        events = []
        lock.connect('notify::held', lambda obj, pspec: events.append(obj.props.held))
        loop = GLib.MainLoop()
        seen_in_callback = []

        def on_done(source, result):
            self.assertTrue(source.acquire_finish(result))
            seen_in_callback.append((list(events), source.props.held))
            loop.quit()
        lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, None, on_done)
        self.run_loop(loop)
        self.assertEqual(seen_in_callback, [([True], True)],
                         'held is TRUE and notified once when the callback runs')
        lock.release()
        self.assertEqual(events, [True, False])


class TestStream(PortaTestCase):
    def test_read_write(self):
        with open(self.path, 'wb') as f:
            f.write(b'old contents\n')
        lock = self.new_lock()
        self.assertIsNone(lock.get_stream(), 'no stream while not held')
        lock.acquire(-1, None)
        self.assertEqual(os.stat(self.path).st_size, 13, 'acquire never truncates')
        stream = lock.get_stream()
        self.assertIsInstance(stream, Gio.FileIOStream)
        self.assertIs(lock.get_stream(), stream, 'the same stream while held')
        self.assertFalse(stream.is_closed())
        data = stream.get_input_stream().read_bytes(100, None).get_data()
        self.assertEqual(data, b'old contents\n', 'the stream starts at offset 0')

        self.assertTrue(stream.can_seek())
        self.assertTrue(stream.can_truncate())
        self.assertTrue(stream.seek(0, GLib.SeekType.SET, None))
        self.assertTrue(stream.truncate(0, None))
        ok, written = stream.get_output_stream().write_all(b'hello, portalock\n', None)
        self.assertTrue(ok)
        self.assertEqual(written, 17)
        self.assertEqual(stream.tell(), 17)
        self.assertTrue(stream.seek(0, GLib.SeekType.SET, None))
        data = stream.get_input_stream().read_bytes(100, None).get_data()
        self.assertEqual(data, b'hello, portalock\n')
        self.assertTrue(stream.seek(7, GLib.SeekType.SET, None))
        self.assertEqual(stream.get_input_stream().read_bytes(8, None).get_data(), b'portaloc')

        self.assertTrue(lock.release())
        self.assertTrue(stream.is_closed(), 'release closes the stream')
        self.assertIsNone(lock.get_stream())
        with open(self.path, 'rb') as f:
            self.assertEqual(f.read(), b'hello, portalock\n')

    def test_stream_every_backend(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend.value_nick):
                lock = self.new_lock(backend=backend)
                lock.acquire(-1, None)
                stream = lock.get_stream()
                stream.seek(0, GLib.SeekType.SET, None)
                stream.truncate(0, None)
                stream.get_output_stream().write_all(backend.value_nick.encode(), None)
                stream.seek(0, GLib.SeekType.SET, None)
                self.assertEqual(stream.get_input_stream().read_bytes(100, None).get_data(),
                                 backend.value_nick.encode())
                # for a POSIX lock, reading and writing must not have dropped it
                self.assertEqual(probe(self, kind_for_backend(backend), self.path), 'busy')
                lock.release()
                self.assertTrue(stream.is_closed())
                self.assertEqual(probe(self, kind_for_backend(backend), self.path), 'free')


class TestAsync(PortaTestCase):
    def start_acquire(self, lock, timeout_ms, cancellable=None):
        """Starts acquire_async; returns (loop, results) where results gets
        ('ok', value) or ('error', GLib.Error), and the time, once per
        callback."""
        loop = GLib.MainLoop()
        results = []

        def on_done(source, result):
            self.assertIs(source, lock)
            try:
                results.append(('ok', source.acquire_finish(result), time.monotonic()))
            except GLib.Error as e:
                results.append(('error', e, time.monotonic()))
            loop.quit()
        lock.acquire_async(timeout_ms, GLib.PRIORITY_DEFAULT, cancellable, on_done)
        return loop, results

    def ticker(self, interval_ms=10):
        ticks = [0]

        def tick():
            ticks[0] += 1
            return GLib.SOURCE_CONTINUE
        source = GLib.timeout_add(interval_ms, tick)
        self.addCleanup(GLib.source_remove, source)
        return ticks

    def test_uncontended(self):
        lock = self.new_lock()
        loop, results = self.start_acquire(lock, -1)
        self.run_loop(loop)
        self.assertEqual([r[:2] for r in results], [('ok', True)])
        self.assertTrue(lock.props.held)
        self.assertEqual(probe(self, 'flock', self.path), 'busy')

    def test_handed_over_by_other_process(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        ticks = self.ticker()
        released = []

        def release_holder():
            released.append((time.monotonic(), ticks[0]))
            holder.send_line()
            return GLib.SOURCE_REMOVE
        GLib.timeout_add(200, release_holder)
        loop, results = self.start_acquire(lock, -1)
        self.assertEqual(results, [], 'the callback never runs before acquire_async returns')
        self.run_loop(loop)
        self.assertEqual(len(released), 1)
        self.assertEqual(len(results), 1)
        kind, value, when = results[0]
        self.assertEqual((kind, value), ('ok', True), value)
        self.assertTrue(lock.props.held)
        self.assertGreaterEqual(when, released[0][0], 'the lock came after the other process let go')
        self.assertGreaterEqual(released[0][1], 1, 'the main loop ran while the lock was awaited')
        holder.expect('released')
        holder.wait()
        self.assertEqual(probe(self, 'flock', self.path), 'busy')
        self.iterate(0.05)
        self.assertEqual(len(results), 1, 'the callback runs once')

    def test_timeout(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        ticks = self.ticker()
        start = time.monotonic()
        loop, results = self.start_acquire(lock, 300)
        self.run_loop(loop)
        self.assertEqual(len(results), 1)
        kind, error, when = results[0]
        self.assertEqual(kind, 'error', error)
        self.assertIOError(error, Gio.IOErrorEnum.TIMED_OUT)
        self.assertIn(self.path, error.message)
        elapsed_ms = (when - start) * 1000
        self.assertGreaterEqual(elapsed_ms, 300 - 5)
        self.assertLessEqual(elapsed_ms, 300 + 2000)
        self.assertGreaterEqual(ticks[0], 1, 'the main loop ran while the lock was awaited')
        self.assertFalse(lock.props.held)
        holder.release()
        self.assertEqual(probe(self, 'flock', self.path), 'free', 'the wait that timed out keeps nothing')

    def test_cancel(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        cancellable = Gio.Cancellable()

        def cancel():
            cancellable.cancel()
            return GLib.SOURCE_REMOVE
        GLib.timeout_add(200, cancel)
        start = time.monotonic()
        loop, results = self.start_acquire(lock, -1, cancellable)
        self.run_loop(loop)
        self.assertEqual(len(results), 1)
        kind, error, when = results[0]
        self.assertEqual(kind, 'error', error)
        self.assertIOError(error, Gio.IOErrorEnum.CANCELLED)
        self.assertGreaterEqual(when - start, 0.15)
        self.assertFalse(lock.props.held)
        holder.release()
        self.assertEqual(probe(self, 'flock', self.path), 'free',
                         'the cancelled wait keeps nothing')
        self.iterate(0.05)
        self.assertEqual(len(results), 1, 'the callback runs once')
        self.assertTrue(lock.try_acquire())

    def test_cancelled_before(self):
        Holder(self, 'flock', self.path)
        lock = self.new_lock()
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        loop, results = self.start_acquire(lock, -1, cancellable)
        self.run_loop(loop)
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0][0], 'error')
        self.assertIOError(results[0][1], Gio.IOErrorEnum.CANCELLED)
        self.assertFalse(lock.props.held)

    def test_try_once_async(self):
        Holder(self, 'flock', self.path)
        lock = self.new_lock()
        loop, results = self.start_acquire(lock, 0)
        self.run_loop(loop)
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0][0], 'error')
        self.assertIOError(results[0][1], Gio.IOErrorEnum.WOULD_BLOCK)

    def test_second_call_pending(self):
        holder = Holder(self, 'flock', self.path)
        lock = self.new_lock()
        loop, results = self.start_acquire(lock, -1)
        loop2, results2 = self.start_acquire(lock, -1)
        self.run_loop(loop2)
        self.assertEqual(len(results2), 1)
        self.assertEqual(results2[0][0], 'error')
        self.assertIOError(results2[0][1], Gio.IOErrorEnum.PENDING)
        self.assertEqual(results, [], 'the first call still waits')
        self.assertRaisesIOError(Gio.IOErrorEnum.PENDING, lock.acquire, 0, None)
        holder.send_line()
        self.run_loop(loop)
        self.assertEqual([r[:2] for r in results], [('ok', True)])
        self.assertTrue(lock.props.held)
        holder.expect('released')


class TestInterop(PortaTestCase):
    """Python portalocker and filelock use flock(2): they and the default
    backend exclude each other, both ways."""

    def check_other_holds(self, kind):
        holder = Holder(self, kind, self.path)
        lock = self.new_lock()
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.try_acquire)
        timer = threading.Timer(0.1, holder.send_line)
        timer.start()
        self.addCleanup(timer.cancel)
        self.assertTrue(lock.acquire(FAILSAFE_S * 1000, None))
        holder.expect('released')
        holder.wait()

    def check_porta_holds(self, kind):
        lock = self.new_lock()
        lock.acquire(-1, None)
        self.assertEqual(probe(self, kind, self.path), 'busy')
        lock.release()
        self.assertEqual(probe(self, kind, self.path), 'free')

    def test_portalocker_holds(self):
        require_module('portalocker', 'python3-portalocker')
        self.check_other_holds('portalocker')

    def test_porta_holds_against_portalocker(self):
        require_module('portalocker', 'python3-portalocker')
        self.check_porta_holds('portalocker')

    def test_portalocker_shared(self):
        require_module('portalocker', 'python3-portalocker')
        holder = Holder(self, 'portalocker', self.path, 'shared')
        self.assertTrue(self.new_lock(Porta.LockMode.SHARED).try_acquire())
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, self.new_lock().try_acquire)
        holder.release()

    def test_filelock_holds(self):
        require_module('filelock', 'python3-filelock')
        self.check_other_holds('filelock')

    def test_porta_holds_against_filelock(self):
        require_module('filelock', 'python3-filelock')
        self.check_porta_holds('filelock')

    def test_flock_command(self):
        flock = shutil.which('flock', path='/usr/bin:/bin:' + os.environ.get('PATH', ''))
        self.assertIsNotNone(flock, 'flock(1) is missing: install util-linux')
        holder = Holder(self, None, self.path,
                        args=[flock, self.path, '-c', 'echo locked; read x; echo released'])
        lock = self.new_lock()
        self.assertRaisesIOError(Gio.IOErrorEnum.WOULD_BLOCK, lock.try_acquire)
        holder.release()
        self.assertTrue(lock.try_acquire())
        self.assertEqual(subprocess.run([flock, '-n', self.path, 'true'], timeout=CHILD_REPLY_S).returncode, 1)
        lock.release()
        self.assertEqual(subprocess.run([flock, '-n', self.path, 'true'], timeout=CHILD_REPLY_S).returncode, 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
