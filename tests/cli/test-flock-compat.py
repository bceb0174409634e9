#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# portalock as a drop-in for util-linux flock(1): a table of invocations,
# each run with flock(1) and with portalock in the same situation (lock
# free, held by flock(1), held by portalock, exclusively or shared), and
# compared on what a script sees: the exit status, whether the command ran,
# and whether it ran holding the lock. The differences that remain are the
# ones portalock(1) lists under "Differences from flock(1)"; DIFFERENCES
# below knows that list and checks both the man page and the behaviour.
#
# Then flock(1)'s own examples and the FLOCKER boilerplate run unchanged,
# with a `flock` on PATH that is portalock.

import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

TOOL = os.environ.get('PORTALOCK_TOOL', '')
FLOCK = os.environ.get('FLOCK') or shutil.which('flock') or ''
MANPAGE = os.environ.get('PORTALOCK_MANPAGE') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs', 'man', 'portalock.1.xml')

PATIENCE = 30.0

# The command run under the lock: it says it ran, whether a fresh
# exclusive flock(1) try on the lock file fails (the lock is held, by the
# tool or the descriptor the command inherited) or succeeds, and how many
# descriptors of the lock file it inherited (flock(1) passes its own on;
# -o keeps it).
PROBE = ('echo ran >"$MARK"; "$FLOCK" -n -x "$LOCKFILE" true; '
         'echo "probe=$?" >>"$MARK"; '
         'echo "fds=$(ls -l /proc/$$/fd | grep -c -F "$LOCKFILE")" >>"$MARK"')
# The same for a folder.
FOLDER_PROBE = ('echo ran >"$MARK"; "$FLOCK" -n -x "$FOLDER" true; '
                'echo "probe=$?" >>"$MARK"')

# Situations: who holds the lock on FILE before the row runs.
FREE, FLOCK_EX, FLOCK_SH, TOOL_EX, TOOL_SH = (
    'free', 'flock-ex', 'flock-sh', 'portalock-ex', 'portalock-sh')
CONTENDED = (FREE, FLOCK_EX, FLOCK_SH, TOOL_EX, TOOL_SH)

# Rows: an id, the arguments after the tool's name (with {file}, {dir},
# {missing}, {unreadable}, {link} and the probe as {cmd} for `sh -c`), and
# the situations to run in. A row whose first word is 'sh' is a shell
# script instead, with {tool} for the tool.
ROWS = [
    ('nonblock', ['-n', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('nonblock-E0', ['-n', '-E', '0', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('timeout-E0', ['-w', '0.2', '-E', '0', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('timeout', ['-w', '0.2', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('timeout-zero', ['-w', '0', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('attached-values', ['-nE5', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('attached-timeout', ['-w0.2', '-E0', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('grouped', ['-sn', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('shared', ['-s', '-n', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('exclusive-e', ['-e', '-n', '{file}', 'sh', '-c', '{cmd}'], CONTENDED),
    ('exclusive-x', ['-x', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_SH)),
    ('last-mode-wins', ['-x', '-s', '-n', '{file}', 'sh', '-c', '{cmd}'], (FLOCK_SH,)),
    ('long-options', ['--shared', '--nonblock', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('abbreviations', ['--nonb', '--timeo', '0.2', '{file}', 'sh', '-c', '{cmd}'],
     (FREE, FLOCK_EX)),
    ('nb', ['--nb', '--conflict-exit-code=7', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('wait-alias', ['--wait', '0.2', '{file}', 'sh', '-c', '{cmd}'], (FREE, TOOL_EX)),
    ('shell-command', ['-n', '{file}', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('shell-command-long', ['-n', '{file}', '--command', '{cmd}'], (FREE,)),
    ('close', ['-o', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('no-fork', ['-F', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('unlock-file', ['-u', '{file}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('folder', ['-n', '{dir}', 'sh', '-c', FOLDER_PROBE], (FREE,)),
    ('folder-shared', ['-s', '-n', '{dir}', 'sh', '-c', FOLDER_PROBE], (FREE,)),
    ('verbose', ['--verbose', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('command-status', ['{file}', 'sh', '-c', 'exit 7'], (FREE,)),
    ('command-killed', ['{file}', 'sh', '-c', 'kill -TERM $$'], (FREE,)),
    ('descriptor', ['sh', '( {tool} -n 9 || exit 1; ' + PROBE + ' ) 9>"$LOCKFILE"'],
     CONTENDED),
    ('descriptor-shared', ['sh', '( {tool} -s -n 9 || exit 1; ' + PROBE + ' ) 9>"$LOCKFILE"'],
     CONTENDED),
    ('descriptor-E0', ['sh', '( {tool} -n -E 0 9 || exit 3; ' + PROBE + ' ) 9>"$LOCKFILE"'],
     (FREE, FLOCK_EX)),
    ('descriptor-exec-unlock',
     ['sh', 'exec 9>"$LOCKFILE"; {tool} -w 0.2 9 || exit 4; ' + PROBE +
      '; {tool} -u 9; "$FLOCK" -n "$LOCKFILE" true; echo "after-unlock=$?" >>"$MARK"'],
     (FREE, FLOCK_EX)),
    ('descriptor-read-only',
     ['sh', ': >>"$LOCKFILE"; ( {tool} -n 9 || exit 1; ' + PROBE + ' ) 9<"$LOCKFILE"'],
     (FREE,)),
    ('descriptor-not-open', ['-n', '9'], (FREE,)),
    # The numbers GLib would take first if portalock let it.
    ('descriptor-3-not-open', ['-n', '3'], (FREE,)),
    ('unlock-4-not-open', ['-u', '4'], (FREE,)),
    ('descriptor-negative', ['-n', '-1'], (FREE,)),
    ('descriptor-blank', ['sh', '( {tool} -n " 9" || exit 1; ' + PROBE + ' ) 9>"$LOCKFILE"'],
     (FREE, FLOCK_EX)),
    ('descriptor-unlock-then-exclusive',
     ['sh', 'exec 9>"$LOCKFILE"; {tool} -n 9 || exit 4; {tool} -u -x 9; ' + PROBE],
     (FREE,)),
    ('unlock-then-shared', ['-u', '-s', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('shared-then-unlock', ['-s', '-u', '{file}', 'sh', '-c', '{cmd}'], (FREE, FLOCK_EX)),
    ('exit-code-signs', ['-n', '-E', '+5', '{file}', 'sh', '-c', '{cmd}'], (FLOCK_EX,)),
    ('exit-code-blank', ['-n', '-E', ' 6', '{file}', 'sh', '-c', '{cmd}'], (FLOCK_EX,)),
    ('exit-code-minus-zero', ['-n', '-E', '-0', '{file}', 'sh', '-c', '{cmd}'], (FLOCK_EX,)),
    # Bad input
    ('no-arguments', [], (FREE,)),
    ('unknown-option', ['--bogus', '{file}', 'true'], (FREE,)),
    ('ambiguous-option', ['--n', '{file}', 'true'], (FREE,)),
    ('bad-timeout', ['-w', 'abc', '{file}', 'true'], (FREE,)),
    ('bad-exit-code', ['-E', '256', '{file}', 'true'], (FREE,)),
    ('bad-exit-code-text', ['-E', 'x', '{file}', 'true'], (FREE,)),
    ('missing-timeout', ['-w'], (FREE,)),
    ('shell-command-extra', ['{file}', '-c', 'true', 'extra'], (FREE,)),
    ('no-fork-and-close', ['-F', '-o', '{file}', 'true'], (FREE,)),
    ('missing-folder', ['-n', '{missing}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('unreadable-file', ['-n', '{unreadable}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('not-a-number', ['{file}'], (FREE,)),
    # Where portalock differs on purpose (see DIFFERENCES)
    ('command-not-found', ['{file}', '{dir}/no-such-command'], (FREE,)),
    ('command-not-executable', ['{file}', '{dir}/not-executable'], (FREE,)),
    ('command-empty', ['{file}', ''], (FREE,)),
    ('timeout-negative', ['-w', '-1', '{file}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('status-abbreviation', ['--s', '-n', '{file}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('symbolic-link', ['-n', '{link}', 'sh', '-c', '{cmd}'], (FREE,)),
    ('double-dash', ['-n', '{file}', '--', 'sh', '-c', '{cmd}'], (FREE,)),
    ('shell-command-first', ['-c', '{cmd}', '{file}'], (FREE,)),
]

# Every row where portalock and flock(1) differ: the term of portalock(1)'s
# "Differences from flock(1)" that explains it, and what each does, each
# (status, ran, probe).
HELD = (1, 1)  # the exclusive try failed; the command had one descriptor
DIFFERENCES = {
    'command-not-found': ('command-not-found', (69, False, None), (127, False, None)),
    'command-empty': ('command-not-found', (69, False, None), (127, False, None)),
    'command-not-executable': ('command-not-executable', (69, False, None),
                               (126, False, None)),
    'symbolic-link': ('symbolic-link', (0, True, HELD), (66, False, None)),
    'double-dash': ('double-dash', (69, False, None), (0, True, HELD)),
    'shell-command-first': ('shell-command-first', (64, False, None), (0, True, HELD)),
    'timeout-negative': ('timeout-values', (71, False, None), (64, False, None)),
    'status-abbreviation': ('status-option', (0, True, HELD), (64, False, None)),
}

# The differences that the table cannot show, and where they are tested.
OTHER_DIFFERENCES = {
    'verbose': 'test-portalock-cli.py: test_verbose_*, messages on stderr',
    'signals': 'test-portalock-cli.py: SignalTest, forwarding to the command',
    'byte-ranges': 'util-linux 2.39 options; the library locks whole files',
}


def default_signals():
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Holder:
    """A process that holds the lock on a file until released."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv + ['-c', 'echo locked; read x || :'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, preexec_fn=default_signals)
        line = self.proc.stdout.readline()
        if line != b'locked\n':
            self.release()
            raise AssertionError('holder did not take the lock: %r' % line)

    def release(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=PATIENCE)
        self.proc.stdout.close()


class FlockCompatTest(unittest.TestCase):

    def setUp(self):
        if not TOOL or not os.access(TOOL, os.X_OK):
            self.fail('PORTALOCK_TOOL does not name the built portalock: %r' % TOOL)
        if not FLOCK:
            self.fail('util-linux flock(1) is needed to compare with it')
        self.tmp = tempfile.mkdtemp(prefix='portalock-compat-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        os.chmod(self.tmp, 0o755)
        self.as_nobody = os.geteuid() == 0

    def env(self, lockfile, mark):
        env = dict(os.environ)
        env.update(LC_ALL='C.UTF-8', MARK=mark, LOCKFILE=lockfile, FLOCK=FLOCK,
                   SHELL='/bin/sh')
        env.pop('LANGUAGE', None)
        return env

    def hold(self, situation, lockfile, env):
        if situation == FREE:
            return None
        tool = FLOCK if situation.startswith('flock') else TOOL
        mode = '-s' if situation.endswith('-sh') else '-x'
        return Holder([tool, mode, lockfile], env)

    def run_row(self, tool, row_id, args, situation):
        """Runs one row with tool in a fresh folder; returns (status, ran,
        probe), probe being the exclusive try's status or None."""
        work = tempfile.mkdtemp(dir=self.tmp)
        os.chmod(work, 0o777)
        lockfile = os.path.join(work, 'job.lock')
        mark = os.path.join(work, 'mark')
        folder = os.path.join(work, 'folder')
        os.mkdir(folder)
        with open(os.path.join(folder, 'not-executable'), 'w') as f:
            f.write('echo no\n')
        unreadable = os.path.join(work, 'unreadable.lock')
        with open(unreadable, 'w') as f:
            f.write('secret\n')
        os.chmod(unreadable, 0)
        link = os.path.join(work, 'link.lock')
        os.symlink(lockfile, link)
        env = self.env(lockfile, mark)
        env['FOLDER'] = folder
        values = dict(file=lockfile, dir=folder, cmd=PROBE, tool=shlex_quote(tool),
                      missing=os.path.join(work, 'no-such-folder', 'x.lock'),
                      unreadable=unreadable, link=link)
        if args[:1] == ['sh']:
            argv = ['sh', '-c', args[1].format(**values)]
        else:
            argv = [tool] + [a.format(**values) for a in args]
        holder = self.hold(situation, lockfile, env)
        try:
            user = 65534 if (self.as_nobody and row_id == 'unreadable-file') else None
            r = subprocess.run(argv, capture_output=True, env=env, timeout=PATIENCE,
                               preexec_fn=default_signals, user=user)
        finally:
            if holder is not None:
                holder.release()
        ran, probe = False, None
        if os.path.exists(mark):
            with open(mark) as f:
                text = f.read()
            ran = text.startswith('ran\n')
            probe = tuple(int(value) for value in
                          re.findall(r'(?:probe|fds|after-unlock)=(\d+)', text)) or None
        return (r.returncode, ran, probe), r.stderr.decode(errors='replace')

    def test_table(self):
        compared = 0
        for row_id, args, situations in ROWS:
            for situation in situations:
                with self.subTest(row=row_id, situation=situation):
                    expected, flock_err = self.run_row(FLOCK, row_id, args, situation)
                    got, tool_err = self.run_row(TOOL, row_id, args, situation)
                    compared += 1
                    context = 'flock(1): %r %s\nportalock: %r %s' % (
                        expected, flock_err.strip(), got, tool_err.strip())
                    if row_id in DIFFERENCES:
                        self.assertEqual((expected, got), DIFFERENCES[row_id][1:], context)
                    else:
                        self.assertEqual(got, expected, context)
                    # Usage errors, file errors and conflicts are told on
                    # stderr by portalock, never on stdout.
                    if got[0] != 0 and not got[1] and tool_err and args[:1] != ['sh']:
                        self.assertTrue(tool_err.startswith('portalock: '), tool_err)
        self.assertGreater(compared, 80)

    def test_e0_never_runs_the_command_beside_the_holder(self):
        """The -E 0 defect: a conflict that exits 0 must not run the command."""
        for args in (['-n', '-E', '0'], ['-w', '0.2', '-E', '0'], ['-E0', '-n']):
            with self.subTest(args=args):
                status, _ = self.run_row(TOOL, 'E0', args + ['{file}', 'sh', '-c', '{cmd}'],
                                         FLOCK_EX)
                self.assertEqual(status, (0, False, None))

    def test_differences_are_the_man_pages(self):
        with open(MANPAGE, encoding='utf-8') as f:
            page = f.read()
        section = re.search(r'<title>Differences from flock\(1\)</title>(.*?)</refsect1>',
                            page, re.S)
        self.assertIsNotNone(section, 'portalock(1) has no "Differences from flock(1)"')
        terms = set(re.findall(r'<term><literal>([a-z-]+)</literal></term>', section.group(1)))
        self.assertEqual(terms, {term for term, _, _ in DIFFERENCES.values()} |
                         set(OTHER_DIFFERENCES))

    def flock_examples(self, flock_dir):
        """flock(1)'s examples and the FLOCKER boilerplate, run with the
        `flock` found first on PATH; returns what each printed."""
        script = os.path.join(self.tmp, 'flocker.sh')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\n'
                    '[ "${FLOCKER}" != "$0" ] && exec env FLOCKER="$0" flock -en "$0" "$0" "$@" || :\n'
                    'echo "locked itself: $1"\n'
                    '[ -z "$2" ] || { : >"$M"; read x <"$2"; }\n')
        os.chmod(script, 0o755)
        lock = os.path.join(self.tmp, 'mylockfile')
        # A background holder says it holds the lock by creating $M, and
        # lets go when the FIFO $P is written to: no guessed sleeps.
        wait_holder = 'while [ ! -e "$M" ]; do sleep 0.01; done; rm -f "$M"; '
        examples = [
            # shell1> flock /tmp -c cat / shell2> flock -w .007 /tmp -c echo; /bin/echo $?
            'flock "$D" -c ": >\\"$M\\"; read x <\\"$P\\"" & ' + wait_holder +
            'flock -w .007 "$D" -c echo; /bin/echo $?; echo >"$P"; wait',
            'flock -s "$D" -c ": >\\"$M\\"; read x <\\"$P\\"" & ' + wait_holder +
            'flock -s -w .007 "$D" -c echo; /bin/echo $?; echo >"$P"; wait',
            'flock -x "$L" echo "a b c"',
            '( flock -n 9 || exit 1; echo under lock ) 9>"$L"; echo $?',
            '( flock -s 200; echo shared under lock ) 200>"$L"; echo $?',
            'exec 4<>"$L"; flock -n -x 4; echo $?; ( flock -n -x 4 ); echo $?; '
            'flock -n "$L" true; echo $?; flock -u 4; flock -n "$L" true; echo $?',
            '"$S" first "$P" & ' + wait_holder +
            '"$S" second; echo "second: $?"; echo >"$P"; wait; echo "first: $?"',
        ]
        fifo = os.path.join(self.tmp, 'release')
        if not os.path.exists(fifo):
            os.mkfifo(fifo)
        env = dict(os.environ, PATH=flock_dir + os.pathsep + os.environ['PATH'],
                   D=self.tmp, L=lock, S=script, LC_ALL='C.UTF-8', SHELL='/bin/sh',
                   M=os.path.join(self.tmp, 'holding'), P=fifo)
        env.pop('FLOCKER', None)
        out = []
        for example in examples:
            r = subprocess.run(['sh', '-c', example], capture_output=True, text=True,
                               env=env, timeout=PATIENCE, preexec_fn=default_signals)
            out.append((r.returncode, r.stdout))
        return out

    def test_flock_examples_run_unchanged(self):
        real = os.path.join(self.tmp, 'real')
        shim = os.path.join(self.tmp, 'shim')
        os.mkdir(real)
        os.mkdir(shim)
        os.symlink(FLOCK, os.path.join(real, 'flock'))
        os.symlink(os.path.abspath(TOOL), os.path.join(shim, 'flock'))
        expected = self.flock_examples(real)
        got = self.flock_examples(shim)
        self.assertEqual(got, expected)
        # And they did what the man page says.
        self.assertEqual(expected[0], (0, '1\n'))
        self.assertEqual(expected[1], (0, '\n0\n'))
        self.assertEqual(expected[6], (0, 'locked itself: first\nsecond: 1\nfirst: 0\n'))


def shlex_quote(text):
    import shlex
    return shlex.quote(text)


if __name__ == '__main__':
    unittest.main(verbosity=2)
