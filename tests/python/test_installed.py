# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test_installed.py: the Python API as a user gets it from an installed
# portalock: `meson install --destdir` into a temporary folder, then
# test_pythonic.py run against that tree alone, with the installed
# overrides found as PyGObject finds overrides (through sys.path), not
# through the source tree.
#
#   test_installed.py MESON BUILD_DIR PREFIX LIBDIR OVERRIDES_DIR DEFAULT_DIR TEST README
#
# DEFAULT_DIR is 'default' when OVERRIDES_DIR is the one meson chose (not
# -Dpygobject_overrides_dir): then, for the prefixes /usr and /usr/local,
# it must be on this Python's sys.path, so that an installed portalock
# needs no PYTHONPATH.

import os
import shutil
import subprocess
import sys
import tempfile


def main(argv):
    meson, build_dir, prefix, libdir, overrides_dir, default_dir, test, readme = argv[1:]
    for path in (prefix, libdir, overrides_dir):
        assert os.path.isabs(path), path

    if default_dir == 'default' and os.path.realpath(prefix) in ('/usr', '/usr/local'):
        site = os.path.dirname(os.path.dirname(overrides_dir))
        if site not in sys.path:
            print('the overrides go to %s, whose site folder %s is not on sys.path %r: '
                  'an installed portalock would need PYTHONPATH' % (overrides_dir, site, sys.path))
            return 1

    destdir = tempfile.mkdtemp(prefix='porta-installed-')
    try:
        subprocess.run([meson, 'install', '-C', build_dir, '--no-rebuild', '--quiet',
                        '--destdir', destdir],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)

        def installed(path):
            return destdir + path

        installed_overrides = installed(overrides_dir)
        if not os.path.isfile(os.path.join(installed_overrides, 'Porta.py')):
            print('Porta.py was not installed into %s' % overrides_dir)
            return 1

        env = {k: v for k, v in os.environ.items()
               if k not in ('PYTHONPATH', 'GI_TYPELIB_PATH', 'LD_LIBRARY_PATH')}
        env['GI_TYPELIB_PATH'] = installed(os.path.join(libdir, 'girepository-1.0'))
        env['LD_LIBRARY_PATH'] = installed(libdir)
        env['PORTA_EXPECT_OVERRIDES'] = installed_overrides
        if overrides_dir.rstrip('/').endswith('/gi/overrides'):
            # The site folder, as a user of this prefix has it on sys.path.
            env['PYTHONPATH'] = os.path.dirname(os.path.dirname(installed_overrides))
        else:
            # -Dpygobject_overrides_dir outside a gi/overrides folder: the
            # test puts it on PyGObject's overrides path itself.
            env['PORTA_OVERRIDES_PATH'] = installed_overrides
        return subprocess.run([sys.executable, test, readme], env=env, timeout=600).returncode
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
