#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds tests/subproject/consumer, a tiny project that uses portalock as
# a meson subproject and generates a GIR including Porta-1, and checks
# that portalock's GIR reached it through the dependency.
#
#   test-subproject.py MESON SOURCE_ROOT

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

GIR_NS = '{http://www.gtk.org/introspection/core/1.0}'


def run(argv):
    print('$', ' '.join(argv), flush=True)
    subprocess.run(argv, check=True)


def copy_sources(src, dst):
    """The source tree without build folders, which a copy need not carry."""
    def ignore(folder, names):
        return [n for n in names
                if n.startswith('_build') or n in ('.git', '__pycache__')]
    shutil.copytree(src, dst, symlinks=True, ignore=ignore)


def main():
    meson, source_root = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))

    with tempfile.TemporaryDirectory(prefix='porta-subproject-') as tmp:
        project = os.path.join(tmp, 'consumer')
        shutil.copytree(os.path.join(here, 'consumer'), project)
        copy_sources(source_root, os.path.join(project, 'subprojects', 'portalock'))
        build = os.path.join(tmp, 'build')

        run([meson, 'setup', build, project])
        run([meson, 'compile', '-C', build])

        porta_gir = os.path.join(build, 'subprojects', 'portalock', 'portalock', 'Porta-1.gir')
        consumer_gir = os.path.join(build, 'Consumer-1.gir')
        for path in (porta_gir, consumer_gir):
            if not os.path.isfile(path):
                sys.exit(f'{path} was not built')

        includes = {(i.get('name'), i.get('version'))
                    for i in ET.parse(consumer_gir).getroot().iter(GIR_NS + 'include')}
        if ('Porta', '1') not in includes:
            sys.exit(f'{consumer_gir} does not include Porta-1: {sorted(includes)}')
        functions = [f.get('name') for f in ET.parse(consumer_gir).getroot().iter(GIR_NS + 'function')]
        if 'is_held' not in functions:
            sys.exit(f'{consumer_gir} lacks consumer_is_held(): {functions}')
        print('Porta-1.gir reached the consumer through the dependency')


if __name__ == '__main__':
    main()
