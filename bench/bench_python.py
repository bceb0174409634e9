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
      /usr/bin/python3 bench/bench_python.py [--runs N] [--samples FILE]

The kernel waiter, a floor (the kernel waiter checking with os.fstat()
that the file it waited for is still there, as any correct lock must) and
Porta.Lock take N turns (9 by default) of 100 hand-offs; the p50 shown is the median of the turns' p50s, and the target
(Porta.Lock's p50 at most 1.25 times the kernel waiter's) decides the exit
status: 1 if it is missed.

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


# p50 targets, as ratios to the fcntl.flock() waiter's p50 in the same run.
TARGETS = {'Porta.Lock.acquire(10000)': 1.25}


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    runs = int(sys.argv[sys.argv.index('--runs') + 1]) if '--runs' in sys.argv else 9
    results = {}
    medians = {}
    with tempfile.TemporaryDirectory(prefix='portalock-pybench-') as d:
        path = os.path.join(d, 'handoff.lock')

        def raw_acquire():
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd

        # The floor: what any correct lock does after its wait at least,
        # make sure that the file it waited for was not deleted meanwhile
        # (one fstat(), which Porta.Lock makes in C).
        def checked_acquire():
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                raise RuntimeError('the lock file went away')
            return fd

        # The kernel waiter, the floor and Porta.Lock take turns, RUNS
        # rounds of 100 each, so that a slow moment of the machine does not
        # fall on one of them only; each round's p50 is a value, and the
        # table shows the median of the rounds.
        lock = Porta.Lock.new_for_path(path, Porta.LockMode.EXCLUSIVE)
        turns = (('fcntl.flock() waiter', raw_acquire, os.close),
                 ('floor: flock + os.fstat', checked_acquire, os.close),
                 ('Porta.Lock.acquire(10000)', lambda: lock.acquire(10000, None),
                  lambda _: lock.release()))
        for name, _, _ in turns:
            results[name] = []
            medians[name] = []
        for _ in range(runs):
            for name, acquire, release in turns:
                lat = measure(path, 100, acquire, release)
                results[name] += lat
                medians[name].append(statistics.median(lat))

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

    def p50(name):
        if name in medians:
            return statistics.median(medians[name])
        return statistics.median(results[name])

    base = p50('fcntl.flock() waiter')
    porta = p50('Porta.Lock.acquire(10000)')
    print('%-34s %10s %10s %14s %14s  %-8s' % ('7. Python hand-off', 'p50 us', 'p99 us',
                                                'vs fcntl.flock', 'vs Porta.Lock', 'target'))
    misses = 0
    for name, lat in results.items():
        med = p50(name)
        target = TARGETS.get(name)
        verdict = ''
        if target is not None:
            verdict = 'PASS' if med / base <= target else 'MISS'
            misses += verdict == 'MISS'
        print('%-34s %10.1f %10.1f %13.2fx %13.2fx  %-8s %s' % (
            name, med, p(lat, 0.99), med / base, med / porta,
            '<= %.2fx' % target if target is not None else '', verdict))
    return 1 if misses else 0


if __name__ == '__main__':
    sys.exit(main())
