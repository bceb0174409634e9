#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench_redis.py: PortaRedisLock beside redis-py's Lock and portalocker's
# RedisLock, against one redis-server that this script starts on a Unix
# socket in a temporary folder (and stops), in the same run:
#
#   hand-off     a holder process releases, a waiter process blocked in
#                acquire takes the lock: release -> acquired, p50 and p99
#                (CLOCK_MONOTONIC is shared by the processes); for
#                portalock also with a C holder and waiter, and the floor
#                of any pushed hand-off in the same run: a C client's
#                PUBLISH reaching a blocked hiredis subscriber that then
#                makes one SET round trip (bench/portalock-redis-bench)
#   breakdown    where portalock's C hand-off spends its time: a third
#                process subscribed to the wake-up channel stamps the
#                wake-up, and the server's slow log (threshold 0) times
#                the lock scripts
#   takeover     the holder process is SIGKILLed while a waiter waits:
#                kill -> acquired, p50
#   commands/s   redis-server's total_commands_processed (commands run
#                inside scripts count) and its calls from clients, per
#                second, while one process holds and one waits
#   contention   100 processes take turns on one lock for a fixed time,
#                each incrementing a counter kept in a file under the
#                lock: acquires per second, and the counter checked
#                against the acquisitions the processes counted
#
# Then PortaRedisLock alone on a local Redis Cluster (3 masters, 3
# replicas, cluster-node-timeout 1 s; tests/python/redis_cluster.py): the
# same hand-off and takeover, and a failover: the master of a held and
# waited-on lock is SIGKILLed: kill -> the holder's `lost`, and kill ->
# the waiter holds the lock from the promoted replica.
#
# Run it with build-aux/bench.sh, or by hand with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing at a built portalock/ folder (and
# PORTALOCK_REDIS_BENCH at its bench/portalock-redis-bench for the C rows).
#
#   bench_redis.py [--rounds N] [--procs N] [--seconds S] [--samples FILE]
#
# It ends with its targets, each a ratio to a baseline measured in the same
# run (the median of the rounds against the baseline's), PASS or MISS, and
# exits 1 if one is missed.
#
# --samples writes every hand-off time (µs) to FILE as JSON, for
# bench/plot_handoff.py.

import hashlib
import json
import os
import resource
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
from gi.repository import Gio, GLib, Porta  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'python'))
import redis_cluster  # noqa: E402


# ------------------------------------------------------------ the locks

class PortaSide:
    label = 'portalock PortaRedisLock'

    # SOCK is a Unix socket's path, or a URI (the cluster's).
    def __init__(self, sock, name):
        uri = sock if '://' in sock else 'unix://' + sock
        self.lock = Porta.RedisLock.new(uri, name, Porta.LockMode.EXCLUSIVE)
        self.lock.connect('lost', lambda lock, error: print('lost %r' % time.monotonic(),
                                                            flush=True))

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
    if role == 'hold-forever':
        lock.acquire()
        print('held', flush=True)
        if side == 'porta':
            # The main context, where `lost` is told, for an hour at most.
            context = GLib.MainContext.default()
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline:
                context.iteration(True)
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


HOLD_S = 0.01    # as HOLD_MS in portalock-redis-bench.c


def hand_off(side, sock, rounds):
    """The rounds of portalock-redis-bench.c's handoff, in Python: the
    holder holds; the waiter says it is about to wait and blocks in
    acquire; 10 ms later the holder stamps and releases; the waiter stamps
    once it holds, releases and says so; the holder takes the lock again
    and says so. Both are forked from this process, which has no lock of
    its own (so no worker thread to fork). Returns ms."""
    name = 'bench-handoff-' + side
    folder = tempfile.mkdtemp(prefix='porta-bench-handoff-')
    to_waiter, to_holder = os.pipe(), os.pipe()

    def run(role):
        lock = SIDES[side](sock, name)
        times = []
        for _ in range(rounds):
            if role == 'holder':
                lock.acquire()
                os.write(to_waiter[1], b'H')
                assert os.read(to_holder[0], 1) == b'W'
                time.sleep(HOLD_S)
                times.append(time.monotonic())
                lock.release()
                assert os.read(to_holder[0], 1) == b'D'
            else:
                assert os.read(to_waiter[0], 1) == b'H'
                os.write(to_holder[1], b'W')
                lock.acquire()
                times.append(time.monotonic())
                lock.release()
                os.write(to_holder[1], b'D')
        with open(os.path.join(folder, role), 'w') as f:
            json.dump(times, f)

    pids = []
    for role in ('holder', 'waiter'):
        pid = os.fork()
        if pid == 0:
            try:
                run(role)
                os._exit(0)
            finally:
                os._exit(1)
        pids.append(pid)
    for fd in to_waiter + to_holder:
        os.close(fd)
    for pid in pids:
        if os.waitpid(pid, 0)[1] != 0:
            raise RuntimeError('a %s hand-off process failed' % side)
    with open(os.path.join(folder, 'holder')) as f:
        released = json.load(f)
    with open(os.path.join(folder, 'waiter')) as f:
        got = json.load(f)
    shutil.rmtree(folder, ignore_errors=True)
    return [(g - r) * 1000 for r, g in zip(released, got)]


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


# ----------------------------------------------- C hand-off and its floor

def c_helper():
    path = os.environ.get('PORTALOCK_REDIS_BENCH')
    return path if path and os.access(path, os.X_OK) else None


def run_c(*args):
    out = subprocess.run([c_helper()] + [str(a) for a in args], stdout=subprocess.PIPE,
                         text=True, check=True, timeout=600).stdout
    return json.loads(out)


def script_times(client):
    """Server time of each command in the slow log, in µs, by command; the
    lock scripts by name (their SHA1, computed from portalock/redis/)."""
    names = {}
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'portalock', 'redis')
    with open(os.path.join(folder, 'common.lua'), 'rb') as f:
        common = f.read()    # put in front of each script by the library
    for name in ('acquire', 'release', 'renew', 'withdraw'):
        try:
            with open(os.path.join(folder, name + '.lua'), 'rb') as f:
                names[hashlib.sha1(common + f.read()).hexdigest()] = name
        except OSError:
            pass
    times = {}
    for entry in client.slowlog_get(100000):
        command = entry['command']
        args = (command.decode() if isinstance(command, bytes) else command).split()
        if not args:
            continue
        key = args[0].upper()
        if key == 'EVALSHA' and len(args) > 1:
            key = names.get(args[1], args[1][:8])
        times.setdefault(key, []).append(entry['duration'])
    return times


def breakdown(sock, rounds, script_mean):
    """The C hand-off again, with a subscriber of the wake-up channel
    stamping the wake-up and the server timing every command."""
    client = redis.Redis(unix_socket_path=sock)
    client.config_set('slowlog-max-len', 100000)
    client.slowlog_reset()
    client.config_set('slowlog-log-slower-than', 0)
    try:
        stamps = run_c('handoff', sock, rounds, 'observe')
    finally:
        client.config_set('slowlog-log-slower-than', 10000)
    server = script_times(client)
    client.slowlog_reset()
    # A round whose wake-up the observer did not see has no stamp (the
    # difference is then minus the release time): the wake-up went to
    # another channel than porta:{NAME}:wake.
    seen = [(h, p) for h, p in zip(stamps['handoff'], stamps['published']) if p >= 0]
    print()
    print('Where the C hand-off goes (a third process subscribed to the wake-up channel; '
          'the server slow log at threshold 0):')
    print()
    print('| step | p50 | p99 |')
    print('| --- | --- | --- |')
    rows = [('whole hand-off (this pass)', stamps['handoff']),
            ("holder's release call, start to return", stamps['release'])]
    if len(seen) == len(stamps['handoff']):
        rows[:0] = [('release called -> wake-up reaches a subscriber', [p for _, p in seen]),
                    ('wake-up reaches a subscriber -> waiter holds the lock',
                     [h - p for h, p in seen])]
    else:
        print('| the subscriber of the wake-up channel saw %d wake-ups of %d | | |'
              % (len(seen), len(stamps['handoff'])))
    for label, values in rows:
        print('| %s | %.0f µs | %.0f µs |' % (label, statistics.median(values), percentile(values, 99)))
    if script_mean is not None:
        print('| server time of one lock script, mean of all calls in the C hand-off above '
              '(commandstats, no slow log) | %.0f µs (mean) | |' % script_mean)
    # With the slow log on, the commands inside a script are logged too,
    # which lengthens the script: these are upper bounds.
    for name in ('release', 'acquire', 'PUBLISH', 'SET', 'UNSUBSCRIBE', 'SUBSCRIBE'):
        if name in server:
            print('| server time of one %s%s (%d calls, slow log on) | %.0f µs | %.0f µs |' % (
                name, ' script' if name.islower() else '', len(server[name]),
                statistics.median(server[name]), percentile(server[name], 99)))


# ----------------------------------------- 100 processes, one lock, a counter

def contend_child(side, sock, name, counter, seconds, go_r, out_w):
    """One Python contender, forked: connects, says so, waits for the start
    (the parent closes the pipe), then takes turns until @seconds pass."""
    lock = SIDES[side](sock, name)
    try:
        if side == 'porta':
            if lock.lock.acquire(0, None):
                lock.release()
        elif side == 'redis-py':
            if lock.lock.acquire(blocking=False):
                lock.release()
        else:
            lock.lock.connection.ping()
    except Exception:  # taken: the connection is made all the same
        pass
    os.write(out_w, b'r')
    os.read(go_r, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    deadline = time.monotonic() + seconds
    n, last, error = 0, 0.0, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left < 0.001:
                break
            if side == 'porta':
                try:
                    lock.lock.acquire(int(left * 1000), None)
                except GLib.Error as e:
                    if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT):
                        break
                    raise
            elif side == 'redis-py':
                if not lock.lock.acquire(blocking=True, blocking_timeout=left):
                    break
            else:
                import portalocker
                try:
                    lock.lock.acquire(timeout=left)
                except portalocker.exceptions.AlreadyLocked:
                    break
            fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o644)
            value = int(os.read(fd, 32) or b'0') + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, b'%d' % value)
            os.close(fd)
            lock.release()
            last = time.monotonic()
            n += 1
    except Exception as e:
        error = '%s: %s' % (type(e).__name__, e)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    os.write(out_w, (json.dumps({'acquired': n, 'last': last * 1e6, 'error': error,
                                 'cpu': usage.ru_utime + usage.ru_stime - cpu_start})
                      + '\n').encode())
    os._exit(0)


def contention(side, sock, procs, seconds, folder):
    """@procs processes on one lock for @seconds: acquisitions per second
    from the start to the last release, and the counter's check."""
    name = 'bench-contend-%s' % side
    counter = os.path.join(folder, name + '.count')
    if os.path.exists(counter):
        os.unlink(counter)
    children, results = [], []
    limit = time.monotonic() + seconds + 120    # the whole figure's bound
    client = redis.Redis(unix_socket_path=sock)

    def server_cpu():
        info = client.info('cpu')
        return info['used_cpu_user'] + info['used_cpu_sys']

    try:
        if side == 'porta-c':
            for _ in range(procs):
                p = subprocess.Popen([c_helper(), 'contend', sock, name, counter, str(seconds),
                                      '1000000'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                children.append(p)
                if p.stdout.readline().strip() != 'ready':
                    raise RuntimeError('a C contender did not start')
            cpu_before = server_cpu()
            start = time.monotonic()
            for p in children:
                p.stdin.write('g')
                p.stdin.flush()
            for p in children:
                line = p.stdout.readline()
                p.wait(timeout=max(1, limit - time.monotonic()))
                if line.strip():
                    results.append(json.loads(line))
        else:
            go_r, go_w = os.pipe()
            out_r, out_w = os.pipe()
            for _ in range(procs):
                pid = os.fork()
                if pid == 0:
                    os.close(go_w)
                    os.close(out_r)
                    try:
                        contend_child(side, sock, name, counter, seconds, go_r, out_w)
                    finally:
                        os._exit(1)
                children.append(pid)
            os.close(go_r)
            os.close(out_w)
            ready = 0
            while ready < procs:
                got = os.read(out_r, procs - ready)
                if not got:
                    raise RuntimeError('a contender died before the start')
                ready += len(got)
            cpu_before = server_cpu()
            start = time.monotonic()
            os.close(go_w)    # every contender starts now
            with os.fdopen(out_r) as out:
                for line in out:
                    results.append(json.loads(line))
                    if time.monotonic() > limit:
                        break
            for pid in children:
                os.waitpid(pid, 0)
            children = []
    finally:
        # Anything still running past the bound is killed.
        for c in children:
            try:
                if isinstance(c, int):
                    os.kill(c, signal.SIGKILL)
                    os.waitpid(c, 0)
                elif c.poll() is None:
                    c.kill()
                    c.wait()
            except (ProcessLookupError, ChildProcessError):
                pass
    server = server_cpu() - cpu_before
    total = sum(r['acquired'] for r in results)
    cpu = sum(r.get('cpu', 0) for r in results)
    last = max((r['last'] for r in results if r['acquired']), default=start * 1e6)
    try:
        with open(counter) as f:
            count = int(f.read() or 0)
    except FileNotFoundError:
        count = 0
    errors = [r['error'] for r in results if r.get('error')]
    return {'rate': total / max(1e-6, last / 1e6 - start), 'total': total, 'count': count,
            'finished': len(results), 'errors': errors,
            'cpu_ms': cpu * 1000 / max(1, total), 'server_ms': server * 1000 / max(1, total),
            'fewest': min((r['acquired'] for r in results), default=0),
            'most': max((r['acquired'] for r in results), default=0)}


# ------------------------------------------------------------------ main

def failover(uri, cluster):
    """Kill the master of a lock held by one process and waited on by
    another: (kill -> lost, kill -> acquired) in ms."""
    name = 'bench-failover'
    master = cluster.master_of(redis_cluster.lock_slot(name))
    holder = spawn('hold-forever', 'porta', uri, name)
    assert holder.stdout.readline().strip() == 'held'
    waiter = spawn('wait-once', 'porta', uri, name)
    assert waiter.stdout.readline().strip() == 'waiting'
    time.sleep(0.3)
    cluster.cli(master, 'WAIT', '1', '5000')
    killed = time.monotonic()
    cluster.kill(master)
    lost = float(holder.stdout.readline().split()[1])
    acquired = json.loads(waiter.stdout.readline())[0]
    waiter.wait()
    holder.kill()
    holder.wait()
    return (lost - killed) * 1000, (acquired - killed) * 1000


# (figure, value, unit, baseline's name, baseline, 'le' or 'ge', ratio)
VERDICTS = []


def judge(figure, value, unit, base_name, base, op, limit):
    VERDICTS.append((figure, value, unit, base_name, base, op, limit))


def print_verdicts():
    print()
    print('Targets, as ratios to a baseline of this run:')
    print()
    print('| figure | value | baseline | ratio | target | |')
    print('| --- | --- | --- | --- | --- | --- |')
    misses = 0
    for figure, value, unit, base_name, base, op, limit in VERDICTS:
        ratio = value / base if base else float('inf')
        ok = ratio <= limit if op == 'le' else ratio >= limit
        misses += not ok
        print('| %s | %.2f %s | %s %.2f %s | %.3fx | %s %gx | %s |' % (
            figure, value, unit, base_name, base, unit, ratio,
            '<=' if op == 'le' else '>=', limit, 'PASS' if ok else 'MISS'))
    print()
    print('%d Redis figure%s missed %s target' % (misses, '' if misses == 1 else 's',
                                                  'its' if misses == 1 else 'their'))
    return misses


def cluster_figures(rounds, single_handoff):
    cluster = redis_cluster.RedisCluster(masters=3, replicas=1, node_timeout_ms=1000)
    try:
        uri = cluster.uri
        handoffs = hand_off('porta', uri, rounds)
        takeovers = takeover('porta', uri, max(5, rounds // 5))
        lost, acquired = failover(uri, cluster)
    finally:
        cluster.stop()
    print()
    print('PortaRedisLock on a local Redis Cluster 7: 3 masters, 3 replicas, '
          'cluster-node-timeout 1 s; %d rounds' % rounds)
    print()
    print('| hand-off p50 | hand-off p99 | SIGKILL takeover p50 | master SIGKILLed: holder lost | '
          'master SIGKILLed: waiter holds |')
    print('| --- | --- | --- | --- | --- |')
    print('| %.2f ms | %.2f ms | %.1f ms | %.0f ms | %.0f ms |' % (
        statistics.median(handoffs), percentile(handoffs, 99), statistics.median(takeovers),
        lost, acquired), flush=True)
    judge('cluster hand-off p50', statistics.median(handoffs), 'ms',
          'one server', single_handoff, 'le', 2)


def option(name, default, kind=int):
    if name in sys.argv:
        return kind(sys.argv[sys.argv.index(name) + 1])
    return default


LABELS = {
    'porta': 'portalock PortaRedisLock, Python',
    'porta-c': 'portalock PortaRedisLock, C',
    'floor': 'floor: hiredis PUBLISH → subscriber, + SET (C)',
    'redis-py': 'redis-py Lock (Python)',
    'portalocker': 'portalocker RedisLock (Python)',
}


def main():
    rounds = option('--rounds', 50)
    procs = option('--procs', 100)
    seconds = option('--seconds', 5.0, float)
    samples_file = option('--samples', None, str)
    folder = tempfile.mkdtemp(prefix='porta-bench-redis-')
    sock = os.path.join(folder, 'redis.sock')
    server = subprocess.Popen(['redis-server', '--port', '0', '--unixsocket', sock,
                               '--unixsocketperm', '700', '--dir', folder, '--save', '',
                               '--appendonly', 'no', '--maxclients', '4000'],
                              stdout=subprocess.DEVNULL)
    samples = {}
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        version = redis.Redis(unix_socket_path=sock).info('server')['redis_version']
        print('Redis locks, one local redis-server %s on a Unix socket; %d rounds each, '
              '%d CPUs, load average %.2f at the start'
              % (version, rounds, os.cpu_count(), os.getloadavg()[0]))
        print()
        floor = None
        if c_helper():
            handoffs = {}
            handoffs['floor'] = run_c('floor', sock, rounds * 4)['handoff']
            stats = redis.Redis(unix_socket_path=sock)
            stats.config_resetstat()
            handoffs['porta-c'] = run_c('handoff', sock, rounds * 4)['handoff']
            script_mean = stats.info('commandstats').get('cmdstat_evalsha', {}).get('usec_per_call')
            floor = statistics.median(handoffs['floor'])
            judge('hand-off p50, C', statistics.median(handoffs['porta-c']), 'µs',
                  'C floor', floor, 'le', 8)
            print('| hand-off, C processes | p50 | p99 | p50 vs the floor | target |')
            print('| --- | --- | --- | --- | --- |')
            for side in ('floor', 'porta-c'):
                values = handoffs[side]
                samples[LABELS[side]] = values
                print('| %s | %.0f µs | %.0f µs | %.2fx | %s |' % (
                    LABELS[side], statistics.median(values), percentile(values, 99),
                    statistics.median(values) / floor,
                    '<= 8x' if side == 'porta-c' else ''))
            print()
        else:
            print('(no C rows: PORTALOCK_REDIS_BENCH does not name bench/portalock-redis-bench)')
            print()
        print('| lock | hand-off p50 | hand-off p99 | p50 vs the C floor | SIGKILL takeover p50 | commands/s, 1 holder + 1 waiter |')
        print('| --- | --- | --- | --- | --- | --- |')
        medians = {}
        for side in ('porta', 'redis-py', 'portalocker'):
            handoffs = hand_off(side, sock, rounds)
            samples[LABELS[side]] = [t * 1000 for t in handoffs]
            takeovers = takeover(side, sock, max(5, rounds // 5))
            rate = command_rate(side, sock)
            medians[side] = (statistics.median(handoffs), statistics.median(takeovers))
            print('| %s | %.2f ms | %.2f ms | %s | %.1f ms | %.1f |' % (
                SIDES[side].label, statistics.median(handoffs), percentile(handoffs, 99),
                '%.1fx' % (statistics.median(handoffs) * 1000 / floor) if floor else '-',
                statistics.median(takeovers), rate), flush=True)
        judge('hand-off p50, Python', medians['porta'][0], 'ms',
              'redis-py Lock', medians['redis-py'][0], 'le', 0.1)
        judge('SIGKILL takeover p50', medians['porta'][1], 'ms',
              'portalocker RedisLock', medians['portalocker'][1], 'le', 0.75)
        if c_helper():
            breakdown(sock, rounds * 2, script_mean)

        print()
        print('%d processes contending for one lock for %.0f s, each incrementing a counter '
              'in a file under the lock:' % (procs, seconds))
        print()
        print('| lock | acquires/s | vs redis-py | acquisitions | counter | per process, fewest .. most '
              '| CPU per acquisition: contenders / redis-server |')
        print('| --- | --- | --- | --- | --- | --- | --- |')
        base = None
        rates = {}
        for side in ('redis-py', 'porta', 'porta-c', 'portalocker'):
            if side == 'porta-c' and not c_helper():
                continue
            r = contention(side, sock, procs, seconds, folder)
            if side == 'redis-py':
                base = r['rate']
            rates[side] = r['rate']
            if side.startswith('porta') and r['count'] != r['total']:
                # a lost update is never within any target
                judge('counter under %s' % LABELS[side], r['count'], '', 'acquisitions',
                      r['total'], 'ge', 1)
            check = 'exact' if r['count'] == r['total'] else 'WRONG: %d' % r['count']
            if r['finished'] < procs:
                check += ', %d of %d processes did not finish' % (procs - r['finished'], procs)
            print('| %s | %.0f | %s | %d | %s | %d .. %d | %.2f ms / %.2f ms |' % (
                LABELS[side], r['rate'], '%.2fx' % (r['rate'] / base) if base else '-',
                r['total'], check, r['fewest'], r['most'], r['cpu_ms'], r['server_ms']),
                flush=True)
            for e in sorted(set(r['errors']))[:3]:
                print('|   error in %d process(es): %s | | | | | | |' % (r['errors'].count(e), e))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    judge('%d processes, acquires/s, Python' % procs, rates['porta'], '/s',
          'portalocker RedisLock', rates['portalocker'], 'ge', 2)
    if samples_file:
        with open(samples_file, 'w') as f:
            json.dump({'group': 'Redis locks', 'unit': 'us', 'series': samples}, f)
    cluster_figures(rounds, medians['porta'][0])
    return 1 if print_verdicts() else 0


if __name__ == '__main__':
    if len(sys.argv) == 7 and sys.argv[1] == '--child':
        child_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        sys.exit(main())
