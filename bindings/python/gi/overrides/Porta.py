# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Porta.py: PyGObject overrides that make portalock read like Python.
#
# PyGObject loads this module when a program imports
# `from gi.repository import Porta`, from any gi/overrides folder on its
# path: the one portalock installs into (the `pygobject_overrides_dir`
# meson option), or bindings/python/gi/overrides in a source tree put on
# PYTHONPATH.
#
# One rule keeps old code working: a timeout passed *positionally* is C's,
# in milliseconds (-1 or None: wait for as long as it takes; 0: try once),
# exactly as without these overrides; a timeout passed as the keyword
# `timeout=` is in seconds, a float, with None waiting for as long as it
# takes, as in portalocker, filelock and threading. So
# `lock.acquire(5000, None)` and `lock.acquire(timeout=5)` both wait 5 s.

import collections
import math
import numbers
import os

from gi.repository import GLib, Gio

from ..module import get_introspection_module
from ..overrides import override

Porta = get_introspection_module('Porta')

__all__ = []

_UNSET = object()

# The largest timeout the C API takes, in milliseconds (about 24.8 days).
_MAX_TIMEOUT_MS = GLib.MAXINT

# portalocker's (and fcntl's) flag values, so that fcntl.LOCK_EX works too.
LOCK_SH = 1
LOCK_EX = 2
LOCK_NB = 4
LOCK_UN = 8
__all__ += ['LOCK_SH', 'LOCK_EX', 'LOCK_NB', 'LOCK_UN']


# ---------------------------------------------------------------------------
# Exceptions

class LockException(GLib.Error):
    """Any failure of a portalock call made through these overrides.

    It is still a GLib.Error, with the domain, code and message of the
    error the library reported, so `except GLib.Error` and
    `error.matches (Gio.io_error_quark(), ...)` keep working."""


class AlreadyLocked(LockException):
    """Someone else holds the lock (G_IO_ERROR_WOULD_BLOCK: tried once)."""


class LockTimeout(AlreadyLocked):
    """Someone else held the lock for the whole timeout
    (G_IO_ERROR_TIMED_OUT). A subclass of AlreadyLocked, as portalocker
    reports a timeout as AlreadyLocked."""


class LockCancelled(LockException):
    """The wait was cancelled through its Gio.Cancellable
    (G_IO_ERROR_CANCELLED)."""


__all__ += ['LockException', 'AlreadyLocked', 'LockTimeout', 'LockCancelled']

_IO_ERROR_DOMAIN = GLib.quark_to_string(Gio.io_error_quark())
_ERROR_CLASSES = {
    (_IO_ERROR_DOMAIN, int(Gio.IOErrorEnum.WOULD_BLOCK)): AlreadyLocked,
    (_IO_ERROR_DOMAIN, int(Gio.IOErrorEnum.TIMED_OUT)): LockTimeout,
    (_IO_ERROR_DOMAIN, int(Gio.IOErrorEnum.CANCELLED)): LockCancelled,
}


def _lock_error(error):
    cls = _ERROR_CLASSES.get((error.domain, error.code), LockException)
    return cls(error.message, error.domain, error.code)


def _call(func, *args):
    """Calls a function of the typelib, raising its GLib.Error as the
    matching LockException."""
    try:
        return func(*args)
    except LockException:
        raise
    except GLib.Error as e:
        raise _lock_error(e).with_traceback(e.__traceback__) from None


# ---------------------------------------------------------------------------
# Arguments

def _as_file(file, what='file'):
    """A Gio.File for a Gio.File, a str or bytes path, or an os.PathLike."""
    if isinstance(file, Gio.File):
        return file
    if isinstance(file, (str, bytes, os.PathLike)):
        return Gio.File.new_for_path(os.fsdecode(file))
    raise TypeError('%s must be a path (str, bytes, os.PathLike) or a Gio.File, not %s'
                    % (what, type(file).__name__))


def _as_path(path):
    if isinstance(path, Gio.File):
        return path.get_path()
    return os.fsdecode(path)


def _ms_from_seconds(seconds):
    """C's timeout in milliseconds for a timeout in seconds (None: -1)."""
    if seconds is None:
        return -1
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError('timeout must be None or a number of seconds, not %s'
                        % type(seconds).__name__)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError('timeout must be None (wait for as long as it takes) or '
                         'a number of seconds >= 0, not %r' % (seconds,))
    if math.isinf(seconds):
        return -1
    # Round up: a positive timeout, however short, waits.
    return min(math.ceil(seconds * 1000), _MAX_TIMEOUT_MS)


def _timeout_ms(c_args, timeout, default, name):
    """The timeout in milliseconds from either C's positional
    (timeout_ms[, cancellable]) or the keyword @timeout in seconds, and the
    positional cancellable if there is one (else _UNSET)."""
    if c_args:
        if timeout is not _UNSET:
            raise TypeError('%s() takes its timeout either positionally, in milliseconds '
                            '(as in C), or as timeout= in seconds, not both' % name)
        if len(c_args) > 2:
            raise TypeError('%s() takes at most a timeout and a cancellable after its '
                            'other arguments (%d given)' % (name, len(c_args)))
        ms = -1 if c_args[0] is None else c_args[0]
        return ms, (c_args[1] if len(c_args) == 2 else _UNSET)
    return _ms_from_seconds(default if timeout is _UNSET else timeout), _UNSET


def _cancellable(positional, keyword, name):
    if positional is not _UNSET:
        if keyword is not None:
            raise TypeError('%s() got the cancellable twice' % name)
        return positional
    return keyword


def _fileno(file):
    """The descriptor of an int descriptor or an object with fileno()."""
    if isinstance(file, bool):
        raise TypeError('expected a descriptor or a file object, not bool')
    if isinstance(file, int):
        return file
    fileno = getattr(file, 'fileno', None)
    if fileno is None:
        raise TypeError('expected a descriptor or an object with fileno(), not %s'
                        % type(file).__name__)
    return fileno()


def _async_call(func, fixed, args, kwargs, default_timeout, name):
    """Calls an _async function of the typelib whose arguments after @fixed
    are C's (timeout_ms, io_priority, cancellable, callback, user_data...).

    Positional arguments after @fixed, or timeout_ms=, are C's form, passed
    on as they are. Otherwise the keywords timeout (seconds, None: for as
    long as it takes), cancellable, callback, user_data and io_priority
    apply, each with a default."""
    if args or 'timeout_ms' in kwargs:
        if 'timeout' in kwargs:
            raise TypeError('%s() takes its timeout either positionally, in milliseconds '
                            '(as in C), or as timeout= in seconds, not both' % name)
        if args and args[0] is None:
            args = (-1,) + tuple(args[1:])
        return func(*fixed, *args, **kwargs)
    ms = _ms_from_seconds(kwargs.pop('timeout', default_timeout))
    io_priority = kwargs.pop('io_priority', GLib.PRIORITY_DEFAULT)
    cancellable = kwargs.pop('cancellable', None)
    callback = kwargs.pop('callback', None)
    user_data = kwargs.pop('user_data', _UNSET)
    if kwargs:
        raise TypeError('%s() got an unexpected keyword argument %r'
                        % (name, next(iter(kwargs))))
    if user_data is _UNSET:
        return func(*fixed, ms, io_priority, cancellable, callback)
    return func(*fixed, ms, io_priority, cancellable, callback, user_data)


# ---------------------------------------------------------------------------
# Every lock kind: Porta.Lockable

_GiLockable = Porta.Lockable


class Lockable(Porta.Lockable):
    """What every kind of lock offers, Pythonically: a context manager
    (`with lock:` acquires, and releases on the way out even when the block
    raises), acquire() with a timeout in seconds, named exceptions.

    `timeout` is the lock's own timeout in seconds, used by `with` and by
    acquire() without one: None (the default) waits for as long as it
    takes, 0 tries once."""

    timeout = None

    def acquire(self, *args, timeout=_UNSET, cancellable=None):
        """acquire(timeout=None, cancellable=None) or, as in C,
        acquire(timeout_ms, cancellable).

        Waits for the lock at most `timeout` seconds (None: the lock's own
        timeout, by default for as long as it takes; 0: try once). Raises
        AlreadyLocked (tried once), LockTimeout, LockCancelled or another
        LockException. Returns True."""
        ms, positional = _timeout_ms(args, timeout, self.timeout, 'acquire')
        cancellable = _cancellable(positional, cancellable, 'acquire')
        return _call(_GiLockable.acquire, self, ms, cancellable)

    def try_acquire(self):
        """Tries once; raises AlreadyLocked if someone else holds it."""
        return _call(_GiLockable.try_acquire, self)

    def acquire_async(self, *args, **kwargs):
        """acquire_async(timeout=None, cancellable=None, callback=None,
        user_data=None, io_priority=GLib.PRIORITY_DEFAULT), all keywords,
        or, as in C, acquire_async(timeout_ms, io_priority, cancellable,
        callback, user_data).

        Waits without blocking the thread-default main context; callback
        (source, result[, user_data]) runs there and calls
        acquire_finish(result), which raises the named exceptions."""
        return _async_call(_GiLockable.acquire_async, (self,), args, kwargs,
                           self.timeout, 'acquire_async')

    def acquire_finish(self, result):
        return _call(_GiLockable.acquire_finish, self, result)

    def release(self):
        """Releases the lock; raises LockException if it is not held."""
        return _call(_GiLockable.release, self)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        # The block may have released it already.
        if _GiLockable.get_held(self):
            self.release()
        return False


override(Lockable)
__all__.append('Lockable')

# A lock kind's own acquire(), release()... come before the interface's in
# its class, so each kind takes the Pythonic ones above; there is only this
# one implementation, which calls the interface's C functions.
_LOCKABLE_METHODS = ('acquire', 'try_acquire', 'acquire_async', 'acquire_finish', 'release')


def _pythonic_lockable(cls):
    for name in _LOCKABLE_METHODS:
        setattr(cls, name, Lockable.__dict__[name])
    return cls


# ---------------------------------------------------------------------------
# Porta.Lock

class LockHolder(collections.namedtuple('LockHolder', 'held pid command')):
    """Who holds a lock, as Lock.query_holder() tells: `held`, the holder's
    `pid` (0: unknown) and `command` (None: unknown). True if held; unpacks
    as the (held, pid, command) tuple that query_holder() always returned."""
    __slots__ = ()

    def __bool__(self):
        return bool(self.held)


__all__.append('LockHolder')


@_pythonic_lockable
class Lock(Porta.Lock):
    """Lock(file, mode=Porta.LockMode.EXCLUSIVE, *, timeout=None,
    backend=Porta.Backend.DEFAULT, flags=Porta.LockFlags.NONE)

    A lock on a file, given as a path or a Gio.File. Nothing is opened until
    it is acquired; `with Porta.Lock('/run/app.lock', timeout=2.5) as lock:`
    holds it for the block. Porta.Lock(file=..., mode=...) with GObject
    properties works as before."""

    def __init__(self, file=None, mode=Porta.LockMode.EXCLUSIVE, *, timeout=None,
                 backend=Porta.Backend.DEFAULT, flags=Porta.LockFlags.NONE, **kwargs):
        if file is None:
            raise TypeError('Lock() needs the file to lock, a path or a Gio.File')
        super().__init__(file=_as_file(file), mode=mode, backend=backend, flags=flags, **kwargs)
        self.timeout = timeout

    @classmethod
    def new(cls, file, mode=Porta.LockMode.EXCLUSIVE):
        return super().new(_as_file(file), mode)

    @classmethod
    def new_for_path(cls, path, mode=Porta.LockMode.EXCLUSIVE):
        return super().new_for_path(_as_path(path), mode)

    @classmethod
    def new_full(cls, file, mode=Porta.LockMode.EXCLUSIVE, backend=Porta.Backend.DEFAULT,
                 flags=Porta.LockFlags.NONE):
        return super().new_full(_as_file(file), mode, backend, flags)

    @classmethod
    def new_full_for_path(cls, path, mode=Porta.LockMode.EXCLUSIVE,
                          backend=Porta.Backend.DEFAULT, flags=Porta.LockFlags.NONE):
        return super().new_full_for_path(_as_path(path), mode, backend, flags)

    def convert(self, mode, *args, timeout=_UNSET, cancellable=None):
        """convert(mode, timeout=None, cancellable=None) or, as in C,
        convert(mode, timeout_ms, cancellable)."""
        ms, positional = _timeout_ms(args, timeout, self.timeout, 'convert')
        cancellable = _cancellable(positional, cancellable, 'convert')
        return _call(Porta.Lock.convert, self, mode, ms, cancellable)

    def convert_async(self, mode, *args, **kwargs):
        """convert_async(mode, timeout=None, cancellable=None,
        callback=None, user_data=None, io_priority=...) or C's form."""
        return _async_call(Porta.Lock.convert_async, (self, mode), args, kwargs,
                           self.timeout, 'convert_async')

    def convert_finish(self, result):
        return _call(Porta.Lock.convert_finish, self, result)

    def query_holder(self):
        """A LockHolder (held, pid, command): true if someone holds it."""
        return LockHolder(*_call(Porta.Lock.query_holder, self))


override(Lock)
__all__.append('Lock')


# ---------------------------------------------------------------------------
# Porta.PidFile

class PidFileHolder(collections.namedtuple('PidFileHolder', 'held pid start_time command')):
    """Who holds a PID file, as PidFile.query_holder() tells: `held`, the
    holder's `pid` (0: unknown), `start_time` (clock ticks since boot, 0:
    unknown) and `command` (None: unknown). True if held; unpacks as the
    (held, pid, start_time, command) tuple of the typelib's call."""
    __slots__ = ()

    def __bool__(self):
        return bool(self.held)


__all__.append('PidFileHolder')


@_pythonic_lockable
class PidFile(Porta.PidFile):
    """PidFile(file, *, timeout=None): a daemon's PID file, given as a path
    or a Gio.File; `with Porta.PidFile('/run/app.pid'):` holds it."""

    def __init__(self, file=None, *, timeout=None, **kwargs):
        if file is None:
            raise TypeError('PidFile() needs the PID file, a path or a Gio.File')
        super().__init__(file=_as_file(file), **kwargs)
        self.timeout = timeout

    @classmethod
    def new(cls, file):
        return super().new(_as_file(file))

    @classmethod
    def new_for_path(cls, path):
        return super().new_for_path(_as_path(path))

    @staticmethod
    def query_holder(file):
        """A PidFileHolder for the PID file at `file` (a path or a
        Gio.File): true if a live process holds it."""
        if isinstance(file, Gio.File):
            result = _call(Porta.PidFile.query_holder, file)
        else:
            result = _call(Porta.PidFile.query_holder_for_path, _as_path(file))
        return PidFileHolder(*result)

    @staticmethod
    def query_holder_for_path(path):
        return PidFileHolder(*_call(Porta.PidFile.query_holder_for_path, _as_path(path)))


override(PidFile)
__all__.append('PidFile')


# ---------------------------------------------------------------------------
# Porta.Semaphore

@_pythonic_lockable
class Semaphore(Porta.Semaphore):
    """Semaphore(name, max_holders, directory=None, *, timeout=None): at
    most `max_holders` holders at once, over slot files named after `name`
    in `directory` (a path or a Gio.File; None: the user's runtime folder).
    portalocker's BoundedSemaphore: `with Porta.Semaphore('jobs', 2):`."""

    def __init__(self, name=None, max_holders=None, directory=None, *, timeout=None,
                 **kwargs):
        if name is None or max_holders is None:
            raise TypeError('Semaphore() needs a name and max_holders')
        if directory is not None:
            kwargs['directory'] = _as_file(directory, 'directory')
        super().__init__(name=name, max_holders=max_holders, **kwargs)
        self.timeout = timeout

    @classmethod
    def new(cls, name, max_holders, directory=None):
        if directory is not None:
            directory = _as_file(directory, 'directory')
        return super().new(name, max_holders, directory)

    @classmethod
    def new_for_path(cls, name, max_holders, directory=None):
        if directory is not None:
            directory = _as_path(directory)
        return super().new_for_path(name, max_holders, directory)


override(Semaphore)
__all__.append('Semaphore')


# ---------------------------------------------------------------------------
# Lock kinds this module does not know by name (a later one, or one added
# to the typelib before these overrides): they get the same methods and a
# `timeout` keyword in their constructor.

def _lockable_infos():
    from gi._gi import ObjectInfo, Repository
    for info in Repository.get_default().get_infos('Porta'):
        if isinstance(info, ObjectInfo) and any(
                i.get_namespace() == 'Porta' and i.get_name() == 'Lockable'
                for i in info.get_interfaces()):
            yield info.get_name()


def _generic_init(self, *args, timeout=None, **kwargs):
    super(type(self).__pythonic_class__, self).__init__(*args, **kwargs)
    self.timeout = timeout


def _pythonic_lockable_class(gi_class):
    """The Pythonic class for a lock kind of the typelib: its GObject
    properties as keywords, plus `timeout`, and Lockable's methods."""
    cls = type(gi_class.__name__, (gi_class,), {
        '__module__': __name__,
        '__init__': _generic_init,
        '__doc__': '%s(*, timeout=None, **properties)' % gi_class.__name__,
    })
    cls.__pythonic_class__ = cls
    return _pythonic_lockable(cls)


for _name in _lockable_infos():
    if _name not in __all__:
        override(_pythonic_lockable_class(getattr(Porta, _name)))
        __all__.append(_name)


# ---------------------------------------------------------------------------
# Descriptors, streams and file objects

def fd_lock(fd, mode=Porta.LockMode.EXCLUSIVE, backend=Porta.Backend.DEFAULT, *args,
            timeout=_UNSET, cancellable=None):
    """fd_lock(fd, mode=EXCLUSIVE, backend=DEFAULT, timeout=None,
    cancellable=None) or, as in C, fd_lock(fd, mode, backend, timeout_ms,
    cancellable). `fd` is a descriptor or an object with fileno()."""
    ms, positional = _timeout_ms(args, timeout, None, 'fd_lock')
    cancellable = _cancellable(positional, cancellable, 'fd_lock')
    return _call(Porta.fd_lock, _fileno(fd), mode, backend, ms, cancellable)


def fd_lock_async(fd, mode=Porta.LockMode.EXCLUSIVE, backend=Porta.Backend.DEFAULT, *args,
                  **kwargs):
    """fd_lock_async(fd, mode=EXCLUSIVE, backend=DEFAULT, timeout=None,
    cancellable=None, callback=None, user_data=None, io_priority=...) or
    C's form; finish with fd_lock_finish(result)."""
    return _async_call(Porta.fd_lock_async, (_fileno(fd), mode, backend), args, kwargs,
                       None, 'fd_lock_async')


def fd_lock_finish(result):
    return _call(Porta.fd_lock_finish, result)


def fd_unlock(fd, backend=None):
    """Unlocks a descriptor (or an object with fileno()). Without a
    backend, whichever locked it (fd_unlock_any())."""
    if backend is None:
        return _call(Porta.fd_unlock_any, _fileno(fd))
    return _call(Porta.fd_unlock, _fileno(fd), backend)


def fd_unlock_any(fd):
    return _call(Porta.fd_unlock_any, _fileno(fd))


def stream_lock(stream, mode=Porta.LockMode.EXCLUSIVE, backend=Porta.Backend.DEFAULT, *args,
                timeout=_UNSET, cancellable=None):
    """stream_lock(stream, mode=EXCLUSIVE, backend=DEFAULT, timeout=None,
    cancellable=None) or C's form, for a Gio.FileDescriptorBased stream."""
    ms, positional = _timeout_ms(args, timeout, None, 'stream_lock')
    cancellable = _cancellable(positional, cancellable, 'stream_lock')
    return _call(Porta.stream_lock, stream, mode, backend, ms, cancellable)


def stream_unlock(stream, backend=None):
    """Unlocks a stream; without a backend, whichever locked it."""
    if backend is None:
        return _call(Porta.stream_unlock_any, stream)
    return _call(Porta.stream_unlock, stream, backend)


def stream_unlock_any(stream):
    return _call(Porta.stream_unlock_any, stream)


def lock(file, flags=LOCK_EX, *, timeout=None, backend=Porta.Backend.DEFAULT,
         cancellable=None):
    """portalocker's lock(fh, flags): locks the file that `file` (an object
    with fileno(), or a descriptor) is open on. flags: LOCK_EX or LOCK_SH,
    with LOCK_NB to try once (raising AlreadyLocked) instead of waiting
    (for as long as it takes, or `timeout` seconds); LOCK_UN unlocks."""
    if flags & LOCK_UN:
        return unlock(file)
    if flags & LOCK_EX and flags & LOCK_SH:
        raise ValueError('lock() takes LOCK_EX or LOCK_SH, not both')
    if not flags & (LOCK_EX | LOCK_SH):
        raise ValueError('lock() needs LOCK_EX or LOCK_SH')
    if flags & LOCK_NB and timeout is not None:
        raise ValueError('lock() takes LOCK_NB or a timeout, not both')
    mode = Porta.LockMode.SHARED if flags & LOCK_SH else Porta.LockMode.EXCLUSIVE
    ms = 0 if flags & LOCK_NB else _ms_from_seconds(timeout)
    return _call(Porta.fd_lock, _fileno(file), mode, backend, ms, cancellable)


def unlock(file):
    """portalocker's unlock(fh): unlocks the file that `file` is open on,
    whichever backend locked it."""
    return _call(Porta.fd_unlock_any, _fileno(file))


__all__ += ['fd_lock', 'fd_lock_async', 'fd_lock_finish', 'fd_unlock', 'fd_unlock_any',
            'stream_lock', 'stream_unlock', 'stream_unlock_any', 'lock', 'unlock']
