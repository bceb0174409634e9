/* portalock.c: run a command while holding a lock on a file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * flock(1)'s job through the library: the lock is taken and held by this
 * process, whose descriptors are close-on-exec, so the command never
 * inherits it and it is released the moment the command exits (as with
 * `flock -o`). Waiting happens on a main loop, so SIGINT, SIGTERM and SIGHUP
 * can cancel the wait; while the command runs they are forwarded to it.
 *
 * On Windows, Ctrl+C and Ctrl+Break (and closing the console) cancel the
 * wait, reported as SIGINT; while the command runs, it gets them from the
 * console it shares, and portalock waits for it.
 */

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gi18n.h>
#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <sysexits.h>
# include <glib-unix.h>
#else
# include <windows.h>
/* sysexits.h's values, which Windows lacks. */
# define EX_USAGE       64
# define EX_NOINPUT     66
# define EX_UNAVAILABLE 69
# define EX_OSERR       71
#endif

#include <portalock/portalock.h>

/* Exit statuses besides the command's own and the sysexits.h ones, as a
 * shell reports a command it cannot run. */
#define EXIT_CONFLICT_DEFAULT 1
#define EXIT_CANNOT_EXECUTE   126
#define EXIT_NOT_FOUND        127
#define EXIT_SIGNAL_BASE      128

typedef struct
{
  PortaLockMode  mode;
  PortaBackend   backend;
  gboolean       nonblock;
  int            timeout_ms;     /* -1: wait for as long as it takes */
  double         timeout_s;      /* as given, for messages */
  int            conflict_exit;
  gboolean       close;
  gboolean       verbose;
  gboolean       follow_symlinks;
  gboolean       status;
  gboolean       version;
  char          *shell_command;  /* -c before the file */
} Options;

/* What the command inherits from portalock's own start, as it would from
 * flock(1): the descriptors above stderr that were open without
 * close-on-exec (a make jobserver, `exec 3>…`, socket activation), and the
 * signals that were ignored (nohup, background jobs of scripts). GLib's
 * spawn marks every descriptor above 2 close-on-exec and resets SIGINT,
 * SIGTERM, SIGHUP and SIGPIPE to their defaults in the child, and then
 * calls the child setup function, which undoes both for these. */
typedef struct
{
  GArray *fds;
  int     ignored[4];
  guint   n_ignored;
} Inheritance;

#ifdef G_OS_UNIX

static const int resettable_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };

static gboolean
signal_is_ignored (int signum)
{
  struct sigaction action;

  return sigaction (signum, NULL, &action) == 0 && action.sa_handler == SIG_IGN;
}

static void
find_inheritance (Inheritance *inheritance)
{
  GDir *dir = g_dir_open ("/proc/self/fd", 0, NULL);
  const char *name;

  inheritance->fds = g_array_new (FALSE, FALSE, sizeof (int));
  inheritance->n_ignored = 0;
  for (guint i = 0; i < G_N_ELEMENTS (resettable_signals); i++)
    if (signal_is_ignored (resettable_signals[i]))
      inheritance->ignored[inheritance->n_ignored++] = resettable_signals[i];

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      gint64 fd;
      int flags;

      if (!g_ascii_string_to_signed (name, 10, 3, G_MAXINT, &fd, NULL))
        continue;
      flags = fcntl ((int) fd, F_GETFD);
      if (flags >= 0 && !(flags & FD_CLOEXEC))
        {
          int value = (int) fd;

          g_array_append_val (inheritance->fds, value);
        }
    }
  g_dir_close (dir);
}

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static void
restore_inheritance (gpointer user_data)
{
  const Inheritance *inheritance = user_data;
  struct sigaction ignore = { 0 };

  ignore.sa_handler = SIG_IGN;
  for (guint i = 0; i < inheritance->n_ignored; i++)
    sigaction (inheritance->ignored[i], &ignore, NULL);
  for (guint i = 0; i < inheritance->fds->len; i++)
    fcntl (g_array_index (inheritance->fds, int, i), F_SETFD, 0);
}

#else /* !G_OS_UNIX */

/* Windows: handles are inherited only where asked for, and there are no
 * signal dispositions to carry over. */
static void
find_inheritance (Inheritance *inheritance)
{
  inheritance->fds = g_array_new (FALSE, FALSE, sizeof (int));
  inheritance->n_ignored = 0;
}

#endif /* G_OS_UNIX */

typedef struct _Tool Tool;

typedef struct
{
  Tool *tool;
  int   signum;
  guint id;
} SignalWatch;

struct _Tool
{
  const Options *opts;
  const char    *display;        /* the file as given, for messages */
  PortaLock     *lock;
  GMainLoop     *loop;
  GCancellable  *cancellable;
  GSubprocess   *child;          /* set while the command runs */
  const Inheritance *inheritance; /* what the command inherits */
  SignalWatch    watches[3];
  int            signal_received; /* the signal that ended the wait */
  gboolean       acquired;
  GError        *error;
};

#ifdef G_OS_UNIX
static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP };
#endif

static void
say (const char *message)
{
  g_printerr ("portalock: %s\n", message);
}

static int
usage_error (const char *message)
{
  say (message);
  g_printerr (_("Try “%s --help” for more information.\n"), "portalock");
  return EX_USAGE;
}

static const char *
backend_name (PortaBackend backend)
{
  switch (backend)
    {
    case PORTA_BACKEND_FLOCK:
      return "flock";
    case PORTA_BACKEND_OFD:
      return "ofd";
    case PORTA_BACKEND_POSIX:
      return "posix";
    case PORTA_BACKEND_WIN32:
      return "win32";
    case PORTA_BACKEND_DEFAULT:
    default:
      return "default";
    }
}

static const char *
signal_name (int signum)
{
  switch (signum)
    {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
#ifdef SIGHUP
    case SIGHUP:
      return "SIGHUP";
#endif
    default:
      return "?";
    }
}

/* Option callbacks */

static gboolean
set_shared (const char  *option_name,
            const char  *value,
            gpointer     data,
            GError     **error)
{
  Options *opts = data;

  opts->mode = PORTA_LOCK_MODE_SHARED;
  return TRUE;
}

static gboolean
set_exclusive (const char  *option_name,
               const char  *value,
               gpointer     data,
               GError     **error)
{
  Options *opts = data;

  opts->mode = PORTA_LOCK_MODE_EXCLUSIVE;
  return TRUE;
}

static gboolean
parse_timeout (const char  *option_name,
               const char  *value,
               gpointer     data,
               GError     **error)
{
  Options *opts = data;
  char *end = NULL;
  double seconds;
  double ms;

  errno = 0;
  seconds = g_ascii_strtod (value, &end);
  /* !(seconds >= 0) also refuses NaN */
  if (end == value || *end != '\0' || errno == EINVAL || !(seconds >= 0))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   _("Invalid timeout “%s”: give a number of seconds, such as 5 or 0.25"),
                   value);
      return FALSE;
    }
  /* Round up, so that a tiny positive timeout still waits; the library
   * takes an int of milliseconds, about 24 days at most. */
  ms = seconds * 1000.0;
  if (ms >= (double) G_MAXINT)
    opts->timeout_ms = G_MAXINT;
  else
    {
      opts->timeout_ms = (int) ms;
      if ((double) opts->timeout_ms < ms)
        opts->timeout_ms++;
    }
  opts->timeout_s = seconds;
  return TRUE;
}

static gboolean
parse_conflict_exit (const char  *option_name,
                     const char  *value,
                     gpointer     data,
                     GError     **error)
{
  Options *opts = data;
  guint64 code;

  if (!g_ascii_string_to_unsigned (value, 10, 0, 255, &code, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   _("Invalid exit code “%s”: give a number from 0 to 255"),
                   value);
      return FALSE;
    }
  opts->conflict_exit = (int) code;
  return TRUE;
}

static gboolean
parse_backend (const char  *option_name,
               const char  *value,
               gpointer     data,
               GError     **error)
{
  Options *opts = data;

  if (g_str_equal (value, "flock"))
    opts->backend = PORTA_BACKEND_FLOCK;
  else if (g_str_equal (value, "ofd"))
    opts->backend = PORTA_BACKEND_OFD;
  else if (g_str_equal (value, "posix"))
    opts->backend = PORTA_BACKEND_POSIX;
  else if (g_str_equal (value, "win32"))
    opts->backend = PORTA_BACKEND_WIN32;
  else
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   _("Unknown backend “%s”: use flock, ofd, posix or win32"),
                   value);
      return FALSE;
    }
  return TRUE;
}

static PortaLockFlags
lock_flags (const Options *opts)
{
  return opts->follow_symlinks ? PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS : PORTA_LOCK_FLAGS_NONE;
}

static GOptionContext *
make_option_context (Options *opts)
{
  const GOptionEntry entries[] = {
    { "shared", 's', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, set_shared,
      N_("Take a shared lock"), NULL },
    { "exclusive", 'x', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, set_exclusive,
      N_("Take an exclusive lock (the default)"), NULL },
    { "nonblock", 'n', 0, G_OPTION_ARG_NONE, &opts->nonblock,
      N_("Fail at once if the lock is taken, instead of waiting"), NULL },
    { "timeout", 'w', 0, G_OPTION_ARG_CALLBACK, parse_timeout,
      N_("Wait at most SECONDS for the lock (fractions allowed)"), N_("SECONDS") },
    { "wait", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, parse_timeout,
      NULL, NULL },
    { "conflict-exit-code", 'E', 0, G_OPTION_ARG_CALLBACK, parse_conflict_exit,
      N_("Exit status when the lock is taken (-n) or the wait times out (-w); 1 by default"),
      N_("N") },
    { "close", 'o', 0, G_OPTION_ARG_NONE, &opts->close,
      N_("Do not let the command inherit the lock (it never does: see portalock(1))"), NULL },
    { "command", 'c', 0, G_OPTION_ARG_FILENAME, &opts->shell_command,
      N_("Run SHELL-COMMAND with /bin/sh -c (on Windows, cmd.exe /c)"), N_("SHELL-COMMAND") },
    { "backend", 0, 0, G_OPTION_ARG_CALLBACK, parse_backend,
      N_("Lock with flock (the default on Unix), ofd, posix or win32 (the default on Windows) locks"), N_("BACKEND") },
    { "follow-symlinks", 0, 0, G_OPTION_ARG_NONE, &opts->follow_symlinks,
      N_("Lock the file a symbolic link points to, instead of refusing the link"), NULL },
    { "status", 0, 0, G_OPTION_ARG_NONE, &opts->status,
      N_("Tell whether FILE is locked and by whom, and exit"), NULL },
    { "verbose", 0, 0, G_OPTION_ARG_NONE, &opts->verbose,
      N_("Tell on standard error when waiting, for how long, and who holds the lock"), NULL },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &opts->version,
      N_("Show the version and exit"), NULL },
    G_OPTION_ENTRY_NULL
  };
  GOptionContext *context;
  GOptionGroup *group;

  context = g_option_context_new (_("FILE COMMAND [ARGUMENT…]"));
  group = g_option_group_new (NULL, NULL, NULL, opts, NULL);
  g_option_group_add_entries (group, entries);
  g_option_group_set_translation_domain (group, GETTEXT_PACKAGE);
  g_option_context_set_main_group (context, group);
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  /* Options end at FILE, as with flock(1): what follows is the command's. */
  g_option_context_set_strict_posix (context, TRUE);
  g_option_context_set_summary (context,
    _("Runs COMMAND while holding a lock on FILE, which is created if missing.\n"
      "\n"
      "  portalock [OPTION…] FILE -c SHELL-COMMAND\n"
      "  portalock --status [--backend=BACKEND] FILE"));
  g_option_context_set_description (context,
    _("Exit status: the command's, or 128+N if signal N killed it; 1 (or N of -E) "
      "if the lock is taken with -n or the wait times out; 64 for a usage error; "
      "66 if FILE cannot be opened or created; 69 if FILE cannot be locked there; "
      "71 for another system error; 126 or 127 if the command cannot be run; "
      "129, 130 or 143 if SIGHUP, SIGINT or SIGTERM ended the wait. "
      "--status exits with 0 if the lock is free and 1 if it is held.\n"
      "\n"
      "See portalock(1) for more."));
  return context;
}

/* Errors */

static int
exit_code_for_error (const GError *error,
                     int           conflict_exit)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    return conflict_exit;
  if (error->domain != G_IO_ERROR)
    return EX_OSERR;
  /* error->code is an int, so no enum switch: only these codes matter */
  switch (error->code)
    {
    case G_IO_ERROR_NOT_FOUND:
    case G_IO_ERROR_PERMISSION_DENIED:
    case G_IO_ERROR_IS_DIRECTORY:
    case G_IO_ERROR_NOT_DIRECTORY:
    case G_IO_ERROR_NOT_REGULAR_FILE:
    case G_IO_ERROR_TOO_MANY_LINKS:
    case G_IO_ERROR_FILENAME_TOO_LONG:
    case G_IO_ERROR_INVALID_FILENAME:
    case G_IO_ERROR_READ_ONLY:
    case G_IO_ERROR_NO_SPACE:
      return EX_NOINPUT;
    case G_IO_ERROR_NOT_SUPPORTED:
    case G_IO_ERROR_BUSY:
      return EX_UNAVAILABLE;
    default:
      return EX_OSERR;
    }
}

/* Holder descriptions, as the library words them */
static char *
describe_holder (PortaLock *lock)
{
  g_autofree char *command = NULL;
  int pid = 0;

  if (!porta_lock_query_holder (lock, &pid, &command, NULL) || pid <= 0)
    return g_strdup (_("an unknown process"));
  if (command == NULL)
    return g_strdup_printf (_("process %d"), pid);
  return g_strdup_printf (_("process %d (%s)"), pid, command);
}

/* --status */

static int
run_status (const Options *opts,
            const char    *path)
{
  g_autoptr(GFile) file = g_file_new_for_commandline_arg (path);
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                   opts->backend, lock_flags (opts));
  g_autoptr(GError) error = NULL;
  g_autofree char *display = g_filename_display_name (path);
  g_autofree char *command = NULL;
  int pid = 0;
  gboolean held;

  held = porta_lock_query_holder (lock, &pid, &command, &error);
  if (error != NULL)
    {
      say (error->message);
      return exit_code_for_error (error, EX_OSERR);
    }

  g_print (_("file: %s\n"), display);
  g_print (_("lock: %s\n"), held ? _("held") : _("free"));
  if (held)
    {
      if (pid > 0)
        g_print (_("holder pid: %d\n"), pid);
      else
        g_print (_("holder pid: %s\n"), _("unknown"));
      g_print (_("holder command: %s\n"), command != NULL ? command : _("unknown"));
    }
  g_print (_("backend: %s\n"), backend_name (porta_lock_get_backend (lock)));
  return held ? 1 : 0;
}

/* Signals */

#ifdef G_OS_UNIX

static gboolean
on_signal (gpointer user_data)
{
  SignalWatch *watch = user_data;
  Tool *tool = watch->tool;

  if (tool->child != NULL)
    {
      if (tool->opts->verbose)
        {
          g_autofree char *message =
            g_strdup_printf (_("forwarding %s to the command (process %s)"),
                             signal_name (watch->signum),
                             g_subprocess_get_identifier (tool->child));
          say (message);
        }
      g_subprocess_send_signal (tool->child, watch->signum);
    }
  else if (tool->signal_received == 0)
    {
      tool->signal_received = watch->signum;
      g_cancellable_cancel (tool->cancellable);
    }
  return G_SOURCE_CONTINUE;
}

static void
watch_signals (Tool *tool)
{
  for (guint i = 0; i < G_N_ELEMENTS (forwarded_signals); i++)
    {
      SignalWatch *watch = &tool->watches[i];

      watch->tool = tool;
      watch->signum = forwarded_signals[i];
      /* An ignored signal stays ignored, for us and for the command
       * (nohup portalock …, or a background job of a script). */
      if (!signal_is_ignored (watch->signum))
        watch->id = g_unix_signal_add (watch->signum, on_signal, watch);
    }
}

static void
unwatch_signals (Tool *tool)
{
  for (guint i = 0; i < G_N_ELEMENTS (tool->watches); i++)
    if (tool->watches[i].id != 0)
      {
        g_source_remove (tool->watches[i].id);
        tool->watches[i].id = 0;
      }
}

#else /* !G_OS_UNIX */

/* The console control handler runs in a thread of its own. */
static Tool *console_tool;   /* atomic */

static BOOL WINAPI
on_console_event (DWORD event)
{
  Tool *tool = g_atomic_pointer_get (&console_tool);

  if (tool == NULL)
    return FALSE;
  if (event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT && event != CTRL_CLOSE_EVENT)
    return FALSE;
  /* While the command runs it gets the event from the console it shares
   * with us; we wait for it to end. Before, the event stops the wait. */
  if (g_atomic_pointer_get (&tool->child) == NULL &&
      g_atomic_int_compare_and_exchange (&tool->signal_received, 0, SIGINT))
    g_cancellable_cancel (tool->cancellable);
  return TRUE;
}

static void
watch_signals (Tool *tool)
{
  g_atomic_pointer_set (&console_tool, tool);
  SetConsoleCtrlHandler (on_console_event, TRUE);
}

static void
unwatch_signals (Tool *tool)
{
  SetConsoleCtrlHandler (on_console_event, FALSE);
  g_atomic_pointer_set (&console_tool, NULL);
}

#endif /* G_OS_UNIX */

/* Dispatches the signals that arrived while the main loop did not run. */
static void
dispatch_pending (void)
{
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
}

/* Acquiring */

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Tool *tool = user_data;

  tool->acquired = porta_lock_acquire_finish (PORTA_LOCK (source), result, &tool->error);
  g_main_loop_quit (tool->loop);
}

static void
say_waiting (Tool *tool,
             int   timeout_ms)
{
  g_autofree char *holder = describe_holder (tool->lock);
  g_autofree char *message = NULL;

  if (timeout_ms < 0)
    message = g_strdup_printf (_("waiting for the lock on “%s”, held by %s"),
                               tool->display, holder);
  else
    message = g_strdup_printf (_("waiting up to %g s for the lock on “%s”, held by %s"),
                               tool->opts->timeout_s, tool->display, holder);
  say (message);
}

static void
say_acquired (Tool   *tool,
              gint64  waited_us)
{
  g_autofree char *message = NULL;
  gboolean shared = tool->opts->mode == PORTA_LOCK_MODE_SHARED;

  if (waited_us < 0)
    message = g_strdup_printf (shared ? _("took a shared lock on “%s” at once")
                                      : _("took an exclusive lock on “%s” at once"),
                               tool->display);
  else
    message = g_strdup_printf (shared ? _("took a shared lock on “%s” after waiting %.3f s")
                                      : _("took an exclusive lock on “%s” after waiting %.3f s"),
                               tool->display, waited_us / (double) G_USEC_PER_SEC);
  say (message);
}

/* Returns 0 with the lock held, or the exit status to end with. */
static int
acquire_lock (Tool *tool)
{
  const Options *opts = tool->opts;
  int timeout_ms = opts->nonblock ? 0 : opts->timeout_ms;
  g_autoptr(GError) error = NULL;
  gint64 start;

  /* A non-blocking try on this thread first: the common case needs no
   * main loop, and --verbose must know whether it waits. */
  if (porta_lock_try_acquire (tool->lock, &error))
    {
      if (opts->verbose)
        say_acquired (tool, -1);
      return 0;
    }
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) || timeout_ms == 0)
    {
      gboolean conflict = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);

      /* Like flock(1), a lock that is taken is no error worth a word
       * unless asked: cron jobs with -n stay quiet. */
      if (!conflict || opts->verbose)
        say (error->message);
      return exit_code_for_error (error, opts->conflict_exit);
    }
  g_clear_error (&error);

  if (opts->verbose)
    say_waiting (tool, timeout_ms);
  start = g_get_monotonic_time ();
  porta_lock_acquire_async (tool->lock, timeout_ms, G_PRIORITY_DEFAULT,
                            tool->cancellable, on_acquired, tool);
  g_main_loop_run (tool->loop);

  if (!tool->acquired)
    {
      if (g_error_matches (tool->error, G_IO_ERROR, G_IO_ERROR_CANCELLED) &&
          tool->signal_received != 0)
        {
          if (opts->verbose)
            {
              g_autofree char *message =
                g_strdup_printf (_("stopped waiting for the lock on “%s”: received %s"),
                                 tool->display, signal_name (tool->signal_received));
              say (message);
            }
          return EXIT_SIGNAL_BASE + tool->signal_received;
        }
      if (!g_error_matches (tool->error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) || opts->verbose)
        say (tool->error->message);
      return exit_code_for_error (tool->error, opts->conflict_exit);
    }
  if (opts->verbose)
    say_acquired (tool, g_get_monotonic_time () - start);
  return 0;
}

/* Releases the lock; returns @status, or EX_OSERR if releasing failed
 * after a command that succeeded. */
static int
release_lock (Tool *tool,
              int   status)
{
  g_autoptr(GError) error = NULL;

  if (!porta_lock_get_held (tool->lock))
    return status;
  if (!porta_lock_release (tool->lock, &error))
    {
      say (error->message);
      return status == 0 ? EX_OSERR : status;
    }
  if (tool->opts->verbose)
    {
      g_autofree char *message = g_strdup_printf (_("released the lock on “%s”"),
                                                  tool->display);
      say (message);
    }
  return status;
}

/* Running the command */

static void
on_child_exited (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Tool *tool = user_data;

  /* Without a cancellable the wait cannot fail. */
  g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  g_main_loop_quit (tool->loop);
}

static int
child_status (Tool *tool)
{
  GSubprocess *child = tool->child;
  g_autofree char *message = NULL;
  int status;

  if (g_subprocess_get_if_signaled (child))
    {
      int signum = g_subprocess_get_term_sig (child);

      status = EXIT_SIGNAL_BASE + signum;
      if (tool->opts->verbose)
        message = g_strdup_printf (_("the command was killed by signal %d (%s)"),
                                   signum, g_strsignal (signum));
    }
  else
    {
      status = g_subprocess_get_exit_status (child);
      if (tool->opts->verbose)
        message = g_strdup_printf (_("the command exited with status %d"), status);
    }
  if (message != NULL)
    say (message);
  return status;
}

static int
run_command (Tool                *tool,
             const char * const  *argv)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GError) error = NULL;
  int status;

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT);
#ifdef G_OS_UNIX
  g_subprocess_launcher_set_child_setup (launcher, restore_inheritance,
                                         (gpointer) tool->inheritance, NULL);
#endif
  if (tool->opts->verbose)
    {
      g_autofree char *message = g_strdup_printf (_("running %s"), argv[0]);

      say (message);
    }
  g_atomic_pointer_set (&tool->child, g_subprocess_launcher_spawnv (launcher, argv, &error));
  if (tool->child == NULL)
    {
      say (error->message);
      return g_error_matches (error, G_SPAWN_ERROR, G_SPAWN_ERROR_NOENT) ? EXIT_NOT_FOUND
                                                                         : EXIT_CANNOT_EXECUTE;
    }
  g_subprocess_wait_async (tool->child, NULL, on_child_exited, tool);
  g_main_loop_run (tool->loop);
  status = child_status (tool);
  g_clear_object (&tool->child);
  return status;
}

static int
run_locked (const Options       *opts,
            const char          *path,
            const char * const  *argv,
            const Inheritance   *inheritance)
{
  g_autoptr(GFile) file = g_file_new_for_commandline_arg (path);
  g_autofree char *display = g_filename_display_name (path);
  Tool tool = { 0 };
  int status;

  tool.opts = opts;
  tool.display = display;
  tool.lock = porta_lock_new_full (file, opts->mode, opts->backend, lock_flags (opts));
  tool.loop = g_main_loop_new (NULL, FALSE);
  tool.cancellable = g_cancellable_new ();
  tool.inheritance = inheritance;
  watch_signals (&tool);

  status = acquire_lock (&tool);
  if (status == 0)
    {
      /* A signal that came while the lock was being taken still means
       * "stop": do not start the command. */
      dispatch_pending ();
      if (tool.signal_received != 0)
        status = release_lock (&tool, EXIT_SIGNAL_BASE + tool.signal_received);
      else
        status = release_lock (&tool, run_command (&tool, argv));
    }

  unwatch_signals (&tool);
  g_clear_error (&tool.error);
  g_clear_object (&tool.cancellable);
  g_clear_pointer (&tool.loop, g_main_loop_unref);
  g_clear_object (&tool.lock);
  return status;
}

int
main (int    argc,
      char **argv)
{
  Inheritance inheritance;
  g_autoptr(GArray) inherited_fds = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) args = NULL;
  Options opts = {
    .mode = PORTA_LOCK_MODE_EXCLUSIVE,
#ifdef G_OS_WIN32
    .backend = PORTA_BACKEND_WIN32,
#else
    .backend = PORTA_BACKEND_FLOCK,
#endif
    .timeout_ms = -1,
    .conflict_exit = EXIT_CONFLICT_DEFAULT,
  };
#ifdef G_OS_WIN32
  const char *comspec = g_getenv ("COMSPEC");
  const char *shell_argv[] = { comspec != NULL ? comspec : "cmd.exe", "/c", NULL, NULL };
#else
  const char *shell_argv[] = { "/bin/sh", "-c", NULL, NULL };
#endif
  const char * const *command;
  const char *path;
  guint n_args;
  int status;

  /* Before anything of ours is open or any handler installed */
  find_inheritance (&inheritance);
  inherited_fds = inheritance.fds;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  g_set_prgname ("portalock");

  context = make_option_context (&opts);
  args = g_strdupv (argv);
  if (!g_option_context_parse_strv (context, &args, &error))
    {
      status = usage_error (error->message);
      g_free (opts.shell_command);
      return status;
    }

  if (opts.version)
    {
      g_print ("portalock %s\n", PACKAGE_VERSION);
      return 0;
    }

  /* args[0] is the program; strict POSIX parsing left FILE and what
   * follows it untouched, except a leading "--". */
  n_args = g_strv_length (args);
  if (n_args < 2)
    {
      g_free (opts.shell_command);
      return usage_error (_("No lock file given"));
    }
  path = args[1];

  if (opts.status)
    {
      if (n_args > 2 || opts.shell_command != NULL)
        status = usage_error (_("--status takes a lock file and no command"));
      else
        status = run_status (&opts, path);
      g_free (opts.shell_command);
      return status;
    }

  if (opts.shell_command != NULL)
    {
      if (n_args > 2)
        {
          g_free (opts.shell_command);
          return usage_error (_("-c takes one shell command; put its arguments into it"));
        }
      shell_argv[2] = opts.shell_command;
      command = shell_argv;
    }
  else if (n_args > 2 && (g_str_equal (args[2], "-c") || g_str_equal (args[2], "--command")))
    {
      if (n_args != 4)
        {
          g_autofree char *message =
            g_strdup_printf (_("%s takes exactly one shell command"), args[2]);

          return usage_error (message);
        }
      shell_argv[2] = args[3];
      command = shell_argv;
    }
  else
    {
      guint first = (n_args > 2 && g_str_equal (args[2], "--")) ? 3 : 2;

      if (n_args <= first)
        return usage_error (_("No command given"));
      command = (const char * const *) &args[first];
    }

  status = run_locked (&opts, path, command, &inheritance);
  g_free (opts.shell_command);
  return status;
}
