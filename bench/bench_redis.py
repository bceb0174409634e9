#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench_redis.py: PortaRedisLock beside redis-py's Lock and portalocker's
# RedisLock, against one redis-server that this script starts on a Unix
# socket in a temporary folder (and stops), in the same run:
#
#   hand-off     a holder process releases, a waiter process blocked in
#                acquire takes the lock: release -> acquired, p50 and p99
#                (CLOCK_MONOTONIC is shared by the processes)
#   takeover     the holder process is SIGKILLed while a waiter waits:
#                kill -> acquired, p50
#   commands/s   redis-server's total_commands_processed (commands run
#                inside scripts count) and its calls from clients, per
#                second, while one process holds and one waits
#
# Run it with build-aux/bench.sh, or by hand with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing at a built portalock/ folder.
#
#   bench_redis.py [--rounds N]

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import redis

import gi

gi.require_version('Porta', '1')
from gi.repository import Porta  # noqa: E402


# ------------------------------------------------------------ the locks

class PortaSide:
    label = 'portalock PortaRedisLock'

    def __init__(self, sock, name):
        self.lock = Porta.RedisLock.new('unix://' + sock, name, Porta.LockMode.EXCLUSIVE)

    def acquire(self):
        self.lock.acquire(-1, None)

    def release(self):
        self.lock.release()


class RedisPySide:
    label = 'redis-py Lock'

    # Without a timeout, a killed holder's lock is never freed: 5 s, more
    # than the hold of the command-rate figure.
    def __init__(self, sock, name):
        self.lock = redis.Redis(unix_socket_path=sock).lock(name, timeout=5)

    def acquire(self):
        self.lock.acquire(blocking=True)

    def release(self):
        self.lock.release()


class PortalockerSide:
    label = 'portalocker RedisLock'

    def __init__(self, sock, name):
        import portalocker.redis
        self.lock = portalocker.redis.RedisLock(name, connection=redis.Redis(unix_socket_path=sock))

    def acquire(self):
        self.lock.acquire(timeout=3600)

    def release(self):
        self.lock.release()


SIDES = {'porta': PortaSide, 'redis-py': RedisPySide, 'portalocker': PortalockerSide}


# --------------------------------------------------- the child processes

def child_main(role, side, sock, name, rounds):
    lock = SIDES[side](sock, name)
    out = []
    if role in ('first', 'second'):
        # Ping-pong: the two processes take turns, each holding 20 ms. After
        # a release, a process waits (1 ms polls of the other's count file)
        # until the other has the lock, and only then waits for it again,
        # so that every acquisition is a hand-off from a blocked waiter.
        mine = os.path.join(os.path.dirname(sock), name + '.' + role)
        other = os.path.join(os.path.dirname(sock), name + '.' + ('second' if role == 'first' else 'first'))
        acquired, released = [], []
        if role == 'first':
            lock.acquire()    # before the other waits
        print('ready', flush=True)
        sys.stdin.readline()
        for k in range(rounds):
            if k > 0 or role == 'second':
                lock.acquire()
            acquired.append(time.monotonic())
            with open(mine, 'w') as f:
                f.write(str(k + 1))
            time.sleep(0.02)
            released.append(time.monotonic())
            lock.release()
            target = k + 1 if role == 'first' else k + 2
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and k + 1 < rounds:
                try:
                    with open(other) as f:
                        if int(f.read() or 0) >= target:
                            break
                except (FileNotFoundError, ValueError):
                    pass
                time.sleep(0.001)
        out = [acquired, released]
    elif role == 'hold-forever':
        lock.acquire()
        print('held', flush=True)
        time.sleep(3600)
    elif role == 'wait-once':
        print('waiting', flush=True)
        lock.acquire()
        out.append(time.monotonic())
        lock.release()
    print(json.dumps(out), flush=True)


def spawn(role, side, sock, name, rounds=1):
    return subprocess.Popen([sys.executable, __file__, '--child', role, side, sock, name,
                             str(rounds)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


# ------------------------------------------------------------ the figures

def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def hand_off(side, sock, rounds):
    name = 'bench-handoff-' + side
    first = spawn('first', side, sock, name, rounds)
    assert first.stdout.readline().strip() == 'ready'    # it holds the lock
    second = spawn('second', side, sock, name, rounds)
    assert second.stdout.readline().strip() == 'ready'
    second.stdin.write('go\n')
    second.stdin.flush()
    time.sleep(0.3)    # the second waits in line
    first.stdin.write('go\n')
    first.stdin.flush()
    first_acq, first_rel = json.loads(first.stdout.readline())
    second_acq, second_rel = json.loads(second.stdout.readline())
    first.wait()
    second.wait()
    # second's k-th acquisition follows first's k-th release; first's
    # k-th (k >= 1) follows second's (k-1)-th.
    times = [(a - r) * 1000 for r, a in zip(first_rel, second_acq)]
    times += [(a - r) * 1000 for r, a in zip(second_rel, first_acq[1:])]
    return times


def takeover(side, sock, rounds):
    times = []
    for k in range(rounds):
        name = 'bench-kill-%s-%d' % (side, k)
        holder = spawn('hold-forever', side, sock, name)
        assert holder.stdout.readline().strip() == 'held'
        waiter = spawn('wait-once', side, sock, name)
        assert waiter.stdout.readline().strip() == 'waiting'
        time.sleep(0.3)    # let it wait in line
        killed = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        acquired = json.loads(waiter.stdout.readline())[0]
        waiter.wait()
        times.append((acquired - killed) * 1000)
    return times


def command_rate(side, sock, seconds=3.0):
    name = 'bench-rate-' + side
    client = redis.Redis(unix_socket_path=sock)
    holder = spawn('hold-forever', side, sock, name)
    assert holder.stdout.readline().strip() == 'held'
    waiter = spawn('wait-once', side, sock, name)
    assert waiter.stdout.readline().strip() == 'waiting'
    time.sleep(0.5)

    def counts():
        stats = client.info('commandstats')
        total = client.info('stats')['total_commands_processed']
        calls = sum(v['calls'] for v in stats.values())
        return total, calls

    start = counts()
    time.sleep(seconds)
    end = counts()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    waiter.wait()
    # Our own INFO calls are two commands.
    return (end[0] - start[0] - 2) / seconds


def main():
    rounds = 50
    if '--rounds' in sys.argv:
        rounds = int(sys.argv[sys.argv.index('--rounds') + 1])
    folder = tempfile.mkdtemp(prefix='porta-bench-redis-')
    sock = os.path.join(folder, 'redis.sock')
    server = subprocess.Popen(['redis-server', '--port', '0', '--unixsocket', sock,
                               '--unixsocketperm', '700', '--dir', folder, '--save', '',
                               '--appendonly', 'no'], stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        print('Redis locks, one local redis-server 7 on a Unix socket; %d rounds each' % rounds)
        print()
        print('| lock | hand-off p50 | hand-off p99 | SIGKILL takeover p50 | commands/s, 1 holder + 1 waiter |')
        print('| --- | --- | --- | --- | --- |')
        for side in ('porta', 'redis-py', 'portalocker'):
            handoffs = hand_off(side, sock, rounds)
            takeovers = takeover(side, sock, max(5, rounds // 5))
            rate = command_rate(side, sock)
            print('| %s | %.2f ms | %.2f ms | %.1f ms | %.1f |' % (
                SIDES[side].label, statistics.median(handoffs), percentile(handoffs, 99),
                statistics.median(takeovers), rate), flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    if len(sys.argv) == 7 and sys.argv[1] == '--child':
        child_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
