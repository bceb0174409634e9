// SPDX-License-Identifier: LGPL-2.1-or-later
//
// testPorta.js: portalock as JavaScript programs see it, through GJS and the
// Porta-1 typelib. Run it as an ES module:
//
//   gjs -m tests/gjs/testPorta.js
//
// with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the built portalock/
// folder when the library is not installed (`meson test --suite gjs` does
// that). It prints TAP ("ok N - name" / "not ok N - name") and exits with
// status 1 if any test failed.
//
// The other process that holds the lock is util-linux flock(1), which uses
// flock(2) like portalock's default backend:
//   flock FILE -c 'echo locked; read x; echo released'
//
// Everything runs on one GLib.MainLoop: each test is an async function, and
// the asynchronous calls are awaited on the loop.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Porta from 'gi://Porta?version=1';
import System from 'system';

// A test that should end early (cancelled, handed the lock) fails instead of
// hanging after this long.
const FAILSAFE_MS = 15000;
// How long a child may take to say something.
const CHILD_REPLY_MS = 20000;

const FLOCK = GLib.find_program_in_path('flock');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Tiny assertion helpers

class AssertionError extends Error {}

function fail(message) {
    throw new AssertionError(message);
}

function assert(value, message = 'assertion failed') {
    if (!value)
        fail(message);
}

function assertEqual(actual, expected, message = '') {
    if (actual !== expected)
        fail(`${message ? `${message}: ` : ''}expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

function assertArrayEqual(actual, expected, message = '') {
    assertEqual(JSON.stringify(actual), JSON.stringify(expected), message);
}

function errorText(e) {
    if (e instanceof GLib.Error)
        return `GLib.Error ${GLib.quark_to_string(e.domain)}:${e.code}: ${e.message}`;
    return String(e);
}

function assertIOError(error, code, message = '') {
    if (!(error instanceof GLib.Error) || !error.matches(Gio.IOErrorEnum, code)) {
        fail(`${message ? `${message}: ` : ''}expected G_IO_ERROR code ${code}, got ${
            error === undefined ? 'no error' : errorText(error)}`);
    }
}

function assertThrowsIOError(code, func, message = '') {
    try {
        func();
    } catch (e) {
        assertIOError(e, code, message);
        return e;
    }
    return fail(`${message ? `${message}: ` : ''}expected G_IO_ERROR code ${code}, but it succeeded`);
}

async function assertRejectsIOError(code, promise, message = '') {
    try {
        await promise;
    } catch (e) {
        assertIOError(e, code, message);
        return e;
    }
    return fail(`${message ? `${message}: ` : ''}expected G_IO_ERROR code ${code}, but it succeeded`);
}

function nowMs() {
    return GLib.get_monotonic_time() / 1000;
}

function sleep(ms) {
    return new Promise(resolve => {
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

// Rejects if @promise has not settled after @ms.
function withFailsafe(promise, ms, what) {
    let source = 0;
    const failsafe = new Promise((resolve, reject) => {
        source = GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            source = 0;
            reject(new AssertionError(`${what}: still waiting after ${ms} ms`));
            return GLib.SOURCE_REMOVE;
        });
    });
    return Promise.race([promise, failsafe]).finally(() => {
        if (source)
            GLib.source_remove(source);
    });
}

// ---------------------------------------------------------------------------
// Other processes

Gio._promisify(Gio.Subprocess.prototype, 'wait_async', 'wait_finish');
Gio._promisify(Gio.DataInputStream.prototype, 'read_line_async', 'read_line_finish_utf8');

// Cleanups of the running test, run last first.
let cleanups = [];

class Holder {
    // Starts flock(1) holding @path and waits until it says it holds it.
    static async start(path) {
        const holder = new Holder(path);
        await holder.expect('locked');
        return holder;
    }

    constructor(path) {
        assert(FLOCK, 'flock(1) is missing: install util-linux');
        this.proc = Gio.Subprocess.new(
            [FLOCK, path, '-c', 'echo locked; read x; echo released'],
            Gio.SubprocessFlags.STDIN_PIPE | Gio.SubprocessFlags.STDOUT_PIPE);
        this.stdout = new Gio.DataInputStream({base_stream: this.proc.get_stdout_pipe()});
        this.done = false;
        cleanups.push(() => this.stop());
    }

    async expect(word) {
        const cancellable = new Gio.Cancellable();
        const source = GLib.timeout_add(GLib.PRIORITY_DEFAULT, CHILD_REPLY_MS, () => {
            cancellable.cancel();
            return GLib.SOURCE_REMOVE;
        });
        let line;
        try {
            [line] = await this.stdout.read_line_async(GLib.PRIORITY_DEFAULT, cancellable);
        } catch (e) {
            fail(`flock(1) said nothing within ${CHILD_REPLY_MS} ms: ${errorText(e)}`);
        } finally {
            if (!cancellable.is_cancelled())
                GLib.source_remove(source);
        }
        assertEqual(line, word, 'flock(1) said');
    }

    // Tells the holder to let go; never blocks, so it may be called from a
    // main-loop callback.
    sendLine() {
        const stdin = this.proc.get_stdin_pipe();
        if (!stdin.is_closed()) {
            try {
                stdin.write_all(encoder.encode('\n'), null);
                stdin.close(null);
            } catch (e) {
                // it exited already
            }
        }
    }

    // Waits until the holder has let go and exited.
    async release() {
        this.sendLine();
        await this.expect('released');
        await this.wait();
    }

    async wait() {
        await withFailsafe(this.proc.wait_async(null), CHILD_REPLY_MS, 'flock(1) exit');
        this.done = true;
        assert(this.proc.get_if_exited() && this.proc.get_exit_status() === 0,
            'flock(1) exited with status 0');
    }

    async stop() {
        if (this.done)
            return;
        this.sendLine();
        try {
            await withFailsafe(this.proc.wait_async(null), 5000, 'flock(1) exit');
        } catch (e) {
            this.proc.force_exit();
            await this.proc.wait_async(null);
        }
        this.done = true;
    }
}

// Whether another process can take the lock now: 'busy' or 'free'.
async function probe(path) {
    const proc = Gio.Subprocess.new([FLOCK, '-n', path, 'true'], Gio.SubprocessFlags.NONE);
    await withFailsafe(proc.wait_async(null), CHILD_REPLY_MS, 'flock -n');
    assert(proc.get_if_exited(), 'flock -n exited');
    const status = proc.get_exit_status();
    assert(status === 0 || status === 1, `flock -n exit status ${status}`);
    return status === 0 ? 'free' : 'busy';
}

// ---------------------------------------------------------------------------
// Test fixtures

let testDir = null;
let lockPath = null;

function newLock(mode = Porta.LockMode.EXCLUSIVE, path = lockPath) {
    const lock = Porta.Lock.new_for_path(path, mode);
    cleanups.push(() => {
        if (lock.held)
            lock.release();
    });
    return lock;
}

// acquire_async with a callback, wrapped by hand in a promise that records
// how many times the callback ran.
function acquireWithCallback(lock, timeoutMs, cancellable = null) {
    const calls = {count: 0};
    const promise = new Promise((resolve, reject) => {
        lock.acquire_async(timeoutMs, GLib.PRIORITY_DEFAULT, cancellable, (source, result) => {
            calls.count++;
            calls.time = nowMs();
            try {
                assert(source === lock, 'the callback gets the lock as source');
                resolve(source.acquire_finish(result));
            } catch (e) {
                reject(e);
            }
        });
    });
    return {promise: withFailsafe(promise, FAILSAFE_MS, 'acquire_async'), calls};
}

// Counts main-loop iterations while a test waits.
function ticker(intervalMs = 10) {
    const ticks = {count: 0};
    const source = GLib.timeout_add(GLib.PRIORITY_DEFAULT, intervalMs, () => {
        ticks.count++;
        return GLib.SOURCE_CONTINUE;
    });
    cleanups.push(() => GLib.source_remove(source));
    return ticks;
}

// ---------------------------------------------------------------------------
// The tests

const tests = [];
function test(name, func) {
    tests.push({name, func});
}

test('sync acquire and release', async () => {
    const lock = newLock();
    assertEqual(lock.held, false, 'held before');
    assertEqual(lock.get_held(), false, 'get_held() before');
    assertEqual(lock.acquire(-1, null), true, 'acquire');
    assertEqual(lock.held, true, 'held after acquire');
    assert(GLib.file_test(lockPath, GLib.FileTest.EXISTS), 'acquire creates the lock file');
    assertEqual(await probe(lockPath), 'busy', 'flock -n while held');
    assertEqual(lock.release(), true, 'release');
    assertEqual(lock.held, false, 'held after release');
    assertEqual(await probe(lockPath), 'free', 'flock -n after release');
    assertEqual(lock.try_acquire(), true, 'try_acquire when free');
    assertEqual(lock.release(), true, 'release');
});

test('properties and default backend', () => {
    const lock = newLock(Porta.LockMode.SHARED);
    assertEqual(lock.backend, Porta.Backend.FLOCK, 'the default backend');
    assertEqual(lock.get_backend(), Porta.Backend.FLOCK, 'get_backend()');
    assertEqual(lock.mode, Porta.LockMode.SHARED, 'mode');
    assertEqual(lock.file.get_path(), lockPath, 'file');
    assertEqual(lock.flags, Porta.LockFlags.NONE, 'flags');
    for (const backend of [Porta.Backend.FLOCK, Porta.Backend.OFD, Porta.Backend.POSIX]) {
        const other = Porta.Lock.new_full(Gio.File.new_for_path(lockPath),
            Porta.LockMode.EXCLUSIVE, backend, Porta.LockFlags.NONE);
        assertEqual(other.backend, backend, 'backend of new_full()');
    }
});

test('already held, not held', () => {
    const lock = newLock();
    try {
        lock.release();
        fail('release when not held succeeded');
    } catch (e) {
        assert(e instanceof GLib.Error && e.matches(Porta.LockError, Porta.LockError.NOT_HELD),
            `expected NOT_HELD, got ${errorText(e)}`);
    }
    lock.acquire(-1, null);
    try {
        lock.acquire(0, null);
        fail('acquire when held succeeded');
    } catch (e) {
        assert(e instanceof GLib.Error && e.matches(Porta.LockError, Porta.LockError.ALREADY_HELD),
            `expected ALREADY_HELD, got ${errorText(e)}`);
    }
    assertEqual(lock.held, true, 'still held');
});

test('try-once fails with WOULD_BLOCK while another process holds it', async () => {
    const holder = await Holder.start(lockPath);
    const lock = newLock();
    const error = assertThrowsIOError(Gio.IOErrorEnum.WOULD_BLOCK, () => lock.try_acquire());
    assert(error.message.includes(lockPath), `the message names the file: ${error.message}`);
    assertThrowsIOError(Gio.IOErrorEnum.WOULD_BLOCK, () => lock.acquire(0, null), 'acquire(0)');
    assertEqual(lock.held, false, 'held');
    await holder.release();
    assertEqual(lock.try_acquire(), true, 'try_acquire after the holder let go');
});

test('sync acquire times out with TIMED_OUT', async () => {
    const holder = await Holder.start(lockPath);
    const lock = newLock();
    for (const timeoutMs of [1, 300]) {
        const start = nowMs();
        const error = assertThrowsIOError(Gio.IOErrorEnum.TIMED_OUT, () => lock.acquire(timeoutMs, null));
        const elapsed = nowMs() - start;
        assert(error.message.includes(lockPath), `the message names the file: ${error.message}`);
        assert(elapsed >= timeoutMs - 5 && elapsed <= timeoutMs + 2000,
            `acquire(${timeoutMs}) failed after ${elapsed.toFixed(1)} ms`);
        assertEqual(lock.held, false, 'held');
    }
    await holder.release();
    assertEqual(await probe(lockPath), 'free', 'the wait that timed out keeps nothing');
});

test('async acquire times out with TIMED_OUT', async () => {
    const holder = await Holder.start(lockPath);
    const lock = newLock();
    const ticks = ticker();
    const start = nowMs();
    const {promise, calls} = acquireWithCallback(lock, 300);
    await assertRejectsIOError(Gio.IOErrorEnum.TIMED_OUT, promise);
    const elapsed = calls.time - start;
    assert(elapsed >= 300 - 5 && elapsed <= 300 + 2000, `failed after ${elapsed.toFixed(1)} ms`);
    assert(ticks.count >= 1, 'the main loop ran while the lock was awaited');
    assertEqual(lock.held, false, 'held');
    await holder.release();
    assertEqual(await probe(lockPath), 'free', 'the wait that timed out keeps nothing');
    await sleep(50);
    assertEqual(calls.count, 1, 'the callback ran once');
});

// GJS runs JavaScript on one thread only, so a blocking lock.acquire(-1,
// cancellable) cannot be cancelled from JavaScript: nothing else runs while
// it blocks. Cancellation is tested on acquire_async instead, cancelled from
// a main-loop timeout (the Python suite cancels a sync acquire from a thread).
test('async acquire cancelled from a main-loop timeout', async () => {
    const holder = await Holder.start(lockPath);
    const lock = newLock();
    const cancellable = new Gio.Cancellable();
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 200, () => {
        cancellable.cancel();
        return GLib.SOURCE_REMOVE;
    });
    const start = nowMs();
    const {promise, calls} = acquireWithCallback(lock, -1, cancellable);
    await assertRejectsIOError(Gio.IOErrorEnum.CANCELLED, promise);
    assert(calls.time - start >= 150, `cancelled after ${(calls.time - start).toFixed(1)} ms`);
    assertEqual(lock.held, false, 'held');
    await holder.release();
    assertEqual(await probe(lockPath), 'free', 'the cancelled wait keeps nothing');
    assertEqual(calls.count, 1, 'the callback ran once');
    assertEqual(lock.try_acquire(), true, 'try_acquire after the cancelled wait');
});

test('async acquire with an already cancelled cancellable', async () => {
    await Holder.start(lockPath);
    const lock = newLock();
    const cancellable = new Gio.Cancellable();
    cancellable.cancel();
    const {promise} = acquireWithCallback(lock, -1, cancellable);
    await assertRejectsIOError(Gio.IOErrorEnum.CANCELLED, promise);
    assertEqual(lock.held, false, 'held');
});

test('async acquire (callback) completes when the other process releases', async () => {
    const holder = await Holder.start(lockPath);
    const lock = newLock();
    const ticks = ticker();
    let releasedAt = null;
    let ticksAtRelease = 0;
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 200, () => {
        releasedAt = nowMs();
        ticksAtRelease = ticks.count;
        holder.sendLine();
        return GLib.SOURCE_REMOVE;
    });
    const {promise, calls} = acquireWithCallback(lock, -1);
    assertEqual(calls.count, 0, 'the callback never runs before acquire_async returns');
    assertEqual(await promise, true, 'acquire_finish');
    assert(releasedAt !== null && calls.time >= releasedAt, 'the lock came after the other process let go');
    assert(ticksAtRelease >= 1, 'the main loop ran while the lock was awaited');
    assertEqual(lock.held, true, 'held');
    await holder.expect('released');
    await holder.wait();
    assertEqual(await probe(lockPath), 'busy', 'flock -n while held');
    await sleep(50);
    assertEqual(calls.count, 1, 'the callback ran once');
});

test('async acquire as a promise (Gio._promisify)', async () => {
    Gio._promisify(Porta.Lock.prototype, 'acquire_async', 'acquire_finish');

    // uncontended
    const lock = newLock();
    assertEqual(await lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, null), true, 'await acquire_async');
    assertEqual(lock.held, true, 'held');
    lock.release();

    // handed over by another process
    const holder = await Holder.start(lockPath);
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 100, () => {
        holder.sendLine();
        return GLib.SOURCE_REMOVE;
    });
    const result = await withFailsafe(lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, null),
        FAILSAFE_MS, 'await acquire_async');
    assertEqual(result, true, 'await acquire_async while another process holds it');
    assertEqual(lock.held, true, 'held');
    await holder.expect('released');
    await holder.wait();
    lock.release();

    // rejected: try-once, timeout, cancelled
    const holder2 = await Holder.start(lockPath);
    await assertRejectsIOError(Gio.IOErrorEnum.WOULD_BLOCK,
        lock.acquire_async(0, GLib.PRIORITY_DEFAULT, null), 'try-once');
    await assertRejectsIOError(Gio.IOErrorEnum.TIMED_OUT,
        withFailsafe(lock.acquire_async(100, GLib.PRIORITY_DEFAULT, null), FAILSAFE_MS, 'acquire_async'),
        'timeout');
    const cancellable = new Gio.Cancellable();
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 100, () => {
        cancellable.cancel();
        return GLib.SOURCE_REMOVE;
    });
    await assertRejectsIOError(Gio.IOErrorEnum.CANCELLED,
        withFailsafe(lock.acquire_async(-1, GLib.PRIORITY_DEFAULT, cancellable), FAILSAFE_MS, 'acquire_async'),
        'cancelled');
    assertEqual(lock.held, false, 'held');
    await holder2.release();
});

test('notify::held once per change', async () => {
    const lock = newLock();
    const events = [];
    lock.connect('notify::held', obj => events.push(obj.held));
    lock.acquire(-1, null);
    assertArrayEqual(events, [true], 'after acquire');
    try {
        lock.acquire(0, null);
    } catch (e) {
        // ALREADY_HELD
    }
    assertArrayEqual(events, [true], 'a failed acquire changes nothing');
    lock.release();
    assertArrayEqual(events, [true, false], 'after release');

    let seenInCallback = null;
    const {promise} = acquireWithCallback(lock, -1);
    promise.then(() => {
        seenInCallback = [...events];
    });
    await promise;
    assertArrayEqual(seenInCallback, [true, false, true], 'held notified once by the time the callback runs');
    lock.release();
    assertArrayEqual(events, [true, false, true, false], 'after the second release');

    const holder = await Holder.start(lockPath);
    assertThrowsIOError(Gio.IOErrorEnum.WOULD_BLOCK, () => lock.try_acquire());
    assertArrayEqual(events, [true, false, true, false], 'a failed try changes nothing');
    await holder.release();
});

test('read and write through the stream', async () => {
    GLib.file_set_contents(lockPath, 'old contents\n');
    const lock = newLock();
    assertEqual(lock.get_stream(), null, 'no stream while not held');
    lock.acquire(-1, null);
    const stream = lock.get_stream();
    assert(stream instanceof Gio.FileIOStream, 'the stream is a Gio.FileIOStream');
    assert(lock.get_stream() === stream, 'the same stream while held');
    assertEqual(stream.is_closed(), false, 'closed while held');
    let bytes = stream.get_input_stream().read_bytes(100, null);
    assertEqual(decoder.decode(bytes.toArray()), 'old contents\n', 'the stream starts at offset 0, untruncated');

    assert(stream.seek(0, GLib.SeekType.SET, null), 'seek');
    assert(stream.truncate(0, null), 'truncate');
    const [ok, written] = stream.get_output_stream().write_all(encoder.encode('hello, portalock\n'), null);
    assert(ok, 'write_all');
    assertEqual(written, 17, 'bytes written');
    assertEqual(stream.tell(), 17, 'position after writing');
    assert(stream.seek(0, GLib.SeekType.SET, null), 'seek');
    bytes = stream.get_input_stream().read_bytes(100, null);
    assertEqual(decoder.decode(bytes.toArray()), 'hello, portalock\n', 'read back');

    lock.release();
    assertEqual(stream.is_closed(), true, 'release closes the stream');
    assertEqual(lock.get_stream(), null, 'no stream after release');
    const [, contents] = GLib.file_get_contents(lockPath);
    assertEqual(decoder.decode(contents), 'hello, portalock\n', 'the file holds what was written');
});

test('errors for a bad path', async () => {
    const path = GLib.build_filenamev([testDir, 'no-such-folder', 'test.lock']);
    const lock = newLock(Porta.LockMode.EXCLUSIVE, path);
    const events = [];
    lock.connect('notify::held', obj => events.push(obj.held));
    let error = assertThrowsIOError(Gio.IOErrorEnum.NOT_FOUND, () => lock.acquire(-1, null), 'missing folder');
    assert(error.message.includes(path), `the message names the file: ${error.message}`);
    error = await assertRejectsIOError(Gio.IOErrorEnum.NOT_FOUND, acquireWithCallback(lock, -1).promise,
        'missing folder, async');
    assert(error.message.includes(path), `the message names the file: ${error.message}`);
    assertEqual(lock.held, false, 'held');
    assertArrayEqual(events, [], 'no notify::held');

    const remote = Porta.Lock.new(Gio.File.new_for_uri('http://example.com/test.lock'), Porta.LockMode.EXCLUSIVE);
    error = assertThrowsIOError(Gio.IOErrorEnum.NOT_SUPPORTED, () => remote.acquire(-1, null), 'http URI');
    assert(error.message.includes('example.com'), `the message names the file: ${error.message}`);
});

test('every lock kind from a path, awaited (1.2)', async () => {
    for (const klass of [Porta.Lock, Porta.PidFile, Porta.Semaphore])
        Gio._promisify(klass.prototype, 'acquire_async', 'acquire_finish');

    const lock = Porta.Lock.new_full_for_path(lockPath, Porta.LockMode.SHARED,
        Porta.Backend.OFD, Porta.LockFlags.NONE);
    assertEqual(lock.file.get_path(), lockPath, 'file of new_full_for_path()');
    assertEqual(lock.backend, Porta.Backend.OFD, 'backend of new_full_for_path()');
    assertEqual(await lock.acquire_async(1000, GLib.PRIORITY_DEFAULT, null), true, 'await Lock');
    lock.release();

    const sem = Porta.Semaphore.new_for_path('jobs', 2, testDir);
    assertEqual(sem.directory.get_path(), testDir, 'directory of Semaphore.new_for_path()');
    assertEqual(await sem.acquire_async(1000, GLib.PRIORITY_DEFAULT, null), true, 'await Semaphore');
    assert(GLib.file_test(GLib.build_filenamev([testDir, `jobs.${sem.get_slot()}.lock`]),
        GLib.FileTest.IS_REGULAR), 'the slot file is in the folder');
    sem.release();

    const pidPath = GLib.build_filenamev([testDir, 'app.pid']);
    const pidFile = Porta.PidFile.new_for_path(pidPath);
    assertArrayEqual(Porta.PidFile.query_holder_for_path(pidPath), [false, 0, 0, null], 'nobody holds it');
    assertEqual(await pidFile.acquire_async(1000, GLib.PRIORITY_DEFAULT, null), true, 'await PidFile');
    const [held, pid] = Porta.PidFile.query_holder_for_path(pidPath);
    assertEqual(held, true, 'held');
    assertEqual(pid, new Gio.Credentials().get_unix_pid(), 'by this process');
    pidFile.release();
});

test('stream unlocked without repeating the backend (1.2)', () => {
    const stream = Gio.File.new_for_path(lockPath).append_to(Gio.FileCreateFlags.NONE, null);
    assertEqual(Porta.stream_lock(stream, Porta.LockMode.EXCLUSIVE, Porta.Backend.OFD, 0, null), true,
        'stream_lock');
    const other = Porta.Lock.new_full_for_path(lockPath, Porta.LockMode.EXCLUSIVE,
        Porta.Backend.OFD, Porta.LockFlags.NONE);
    assertThrowsIOError(Gio.IOErrorEnum.WOULD_BLOCK, () => other.try_acquire(), 'held through the stream');
    assertEqual(Porta.stream_unlock_any(stream), true, 'stream_unlock_any');
    assertEqual(other.try_acquire(), true, 'free after stream_unlock_any');
    other.release();
    stream.close(null);
});

// ---------------------------------------------------------------------------
// The runner

async function runCleanups() {
    const list = cleanups.reverse();
    cleanups = [];
    for (const cleanup of list) {
        try {
            // eslint-disable-next-line no-await-in-loop
            await cleanup();
        } catch (e) {
            print(`# cleanup failed: ${errorText(e)}`);
        }
    }
}

function removeTree(path) {
    const dir = Gio.File.new_for_path(path);
    const children = dir.enumerate_children('standard::name,standard::type',
        Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, null);
    let info;
    while ((info = children.next_file(null)) !== null) {
        const child = dir.get_child(info.get_name());
        if (info.get_file_type() === Gio.FileType.DIRECTORY)
            removeTree(child.get_path());
        else
            child.delete(null);
    }
    children.close(null);
    dir.delete(null);
}

async function main() {
    let failed = 0;
    print('TAP version 13');
    print(`1..${tests.length}`);
    for (const [i, {name, func}] of tests.entries()) {
        testDir = GLib.dir_make_tmp('porta-gjs-XXXXXX');
        lockPath = GLib.build_filenamev([testDir, 'test.lock']);
        let error = null;
        try {
            // eslint-disable-next-line no-await-in-loop
            await func();
        } catch (e) {
            error = e;
        }
        // eslint-disable-next-line no-await-in-loop
        await runCleanups();
        try {
            removeTree(testDir);
        } catch (e) {
            print(`# could not remove ${testDir}: ${errorText(e)}`);
        }
        if (error === null) {
            print(`ok ${i + 1} - ${name}`);
        } else {
            failed++;
            print(`not ok ${i + 1} - ${name}`);
            for (const line of `${errorText(error)}\n${error.stack ?? ''}`.trim().split('\n'))
                print(`# ${line}`);
        }
    }
    if (failed)
        print(`# ${failed} of ${tests.length} tests failed`);
    return failed ? 1 : 0;
}

const loop = new GLib.MainLoop(null, false);
let exitStatus = 1;
main().then(status => {
    exitStatus = status;
}).catch(e => {
    print(`Bail out! ${errorText(e)}`);
}).finally(() => loop.quit());
loop.run();
System.exit(exitStatus);
