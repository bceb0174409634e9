# SPDX-License-Identifier: LGPL-2.1-or-later
#
# redis_cluster.py: a local Redis Cluster for the tests and the benchmark:
# masters and replicas (redis-server --cluster-enabled yes) on free
# loopback ports, in a temporary folder, made one cluster with
# `redis-cli --cluster create`, and every node stopped by stop(). Every
# wait here is bounded.

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PATIENCE = 30.0


def crc16(data):
    """CRC16/XMODEM, as Redis Cluster hashes keys."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xffff
    return crc


def lock_slot(name):
    """The slot of every key of the lock NAME (they share the hash tag {NAME})."""
    return crc16(name.encode()) % 16384


def free_ports(count):
    """COUNT loopback ports that are free, each with its cluster bus port
    (port + 10000) free too."""
    ports = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(('127.0.0.1', port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


class RedisCluster:
    """MASTERS masters with REPLICAS replicas each; NODE_TIMEOUT_MS is the
    cluster-node-timeout, after which a failed master's replica takes over."""

    def __init__(self, masters=3, replicas=1, node_timeout_ms=1000):
        self.dir = tempfile.mkdtemp(prefix='porta-redis-cluster-')
        self.ports = free_ports(masters * (1 + replicas))
        self.procs = {}
        try:
            for port in self.ports:
                self.start_node(port, node_timeout_ms)
            for port in self.ports:
                self.wait_for(lambda: self.cli(port, 'PING') == 'PONG', 'node %d to start' % port)
            subprocess.run(['redis-cli', '--cluster', 'create'] +
                           ['127.0.0.1:%d' % p for p in self.ports] +
                           ['--cluster-replicas', str(replicas), '--cluster-yes'],
                           check=True, capture_output=True, timeout=120)
            self.wait_for(self.settled, 'the cluster to settle')
        except BaseException:
            self.stop()
            raise
        self.uri = 'redis+cluster://127.0.0.1:%d,127.0.0.1:%d/' % (self.ports[0], self.ports[1])

    def start_node(self, port, node_timeout_ms):
        folder = os.path.join(self.dir, str(port))
        os.makedirs(folder, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ['redis-server', '--port', str(port), '--bind', '127.0.0.1',
             '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
             '--cluster-node-timeout', str(node_timeout_ms), '--dir', folder,
             '--save', '', '--appendonly', 'no', '--logfile', 'redis.log'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def wait_for(predicate, what, seconds=PATIENCE):
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError('timed out waiting for ' + what)
            time.sleep(0.05)

    def cli(self, port, *args):
        try:
            result = subprocess.run(['redis-cli', '-p', str(port)] + list(args),
                                    capture_output=True, text=True, timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            return ''
        return result.stdout.strip()

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def settled(self):
        """Every live node sees the cluster ok, and every master has its
        replicas."""
        for port in self.alive():
            if 'cluster_state:ok' not in self.cli(port, 'CLUSTER', 'INFO'):
                return False
        nodes = self.nodes()
        masters = [n for n in nodes.values() if n['master'] and not n['failed']]
        replicas = [n for n in nodes.values() if not n['master'] and not n['failed']]
        return len(masters) > 0 and all(
            any(r['master_id'] == m['id'] for r in replicas) for m in masters)

    def nodes(self):
        """port -> {id, master, master_id, failed, slots}, as a live node sees it."""
        text = self.cli(self.alive()[0], 'CLUSTER', 'NODES')
        result = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            port = int(fields[1].split('@')[0].rsplit(':', 1)[1] or 0)
            flags = fields[2].split(',')
            result[port] = {'id': fields[0], 'master': 'master' in flags,
                            'master_id': fields[3], 'failed': 'fail' in flags,
                            'slots': fields[8:]}
        return result

    def master_of(self, slot):
        """The port of the master serving SLOT, as a live node sees it."""
        for port, node in self.nodes().items():
            if not node['master'] or node['failed']:
                continue
            for item in node['slots']:
                if item.startswith('['):
                    continue
                first, _, last = item.partition('-')
                if int(first) <= slot <= int(last or first):
                    return port
        return None

    def masters(self):
        return sorted(p for p, n in self.nodes().items() if n['master'] and not n['failed'])

    def replica_of(self, port):
        nodes = self.nodes()
        return [p for p, n in nodes.items() if n['master_id'] == nodes[port]['id']]

    def names_on_masters(self, prefix):
        """One lock name per master: master port -> name."""
        result = {}
        masters = self.masters()
        for k in range(10000):
            name = '%s-%d' % (prefix, k)
            port = self.master_of(lock_slot(name)) if len(result) < len(masters) else None
            if port is not None and port not in result:
                result[port] = name
            if len(result) == len(masters):
                return result
        raise RuntimeError('no names found for every master')

    def move_slot(self, slot, source, target):
        """Moves SLOT and its keys from master SOURCE to master TARGET, as
        redis-cli --cluster reshard does."""
        source_id = self.nodes()[source]['id']
        target_id = self.nodes()[target]['id']
        assert self.cli(target, 'CLUSTER', 'SETSLOT', str(slot), 'IMPORTING', source_id) == 'OK'
        assert self.cli(source, 'CLUSTER', 'SETSLOT', str(slot), 'MIGRATING', target_id) == 'OK'
        keys = self.cli(source, 'CLUSTER', 'GETKEYSINSLOT', str(slot), '1000').split()
        if keys:
            out = self.cli(source, 'MIGRATE', '127.0.0.1', str(target), '', '0', '10000',
                           'KEYS', *keys)
            assert out == 'OK', out
        for port in [target, source] + [p for p in self.masters() if p not in (source, target)]:
            assert self.cli(port, 'CLUSTER', 'SETSLOT', str(slot), 'NODE', target_id) == 'OK'

    def kill(self, port):
        self.procs[port].kill()
        self.procs[port].wait(timeout=PATIENCE)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def serve():
    """For the C tests: starts a cluster, says "uri URI", then answers a
    command a line on stdin until end-of-file, when it stops every node:
      kill NAME   kills the master of the lock NAME, once the grant is on
                  its replica (WAIT): "killed"
      move NAME   moves the lock's slot to another master: "moved"
      names P     one lock name per master, prefixed with P: "names N..."
    """
    cluster = RedisCluster(masters=3, replicas=1, node_timeout_ms=1000)
    try:
        print('uri', cluster.uri, flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ['kill']:
                master = cluster.master_of(lock_slot(words[1]))
                cluster.cli(master, 'WAIT', '1', '5000')
                cluster.kill(master)
                print('killed', flush=True)
            elif words[:1] == ['move']:
                slot = lock_slot(words[1])
                source = cluster.master_of(slot)
                target = [p for p in cluster.masters() if p != source][0]
                cluster.move_slot(slot, source, target)
                print('moved', flush=True)
            elif words[:1] == ['names']:
                print('names', ' '.join(cluster.names_on_masters(words[1]).values()), flush=True)
            else:
                print('unknown command', line.strip(), flush=True)
    finally:
        cluster.stop()


if __name__ == '__main__':
    if sys.argv[1:] == ['--serve']:
        serve()
    else:
        sys.exit('usage: redis_cluster.py --serve')
