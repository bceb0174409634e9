# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_pythonic.py: the Python API that the PyGObject overrides
# (bindings/python/gi/overrides/Porta.py) give Porta: context managers,
# timeouts in seconds, paths, named exceptions, keyword async calls,
# portalocker's lock()/unlock(), and the README's portalocker equivalents.
#
#   test_pythonic.py [README.md]
#
# Run with /usr/bin/python3, GI_TYPELIB_PATH and LD_LIBRARY_PATH at the
# library and PYTHONPATH at a folder holding gi/overrides/Porta.py; `meson
# test --suite python` runs it on the build tree, and test_installed.py on
# a `meson install` into a temporary folder. If PORTA_EXPECT_OVERRIDES is
# set, the overrides must have been loaded from that folder.

import gc
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import unittest

import gi

if os.environ.get('PORTA_OVERRIDES_PATH'):
    # Installed with -Dpygobject_overrides_dir into a folder that is not a
    # gi/overrides folder of a sys.path entry (see test_installed.py).
    import gi.overrides
    gi.overrides.__path__.insert(0, os.environ['PORTA_OVERRIDES_PATH'])

gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Porta', '1')
from gi.repository import GLib, Gio, Porta  # noqa: E402

README = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1].endswith('.md') else \
    os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'README.md')

IO_ERROR = Gio.io_error_quark()
PORTA_ERROR = Porta.LockError.quark()

# Generous bounds for a loaded machine: a wait that should end early must
# end within this; a timeout must not end before its time.
LATE_S = 15


class OverridesLoaded(unittest.TestCase):
    def test_overrides_module(self):
        module = sys.modules.get('gi.overrides.Porta')
        self.assertIsNotNone(module, 'the Porta overrides were not loaded')
        expected = os.environ.get('PORTA_EXPECT_OVERRIDES')
        if expected:
            self.assertEqual(os.path.dirname(os.path.realpath(module.__file__)),
                             os.path.realpath(expected))
        self.assertIs(Porta.Lock, module.Lock)

    def test_every_lockable_is_pythonic(self):
        """Every class of the typelib that implements Porta.Lockable, today
        and later (a Redis lock), gets the context manager and the Pythonic
        methods, from the one implementation on Porta.Lockable."""
        from gi._gi import ObjectInfo, Repository
        names = [info.get_name() for info in Repository.get_default().get_infos('Porta')
                 if isinstance(info, ObjectInfo)
                 and any(i.get_name() == 'Lockable' for i in info.get_interfaces())]
        self.assertTrue({'Lock', 'PidFile', 'Semaphore'} <= set(names))
        for name in names:
            cls = getattr(Porta, name)
            self.assertEqual(cls.__module__, 'gi.overrides.Porta', name)
            self.assertTrue(issubclass(cls, Porta.Lockable), name)
            self.assertIs(cls.__enter__, Porta.Lockable.__enter__, name)
            self.assertIs(cls.__exit__, Porta.Lockable.__exit__, name)
            for method in ('acquire', 'try_acquire', 'acquire_async', 'acquire_finish', 'release'):
                self.assertIs(getattr(cls, method), getattr(Porta.Lockable, method),
                              '%s.%s' % (name, method))


class LaterLockKinds(unittest.TestCase):
    """A lock kind that the overrides do not know by name (a Redis lock
    added to the typelib) gets a class made as this one is made here from
    the typelib's Porta.Lock."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='porta-pythonic-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, 'app.lock')

    def test_generic_class(self):
        overrides = sys.modules['gi.overrides.Porta']
        gi_lock = [c for c in Porta.Lock.__mro__ if c.__module__ == 'gi.repository.Porta'][0]
        cls = overrides._pythonic_lockable_class(gi_lock)
        self.assertIsNot(cls, Porta.Lock)
        self.assertIs(cls.acquire, Porta.Lockable.acquire)
        lock = cls(file=Gio.File.new_for_path(self.path), mode=Porta.LockMode.EXCLUSIVE,
                   timeout=0.2)
        self.assertIsInstance(lock, cls)
        self.assertEqual(lock.timeout, 0.2)
        with lock:
            self.assertTrue(lock.props.held)
            other = cls(file=Gio.File.new_for_path(self.path), timeout=0.2)
            start = time.monotonic()
            with self.assertRaises(Porta.LockTimeout):
                with other:
                    self.fail('the block ran without the lock')
            self.assertGreaterEqual(time.monotonic() - start, 0.19)
            with self.assertRaises(Porta.AlreadyLocked):
                other.acquire(timeout=0)
        self.assertFalse(lock.props.held)


class TestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='porta-pythonic-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, 'app.lock')

    def holder(self, mode=Porta.LockMode.EXCLUSIVE, backend=Porta.Backend.DEFAULT):
        """Another holder of the lock. flock and OFD locks belong to the
        open file description, so a second Porta.Lock in this process
        contends as another process would."""
        other = Porta.Lock(self.path, mode, backend=backend)
        other.acquire(timeout=0)
        self.addCleanup(lambda: other.props.held and other.release())
        return other

    def release_later(self, lock, delay_s=0.2):
        timer = threading.Timer(delay_s, lock.release)
        timer.start()
        self.addCleanup(timer.join)
        return timer

    def assertLockError(self, cls, domain, code, func, *args, **kwargs):
        with self.assertRaises(cls) as cm:
            func(*args, **kwargs)
        e = cm.exception
        self.assertIs(type(e), cls)
        self.assertIsInstance(e, GLib.Error)
        self.assertIsInstance(e, Porta.LockException)
        self.assertTrue(e.matches(domain, code), e)
        self.assertEqual(e.domain, GLib.quark_to_string(domain))
        self.assertEqual(e.code, int(code))
        self.assertTrue(e.message)
        return e


class ContextManager(TestCase):
    def lockables(self):
        # With a timeout, a lock left held fails a test instead of hanging it.
        return [
            Porta.Lock(self.path, timeout=LATE_S),
            Porta.PidFile(os.path.join(self.dir, 'app.pid'), timeout=LATE_S),
            Porta.Semaphore('jobs', 1, self.dir, timeout=LATE_S),
        ]

    def test_with_holds_and_releases(self):
        for lockable in self.lockables():
            with self.subTest(kind=type(lockable).__name__):
                with lockable as held:
                    self.assertIs(held, lockable)
                    self.assertTrue(lockable.props.held)
                self.assertFalse(lockable.props.held)

    def test_with_releases_when_the_block_raises(self):
        for lockable in self.lockables():
            with self.subTest(kind=type(lockable).__name__):
                with self.assertRaises(KeyError):
                    with lockable:
                        self.assertTrue(lockable.props.held)
                        raise KeyError('in the block')
                self.assertFalse(lockable.props.held)
                # and it can be taken again at once
                with lockable:
                    self.assertTrue(lockable.props.held)

    def test_with_after_release_in_the_block(self):
        lock = Porta.Lock(self.path, timeout=LATE_S)
        with lock:
            lock.release()
        self.assertFalse(lock.props.held)

    def test_with_excludes_others(self):
        with Porta.Lock(self.path):
            self.assertLockError(Porta.AlreadyLocked, IO_ERROR, Gio.IOErrorEnum.WOULD_BLOCK,
                                 Porta.Lock(self.path).acquire, timeout=0)
        with Porta.Semaphore('jobs', 1, self.dir):
            self.assertLockError(Porta.AlreadyLocked, IO_ERROR, Gio.IOErrorEnum.WOULD_BLOCK,
                                 Porta.Semaphore('jobs', 1, self.dir).acquire, timeout=0)

    def test_with_timed_out(self):
        self.holder()
        start = time.monotonic()
        with self.assertRaises(Porta.LockTimeout):
            with Porta.Lock(self.path, timeout=0.2):
                self.fail('the block ran without the lock')
        self.assertGreaterEqual(time.monotonic() - start, 0.19)

    def test_with_waits_for_the_holder(self):
        other = self.holder()
        self.release_later(other)
        start = time.monotonic()
        with Porta.Lock(self.path, timeout=LATE_S) as lock:
            self.assertTrue(lock.props.held)
        self.assertLess(time.monotonic() - start, LATE_S)

    def test_reentrant_nested_with(self):
        lock = Porta.Lock(self.path, flags=Porta.LockFlags.REENTRANT)
        with lock:
            with lock:
                self.assertEqual(lock.get_depth(), 2)
            self.assertTrue(lock.props.held)
        self.assertFalse(lock.props.held)

    def test_with_on_a_lockable_made_in_c(self):
        """An object the library made, not constructed from Python."""
        lock = Porta.Lock.new_for_path(self.path, Porta.LockMode.EXCLUSIVE)
        lock.timeout = LATE_S
        with lock:
            self.assertTrue(lock.props.held)
        self.assertFalse(lock.props.held)


class Timeouts(TestCase):
    def test_acquire_without_argument(self):
        lock = Porta.Lock(self.path)
        self.assertTrue(lock.acquire())
        lock.release()

    def test_none_waits_for_as_long_as_it_takes(self):
        other = self.holder()
        lock = Porta.Lock(self.path)
        start = time.monotonic()
        timer = self.release_later(other, 0.3)
        self.assertTrue(lock.acquire(timeout=None))
        # the holder let go 0.3 s after start at the earliest
        self.assertGreaterEqual(time.monotonic() - start, 0.29)
        lock.release()
        # A PortaLock is used by one thread at a time: the timer's release
        # may still be returning after the kernel let the lock go.
        timer.join()
        # acquire() with no timeout and none configured waits too
        other.acquire(timeout=0)
        self.release_later(other, 0.3)
        self.assertTrue(lock.acquire())
        lock.release()

    def test_zero_tries_once(self):
        self.holder()
        start = time.monotonic()
        self.assertLockError(Porta.AlreadyLocked, IO_ERROR, Gio.IOErrorEnum.WOULD_BLOCK,
                             Porta.Lock(self.path).acquire, timeout=0)
        self.assertLess(time.monotonic() - start, LATE_S)

    def test_float_seconds(self):
        self.holder()
        lock = Porta.Lock(self.path)
        start = time.monotonic()
        self.assertLockError(Porta.LockTimeout, IO_ERROR, Gio.IOErrorEnum.TIMED_OUT,
                             lock.acquire, timeout=0.25)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.24)
        self.assertLess(elapsed, LATE_S)

    def test_the_locks_own_timeout(self):
        self.holder()
        for lock in (Porta.Lock(self.path, timeout=0.2), Porta.Lock(self.path)):
            lock.timeout = 0.2
            start = time.monotonic()
            with self.assertRaises(Porta.LockTimeout):
                lock.acquire()
            self.assertGreaterEqual(time.monotonic() - start, 0.19)
            # an explicit timeout wins over it
            with self.assertRaises(Porta.AlreadyLocked):
                lock.acquire(timeout=0)

    def test_bad_timeouts(self):
        lock = Porta.Lock(self.path)
        with self.assertRaises(ValueError):
            lock.acquire(timeout=-1)
        with self.assertRaises(ValueError):
            lock.acquire(timeout=float('nan'))
        with self.assertRaises(TypeError):
            lock.acquire(timeout='1')
        with self.assertRaises(TypeError):
            lock.acquire(1000, timeout=1)
        self.assertFalse(lock.props.held)

    def test_tiny_timeout_still_waits(self):
        self.holder()
        with self.assertRaises(Porta.LockTimeout):
            Porta.Lock(self.path).acquire(timeout=0.0001)

    def test_infinite_seconds(self):
        other = self.holder()
        self.release_later(other)
        lock = Porta.Lock(self.path)
        self.assertTrue(lock.acquire(timeout=float('inf')))
        lock.release()

    def test_convert_in_seconds(self):
        lock = Porta.Lock(self.path, Porta.LockMode.SHARED, backend=Porta.Backend.OFD)
        other = self.holder(Porta.LockMode.SHARED, Porta.Backend.OFD)
        with lock:
            with self.assertRaises(Porta.LockTimeout):
                lock.convert(Porta.LockMode.EXCLUSIVE, timeout=0.1)
            other.release()
            self.assertTrue(lock.convert(Porta.LockMode.EXCLUSIVE, timeout=LATE_S))
            self.assertEqual(lock.props.mode, Porta.LockMode.EXCLUSIVE)


class Paths(TestCase):
    def paths(self):
        return [self.path, pathlib.Path(self.path), os.fsencode(self.path),
                Gio.File.new_for_path(self.path)]

    def test_lock_from_any_path(self):
        for path in self.paths():
            for lock in (Porta.Lock(path), Porta.Lock.new(path), Porta.Lock.new_full(path),
                         Porta.Lock.new_for_path(path), Porta.Lock.new_full_for_path(path)):
                with self.subTest(path=path, lock=lock):
                    lock.timeout = LATE_S  # a lock left held fails the test, not hangs it
                    self.assertEqual(lock.props.file.get_path(), self.path)
                    self.assertEqual(lock.props.mode, Porta.LockMode.EXCLUSIVE)
                    self.assertEqual(lock.props.flags, Porta.LockFlags.NONE)
                    with lock:
                        self.assertTrue(lock.props.held)

    def test_lock_keywords(self):
        lock = Porta.Lock(pathlib.Path(self.path), Porta.LockMode.SHARED, timeout=1.5,
                          backend=Porta.Backend.OFD, flags=Porta.LockFlags.DELETE_ON_RELEASE)
        self.assertEqual(lock.props.mode, Porta.LockMode.SHARED)
        self.assertEqual(lock.props.backend, Porta.Backend.OFD)
        self.assertEqual(lock.props.flags, Porta.LockFlags.DELETE_ON_RELEASE)
        self.assertEqual(lock.timeout, 1.5)
        with self.assertRaises(TypeError):
            Porta.Lock()
        with self.assertRaises(TypeError):
            Porta.Lock(42)

    def test_relative_path(self):
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)
        with Porta.Lock('app.lock') as lock:
            self.assertEqual(lock.props.file.get_path(), self.path)

    def test_pid_file_from_any_path(self):
        pid_path = os.path.join(self.dir, 'app.pid')
        for path in (pid_path, pathlib.Path(pid_path), Gio.File.new_for_path(pid_path)):
            for pid_file in (Porta.PidFile(path), Porta.PidFile.new(path),
                             Porta.PidFile.new_for_path(path)):
                with self.subTest(path=path):
                    pid_file.timeout = LATE_S
                    self.assertFalse(Porta.PidFile.query_holder(path))
                    with pid_file:
                        holder = Porta.PidFile.query_holder(path)
                        self.assertTrue(holder)
                        self.assertTrue(holder.held)
                        self.assertEqual(holder.pid, os.getpid())
                        self.assertGreater(holder.start_time, 0)
                        self.assertIsInstance(holder.command, str)
                    holder = Porta.PidFile.query_holder(path)
                    self.assertFalse(holder)
                    self.assertEqual((holder.pid, holder.start_time, holder.command), (0, 0, None))
        self.assertEqual(Porta.PidFile.query_holder_for_path(pathlib.Path(pid_path)),
                         (False, 0, 0, None))

    def test_semaphore_from_any_path(self):
        for directory in (self.dir, pathlib.Path(self.dir), Gio.File.new_for_path(self.dir)):
            for sem in (Porta.Semaphore('jobs', 2, directory),
                        Porta.Semaphore('jobs', 2, directory=directory, timeout=1),
                        Porta.Semaphore.new('jobs', 2, directory),
                        Porta.Semaphore.new_for_path('jobs', 2, directory)):
                with self.subTest(directory=directory):
                    sem.timeout = LATE_S
                    self.assertEqual(sem.props.directory.get_path(), self.dir)
                    self.assertEqual(sem.props.max_holders, 2)
                    with sem:
                        slot = sem.get_slot()
                        self.assertTrue(os.path.exists(os.path.join(self.dir, 'jobs.%d.lock' % slot)))
        runtime = Porta.Semaphore('jobs', 1)
        self.assertEqual(runtime.props.name, 'jobs')
        with self.assertRaises(TypeError):
            Porta.Semaphore('jobs')

    def test_semaphore_lets_in_max_holders(self):
        first = Porta.Semaphore('jobs', 2, self.dir)
        second = Porta.Semaphore('jobs', 2, self.dir)
        third = Porta.Semaphore('jobs', 2, self.dir, timeout=0.1)
        with first, second:
            self.assertNotEqual(first.get_slot(), second.get_slot())
            with self.assertRaises(Porta.LockTimeout):
                with third:
                    self.fail('a third holder got in')
        with third:
            self.assertTrue(third.props.held)


class Exceptions(TestCase):
    def test_hierarchy(self):
        self.assertTrue(issubclass(Porta.LockException, GLib.Error))
        self.assertTrue(issubclass(Porta.AlreadyLocked, Porta.LockException))
        self.assertTrue(issubclass(Porta.LockTimeout, Porta.AlreadyLocked))
        self.assertTrue(issubclass(Porta.LockCancelled, Porta.LockException))
        self.assertFalse(issubclass(Porta.LockCancelled, Porta.AlreadyLocked))

    def test_already_locked(self):
        self.holder()
        e = self.assertLockError(Porta.AlreadyLocked, IO_ERROR, Gio.IOErrorEnum.WOULD_BLOCK,
                                 Porta.Lock(self.path).try_acquire)
        self.assertIn(self.path, e.message)

    def test_timeout(self):
        self.holder()
        self.assertLockError(Porta.LockTimeout, IO_ERROR, Gio.IOErrorEnum.TIMED_OUT,
                             Porta.Lock(self.path).acquire, timeout=0.05)

    def test_cancelled(self):
        self.holder()
        cancellable = Gio.Cancellable()
        timer = threading.Timer(0.1, cancellable.cancel)
        timer.start()
        self.addCleanup(timer.join)
        self.assertLockError(Porta.LockCancelled, IO_ERROR, Gio.IOErrorEnum.CANCELLED,
                             Porta.Lock(self.path).acquire, timeout=LATE_S, cancellable=cancellable)

    def test_lock_errors(self):
        lock = Porta.Lock(self.path)
        self.assertLockError(Porta.LockException, PORTA_ERROR, Porta.LockError.NOT_HELD,
                             lock.release)
        with lock:
            self.assertLockError(Porta.LockException, PORTA_ERROR, Porta.LockError.ALREADY_HELD,
                                 lock.acquire)

    def test_other_io_errors(self):
        missing = os.path.join(self.dir, 'no-such-folder', 'app.lock')
        self.assertLockError(Porta.LockException, IO_ERROR, Gio.IOErrorEnum.NOT_FOUND,
                             Porta.Lock(missing).acquire)

    def test_except_glib_error_still_works(self):
        self.holder()
        try:
            Porta.Lock(self.path).acquire(0, None)
        except GLib.Error as e:
            self.assertTrue(e.matches(IO_ERROR, Gio.IOErrorEnum.WOULD_BLOCK))
            self.assertIsInstance(e, Porta.AlreadyLocked)
        else:
            self.fail('no error')


class Async(TestCase):
    def run_loop(self, started, results):
        """Runs a main loop until started(done) has made done() be called."""
        loop = GLib.MainLoop()
        timed_out = []

        def failsafe():
            timed_out.append(True)
            loop.quit()
            return GLib.SOURCE_REMOVE

        def done(*result):
            results.append(result)
            loop.quit()
        source = GLib.timeout_add_seconds(LATE_S, failsafe)
        started(done)
        if not results:
            loop.run()
        if not timed_out:
            GLib.source_remove(source)
        self.assertEqual(len(results), 1, 'the callback did not run')

    def test_keywords(self):
        other = self.holder()
        lock = Porta.Lock(self.path)
        results = []

        def start(done):
            def on_locked(source, result, data):
                try:
                    done(source.acquire_finish(result), data)
                except GLib.Error as e:
                    done(e, data)
            lock.acquire_async(timeout=LATE_S, callback=on_locked, user_data='data',
                               io_priority=GLib.PRIORITY_HIGH)
            self.assertEqual(results, [], 'the callback never runs before acquire_async returns')
            GLib.timeout_add(100, lambda: other.release() and False)
        self.run_loop(start, results)
        self.assertEqual(results, [(True, 'data')])
        self.assertTrue(lock.props.held)
        lock.release()

    def test_named_errors_from_finish(self):
        self.holder()
        for kwargs, cls in (({'timeout': 0}, Porta.AlreadyLocked),
                            ({'timeout': 0.1}, Porta.LockTimeout),
                            ({'cancellable': Gio.Cancellable()}, Porta.LockCancelled)):
            with self.subTest(kwargs=kwargs):
                lock = Porta.Lock(self.path)
                results = []

                def start(done):
                    def on_locked(source, result):
                        try:
                            done(source.acquire_finish(result))
                        except GLib.Error as e:
                            done(e)
                    lock.acquire_async(callback=on_locked, **kwargs)
                    if 'cancellable' in kwargs:
                        GLib.timeout_add(50, lambda: kwargs['cancellable'].cancel())
                self.run_loop(start, results)
                self.assertIs(type(results[0][0]), cls)

    def test_on_every_lockable(self):
        for lockable in (Porta.PidFile(os.path.join(self.dir, 'app.pid')),
                         Porta.Semaphore('jobs', 1, self.dir)):
            results = []

            def start(done):
                lockable.acquire_async(timeout=1.5,
                                       callback=lambda s, r: done(s.acquire_finish(r)))
            self.run_loop(start, results)
            self.assertEqual(results, [(True,)])
            lockable.release()

    def test_bad_keywords(self):
        lock = Porta.Lock(self.path)
        with self.assertRaises(TypeError):
            lock.acquire_async(timeout=1, priority=0)
        with self.assertRaises(TypeError):
            lock.acquire_async(1000, GLib.PRIORITY_DEFAULT, None, None, timeout=1)


class OldForms(TestCase):
    """Calls written for the bare typelib keep their meaning."""

    def test_positional_milliseconds(self):
        lock = Porta.Lock.new_for_path(self.path, Porta.LockMode.EXCLUSIVE)
        self.assertTrue(lock.acquire(5000, None))
        lock.release()
        self.assertTrue(lock.acquire(-1, None))
        lock.release()
        self.assertTrue(lock.acquire(0, Gio.Cancellable()))
        lock.release()
        other = self.holder()
        start = time.monotonic()
        with self.assertRaises(GLib.Error) as cm:
            lock.acquire(200, None)
        self.assertTrue(cm.exception.matches(IO_ERROR, Gio.IOErrorEnum.TIMED_OUT))
        elapsed = time.monotonic() - start
        # 200 ms, not 200 s
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, LATE_S)
        # a float of milliseconds stays milliseconds
        with self.assertRaises(Porta.LockTimeout):
            lock.acquire(150.0, None)
        self.assertLess(time.monotonic() - start, LATE_S)
        other.release()

    def test_gobject_construction(self):
        lock = Porta.Lock(file=Gio.File.new_for_path(self.path), mode=Porta.LockMode.SHARED)
        self.assertEqual(lock.props.mode, Porta.LockMode.SHARED)
        with lock:
            self.assertTrue(lock.props.held)
        lock = Porta.Lock.new_full(Gio.File.new_for_path(self.path), Porta.LockMode.EXCLUSIVE,
                                   Porta.Backend.OFD, Porta.LockFlags.NONE)
        self.assertEqual(lock.props.backend, Porta.Backend.OFD)
        sem = Porta.Semaphore.new('jobs', 2, Gio.File.new_for_path(self.dir))
        self.assertTrue(sem.acquire(0, None))
        self.assertTrue(sem.release())

    def test_c_shaped_async(self):
        lock = Porta.Lock.new_for_path(self.path, Porta.LockMode.EXCLUSIVE)
        loop = GLib.MainLoop()
        results = []

        def on_done(source, result, *data):
            results.append((source.acquire_finish(result), data))
            loop.quit()
        lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, None, on_done)
        failsafe = GLib.timeout_add_seconds(LATE_S, loop.quit)
        loop.run()
        lock.release()
        lock.acquire_async(5000, GLib.PRIORITY_DEFAULT, None, on_done, 'data')
        loop.run()
        lock.release()
        # the interface's function, called on the class
        Porta.Lockable.acquire_async(lock, 0, GLib.PRIORITY_DEFAULT, None, on_done)
        loop.run()
        GLib.source_remove(failsafe)
        lock.release()
        self.assertEqual(results, [(True, ()), (True, ('data',)), (True, ())])

    def test_holder_tuples(self):
        pid_path = os.path.join(self.dir, 'app.pid')
        pid_file = Porta.PidFile.new_for_path(pid_path)
        pid_file.acquire(0, None)
        held, pid, start_time, command = Porta.PidFile.query_holder(Gio.File.new_for_path(pid_path))
        self.assertEqual((held, pid), (True, os.getpid()))
        pid_file.release()
        self.assertEqual(tuple(Porta.PidFile.query_holder(Gio.File.new_for_path(pid_path))),
                         (False, 0, 0, None))
        lock = Porta.Lock.new_for_path(self.path, Porta.LockMode.EXCLUSIVE)
        self.assertEqual(tuple(lock.query_holder()), (False, 0, None))
        other = self.holder()
        held, pid, command = lock.query_holder()
        self.assertEqual((held, pid), (True, os.getpid()))
        other.release()

    def test_fd_with_backend(self):
        with open(self.path, 'w') as fh:
            self.assertTrue(Porta.fd_lock(fh.fileno(), Porta.LockMode.EXCLUSIVE,
                                          Porta.Backend.FLOCK, 0, None))
            self.assertRaises(GLib.Error, Porta.Lock(self.path).try_acquire)
            self.assertTrue(Porta.fd_unlock(fh.fileno(), Porta.Backend.FLOCK))
            self.assertTrue(Porta.Lock(self.path).try_acquire())


class Descriptors(TestCase):
    def test_fd_lock_defaults_and_unlock_without_backend(self):
        for backend in (Porta.Backend.DEFAULT, Porta.Backend.OFD, Porta.Backend.POSIX):
            with self.subTest(backend=backend), open(self.path, 'r+' if os.path.exists(self.path) else 'w+') as fh:
                other = Porta.Lock(self.path, backend=backend)
                self.assertTrue(Porta.fd_lock(fh, backend=backend, timeout=0))
                if backend != Porta.Backend.POSIX:  # POSIX locks do not exclude their own process
                    self.assertRaises(Porta.AlreadyLocked, other.try_acquire)
                self.assertTrue(Porta.fd_unlock(fh))
                if backend != Porta.Backend.POSIX:
                    with other:
                        self.assertTrue(other.props.held)

    def test_fd_lock_timeout(self):
        self.holder()
        with open(self.path, 'a') as fh:
            with self.assertRaises(Porta.LockTimeout):
                Porta.fd_lock(fh, timeout=0.1)
            with self.assertRaises(Porta.AlreadyLocked):
                Porta.fd_lock(fh, Porta.LockMode.SHARED, timeout=0)

    def test_stream_unlock_without_backend(self):
        stream = Gio.File.new_for_path(self.path).append_to(Gio.FileCreateFlags.NONE, None)
        self.assertTrue(Porta.stream_lock(stream, backend=Porta.Backend.OFD, timeout=1))
        self.assertRaises(Porta.AlreadyLocked,
                          Porta.Lock(self.path, backend=Porta.Backend.OFD).try_acquire)
        self.assertTrue(Porta.stream_unlock(stream))
        with Porta.Lock(self.path, backend=Porta.Backend.OFD):
            pass
        stream.close(None)

    def test_portalocker_style(self):
        with open(self.path, 'a') as fh, open(self.path, 'a') as fh2:
            Porta.lock(fh, Porta.LOCK_EX | Porta.LOCK_NB)
            with self.assertRaises(Porta.AlreadyLocked):
                Porta.lock(fh2, Porta.LOCK_SH | Porta.LOCK_NB)
            with self.assertRaises(Porta.LockTimeout):
                Porta.lock(fh2, Porta.LOCK_EX, timeout=0.1)
            Porta.unlock(fh)
            Porta.lock(fh2, Porta.LOCK_SH | Porta.LOCK_NB)
            Porta.lock(fh.fileno(), Porta.LOCK_SH | Porta.LOCK_NB)
            Porta.lock(fh2, Porta.LOCK_UN)
            Porta.unlock(fh.fileno())
            with self.assertRaises(ValueError):
                Porta.lock(fh, Porta.LOCK_EX | Porta.LOCK_SH)
            with self.assertRaises(ValueError):
                Porta.lock(fh, Porta.LOCK_NB)
            with self.assertRaises(TypeError):
                Porta.lock('not a file', Porta.LOCK_EX)

    def test_interop_with_portalocker(self):
        import portalocker
        with open(self.path, 'a') as fh, open(self.path, 'a') as theirs:
            Porta.lock(fh, Porta.LOCK_EX | Porta.LOCK_NB)
            with self.assertRaises(portalocker.exceptions.LockException):
                portalocker.lock(theirs, portalocker.LOCK_EX | portalocker.LOCK_NB)
            Porta.unlock(fh)
            portalocker.lock(theirs, portalocker.LOCK_EX | portalocker.LOCK_NB)
            with self.assertRaises(Porta.AlreadyLocked):
                Porta.lock(fh, Porta.LOCK_EX | Porta.LOCK_NB)
            portalocker.unlock(theirs)


class Readme(unittest.TestCase):
    """The README's one-line equivalents of portalocker's three most common
    snippets, run as the README shows them (in a temporary folder instead
    of /tmp)."""

    ONE_LINERS = (
        "with Porta.Lock('/tmp/app.lock', timeout=5) as lock:",
        "Porta.lock(fh, Porta.LOCK_EX | Porta.LOCK_NB)",
        "with Porta.Semaphore('jobs', 2, '/tmp', timeout=5) as sem:",
    )

    def readme_block(self):
        with open(README, encoding='utf-8') as f:
            text = f.read()
        marker = '<!-- test_pythonic.py runs this block -->'
        self.assertIn(marker, text)
        block = text.split(marker, 1)[1].split('```python\n', 1)[1].split('```', 1)[0]
        return block

    def test_portalocker_equivalents(self):
        block = self.readme_block()
        for line in self.ONE_LINERS:
            self.assertIn(line, block)
        folder = tempfile.mkdtemp(prefix='porta-readme-')
        self.addCleanup(shutil.rmtree, folder, True)
        code = block.replace("'/tmp/", "'%s/" % folder).replace("'/tmp'", repr(folder))
        self.assertNotIn('/tmp/', code.replace(folder, ''))
        output = []
        namespace = {'print': lambda *args: output.append(' '.join(map(str, args)))}
        exec(compile(code, 'README.md', 'exec'), namespace)
        # the semaphore may start at any of its two slots
        self.assertIn(output, (['held: True', 'slot: 0'], ['held: True', 'slot: 1']))
        self.assertFalse(namespace['lock'].props.held)
        self.assertFalse(namespace['sem'].props.held)
        with open(os.path.join(folder, 'app.log')) as f:
            self.assertEqual(f.read(), 'one writer at a time\n')
        gc.collect()


if __name__ == '__main__':
    unittest.main(verbosity=2)
