#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Tests of the portalock command against util-linux flock(1), both ways.
#
# The tool is named by $PORTALOCK_TOOL, flock(1) by $FLOCK (or found on
# PATH). Every process a test starts is killed if need be and reaped by a
# cleanup of that test. Waits are for events (a line a holder prints, a
# "waiting" line of --verbose), never for a guessed time; the time bounds
# only fail a test that is slower than any loaded machine should be.

import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

TOOL = os.environ.get('PORTALOCK_TOOL', '')
FLOCK = os.environ.get('FLOCK') or shutil.which('flock') or ''

# How long a step that should be immediate may take on a loaded machine.
PATIENCE = 30.0


def default_signals():
    """In the child before exec: signals as an interactive shell leaves
    them, whatever the test runner ignores."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def child_env():
    env = dict(os.environ)
    env['LC_ALL'] = 'C.UTF-8'
    env['SHELL'] = '/bin/sh'
    env.pop('LANGUAGE', None)
    return env


def read_line(stream, timeout=PATIENCE):
    """Reads one line from a pipe without blocking longer than timeout;
    returns it as text ('' at end of file)."""
    fd = stream.fileno()
    data = b''
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not data.endswith(b'\n'):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError('no line within %.0f s (got %r)' % (timeout, data))
            chunk = os.read(fd, 1)
            if not chunk:
                break
            data += chunk
    return data.decode()


class Proc:
    """A background process, killed and reaped when the test ends."""

    def __init__(self, test, argv, preexec_fn=default_signals):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env=child_env(),
                                     preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        test.addCleanup(self.reap)

    def expect_line(self, stream, pattern, timeout=PATIENCE):
        """Reads lines until one matches pattern; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            line = read_line(stream, max(0.1, deadline - time.monotonic()))
            if not line:
                raise AssertionError('end of output before %r' % pattern)
            if re.search(pattern, line):
                return line

    def wait(self, timeout=PATIENCE):
        return self.proc.wait(timeout=timeout)

    def release(self):
        """Ends a holder that runs `read x`: closing its stdin ends it."""
        self.proc.stdin.close()
        return self.wait()

    def reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


HOLD = 'echo locked; read x || :'


class CliTestCase(unittest.TestCase):

    def setUp(self):
        if not TOOL or not os.access(TOOL, os.X_OK):
            self.fail('PORTALOCK_TOOL does not name the built portalock: %r' % TOOL)
        self.tmp = tempfile.mkdtemp(prefix='portalock-cli-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.file = os.path.join(self.tmp, 'job.lock')

    def need_flock(self):
        if not FLOCK:
            self.skipTest('util-linux flock(1) not found')

    def run_tool(self, *args, timeout=PATIENCE, preexec_fn=default_signals):
        return subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                              env=child_env(), timeout=timeout, preexec_fn=preexec_fn)

    def run_flock(self, *args):
        return subprocess.run([FLOCK] + list(args), capture_output=True, text=True,
                              env=child_env(), timeout=PATIENCE)

    def hold_with_flock(self, *options):
        self.need_flock()
        holder = Proc(self, [FLOCK] + list(options) + [self.file, '-c', HOLD])
        self.assertEqual(read_line(holder.proc.stdout), 'locked\n')
        return holder

    def hold_with_tool(self, *options):
        holder = Proc(self, [TOOL] + list(options) + [self.file, '-c', HOLD])
        self.assertEqual(read_line(holder.proc.stdout), 'locked\n')
        return holder

    def start_waiter(self, *args):
        """Starts portalock --verbose and returns once it says it waits,
        so that its signal handlers are in place."""
        waiter = Proc(self, [TOOL, '--verbose'] + list(args))
        waiter.expect_line(waiter.proc.stderr, r'^portalock: waiting ')
        return waiter

    def assert_free(self):
        """flock -n gets the lock at once: nobody holds it."""
        self.need_flock()
        self.assertEqual(self.run_flock('-n', self.file, 'true').returncode, 0)

    def assert_taken(self):
        self.need_flock()
        self.assertEqual(self.run_flock('-n', self.file, 'true').returncode, 1)


class FlockHoldsTest(CliTestCase):
    """(a) flock(1) holds the lock; portalock contends for it."""

    def test_nonblock_fails_quietly_with_1(self):
        self.hold_with_flock()
        r = self.run_tool('-n', self.file, '-c', 'echo ran')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, '')
        self.assertEqual(r.stderr, '')

    def test_conflict_exit_code(self):
        self.hold_with_flock()
        self.assertEqual(self.run_tool('-n', '-E', '42', self.file, 'true').returncode, 42)
        self.assertEqual(self.run_tool('-w', '0.05', '-E', '42', self.file, 'true').returncode, 42)

    def test_conflict_exit_code_zero_does_not_run_the_command(self):
        # -E 0 makes a skipped run look like success; the command must
        # still not run beside the holder.
        self.hold_with_flock()
        for args in (['-E', '0', '-n'], ['-n', '-E0'], ['-w', '0.2', '-E', '0']):
            with self.subTest(args=args):
                r = self.run_tool(*args, self.file, '-c', 'echo ran')
                self.assertEqual((r.returncode, r.stdout), (0, ''))

    def test_timeout(self):
        self.hold_with_flock()
        start = time.monotonic()
        r = self.run_tool('-w', '0.2', self.file, '-c', 'echo ran')
        elapsed = time.monotonic() - start
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, '')
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, 10.0)

    def test_timeout_zero_is_nonblock(self):
        self.hold_with_flock()
        self.assertEqual(self.run_tool('-w', '0', self.file, 'true').returncode, 1)

    def test_status_names_the_flock_process(self):
        holder = self.hold_with_flock()
        r = self.run_tool('--status', self.file)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('lock: held\n', r.stdout)
        self.assertIn('holder pid: %d\n' % holder.pid, r.stdout)
        self.assertIn('holder command: flock\n', r.stdout)
        self.assertIn('backend: flock\n', r.stdout)

    def test_release_then_nonblock_runs_the_command(self):
        holder = self.hold_with_flock()
        self.assertEqual(holder.release(), 0)
        r = self.run_tool('-n', self.file, '-c', 'echo ran')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, 'ran\n')

    def test_lock_file_deleted_while_waiting_is_opened_again(self):
        # The holder deletes the lock file as it lets go: the waiter's lock
        # on the deleted file would guard nothing, so it locks the new one.
        self.need_flock()
        holder = Proc(self, [FLOCK, self.file, '-c',
                             'echo locked; read x; rm -f %s' % shlex.quote(self.file)])
        self.assertEqual(read_line(holder.proc.stdout), 'locked\n')
        waiter = self.start_waiter('-w', '20', self.file, '-c', '%s -n %s true; echo "probe=$?"'
                                   % (shlex.quote(FLOCK), shlex.quote(self.file)))
        holder.release()
        self.assertEqual(waiter.wait(), 0)
        self.assertEqual(waiter.proc.stdout.read(), b'probe=1\n')

    def test_waiter_gets_the_lock_when_released(self):
        holder = self.hold_with_flock()
        waiter = self.start_waiter(self.file, '-c', 'echo ran')
        self.assertIsNone(waiter.proc.poll())
        holder.release()
        self.assertEqual(waiter.wait(), 0)
        self.assertEqual(waiter.proc.stdout.read(), b'ran\n')

    def test_verbose_names_the_holder(self):
        holder = self.hold_with_flock()
        r = self.run_tool('--verbose', '-n', self.file, 'true')
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r'^portalock: .*%s.*held by process %d \(flock\)'
                         % (re.escape(self.file), holder.pid))
        r = self.run_tool('--verbose', '-w', '0.05', self.file, 'true')
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r'portalock: waiting up to 0.05 s .*held by process %d \(flock\)'
                         % holder.pid)
        self.assertRegex(r.stderr, r'portalock: Timed out')


    def test_timeout_says_truly_why_the_holder_is_unknown(self):
        # A wait that retries (here because kernel waits are turned off)
        # does not look the holder up; it must not blame the wait's length.
        self.hold_with_flock()
        env = dict(child_env(), PORTALOCK_SIGNAL='0')
        r = subprocess.run([TOOL, '-w', '0.4', '--verbose', self.file, 'true'],
                           capture_output=True, text=True, env=env, timeout=PATIENCE)
        self.assertEqual(r.returncode, 1)
        self.assertIn('its holder is unknown (waits that retry', r.stderr)
        self.assertNotIn('under 100 ms', r.stderr)
        r = self.run_tool('-w', '0.05', '--verbose', self.file, 'true')
        self.assertIn('its holder is unknown (waits under 100 ms', r.stderr)


    def test_lock_file_renamed_away_while_waiting_is_opened_again(self):
        self.need_flock()
        holder = Proc(self, [FLOCK, self.file, '-c',
                             'echo locked; read x; mv %s %s.old; : >%s' % (
                                 (shlex.quote(self.file),) * 3)])
        self.assertEqual(read_line(holder.proc.stdout), 'locked\n')
        waiter = self.start_waiter('-w', '20', self.file, '-c', '%s -n %s true; echo "probe=$?"'
                                   % (shlex.quote(FLOCK), shlex.quote(self.file)))
        holder.release()
        self.assertEqual(waiter.wait(), 0)
        self.assertEqual(waiter.proc.stdout.read(), b'probe=1\n')


class ToolHoldsTest(CliTestCase):
    """(b) portalock holds the lock; flock(1) contends for it."""

    def test_flock_sees_the_lock(self):
        holder = self.hold_with_tool()
        self.assert_taken()
        self.assertEqual(self.run_flock('-s', '-n', self.file, 'true').returncode, 1)
        self.assertEqual(holder.release(), 0)
        self.assert_free()

    def test_wrapper_killed_command_keeps_the_lock(self):
        # flock(1)'s inheritance: the command holds the descriptor too.
        proc = Proc(self, [TOOL, self.file, 'sh', '-c', 'echo ready; exec sleep 60'])
        proc.expect_line(proc.proc.stdout, r'^ready$')
        children = subprocess.run(['pgrep', '-P', str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        self.assertEqual(len(children), 1, children)
        proc.proc.kill()
        proc.wait()
        try:
            self.assert_taken()
        finally:
            os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + PATIENCE
        while self.run_flock('-n', self.file, 'true').returncode != 0:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)

    def test_close_option_still_holds(self):
        holder = self.hold_with_tool('-o')
        self.assert_taken()
        self.assertEqual(holder.release(), 0)
        self.assert_free()

    def test_status_names_the_tool(self):
        holder = self.hold_with_tool()
        r = self.run_tool('--status', self.file)
        self.assertEqual(r.returncode, 1)
        self.assertIn('holder pid: %d\n' % holder.pid, r.stdout)
        self.assertIn('holder command: portalock\n', r.stdout)

    def test_background_children_keep_the_lock(self):
        # As under flock(1): a daemon the command starts keeps the lock.
        self.need_flock()
        r = self.run_tool(self.file, 'sh', '-c',
                          'sleep 60 </dev/null >/dev/null 2>&1 & echo $!')
        self.assertEqual(r.returncode, 0, r.stderr)
        orphan = int(r.stdout)
        try:
            self.assert_taken()
        finally:
            os.kill(orphan, signal.SIGKILL)

    def test_background_children_do_not_keep_the_lock_with_close(self):
        self.need_flock()
        for option in ('-o', '--close'):
            with self.subTest(option=option):
                r = self.run_tool(option, self.file, 'sh', '-c',
                                  'sleep 60 </dev/null >/dev/null 2>&1 & echo $!')
                self.assertEqual(r.returncode, 0, r.stderr)
                orphan = int(r.stdout)
                try:
                    self.assert_free()
                finally:
                    os.kill(orphan, signal.SIGKILL)

    def test_posix_locks_are_not_inherited(self):
        r = self.run_tool('--backend=posix', self.file, 'sh', '-c',
                          'sleep 60 </dev/null >/dev/null 2>&1 & echo $!')
        self.assertEqual(r.returncode, 0, r.stderr)
        orphan = int(r.stdout)
        try:
            self.assertEqual(self.run_tool('--backend=posix', '-n', self.file, 'true').returncode, 0)
        finally:
            os.kill(orphan, signal.SIGKILL)

    def test_no_fork_keeps_the_lock_in_the_command(self):
        for backend in ('flock', 'ofd', 'posix'):
            with self.subTest(backend=backend):
                proc = Proc(self, [TOOL, '-F', '--backend=' + backend, self.file,
                                   'sh', '-c', 'echo "$$"; read x || :'])
                # The command is portalock's own process, holding the lock.
                self.assertEqual(read_line(proc.proc.stdout), '%d\n' % proc.pid)
                r = self.run_tool('--backend=' + backend, '-n', self.file, 'true')
                self.assertEqual(r.returncode, 1)
                self.assertEqual(proc.release(), 0)
                r = self.run_tool('--backend=' + backend, '-n', self.file, 'true')
                self.assertEqual(r.returncode, 0)


class CommandTest(CliTestCase):
    """(c) running the command, options, usage."""

    def test_exit_status(self):
        self.assertEqual(self.run_tool(self.file, 'sh', '-c', 'exit 7').returncode, 7)
        self.assertEqual(self.run_tool(self.file, 'true').returncode, 0)

    def test_killed_command_is_128_plus_signal(self):
        r = self.run_tool(self.file, 'sh', '-c', 'kill -KILL $$')
        self.assertEqual(r.returncode, 128 + signal.SIGKILL)

    def test_shell_form(self):
        r = self.run_tool(self.file, '-c', 'echo "$0" one  two; exit 3')
        self.assertEqual(r.returncode, 3)
        self.assertEqual(r.stdout, '/bin/sh one two\n')
        env = dict(child_env(), SHELL='/bin/bash')
        r = subprocess.run([TOOL, self.file, '-c', 'echo "$0"'], capture_output=True,
                           text=True, env=env, timeout=PATIENCE)
        self.assertEqual((r.returncode, r.stdout), (0, '/bin/bash\n'))
        r = self.run_tool('-c', 'echo before', self.file)
        self.assertEqual((r.returncode, r.stdout), (0, 'before\n'))
        r = self.run_tool(self.file, '--command', 'echo long')
        self.assertEqual((r.returncode, r.stdout), (0, 'long\n'))

    def test_arguments_reach_the_command(self):
        r = self.run_tool(self.file, 'printf', '[%s]', '-n', '--', 'a b')
        self.assertEqual((r.returncode, r.stdout), (0, '[-n][--][a b]'))
        r = self.run_tool('--', self.file, 'echo', 'x')
        self.assertEqual((r.returncode, r.stdout), (0, 'x\n'))

    def test_command_inherits_stdio_and_descriptors(self):
        r = subprocess.run([TOOL, self.file, 'sh', '-c', 'cat; echo err >&2'],
                           input='in\n', capture_output=True, text=True, env=child_env(),
                           timeout=PATIENCE, preexec_fn=default_signals)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, 'in\n', 'err\n'))
        out = os.path.join(self.tmp, 'fd3')
        with open(out, 'w') as f:
            os.set_inheritable(f.fileno(), True)
            fd = f.fileno()
            r = subprocess.run([TOOL, self.file, 'sh', '-c', 'echo via >&%d' % fd],
                               capture_output=True, text=True, env=child_env(),
                               timeout=PATIENCE, pass_fds=(fd,))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), 'via\n')

    def test_command_inherits_the_lock_descriptor(self):
        r = self.run_tool(self.file, 'sh', '-c', 'ls -l /proc/$$/fd/')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.file, r.stdout)
        r = self.run_tool('-o', self.file, 'sh', '-c', 'ls -l /proc/$$/fd/')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(self.file, r.stdout)

    def test_ignored_sigchld_does_not_lose_the_status(self):
        def ignore_chld():
            default_signals()
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        r = self.run_tool(self.file, 'sh', '-c', 'exit 3', preexec_fn=ignore_chld)
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_command_finds_the_lock_on_the_lowest_descriptor(self):
        # As under flock(1), usually 3: scripts may close or unlock it.
        self.need_flock()
        for tool in (FLOCK, TOOL):
            with self.subTest(tool=tool):
                r = subprocess.run([tool, self.file, 'sh', '-c', 'readlink /proc/$$/fd/3'],
                                   capture_output=True, text=True, env=child_env(),
                                   timeout=PATIENCE)
                self.assertEqual((r.returncode, r.stdout), (0, self.file + '\n'), r.stderr)

    def test_descriptor_open_the_wrong_way_for_fcntl(self):
        # An ofd write lock needs the descriptor open for writing, a read
        # lock open for reading: a descriptor that is neither cannot be
        # locked (65, as flock(1) reports EBADF).
        open(self.file, 'w').close()
        r = subprocess.run(['sh', '-c', '%s --fcntl -n 9 9<%s' % (TOOL, shlex.quote(self.file))],
                           capture_output=True, text=True, env=child_env(), timeout=PATIENCE)
        self.assertEqual(r.returncode, 65)
        self.assertIn('not open for writing', r.stderr)
        r = subprocess.run(['sh', '-c', '%s --fcntl -s -n 9 9>%s' % (TOOL, shlex.quote(self.file))],
                           capture_output=True, text=True, env=child_env(), timeout=PATIENCE)
        self.assertEqual(r.returncode, 65)
        self.assertIn('not open for reading', r.stderr)
        r = subprocess.run(['sh', '-c', '%s --fcntl -n 9 9>%s && echo ok' % (
            TOOL, shlex.quote(self.file))], capture_output=True, text=True, env=child_env(),
            timeout=PATIENCE)
        self.assertEqual((r.returncode, r.stdout), (0, 'ok\n'), r.stderr)

    def test_command_not_runnable(self):
        r = self.run_tool(self.file, os.path.join(self.tmp, 'no-such-command'))
        self.assertEqual(r.returncode, 127)
        self.assertTrue(r.stderr.startswith('portalock: '), r.stderr)
        plain = os.path.join(self.tmp, 'not-executable')
        with open(plain, 'w') as f:
            f.write('echo no\n')
        r = self.run_tool(self.file, plain)
        self.assertEqual(r.returncode, 126)
        self.assert_free()

    def test_shared_with_flock_shared(self):
        holder = self.hold_with_flock('-s')
        self.assertEqual(self.run_tool('-s', '-n', self.file, 'true').returncode, 0)
        self.assertEqual(self.run_tool('-n', self.file, 'true').returncode, 1)
        self.assertEqual(self.run_tool('-s', '-x', '-n', self.file, 'true').returncode, 1)
        holder.release()
        holder = self.hold_with_tool('-s')
        self.assertEqual(self.run_flock('-s', '-n', self.file, 'true').returncode, 0)
        self.assertEqual(self.run_flock('-n', self.file, 'true').returncode, 1)
        self.assertEqual(self.run_tool('-x', '-s', '-n', self.file, 'true').returncode, 0)
        holder.release()

    def test_ofd_backend(self):
        holder = self.hold_with_tool('--backend=ofd')
        self.assertEqual(self.run_tool('--backend=ofd', '-n', self.file, 'true').returncode, 1)
        self.assertEqual(self.run_tool('--backend=posix', '-n', self.file, 'true').returncode, 1)
        # flock(2) and fcntl(2) locks do not see each other on Linux
        self.assertEqual(self.run_tool('-n', self.file, 'true').returncode, 0)
        r = self.run_tool('--status', '--backend=ofd', self.file)
        self.assertEqual(r.returncode, 1)
        self.assertIn('holder pid: %d\n' % holder.pid, r.stdout)
        self.assertIn('backend: ofd\n', r.stdout)
        self.assertEqual(self.run_tool('--status', self.file).returncode, 0)
        holder.release()
        self.assertEqual(self.run_tool('--backend=ofd', '-n', self.file, 'true').returncode, 0)

    def test_posix_backend(self):
        holder = self.hold_with_tool('--backend=posix')
        self.assertEqual(self.run_tool('--backend=ofd', '-n', self.file, 'true').returncode, 1)
        self.assertEqual(self.run_tool('--backend=posix', '-s', '-n', self.file, 'true').returncode, 1)
        holder.release()
        self.assertEqual(self.run_tool('--backend=posix', '-n', self.file, 'true').returncode, 0)

    def test_status_free(self):
        r = self.run_tool('--status', self.file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('lock: free\n', r.stdout)
        self.assertNotIn('holder', r.stdout)
        self.assertFalse(os.path.exists(self.file), '--status created the file')

    def test_lock_file_is_created_and_never_truncated(self):
        self.assertEqual(self.run_tool(self.file, 'true').returncode, 0)
        self.assertTrue(os.path.isfile(self.file))
        with open(self.file, 'w') as f:
            f.write('data\n')
        self.assertEqual(self.run_tool(self.file, 'true').returncode, 0)
        with open(self.file) as f:
            self.assertEqual(f.read(), 'data\n')

    def test_verbose_tells_the_story(self):
        r = self.run_tool('--verbose', self.file, 'sh', '-c', 'exit 3')
        self.assertEqual(r.returncode, 3)
        self.assertIn('portalock: took an exclusive lock on', r.stderr)
        self.assertIn('portalock: the command exited with status 3', r.stderr)
        self.assertIn('portalock: closed', r.stderr)
        r = self.run_tool('--verbose', '-o', self.file, 'true')
        self.assertIn('portalock: released the lock on', r.stderr)

    def test_version(self):
        r = self.run_tool('--version')
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r'^portalock \d+\.\d+\.\d+\n$')

    def test_help(self):
        r = self.run_tool('--help')
        self.assertEqual(r.returncode, 0)
        for option in ('--shared', '--exclusive', '--nonblock', '--timeout',
                       '--conflict-exit-code', '--close', '--backend', '--status',
                       '--verbose', '--version'):
            self.assertIn(option, r.stdout)
        self.assertIn('64', r.stdout)

    def test_usage_errors(self):
        f = self.file
        for args in ([], [f], ['-w', 'abc', f, 'true'], ['-w', '-1', f, 'true'],
                     ['-w', 'nan', f, 'true'], ['-E', '256', f, 'true'],
                     ['-E', 'x', f, 'true'], ['--backend=nfs', f, 'true'],
                     ['--bogus', f, 'true'], ['--status'], ['--status', f, 'true'],
                     [f, '-c'], [f, '-c', 'true', 'extra'], ['-c', 'true', f, 'extra'],
                     [f, '--']):
            with self.subTest(args=args):
                r = self.run_tool(*args)
                self.assertEqual(r.returncode, 64, r.stderr)
                self.assertTrue(r.stderr.startswith('portalock: '), r.stderr)
                self.assertEqual(r.stdout, '')
        self.assertFalse(os.path.exists(f))

    def test_file_errors(self):
        missing = os.path.join(self.tmp, 'no-such-folder', 'x.lock')
        r = self.run_tool(missing, 'true')
        self.assertEqual(r.returncode, 66)
        self.assertTrue(r.stderr.startswith('portalock: '), r.stderr)
        self.assertIn(missing, r.stderr)
        # A folder is locked, as by flock(1).
        r = self.run_tool('-n', self.tmp, 'true')
        self.assertEqual(r.returncode, 0, r.stderr)
        fifo = os.path.join(self.tmp, 'fifo')
        os.mkfifo(fifo)
        r = self.run_tool(fifo, 'true')
        self.assertEqual(r.returncode, 66)
        self.assertIn(fifo, r.stderr)


class SignalTest(CliTestCase):
    """(d) signals while waiting and while the command runs."""

    def interrupt_waiter(self, signum):
        holder = self.hold_with_flock()
        marker = os.path.join(self.tmp, 'ran')
        waiter = self.start_waiter(self.file, '-c', 'touch %s; sleep 30' % shlex.quote(marker))
        start = time.monotonic()
        waiter.proc.send_signal(signum)
        status = waiter.wait(timeout=10)
        elapsed = time.monotonic() - start
        # portalock ends by the signal, as flock(1) does.
        self.assertEqual(status, -signum)
        self.assertLess(elapsed, 10.0)
        self.assertFalse(os.path.exists(marker), 'the command ran')
        # The holder still has it; once it lets go, nobody else holds it:
        # the aborted wait left nothing behind.
        self.assert_taken()
        holder.release()
        self.assert_free()

    def test_sigint_aborts_the_wait(self):
        self.interrupt_waiter(signal.SIGINT)

    def test_sigterm_aborts_the_wait(self):
        self.interrupt_waiter(signal.SIGTERM)

    def test_sighup_aborts_the_wait(self):
        self.interrupt_waiter(signal.SIGHUP)

    def test_sigint_aborts_a_timed_wait(self):
        holder = self.hold_with_flock()
        waiter = self.start_waiter('-w', '60', self.file, 'true')
        waiter.proc.send_signal(signal.SIGINT)
        self.assertEqual(waiter.wait(timeout=10), -signal.SIGINT)
        holder.release()
        self.assert_free()

    def run_and_signal(self, signum, script):
        """Runs script under portalock, signals portalock (only) once the
        script said "ready", and returns portalock's status and output."""
        proc = Proc(self, [TOOL, self.file, 'sh', '-c', script])
        proc.expect_line(proc.proc.stdout, r'^ready$')
        self.assert_taken()
        proc.proc.send_signal(signum)
        status = proc.wait()
        return status, proc.proc.stdout.read().decode()

    def test_sigterm_is_forwarded(self):
        status, out = self.run_and_signal(
            signal.SIGTERM,
            'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done')
        self.assertEqual(status, 5)
        self.assertEqual(out, 'got-term\n')
        self.assert_free()

    def test_forwarded_signal_kills_the_command(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with self.subTest(signal=signum):
                status, _ = self.run_and_signal(signum, 'echo ready; exec sleep 30')
                # The command died of the signal portalock forwarded:
                # portalock dies of it too, as flock(1) would have.
                self.assertEqual(status, -signum)
                self.assert_free()

    def test_ignored_signal_stays_ignored(self):
        def ignore_hup():
            default_signals()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        r = self.run_tool(self.file, 'sh', '-c', 'kill -HUP $$; echo survived',
                          preexec_fn=ignore_hup)
        self.assertEqual((r.returncode, r.stdout), (0, 'survived\n'), r.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
