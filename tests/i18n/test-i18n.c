/* test-i18n.c: portalock's error messages in German and French, from the
 * catalogs this build made
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The catalogs are the ones this build compiled from po/LANG.po, found as
 * LANG.mo in PORTA_TEST_CATALOGS; the test lays them out as
 * LANG/LC_MESSAGES/portalock.mo in PORTA_TEST_LOCALEDIR. The library binds
 * its text domain to the install localedir the first time a lock class is
 * initialised, so each test creates a PortaLock first and then binds the
 * domain again, to that folder.
 *
 * gettext ignores LANGUAGE in the "C" and "POSIX" locales, but not in
 * "C.UTF-8", which glibc provides without any locale being generated
 * (Debian ships it in libc-bin). So each test runs in a subprocess with
 * LANGUAGE set to its language and LC_ALL set to C.UTF-8, and no locale
 * has to be installed.
 *
 * A test checks that the message it gets is the catalog's translation of
 * the English message: the literal parts of the translated format, as
 * dgettext() returns it, appear in order, the English text does not, and
 * a word that only the right language uses is there.
 */

#include <libintl.h>
#include <locale.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#define DOMAIN "portalock"

/* The English messages, exactly as in the library's sources. */
#define MSGID_NO_FOLDER "Cannot create lock file “%s”: the folder “%s” does not exist"
#define MSGID_HELD_BY "Cannot lock “%s”: it is held by %s"
#define MSGID_PROCESS "process %d (%s)"

typedef struct
{
  const char *language;
  /* Words each translated message must contain: they are in no English
   * message, and only in the right language. */
  const char *words[2];
} Language;

static const Language languages[] = {
  { "de", { "nicht", NULL } },   /* "kann nicht", "existiert nicht" */
  { "fr", { "verrou", NULL } },  /* "verrou", "verrouiller" */
};

static gboolean have_c_utf8;

/* The literal parts of a printf format, without its %s / %d / %1$s. */
static char **
format_pieces (const char *format)
{
  return g_regex_split_simple ("%(?:[0-9]+\\$)?[sd]", format, 0, 0);
}

/* Asserts that @message is @format with something in each conversion. */
static void
assert_matches_format (const char *message,
                       const char *format)
{
  g_auto(GStrv) pieces = format_pieces (format);
  const char *at = message;

  for (guint i = 0; pieces[i] != NULL; i++)
    {
      const char *found = strstr (at, pieces[i]);

      if (found == NULL)
        g_error ("“%s” does not match the translated format “%s”: “%s” is missing",
                 message, format, pieces[i]);
      at = found + strlen (pieces[i]);
    }
}

/* The catalog's translation of @msgid, asserting that there is one. */
static const char *
translation_of (const char *msgid)
{
  const char *translated = dgettext (DOMAIN, msgid);

  if (translated == msgid || g_strcmp0 (translated, msgid) == 0)
    g_error ("The %s catalog has no translation of “%s”", g_getenv ("LANGUAGE"), msgid);
  return translated;
}

static void
assert_in_language (const char     *message,
                    const Language *lang)
{
  g_assert_false (g_str_has_prefix (message, "Cannot"));
  for (guint i = 0; lang->words[i] != NULL; i++)
    if (strstr (message, lang->words[i]) == NULL)
      g_error ("“%s” is not in %s: it lacks “%s”", message, lang->language, lang->words[i]);
}

/* A folder of this test's own: G_TEST_OPTION_ISOLATE_DIRS gives each test
 * (and its subprocess) a new cache folder. */
static const char *
test_folder (void)
{
  const char *folder = g_get_user_cache_dir ();

  g_assert_cmpint (g_mkdir_with_parents (folder, 0700), ==, 0);
  return folder;
}

/* In the subprocess: the C.UTF-8 locale with LANGUAGE from the parent, and
 * the text domain bound to the build's catalogs. Returns a PortaLock on
 * @path, created before the domain is bound again (see the top). */
static PortaLock *
setup_language (const char    *path,
                PortaLockMode  mode)
{
  const char *localedir = g_getenv ("PORTA_TEST_LOCALEDIR");
  PortaLock *lock;

  g_assert_nonnull (localedir);
  g_assert_nonnull (setlocale (LC_ALL, "C.UTF-8"));
  lock = porta_lock_new_for_path (path, mode);
  g_assert_nonnull (bindtextdomain (DOMAIN, localedir));
  return lock;
}

static void
check_no_folder (const Language *lang)
{
  g_autofree char *folder = g_build_filename (test_folder (), "no-such-folder", NULL);
  g_autofree char *path = g_build_filename (folder, "app.lock", NULL);
  g_autoptr(PortaLock) lock = setup_language (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_print ("# %s: %s\n", lang->language, error->message);   /* a TAP comment */

  assert_matches_format (error->message, translation_of (MSGID_NO_FOLDER));
  assert_in_language (error->message, lang);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_nonnull (strstr (error->message, folder));
}

static void
check_would_block (const Language *lang)
{
  g_autofree char *path = g_build_filename (test_folder (), "held.lock", NULL);
  g_autoptr(PortaLock) other = setup_language (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;
  g_autofree char *pid = g_strdup_printf ("%d", (int) getpid ());

  /* Two PortaLocks on one file exclude each other in one process. */
  g_assert_true (porta_lock_acquire (other, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_print ("# %s: %s\n", lang->language, error->message);   /* a TAP comment */

  assert_matches_format (error->message, translation_of (MSGID_HELD_BY));
  /* The holder, this process, is named in the same language. */
  assert_matches_format (error->message, translation_of (MSGID_PROCESS));
  assert_in_language (error->message, lang);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_nonnull (strstr (error->message, pid));
  g_clear_error (&error);

  g_assert_true (porta_lock_release (other, &error));
  g_assert_no_error (error);
}

typedef struct
{
  const Language *lang;
  void (*check) (const Language *lang);
} Case;

static void
run_case (gconstpointer data)
{
  const Case *test_case = data;

  if (g_test_subprocess ())
    {
      test_case->check (test_case->lang);
      return;
    }
  if (!have_c_utf8)
    {
      g_test_skip ("the C.UTF-8 locale is missing");
      return;
    }
  /* The subprocess inherits this environment. */
  g_setenv ("LANGUAGE", test_case->lang->language, TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT | G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

/* Copies LANG.mo from PORTA_TEST_CATALOGS to
 * PORTA_TEST_LOCALEDIR/LANG/LC_MESSAGES/portalock.mo, where bindtextdomain()
 * looks for it. Copied again on every run, so it is never out of date. */
static void
lay_out_catalogs (void)
{
  const char *catalogs = g_getenv ("PORTA_TEST_CATALOGS");
  const char *localedir = g_getenv ("PORTA_TEST_LOCALEDIR");

  g_assert_nonnull (catalogs);
  g_assert_nonnull (localedir);
  for (gsize i = 0; i < G_N_ELEMENTS (languages); i++)
    {
      const char *lang = languages[i].language;
      g_autofree char *mo_name = g_strconcat (lang, ".mo", NULL);
      g_autofree char *source = g_build_filename (catalogs, mo_name, NULL);
      g_autofree char *folder = g_build_filename (localedir, lang, "LC_MESSAGES", NULL);
      g_autofree char *target = g_build_filename (folder, DOMAIN ".mo", NULL);
      g_autofree char *contents = NULL;
      g_autoptr(GError) error = NULL;
      gsize length;

      g_assert_true (g_file_get_contents (source, &contents, &length, &error));
      g_assert_no_error (error);
      g_assert_cmpint (g_mkdir_with_parents (folder, 0755), ==, 0);
      g_assert_true (g_file_set_contents (target, contents, length, &error));
      g_assert_no_error (error);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GPtrArray) cases = g_ptr_array_new_with_free_func (g_free);
  have_c_utf8 = setlocale (LC_ALL, "C.UTF-8") != NULL;
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  if (!g_test_subprocess ())
    lay_out_catalogs ();

  for (gsize i = 0; i < G_N_ELEMENTS (languages); i++)
    {
      Case *no_folder = g_new0 (Case, 1);
      Case *would_block = g_new0 (Case, 1);
      g_autofree char *no_folder_path = g_strdup_printf ("/i18n/%s/missing-folder", languages[i].language);
      g_autofree char *would_block_path = g_strdup_printf ("/i18n/%s/would-block", languages[i].language);

      no_folder->lang = would_block->lang = &languages[i];
      no_folder->check = check_no_folder;
      would_block->check = check_would_block;
      g_ptr_array_add (cases, no_folder);
      g_ptr_array_add (cases, would_block);
      g_test_add_data_func (no_folder_path, no_folder, run_case);
      g_test_add_data_func (would_block_path, would_block, run_case);
    }

  return g_test_run ();
}
