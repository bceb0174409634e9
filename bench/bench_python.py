#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hand-off latency from Python: Porta.Lock against portalocker and filelock.

A forked holder takes an flock(2) lock, waits until the waiter says it is
about to block, gives it 3 ms to get there, stamps CLOCK_MONOTONIC and
releases; the waiter stamps the moment it holds the lock. Each library waits
its own way: Porta.Lock blocks in the kernel, portalocker polls every 250 ms
and filelock every 50 ms by default. A Python waiter blocked in
fcntl.flock() is the baseline.

Run from a build tree:
  GI_TYPELIB_PATH=_build/portalock LD_LIBRARY_PATH=_build/portalock \\
      /usr/bin/python3 bench/bench_python.py [--samples FILE]

--samples writes every hand-off time (µs) to FILE as JSON, for
bench/plot_handoff.py.
"""

import fcntl
import json
import os
import statistics
import sys
import tempfile
import time

import gi
gi.require_version('Porta', '1')
from gi.repository import Porta  # noqa: E402


def holder(path, rounds, down_r, up_w):
    for _ in range(rounds):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(up_w, b'H')
        os.read(down_r, 1)
        time.sleep(0.003)
        t = time.monotonic_ns()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        os.write(up_w, b'%020d' % t)
        os.read(down_r, 1)
    os._exit(0)


def measure(path, rounds, acquire, release):
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(down_w)
        os.close(up_r)
        holder(path, rounds, down_r, up_w)
    os.close(down_r)
    os.close(up_w)
    lat = []
    for _ in range(rounds):
        assert os.read(up_r, 1) == b'H'
        os.write(down_w, b'W')
        handle = acquire()
        got = time.monotonic_ns()
        released = int(os.read(up_r, 20))
        lat.append((got - released) / 1000.0)
        release(handle)
        os.write(down_w, b'D')
    os.close(down_w)
    os.close(up_r)
    os.waitpid(pid, 0)
    return lat


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    results = {}
    with tempfile.TemporaryDirectory(prefix='portalock-pybench-') as d:
        path = os.path.join(d, 'handoff.lock')

        def raw_acquire():
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd

        results['fcntl.flock() waiter'] = measure(path, 200, raw_acquire, os.close)

        lock = Porta.Lock.new_for_path(path, Porta.LockMode.EXCLUSIVE)
        results['Porta.Lock.acquire(10000)'] = measure(
            path, 200, lambda: lock.acquire(10000, None), lambda _: lock.release())

        try:
            import portalocker

            def pl_acquire():
                lk = portalocker.Lock(path, mode='a', timeout=10)
                lk.acquire()
                return lk

            results['portalocker.Lock (timeout=10)'] = measure(
                path, 20, pl_acquire, lambda lk: lk.release())
        except ImportError:
            print('portalocker is not installed (Debian: python3-portalocker)', file=sys.stderr)

        try:
            import filelock

            def fl_acquire():
                lk = filelock.FileLock(path, timeout=10)
                lk.acquire()
                return lk

            results['filelock.FileLock (timeout=10)'] = measure(
                path, 40, fl_acquire, lambda lk: lk.release())
        except ImportError:
            print('filelock is not installed (Debian: python3-filelock)', file=sys.stderr)

    if '--samples' in sys.argv:
        with open(sys.argv[sys.argv.index('--samples') + 1], 'w') as f:
            json.dump({'group': 'File locks, Python waiter', 'unit': 'us', 'series': results}, f)

    base = statistics.median(results['fcntl.flock() waiter'])
    porta = statistics.median(results['Porta.Lock.acquire(10000)'])
    print('%-34s %10s %10s %14s %14s' % ('7. Python hand-off', 'p50 us', 'p99 us',
                                          'vs fcntl.flock', 'vs Porta.Lock'))
    for name, lat in results.items():
        med = statistics.median(lat)
        print('%-34s %10.1f %10.1f %13.2fx %13.2fx' % (name, med, p(lat, 0.99),
                                                      med / base, med / porta))


if __name__ == '__main__':
    main()
