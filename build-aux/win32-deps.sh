#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# win32-deps.sh: set up everything needed to cross-compile portalock for
# 64-bit Windows (mingw-w64) on Debian 12 and to run its tests under Wine.
#
# Run it as root. It uses nothing but Debian's archive:
#   - installs what is missing with apt: the mingw-w64 toolchain, Wine 8,
#     Debian's mingw-w64 zlib (libz-mingw-w64-dev), meson, ninja, pkg-config
#     and dpkg-dev; adds a deb-src entry in
#     /etc/apt/sources.list.d/portalock-deb-src.sources if there is none;
#   - builds, once, from Debian's source packages (apt-get source) a Windows
#     prefix with libffi, pcre2, gettext's libintl runtime (gettext-runtime/
#     intl only) and GLib 2.74 (glib, gobject, gio, gmodule, gthread);
#   - creates a Wine prefix, once, so that tests don't pay for it each time;
#   - writes a meson cross file that uses all of it;
#   - checks the result: a GLib/GIO program must print OK under Wine, and a
#     throwaway meson project (in /tmp) must find glib-2.0 and gio-2.0 and
#     pass `meson test` through the exe wrapper.
#
# Everything lives outside the git clone, in the cache directory
# ${PORTALOCK_WIN32_CACHE:-/var/cache/portalock-win32}:
#   prefix/               the Windows prefix (DLLs in prefix/bin, with zlib1.dll)
#   cross-mingw64.txt     the meson cross file: meson setup --cross-file ...
#   bin/wine-mingw64      the exe wrapper named in the cross file
#   bin/x86_64-w64-mingw32-pkg-config   pkg-config limited to the prefix
#   wineprefix/           the Wine prefix (WINEPREFIX); Wine wants it owned
#                         by the user who runs it, so run the tests as root
#                         too, or point PORTALOCK_WIN32_CACHE elsewhere
#   src/ logs/ stamps/    sources, build logs, per-component stamps
#   stamp                 written last, only when everything passed
#
# The exe wrapper is generated into the cache rather than kept in the repo:
# the cross file must name it by absolute path, which is only known here.
# Its name starts with "wine" so that `meson test` adds the build tree's DLL
# directories to WINEPATH; it appends the prefix's bin directory, turns Wine's
# debug output off (WINEDEBUG=-all), unsets DISPLAY (headless) and runs
# `wine`. The mingw compiler used is the win32-threads variant
# (x86_64-w64-mingw32-gcc-win32), so no libwinpthread-1.dll is needed.
#
# Once the stamp is there, a run only checks that the packages are still
# installed and prints the cross file's path. If a build fails, the tail of
# its log is printed and the script exits non-zero; a rerun starts the
# failed component again from a clean build directory (components already
# built and stamped are kept). Changing the recipe below (bump `recipe`)
# rebuilds everything. From scratch (apt installs included) it takes about
# 6.5 minutes on 2 cores and leaves about 1 GB (700 MB of it the Wine prefix).
#
# Progress goes to stderr; the last line on stdout is the cross file's path:
#   cross=$(bash build-aux/win32-deps.sh | tail -n1)
#   meson setup _build-win32 --cross-file "$cross"

set -euo pipefail

recipe=1
cache=${PORTALOCK_WIN32_CACHE:-/var/cache/portalock-win32}
host=x86_64-w64-mingw32
prefix=$cache/prefix
crossfile=$cache/cross-mingw64.txt
wrapper=$cache/bin/wine-mingw64
pkgconfig=$cache/bin/$host-pkg-config
mingw_sysroot=/usr/$host
jobs=$(nproc)

say() { echo "win32-deps.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

packages=(
  gcc-mingw-w64-x86-64-win32
  binutils-mingw-w64-x86-64
  mingw-w64-x86-64-dev
  libz-mingw-w64-dev      # zlib1.dll and its import library, for GIO
  wine
  wine64
  dpkg-dev                # apt-get source
  xz-utils
  meson
  ninja-build
  pkg-config
  python3
  make
  gcc                     # meson also wants a compiler for the build machine
  libc6-dev
)

apt_updated=0
apt_update() {
  if [[ $apt_updated -eq 0 ]]; then
    apt-get update -q >"$cache/logs/apt-update.log" 2>&1 \
      || { tail -n 20 "$cache/logs/apt-update.log" >&2; die "apt-get update failed"; }
    apt_updated=1
  fi
}

ensure_packages() {
  local missing=() pkg status
  declare -A installed=()
  # One dpkg-query call for all of them: this runs on every invocation.
  while read -r pkg status; do
    if [[ $status == installed ]]; then installed[$pkg]=1; fi
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
  for pkg in "${packages[@]}"; do
    [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing Debian packages (install them as root): ${missing[*]}"
  say "installing ${missing[*]}"
  mkdir -p "$cache/logs"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >"$cache/logs/apt-install.log" 2>&1 \
    || { tail -n 20 "$cache/logs/apt-install.log" >&2; die "apt-get install failed"; }
}

have_deb_src() {
  grep -qs '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    || grep -qsi '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources
}

ensure_deb_src() {
  local file=/etc/apt/sources.list.d/portalock-deb-src.sources
  if ! have_deb_src; then
    say "adding $file"
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
      sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$file.tmp"
    else
      cat >"$file.tmp" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    mv "$file.tmp" "$file"
    apt_updated=0
    apt_update
  fi
  if [[ -z $(apt-cache showsrc glib2.0 2>/dev/null | head -n1) ]]; then
    apt_update
  fi
}

# fail NAME LOG: print the end of a failed step's log and stop.
fail() {
  say "$1 failed; last lines of $2:"
  tail -n 40 "$2" >&2
  exit 1
}

# fetch_source PKG [VERSION...]: download and unpack Debian's source of PKG
# into $cache/src/PKG (once) and set $srcdir to the unpacked tree. Tries the
# given versions, then every version apt knows of, newest first: a security
# update's source can be missing from the mirror while the release's is not.
fetch_source() {
  local pkg=$1; shift
  local dir=$cache/src/$pkg log=$cache/logs/source-$pkg.log v
  if [[ -f $dir/.done ]]; then
    srcdir=$dir/$(<"$dir/.done")
    return 0
  fi
  : >"$log"
  local versions=("$@")
  mapfile -t -O "${#versions[@]}" versions < <(apt-cache showsrc --only-source "$pkg" 2>/dev/null \
    | awk '/^Version:/ {print $2}' | sort -u -r -V)
  [[ ${#versions[@]} -gt 0 ]] || fail "looking up source package $pkg" "$log"
  for v in "${versions[@]}"; do
    rm -rf "$dir"; mkdir -p "$dir"
    echo "== apt-get source $pkg=$v" >>"$log"
    if (cd "$dir" && apt-get source -q --only-source -o APT::Sandbox::User=root "$pkg=$v") >>"$log" 2>&1; then
      local tree
      tree=$(cd "$dir" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n1)
      [[ -n $tree ]] || continue
      # Debian's patches may touch configure.ac or Makefile.am; make the
      # generated files newer so that make does not try to rerun autotools.
      (cd "$dir/$tree" && find . \( -name aclocal.m4 -o -name configure -o -name config.h.in \
        -o -name Makefile.in \) -type f -exec touch {} +)
      echo "$tree" >"$dir/.done"
      echo "$pkg $v" >"$dir/.version"
      srcdir=$dir/$tree
      return 0
    fi
  done
  rm -rf "$dir"
  fail "apt-get source $pkg" "$log"
}

# Per-component stamps: a component is rebuilt if its stamp is missing or
# stale, and every component after a rebuilt one is rebuilt too.
rebuilt=0
need_build() {
  if [[ $rebuilt -eq 0 && -f $cache/stamps/$1 && $(<"$cache/stamps/$1") == "recipe $recipe" ]]; then
    return 1
  fi
  rebuilt=1
  return 0
}
mark_built() { echo "recipe $recipe" >"$cache/stamps/$1"; }

# Don't rerun autotools, whatever the timestamps say.
no_autotools=(ACLOCAL=true AUTOCONF=true AUTOMAKE=true AUTOHEADER=true MAKEINFO=true)

# build_autotools NAME SRCDIR SUBDIR-TO-MAKE CONFIGURE-ARGS...
build_autotools() {
  local name=$1 src=$2 sub=$3; shift 3
  local b=$cache/build/$name log=$cache/logs/$name.log
  rm -rf "$b"; mkdir -p "$b"
  : >"$log"
  (cd "$b" && "$src/configure" --host=$host --prefix="$prefix" CC="$host-gcc-win32" \
      --disable-static --enable-shared "$@") >>"$log" 2>&1 || fail "configuring $name" "$log"
  make -C "$b/$sub" -j"$jobs" "${no_autotools[@]}" >>"$log" 2>&1 || fail "building $name" "$log"
  make -C "$b/$sub" install "${no_autotools[@]}" >>"$log" 2>&1 || fail "installing $name" "$log"
  rm -rf "$b"
}

write_tools() {
  mkdir -p "$cache/bin"
  local winpath="Z:${prefix//\//\\}\\bin"
  cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# Generated by portalock's build-aux/win32-deps.sh: the meson exe wrapper.
# Runs a Windows program under Wine, headless and quiet, with the GLib
# prefix's DLLs on WINEPATH (meson test prepends the build tree's DLL dirs).
WINEPREFIX='$cache/wineprefix'
WINEDEBUG=\${WINEDEBUG:--all}
WINEDLLOVERRIDES='mscoree,mshtml='
WINEPATH="\${WINEPATH:+\$WINEPATH;}$winpath"
export WINEPREFIX WINEDEBUG WINEDLLOVERRIDES WINEPATH
unset DISPLAY WAYLAND_DISPLAY
exec wine "\$@"
EOF
  chmod +x "$wrapper.tmp"; mv "$wrapper.tmp" "$wrapper"

  cat >"$pkgconfig.tmp" <<EOF
#!/bin/sh
# Generated by portalock's build-aux/win32-deps.sh: pkg-config for the
# Windows prefix (and Debian's mingw-w64 zlib) only.
PKG_CONFIG_LIBDIR='$prefix/lib/pkgconfig:$prefix/share/pkgconfig:$mingw_sysroot/lib/pkgconfig'
export PKG_CONFIG_LIBDIR
exec pkg-config "\$@"
EOF
  chmod +x "$pkgconfig.tmp"; mv "$pkgconfig.tmp" "$pkgconfig"

  # c_args/c_link_args put the prefix on the search paths so that
  # <libintl.h> (included by <glib/gi18n.h>) and -lintl are found: libintl
  # has no .pc file. meson 1.0 reads the key `pkgconfig`, not `pkg-config`.
  cat >"$crossfile.tmp" <<EOF
# Generated by portalock's build-aux/win32-deps.sh: Windows x86_64 (mingw-w64),
# tests run under Wine. Usage: meson setup BUILDDIR --cross-file $crossfile
[binaries]
c = '$host-gcc-win32'
ar = '$host-ar'
strip = '$host-strip'
windres = '$host-windres'
objdump = '$host-objdump'
pkgconfig = '$pkgconfig'
exe_wrapper = '$wrapper'

[properties]
pkg_config_libdir = ['$prefix/lib/pkgconfig', '$prefix/share/pkgconfig', '$mingw_sysroot/lib/pkgconfig']
needs_exe_wrapper = true

[built-in options]
c_args = ['-I$prefix/include']
c_link_args = ['-L$prefix/lib']

[host_machine]
system = 'windows'
cpu_family = 'x86_64'
cpu = 'x86_64'
endian = 'little'
EOF
  mv "$crossfile.tmp" "$crossfile"
}

check_program() {
  local d=$1 log=$cache/logs/check.log
  cat >"$d/check.c" <<'EOF'
#include <gio/gio.h>

static gpointer thread_func (gpointer data) { return GINT_TO_POINTER (GPOINTER_TO_INT (data) + 1); }

static void task_func (GTask *task, gpointer src, gpointer data, GCancellable *c)
{ g_task_return_int (task, 42); }

static void task_done (GObject *src, GAsyncResult *res, gpointer loop)
{
  g_assert_cmpint (g_task_propagate_int (G_TASK (res), NULL), ==, 42);
  g_main_loop_quit (loop);
}

static gboolean timeout_cb (gpointer loop)
{
  GTask *task = g_task_new (NULL, NULL, task_done, loop);
  g_task_run_in_thread (task, task_func);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

int main (void)
{
  GError *error = NULL;
  char *path = g_build_filename (g_get_tmp_dir (), "portalock-win32-check.txt", NULL);
  GFile *file = g_file_new_for_path (path);
  char *contents = NULL;
  gsize len = 0;
  GThread *thread = g_thread_new ("check", thread_func, GINT_TO_POINTER (1));
  GMainLoop *loop = g_main_loop_new (NULL, FALSE);

  g_assert_true (g_file_replace_contents (file, "hello", 5, NULL, FALSE, G_FILE_CREATE_NONE,
                                          NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_load_contents (file, NULL, &contents, &len, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "hello");
  g_assert_true (g_file_delete (file, NULL, NULL));
  g_assert_cmpint (GPOINTER_TO_INT (g_thread_join (thread)), ==, 2);
  g_timeout_add (10, timeout_cb, loop);
  g_main_loop_run (loop);
  g_print ("OK\n");
  g_main_loop_unref (loop);
  g_object_unref (file);
  g_free (contents);
  g_free (path);
  return 0;
}
EOF
  : >"$log"
  # shellcheck disable=SC2046
  "$host-gcc-win32" -o "$d/check.exe" "$d/check.c" $("$pkgconfig" --cflags --libs gio-2.0) \
    >>"$log" 2>&1 || fail "compiling the check program" "$log"
  local out err rc=0
  out=$("$wrapper" "$d/check.exe" 2>"$d/stderr") || rc=$?
  err=$(<"$d/stderr")
  { echo "exit: $rc"; echo "stdout: $out"; echo "stderr: $err"; } >>"$log"
  [[ $rc -eq 0 && $out == OK* && -z $err ]] || fail "running the check program under Wine" "$log"

  # A throwaway meson project: dependency() through the cross pkg-config,
  # libintl through the cross file's search paths, meson test through Wine.
  mkdir -p "$d/proj"
  cp "$d/check.c" "$d/proj/check.c"
  cat >"$d/proj/i18n.c" <<'EOF'
#define GETTEXT_PACKAGE "check"
#include <glib/gi18n-lib.h>
int main (void) { return g_strcmp0 (_("x"), "x") != 0; }
EOF
  cat >"$d/proj/meson.build" <<'EOF'
project('win32-check', 'c')
deps = [dependency('glib-2.0'), dependency('gobject-2.0'), dependency('gio-2.0')]
intl = dependency('intl')
test('check', executable('check', 'check.c', dependencies: deps))
test('i18n', executable('i18n', 'i18n.c', dependencies: deps + [intl]))
EOF
  log=$cache/logs/check-meson.log
  : >"$log"
  meson setup "$d/proj/_build" "$d/proj" --cross-file "$crossfile" >>"$log" 2>&1 \
    || fail "meson setup of the check project" "$log"
  meson test -C "$d/proj/_build" --print-errorlogs >>"$log" 2>&1 \
    || fail "meson test of the check project" "$log"
}

###########################################################################

mkdir -p "$cache"
ensure_packages

if [[ -f $cache/stamp && $(<"$cache/stamp") == "recipe $recipe" && -f $crossfile \
      && -f $prefix/bin/libgio-2.0-0.dll ]]; then
  echo "$crossfile"
  exit 0
fi

mkdir -p "$cache/logs" "$cache/stamps" "$cache/src" "$cache/build"
# One build at a time; a second run waits, then finds the stamp.
exec 9>"$cache/.lock"
flock 9
if [[ -f $cache/stamp && $(<"$cache/stamp") == "recipe $recipe" ]]; then
  echo "$crossfile"
  exit 0
fi
rm -f "$cache/stamp"

start=$SECONDS
if [[ -f $cache/stamps/recipe && $(<"$cache/stamps/recipe") != "recipe $recipe" ]]; then
  say "build recipe changed: rebuilding everything"
  rm -rf "$prefix" "$cache/build" "$cache/stamps" "$cache/wineprefix"
  mkdir -p "$cache/stamps" "$cache/build"
fi
echo "recipe $recipe" >"$cache/stamps/recipe"

write_tools

if need_build wineprefix; then
  say "creating the Wine prefix"
  rm -rf "$cache/wineprefix"
  log=$cache/logs/wineprefix.log
  (export WINEPREFIX=$cache/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
   unset DISPLAY WAYLAND_DISPLAY
   wineboot -i && wineserver -w) >"$log" 2>&1 || fail "wineboot" "$log"
  mark_built wineprefix
fi
rebuilt=0   # the Wine prefix doesn't affect the builds below

if need_build libffi; then
  ensure_deb_src
  fetch_source libffi
  say "building libffi ($(cut -d' ' -f2 "$cache/src/libffi/.version"))"
  build_autotools libffi "$srcdir" . --disable-docs --disable-multi-os-directory
  mark_built libffi
fi

if need_build pcre2; then
  ensure_deb_src
  fetch_source pcre2
  say "building pcre2 ($(cut -d' ' -f2 "$cache/src/pcre2/.version"))"
  build_autotools pcre2 "$srcdir" . --enable-pcre2-8 --disable-pcre2-16 --disable-pcre2-32 \
    --disable-pcre2grep-libz --disable-pcre2grep-libbz2 --disable-pcre2test-libreadline
  mark_built pcre2
fi

if need_build libintl; then
  ensure_deb_src
  fetch_source gettext
  say "building libintl from gettext ($(cut -d' ' -f2 "$cache/src/gettext/.version"))"
  # Only gettext-runtime's intl/ directory: the libintl DLL and libintl.h.
  build_autotools libintl "$srcdir/gettext-runtime" intl \
    --disable-java --disable-csharp --disable-libasprintf --disable-c++ \
    --enable-threads=windows --disable-rpath --without-libiconv-prefix --without-libintl-prefix
  mark_built libintl
fi

if need_build glib; then
  ensure_deb_src
  fetch_source glib2.0
  say "building GLib ($(cut -d' ' -f2 "$cache/src/glib2.0/.version"))"
  b=$cache/build/glib log=$cache/logs/glib.log
  rm -rf "$b"
  : >"$log"
  meson setup "$b" "$srcdir" --cross-file "$crossfile" \
    --prefix "$prefix" --libdir lib --buildtype debugoptimized --wrap-mode nodownload \
    -Dtests=false -Dinstalled_tests=false -Dman=false -Dgtk_doc=false -Dnls=disabled \
    -Dselinux=disabled -Dxattr=false -Dlibmount=disabled -Dsysprof=disabled \
    -Ddtrace=false -Dsystemtap=false -Dlibelf=disabled -Doss_fuzz=disabled \
    >>"$log" 2>&1 || fail "configuring GLib" "$log"
  meson compile -C "$b" -j "$jobs" >>"$log" 2>&1 || fail "building GLib" "$log"
  meson install -C "$b" >>"$log" 2>&1 || fail "installing GLib" "$log"
  rm -rf "$b"
  mark_built glib
fi

# zlib comes from Debian's libz-mingw-w64 binary package; put its DLL next to
# the others so that WINEPATH needs one directory. Same for any mingw runtime
# DLL that a DLL in the prefix imports.
cp -f "$mingw_sysroot/lib/zlib1.dll" "$prefix/bin/"
for dll in $("$host-objdump" -p "$prefix"/bin/*.dll "$prefix"/bin/*.exe 2>/dev/null \
             | awk '/DLL Name:/ {print $3}' | sort -u); do
  if [[ ! -e $prefix/bin/$dll ]]; then
    for dir in "/usr/lib/gcc/$host"/*-win32 "$mingw_sysroot/lib"; do
      if [[ -f $dir/$dll ]]; then cp -f "$dir/$dll" "$prefix/bin/"; break; fi
    done
  fi
done

say "checking the result under Wine"
checkdir=$(mktemp -d /tmp/portalock-win32-check.XXXXXX)
check_program "$checkdir"
rm -rf "$checkdir"

{
  for p in libffi pcre2 gettext glib2.0; do cat "$cache/src/$p/.version"; done
  echo "zlib $(dpkg-query -W -f='${Version}' libz-mingw-w64-dev) (libz-mingw-w64-dev)"
  echo "mingw-w64 gcc $(dpkg-query -W -f='${Version}' gcc-mingw-w64-x86-64-win32)"
  echo "wine $(dpkg-query -W -f='${Version}' wine)"
} >"$cache/versions.txt"
rm -rf "$cache/build"
echo "recipe $recipe" >"$cache/stamp.tmp"
mv "$cache/stamp.tmp" "$cache/stamp"
say "done in $((SECONDS - start)) s; versions in $cache/versions.txt"
echo "$crossfile"
