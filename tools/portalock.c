/* portalock.c: flock(1) through the library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Runs a command while holding a lock on a file or folder, or locks (and
 * unlocks) a descriptor that the shell opened, with flock(1)'s options and
 * behaviour: a script written for flock(1) runs unchanged with portalock
 * in its place. The differences that remain are deliberate, and listed in
 * portalock(1) under "Differences from flock(1)"; tests/cli holds the two
 * tools against each other.
 *
 * On Unix the lock file is opened here, as flock(1) opens it, and locked
 * with the library's descriptor API, so that the command can inherit the
 * locked descriptor as it does under flock(1): a command that outlives
 * portalock (portalock killed, or the command daemonised) keeps the lock
 * until the last process with the descriptor ends. -o keeps the descriptor
 * from the command; -F runs the command in portalock's place. Waiting
 * happens on a main loop, so SIGINT, SIGTERM and SIGHUP can cancel the
 * wait; while the command runs they are forwarded to it.
 *
 * On Windows a #PortaLock holds the lock and the command does not inherit
 * it; Ctrl+C and Ctrl+Break (and closing the console) cancel the wait,
 * reported as SIGINT.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <sysexits.h>
# include <glib-unix.h>
#else
# include <windows.h>
/* sysexits.h's values, which Windows lacks. */
# define EX_USAGE       64
# define EX_DATAERR     65
# define EX_NOINPUT     66
# define EX_UNAVAILABLE 69
# define EX_OSERR       71
# define EX_CANTCREAT   73
# define EX_TEMPFAIL    75
# define EX_NOPERM      77
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
  gboolean       unlock;
  gboolean       nonblock;
  int            timeout_ms;     /* -1: wait for as long as it takes */
  double         timeout_s;      /* as given, for messages */
  int            conflict_exit;
  gboolean       close;
  gboolean       no_fork;
  gboolean       verbose;
  gboolean       follow_symlinks;
  gboolean       status;
  const char    *shell_command;  /* -c before the file */
  const char    *redis_uri;      /* --redis: FILE is a lock name there */
  const char    *redis_ca;       /* --redis-ca: CA certificates for rediss:// */
  guint          max_holders;    /* --max-holders: a counting Redis lock */
  guint          lease_ms;       /* --lease: a Redis lock's lease, 0 for the default */
  gboolean       portalocker;    /* --redis-protocol=portalocker */
} Options;

/* What the command inherits from portalock's own start, as it would from
 * flock(1): the descriptors above stderr that were open without
 * close-on-exec (a make jobserver, `exec 3>…`, socket activation), the
 * signals that were ignored (nohup, background jobs of scripts), and the
 * lock's descriptor unless -o. GLib's spawn marks every descriptor above 2
 * close-on-exec and resets SIGINT, SIGTERM, SIGHUP and SIGPIPE to their
 * defaults in the child, and then calls the child setup function, which
 * undoes both for these. */
typedef struct
{
  GArray *fds;
  int     ignored[4];
  guint   n_ignored;
  int     lock_fd;               /* -1: the command does not inherit it */
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
  inheritance->lock_fd = -1;
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
  if (inheritance->lock_fd >= 0)
    fcntl (inheritance->lock_fd, F_SETFD, 0);
}

#else /* !G_OS_UNIX */

/* Windows: handles are inherited only where asked for, and there are no
 * signal dispositions to carry over. */
static void
find_inheritance (Inheritance *inheritance)
{
  inheritance->fds = g_array_new (FALSE, FALSE, sizeof (int));
  inheritance->n_ignored = 0;
  inheritance->lock_fd = -1;
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
  const char    *path;           /* the lock file; NULL for a descriptor */
  char          *display;        /* the file or descriptor, for messages */
  int            fd;             /* Unix: the locked descriptor, or -1 */
  gboolean       own_fd;         /* opened here (not the shell's) */
  gboolean       read_write;     /* open it for writing even for flock() */
  PortaLockable *lockable;       /* the lock, when it is not a descriptor */
  GMainLoop     *loop;
  GCancellable  *cancellable;
  GSubprocess   *child;          /* set while the command runs */
  Inheritance   *inheritance;    /* what the command inherits */
  SignalWatch    watches[3];
  int            signal_received; /* the signal that ended the wait */
  int            die_signal;     /* the signal to end portalock with */
  guint          forwarded;      /* bit N: signal N was forwarded */
  gboolean       acquired;
  gboolean       lost;           /* a Redis lock was lost while held */
  GError        *error;
};

#ifdef G_OS_UNIX
static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP };
/* The signal mask portalock started with, for a command run with -F. */
static sigset_t original_mask;
#endif

static void
say (const char *message)
{
  g_printerr ("portalock: %s\n", message);
}

static int
usage_error (const char *message)
{
  if (message != NULL)
    say (message);
  g_printerr (_("Try “%s --help” for more information.\n"), "portalock");
  return EX_USAGE;
}

static const char *
backend_name (PortaBackend backend)
{
  GEnumClass *klass = g_type_class_ref (PORTA_TYPE_BACKEND);
  GEnumValue *value = g_enum_get_value (klass, backend);
  const char *name = value != NULL ? value->value_nick : "default";

  /* The nicks are static strings of the type, which stays registered. */
  g_type_class_unref (klass);
  return name;
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

/* Options */

static gboolean
parse_timeout (Options     *opts,
               const char  *value)
{
  char *end = NULL;
  double seconds;
  double ms;

  errno = 0;
  seconds = g_ascii_strtod (value, &end);
  /* !(seconds >= 0) also refuses NaN */
  if (end == value || *end != '\0' || errno == EINVAL || !(seconds >= 0))
    {
      g_autofree char *message =
        g_strdup_printf (_("Invalid timeout “%s”: give a number of seconds, such as 5 or 0.25"),
                         value);

      say (message);
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

/* A whole number as flock(1) reads it (strtol: leading blanks and a sign
 * allowed), within an int. */
static gboolean
parse_int (const char *value,
           gint64     *number)
{
  char *end = NULL;

  errno = 0;
  *number = g_ascii_strtoll (value, &end, 10);
  return end != value && *end == '\0' && errno == 0 &&
         *number >= G_MININT && *number <= G_MAXINT;
}

static gboolean
parse_conflict_exit (Options     *opts,
                     const char  *value)
{
  gint64 code;

  if (!parse_int (value, &code) || code < 0 || code > 255)
    {
      g_autofree char *message =
        g_strdup_printf (_("Invalid exit code “%s”: give a number from 0 to 255"), value);

      say (message);
      return FALSE;
    }
  opts->conflict_exit = (int) code;
  return TRUE;
}

static gboolean
parse_backend (Options     *opts,
               const char  *value)
{
  GEnumClass *klass = g_type_class_ref (PORTA_TYPE_BACKEND);
  GEnumValue *backend = g_enum_get_value_by_nick (klass, value);

  if (backend != NULL && backend->value != PORTA_BACKEND_DEFAULT)
    opts->backend = backend->value;
  g_type_class_unref (klass);
  if (backend == NULL || backend->value == PORTA_BACKEND_DEFAULT)
    {
      g_autofree char *message =
        g_strdup_printf (_("Unknown backend “%s”: use flock, ofd, posix or win32"), value);

      say (message);
      return FALSE;
    }
  return TRUE;
}

static void
print_option (const char *names,
              const char *description)
{
  g_print ("  %-30s %s\n", names, description);
}

static void
print_help (void)
{
  g_print ("%s\n", _("Usage:"));
  g_print ("  portalock [%s] %s\n", _("OPTION…"), _("FILE|FOLDER COMMAND [ARGUMENT…]"));
  g_print ("  portalock [%s] %s\n", _("OPTION…"), _("FILE|FOLDER -c SHELL-COMMAND"));
  g_print ("  portalock [%s] %s\n", _("OPTION…"), _("DESCRIPTOR-NUMBER"));
  g_print ("  portalock --status [--backend=%s] %s\n", _("BACKEND"), _("FILE"));
  g_print ("\n%s\n\n",
           _("Runs COMMAND while holding a lock on FILE or FOLDER (a file is created "
             "if missing), or locks the descriptor DESCRIPTOR-NUMBER that the shell "
             "opened, as flock(1) does."));
  g_print ("%s\n", _("Options:"));
  print_option ("-s, --shared", _("Take a shared lock"));
  print_option ("-x, -e, --exclusive", _("Take an exclusive lock (the default)"));
  print_option ("-u, --unlock", _("Unlock DESCRIPTOR-NUMBER instead of locking it"));
  print_option ("-n, --nonblock, --nb", _("Fail at once if the lock is taken, instead of waiting"));
  print_option ("-w, --timeout SECONDS", _("Wait at most SECONDS for the lock (fractions allowed)"));
  print_option ("-E, --conflict-exit-code N",
                _("Exit status when the lock is taken (-n) or the wait times out (-w); 1 by default"));
  print_option ("-o, --close",
                _("Keep the lock from the command: it ends when portalock does"));
  print_option ("-F, --no-fork", _("Run the command in place of portalock, keeping the lock"));
  print_option ("-c, --command SHELL-COMMAND",
                _("Run SHELL-COMMAND with $SHELL -c (/bin/sh if unset)"));
  print_option ("--fcntl", _("Lock with open file description locks (--backend=ofd)"));
  print_option ("--backend BACKEND",
                _("Lock with flock (the default on Unix), ofd, posix or win32 (the default on Windows) locks"));
  print_option ("--follow-symlinks",
                _("Lock the file a symbolic link points to, instead of refusing the link"));
  print_option ("--status", _("Tell whether FILE is locked and by whom, and exit"));
  print_option ("--redis URI", _("Take the lock NAME on a Redis server instead of a file lock"));
  print_option ("--max-holders N",
                _("With --redis, let at most N holders in at once (a counting lock)"));
  print_option ("--lease SECONDS",
                _("With --redis, how long a holder that stops answering keeps the lock"));
  print_option ("--redis-ca FILE",
                _("With --redis, trust the TLS certificates in FILE for rediss://"));
  print_option ("--redis-protocol PROTOCOL",
                _("With --redis, exclude portalock's clients only (portalock, the default) "
                  "or Python portalocker's RedisLock too (portalocker)"));
  print_option ("--verbose",
                _("Tell on standard error when waiting, for how long, and who holds the lock"));
  print_option ("-h, --help", _("Show this help and exit"));
  print_option ("-V, --version", _("Show the version and exit"));
  g_print ("\n%s\n\n%s\n",
           _("Exit status: the command's, or 128+N if signal N killed it; 1 (or N of -E) "
             "if the lock is taken with -n or the wait times out; 64 for a usage error; "
             "65 if the descriptor cannot be locked; 66 if FILE cannot be opened or "
             "created; 69 if FILE cannot be locked there; 71 for another system error; "
             "73 if FILE cannot be created on a full or read-only filesystem; 126 or "
             "127 if the command cannot be run. A SIGHUP, SIGINT or SIGTERM that ends "
             "the wait ends portalock with that signal. --status exits with 0 if the "
             "lock is free and 1 if it is held."),
           _("See portalock(1) for more, and its list of differences from flock(1)."));
}

enum
{
  OPTION_FCNTL = 256,
  OPTION_BACKEND,
  OPTION_FOLLOW_SYMLINKS,
  OPTION_STATUS,
  OPTION_VERBOSE,
  OPTION_REDIS,
  OPTION_REDIS_CA,
  OPTION_REDIS_PROTOCOL,
  OPTION_MAX_HOLDERS,
  OPTION_LEASE,
};

/* flock(1)'s parsing: getopt_long, so options may be grouped (-nE5), take
 * attached values (-w0.2) and be abbreviated (--nonb), and they end at the
 * first argument that is not one (+), the file, whose command's options
 * are its own. Returns -1 to go on, or the status to exit with. */
static int
parse_options (int       argc,
               char    **argv,
               Options  *opts,
               int      *first_argument)
{
  static const struct option long_options[] = {
    { "shared", no_argument, NULL, 's' },
    { "exclusive", no_argument, NULL, 'x' },
    { "unlock", no_argument, NULL, 'u' },
    { "nonblock", no_argument, NULL, 'n' },
    { "nonblocking", no_argument, NULL, 'n' },
    { "nb", no_argument, NULL, 'n' },
    { "timeout", required_argument, NULL, 'w' },
    { "wait", required_argument, NULL, 'w' },
    { "conflict-exit-code", required_argument, NULL, 'E' },
    { "close", no_argument, NULL, 'o' },
    { "no-fork", no_argument, NULL, 'F' },
    { "command", required_argument, NULL, 'c' },
    { "fcntl", no_argument, NULL, OPTION_FCNTL },
    { "backend", required_argument, NULL, OPTION_BACKEND },
    { "follow-symlinks", no_argument, NULL, OPTION_FOLLOW_SYMLINKS },
    { "status", no_argument, NULL, OPTION_STATUS },
    { "verbose", no_argument, NULL, OPTION_VERBOSE },
    { "redis", required_argument, NULL, OPTION_REDIS },
    { "redis-ca", required_argument, NULL, OPTION_REDIS_CA },
    { "redis-protocol", required_argument, NULL, OPTION_REDIS_PROTOCOL },
    { "max-holders", required_argument, NULL, OPTION_MAX_HOLDERS },
    { "lease", required_argument, NULL, OPTION_LEASE },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  int option;

  /* getopt's own messages ("unrecognized option") name argv[0]. */
  argv[0] = (char *) "portalock";
  opterr = 1;
  while ((option = getopt_long (argc, argv, "+sexunoFw:E:c:hV", long_options, NULL)) != -1)
    {
      switch (option)
        {
        /* -s, -x (-e) and -u are one choice: the last one counts. */
        case 's':
          opts->mode = PORTA_LOCK_MODE_SHARED;
          opts->unlock = FALSE;
          break;
        case 'e':
        case 'x':
          opts->mode = PORTA_LOCK_MODE_EXCLUSIVE;
          opts->unlock = FALSE;
          break;
        case 'u':
          opts->unlock = TRUE;
          break;
        case 'n':
          opts->nonblock = TRUE;
          break;
        case 'w':
          if (!parse_timeout (opts, optarg))
            return usage_error (NULL);
          break;
        case 'E':
          if (!parse_conflict_exit (opts, optarg))
            return usage_error (NULL);
          break;
        case 'o':
          opts->close = TRUE;
          break;
        case 'F':
          opts->no_fork = TRUE;
          break;
        case 'c':
          opts->shell_command = optarg;
          break;
        case OPTION_FCNTL:
          opts->backend = PORTA_BACKEND_OFD;
          break;
        case OPTION_BACKEND:
          if (!parse_backend (opts, optarg))
            return usage_error (NULL);
          break;
        case OPTION_FOLLOW_SYMLINKS:
          opts->follow_symlinks = TRUE;
          break;
        case OPTION_STATUS:
          opts->status = TRUE;
          break;
        case OPTION_REDIS:
          opts->redis_uri = optarg;
          break;
        case OPTION_REDIS_CA:
          opts->redis_ca = optarg;
          break;
        case OPTION_REDIS_PROTOCOL:
          if (g_strcmp0 (optarg, "portalock") != 0 && g_strcmp0 (optarg, "portalocker") != 0)
            {
              g_autofree char *message =
                g_strdup_printf (_("Invalid Redis protocol “%s”: give portalock or portalocker"),
                                 optarg);

              return usage_error (message);
            }
          opts->portalocker = g_strcmp0 (optarg, "portalocker") == 0;
          break;
        case OPTION_MAX_HOLDERS:
          {
            gint64 n;

            if (!parse_int (optarg, &n) || n < 1)
              {
                g_autofree char *message =
                  g_strdup_printf (_("Invalid number of holders “%s”: give a whole number "
                                     "from 1 on"), optarg);

                return usage_error (message);
              }
            opts->max_holders = (guint) n;
          }
          break;
        case OPTION_LEASE:
          {
            char *end = NULL;
            double seconds = g_ascii_strtod (optarg, &end);

            /* !(seconds >= 0.1) also refuses NaN */
            if (end == optarg || *end != '\0' || !(seconds >= 0.1) || seconds > 86400.0)
              {
                g_autofree char *message =
                  g_strdup_printf (_("Invalid lease “%s”: give a number of seconds from "
                                     "0.1 to 86400"), optarg);

                return usage_error (message);
              }
            opts->lease_ms = (guint) (seconds * 1000.0 + 0.5);
          }
          break;
        case OPTION_VERBOSE:
          opts->verbose = TRUE;
          break;
        case 'h':
          print_help ();
          return 0;
        case 'V':
          g_print ("portalock %s\n", PACKAGE_VERSION);
          return 0;
        default:
          /* getopt has said what is wrong. */
          return usage_error (NULL);
        }
    }
  if (opts->redis_uri == NULL &&
      (opts->max_holders > 0 || opts->redis_ca != NULL || opts->lease_ms > 0 ||
       opts->portalocker))
    return usage_error (_("--max-holders, --lease, --redis-ca and --redis-protocol go with "
                          "--redis"));
  if (opts->redis_uri != NULL && (opts->unlock || opts->no_fork || opts->status))
    return usage_error (_("--redis takes a lock name and a command: -u, -F and --status "
                          "are for file locks"));
  if (opts->no_fork && opts->close)
    return usage_error (_("The --no-fork and --close options are incompatible: "
                          "nothing would be left to hold the lock"));
  *first_argument = optind;
  return -1;
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
      return EX_NOINPUT;
    case G_IO_ERROR_READ_ONLY:
    case G_IO_ERROR_NO_SPACE:
      return EX_CANTCREAT;
    case G_IO_ERROR_NOT_SUPPORTED:
    case G_IO_ERROR_BUSY:
      return EX_UNAVAILABLE;
    case G_IO_ERROR_FAILED:
    case G_IO_ERROR_INVALID_ARGUMENT:
      /* A descriptor that cannot be locked (not open, or not open for
       * writing for an fcntl() write lock), as flock(1) reports it. */
      return EX_DATAERR;
    default:
      return EX_OSERR;
    }
}

/* The lock: opened, tried, waited for, described. On Unix a lock file is
 * a descriptor opened here and locked with the descriptor API, so that the
 * command can inherit it; on Windows, where it cannot, it is a #PortaLock.
 * Either way it is then used through the same few functions. */

#ifdef G_OS_UNIX

/* Opens the lock file as flock(1) does: for reading, which is all flock()
 * and fcntl() read locks need (so a script can lock itself and still be
 * run, and a running program can be locked), creating it if missing; for
 * writing only for an fcntl() write lock. A folder is opened for reading.
 * Unlike flock(1), a symbolic link is refused unless --follow-symlinks,
 * and so is anything but a file or a folder. */
static gboolean
open_lock_file (Tool    *tool,
                int     *exit_status,
                GError **error)
{
  const Options *opts = tool->opts;
  gboolean need_write = opts->mode == PORTA_LOCK_MODE_EXCLUSIVE && !opts->unlock &&
                        (opts->backend != PORTA_BACKEND_FLOCK || tool->read_write);
  /* O_NONBLOCK: opening a FIFO must fail the type check below, not wait
   * for a writer; it is cleared once the file is known. */
  int common = O_NOCTTY | O_CLOEXEC | O_NONBLOCK |
               (opts->follow_symlinks ? 0 : O_NOFOLLOW);
  struct stat st;
  int fd;
  int errsv;

  fd = open (tool->path, (need_write ? O_RDWR : O_RDONLY) | O_CREAT | common, 0666);
  /* A file with a lease (Samba, knfsd) refuses a non-blocking open: wait
   * for the lease to break, as flock(1) does. */
  if (fd < 0 && errno == EWOULDBLOCK)
    fd = open (tool->path, (need_write ? O_RDWR : O_RDONLY) | O_CREAT | (common & ~O_NONBLOCK),
               0666);
  if (fd < 0 && errno == EISDIR)
    fd = open (tool->path, O_RDONLY | common);
  if (fd < 0)
    {
      errsv = errno;
      if (errsv == ENOENT && !g_file_test (tool->path, G_FILE_TEST_EXISTS))
        {
          g_autofree char *dir = g_path_get_dirname (tool->display);

          if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           _("Cannot create lock file “%s”: the folder “%s” does not exist"),
                           tool->display, dir);
              *exit_status = EX_NOINPUT;
              return FALSE;
            }
        }
      if (errsv == ELOOP && !opts->follow_symlinks)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS,
                     _("Refusing to lock “%s”: it is a symbolic link, and locks "
                       "follow symbolic links only when asked to"),
                     tool->display);
      else if (need_write && (errsv == EACCES || errsv == EROFS || errsv == EPERM ||
                              errsv == ETXTBSY))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                     _("Cannot take an exclusive %s lock on “%s”: "
                       "the file cannot be opened for writing (%s)"),
                     backend_name (opts->backend), tool->display, g_strerror (errsv));
      else
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                     _("Cannot open lock file “%s”: %s"), tool->display, g_strerror (errsv));
      if (errsv == ENOMEM || errsv == EMFILE || errsv == ENFILE)
        *exit_status = EX_OSERR;
      else if (errsv == EROFS || errsv == ENOSPC)
        *exit_status = EX_CANTCREAT;
      else
        *exit_status = EX_NOINPUT;
      return FALSE;
    }

  if (fstat (fd, &st) != 0 || (!S_ISREG (st.st_mode) && !S_ISDIR (st.st_mode)))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                   _("Cannot lock “%s”: it is not a regular file"), tool->display);
      *exit_status = EX_NOINPUT;
      close (fd);
      return FALSE;
    }
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK);
  tool->fd = fd;
  tool->own_fd = TRUE;
  return TRUE;
}


/* Whether the file locked is no longer the one at the path: deleted, or
 * replaced by a rename, while we waited (its holder may delete it when it
 * is done). Then the lock guards nothing, and the file is opened again. */
static gboolean
lock_file_replaced (Tool *tool)
{
  struct stat held, now;
  int r;

  if (tool->path == NULL || fstat (tool->fd, &held) != 0)
    return FALSE;
  if (held.st_nlink == 0)
    return TRUE;
  /* Renamed away and replaced keeps its one link: look the path up. */
  r = tool->opts->follow_symlinks ? stat (tool->path, &now) : lstat (tool->path, &now);
  return r != 0 || now.st_dev != held.st_dev || now.st_ino != held.st_ino;
}

#else /* !G_OS_UNIX */

static gboolean
open_lock_file (Tool    *tool,
                int     *exit_status,
                GError **error)
{
  g_autoptr(GFile) file = g_file_new_for_commandline_arg (tool->path);

  tool->lockable = PORTA_LOCKABLE (porta_lock_new_full (file, tool->opts->mode, tool->opts->backend,
                                                        tool->opts->follow_symlinks
                                                          ? PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS
                                                          : PORTA_LOCK_FLAGS_NONE));
  return TRUE;
}

static gboolean
lock_file_replaced (Tool *tool)
{
  /* PortaLock checks this itself. */
  return FALSE;
}

#endif /* G_OS_UNIX */

#if defined (PORTA_HAS_REDIS_LOCK) && PORTA_HAS_REDIS_LOCK
/* The lock is gone (its lease ran out, the server went away): the command
 * no longer runs under it, so it is told to stop. */
static void
on_redis_lock_lost (PortaRedisLock *lock,
                    const GError   *error,
                    gpointer        user_data)
{
  Tool *tool = user_data;

  say (error->message);
  tool->lost = TRUE;
  if (tool->child != NULL)
    g_subprocess_send_signal (tool->child, SIGTERM);
}
#endif

/* --redis: the lock is a #PortaRedisLock named by FILE; it connects when
 * it is first tried. */
static gboolean
open_redis_lock (Tool    *tool,
                 int     *exit_status,
                 GError **error)
{
#if defined (PORTA_HAS_REDIS_LOCK) && PORTA_HAS_REDIS_LOCK
  const Options *opts = tool->opts;
  g_autoptr(PortaRedisLock) lock = NULL;

  if (opts->max_holders > 0)
    lock = porta_redis_lock_new_counting (opts->redis_uri, tool->path, opts->max_holders);
  else
    lock = porta_redis_lock_new (opts->redis_uri, tool->path, opts->mode);
  if (opts->lease_ms > 0)
    porta_redis_lock_set_lease_ms (lock, opts->lease_ms);
  if (opts->portalocker)
    porta_redis_lock_set_protocol (lock, PORTA_REDIS_PROTOCOL_PORTALOCKER);
  if (opts->redis_ca != NULL)
    {
      g_autoptr(GTlsDatabase) database = g_tls_file_database_new (opts->redis_ca, error);

      if (database == NULL)
        {
          *exit_status = EX_NOINPUT;
          return FALSE;
        }
      porta_redis_lock_set_tls_database (lock, database);
    }
  g_signal_connect (lock, "lost", G_CALLBACK (on_redis_lock_lost), tool);
  tool->lockable = PORTA_LOCKABLE (g_steal_pointer (&lock));
  return TRUE;
#else
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
               _("This portalock was built without Redis locks"));
  *exit_status = EX_UNAVAILABLE;
  return FALSE;
#endif
}

/* Opens the lock to take: the lock file, or a Redis lock. */
static gboolean
open_lock (Tool    *tool,
           int     *exit_status,
           GError **error)
{
  if (tool->opts->redis_uri != NULL)
    return open_redis_lock (tool, exit_status, error);
  return open_lock_file (tool, exit_status, error);
}

/* Lets the lock go: a lockable is released; a descriptor opened here is
 * closed, not unlocked, so that the lock stays with any process that
 * inherited it. */
static void
close_lock_file (Tool *tool)
{
  g_autoptr(GError) error = NULL;

  if (tool->lockable != NULL)
    g_signal_handlers_disconnect_by_data (tool->lockable, tool);
  if (tool->lockable != NULL && porta_lockable_get_held (tool->lockable) &&
      !porta_lockable_release (tool->lockable, &error))
    say (error->message);
  g_clear_object (&tool->lockable);
  if (tool->own_fd && tool->fd >= 0)
    close (tool->fd);
  tool->fd = -1;
  tool->own_fd = FALSE;
}

/* Whether a lock to take is open: a descriptor or a lockable. */
static gboolean
lock_is_open (const Tool *tool)
{
  return tool->fd >= 0 || tool->lockable != NULL;
}

static gboolean
lock_try (Tool    *tool,
          GError **error)
{
  if (tool->lockable != NULL)
    return porta_lockable_try_acquire (tool->lockable, error);
  return porta_fd_lock (tool->fd, tool->opts->mode, tool->opts->backend, 0, NULL, error);
}

static void on_locked (GObject *source, GAsyncResult *result, gpointer user_data);

static void
lock_wait_async (Tool *tool,
                 int   timeout_ms)
{
  if (tool->lockable != NULL)
    porta_lockable_acquire_async (tool->lockable, timeout_ms, G_PRIORITY_DEFAULT,
                                  tool->cancellable, on_locked, tool);
  else
    porta_fd_lock_async (tool->fd, tool->opts->mode, tool->opts->backend, timeout_ms,
                         G_PRIORITY_DEFAULT, tool->cancellable, on_locked, tool);
}

static gboolean
lock_wait_finish (Tool          *tool,
                  GAsyncResult  *result,
                  GError       **error)
{
  if (tool->lockable != NULL)
    return porta_lockable_acquire_finish (tool->lockable, result, error);
  return porta_fd_lock_finish (result, error);
}

/* The holder of a file lock, looked up by the file's path (a descriptor's
 * from /proc, when the shell opened it). Looking it up opens nothing. */
static char *
describe_holder (Tool *tool)
{
  g_autofree char *fd_link = g_strdup_printf ("/proc/self/fd/%d", tool->fd);
  g_autofree char *target = tool->path == NULL ? g_file_read_link (fd_link, NULL) : NULL;
  const char *path = tool->path != NULL ? tool->path : target;
  g_autoptr(PortaLock) lock = NULL;
  g_autofree char *command = NULL;
  int pid = 0;

  if (tool->lockable != NULL && PORTA_IS_LOCK (tool->lockable))
    lock = g_object_ref (PORTA_LOCK (tool->lockable));
  else if (path != NULL && tool->lockable == NULL)
    {
      g_autoptr(GFile) file = g_file_new_for_commandline_arg (path);

      lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE, tool->opts->backend,
                                  PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS);
    }
  if (lock == NULL || !porta_lock_query_holder (lock, &pid, &command, NULL) || pid <= 0)
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
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE, opts->backend,
                                                   opts->follow_symlinks ? PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS
                                                                         : PORTA_LOCK_FLAGS_NONE);
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
      tool->forwarded |= 1u << watch->signum;
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

/* Ends portalock with the signal that ended the wait, as it ends flock(1):
 * a shell that sees its child die of SIGINT stops the script too, where a
 * plain exit status of 130 would let it go on. */
static void
die_of_signal (int signum)
{
  struct sigaction action = { 0 };
  sigset_t set;

  action.sa_handler = SIG_DFL;
  sigaction (signum, &action, NULL);
  sigemptyset (&set);
  sigaddset (&set, signum);
  sigprocmask (SIG_UNBLOCK, &set, NULL);
  raise (signum);
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

static void
die_of_signal (int signum)
{
  /* Windows has no such death: the exit status tells. */
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
on_locked (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  Tool *tool = user_data;

  tool->acquired = lock_wait_finish (tool, result, &tool->error);
  g_main_loop_quit (tool->loop);
}

static void
say_waiting (Tool *tool,
             int   timeout_ms)
{
  g_autofree char *holder = describe_holder (tool);
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

/* How long is left of the wait that started at @start. */
static int
time_left_ms (const Options *opts,
              gint64         start)
{
  gint64 left;

  if (opts->nonblock)
    return 0;
  if (opts->timeout_ms < 0)
    return -1;
  left = opts->timeout_ms - (g_get_monotonic_time () - start) / 1000;
  return (int) CLAMP (left, 0, G_MAXINT);
}

/* What a failed Redis lock exits with: a server out of reach or refusing
 * is unavailable, a refused password is a permission, a malformed URI or
 * name is a usage error. */
static int
redis_exit_code (const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
    return EX_USAGE;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
    return EX_NOPERM;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    return EX_NOINPUT;
  if (error->domain == G_IO_ERROR || error->domain == G_RESOLVER_ERROR ||
      error->domain == G_TLS_ERROR)
    return EX_UNAVAILABLE;
  return EX_OSERR;
}

/* Fails with the lock not taken and *exit_status set: whether the lock was
 * taken is never inferred from an exit status, which -E may make 0. */
static gboolean
report_failure (Tool         *tool,
                const GError *error,
                int          *exit_status)
{
  gboolean conflict = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
                      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) && tool->signal_received != 0)
    {
      if (tool->opts->verbose)
        {
          g_autofree char *message =
            g_strdup_printf (_("stopped waiting for the lock on “%s”: received %s"),
                             tool->display, signal_name (tool->signal_received));
          say (message);
        }
      tool->die_signal = tool->signal_received;
      *exit_status = EXIT_SIGNAL_BASE + tool->signal_received;
      return FALSE;
    }
  /* Like flock(1), a lock that is taken is no error worth a word unless
   * asked: cron jobs with -n stay quiet. */
  if (!conflict || tool->opts->verbose)
    say (error->message);
  *exit_status = exit_code_for_error (error, tool->opts->conflict_exit);
  if (tool->opts->redis_uri != NULL && !conflict)
    *exit_status = redis_exit_code (error);
  /* A descriptor that cannot be locked: flock(1)'s EX_DATAERR. */
  else if (tool->path == NULL && !conflict &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED))
    *exit_status = EX_DATAERR;
  return FALSE;
}

/* Whether to open the lock file again for writing and retry, as flock(1)
 * does: on NFSv4 flock() is emulated with fcntl() locks, and an exclusive
 * one needs the file open for writing. Once, and only when it may be. */
static gboolean
retry_read_write (Tool         *tool,
                  const GError *error)
{
#ifdef G_OS_UNIX
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
      !tool->own_fd || tool->read_write || tool->opts->mode != PORTA_LOCK_MODE_EXCLUSIVE ||
      access (tool->path, R_OK | W_OK) != 0)
    return FALSE;
  close_lock_file (tool);
  tool->read_write = TRUE;
  return TRUE;
#else
  return FALSE;
#endif
}

/* Takes the lock: a non-blocking try on this thread first (the common
 * case needs no main loop, and --verbose must know whether it waits), then
 * a wait on the main loop, which signals can cancel. A lock file deleted
 * or replaced while we waited is opened again. Returns TRUE with the lock
 * held, or FALSE with *exit_status set. */
static gboolean
acquire_lock (Tool *tool,
              int  *exit_status)
{
  const Options *opts = tool->opts;
  gint64 start = g_get_monotonic_time ();
  gboolean waited = FALSE;

  for (guint attempt = 0; ; attempt++)
    {
      g_autoptr(GError) error = NULL;
      int timeout_ms;

      if (tool->path != NULL && !lock_is_open (tool) &&
          !open_lock (tool, exit_status, &error))
        {
          say (error->message);
          return FALSE;
        }

      if (!lock_try (tool, &error))
        {
          timeout_ms = time_left_ms (opts, start);
          if (retry_read_write (tool, error))
            continue;
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) || timeout_ms == 0)
            return report_failure (tool, error, exit_status);
          g_clear_error (&error);

          if (opts->verbose && !waited)
            say_waiting (tool, timeout_ms);
          waited = TRUE;
          lock_wait_async (tool, timeout_ms);
          g_main_loop_run (tool->loop);
          if (!tool->acquired)
            {
              error = g_steal_pointer (&tool->error);
              if (retry_read_write (tool, error))
                continue;
              return report_failure (tool, error, exit_status);
            }
        }

      /* Bounded: a file replaced that often is not a lock file. */
      if (attempt < 100 && lock_file_replaced (tool))
        {
          close_lock_file (tool);
          continue;
        }
      if (opts->verbose)
        say_acquired (tool, waited ? g_get_monotonic_time () - start : -1);
      return TRUE;
    }
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
cannot_run (const char *command,
            int         errsv)
{
  g_autofree char *message = g_strdup_printf (_("Cannot run “%s”: %s"), command,
                                              g_strerror (errsv));

  say (message);
  return errsv == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
}

/* Whether the command inherits the locked descriptor, as under flock(1):
 * not with -o, and not for POSIX locks, which belong to this process and
 * which no other process can inherit. */
static gboolean
command_inherits_lock (const Tool *tool)
{
#ifdef G_OS_UNIX
  return tool->fd >= 0 && !tool->opts->close && tool->opts->backend != PORTA_BACKEND_POSIX;
#else
  return FALSE;
#endif
}

static int
run_command (Tool                *tool,
             const char * const  *argv)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GError) error = NULL;
  int status;

  if (argv[0][0] == '\0')
    return cannot_run (argv[0], ENOENT);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT);
#if defined (PORTA_HAS_REDIS_LOCK) && PORTA_HAS_REDIS_LOCK
  /* The grant's fencing token, for the command to hand to the resource
   * it protects, which refuses tokens older than the newest it saw. */
  if (PORTA_IS_REDIS_LOCK (tool->lockable))
    {
      g_autofree char *token =
        g_strdup_printf ("%" G_GUINT64_FORMAT,
                         porta_redis_lock_get_fencing_token (PORTA_REDIS_LOCK (tool->lockable)));

      g_subprocess_launcher_setenv (launcher, "PORTALOCK_FENCING_TOKEN", token, TRUE);
    }
#endif
#ifdef G_OS_UNIX
  tool->inheritance->lock_fd = command_inherits_lock (tool) ? tool->fd : -1;
  g_subprocess_launcher_set_child_setup (launcher, restore_inheritance,
                                         tool->inheritance, NULL);
#endif
  if (tool->opts->verbose)
    {
      g_autofree char *message = g_strdup_printf (_("running %s"), argv[0]);

      say (message);
    }
  g_atomic_pointer_set (&tool->child, g_subprocess_launcher_spawnv (launcher, argv, &error));
  if (tool->child == NULL)
    {
      say (error != NULL ? error->message : argv[0]);
      return g_error_matches (error, G_SPAWN_ERROR, G_SPAWN_ERROR_NOENT) ? EXIT_NOT_FOUND
                                                                         : EXIT_CANNOT_EXECUTE;
    }
  g_subprocess_wait_async (tool->child, NULL, on_child_exited, tool);
  g_main_loop_run (tool->loop);
  status = child_status (tool);
  /* The command died of a signal that portalock got too (Ctrl-C at the
   * terminal, a service manager's SIGTERM): portalock dies of it as well,
   * as flock(1) would have, so that a shell stops the script. */
  if (g_subprocess_get_if_signaled (tool->child) &&
      (tool->forwarded & (1u << g_subprocess_get_term_sig (tool->child))))
    tool->die_signal = g_subprocess_get_term_sig (tool->child);
  /* The command ran without the lock for a while: whatever it says, its
   * work was not all protected. */
  if (tool->lost)
    {
      say (_("The command was stopped: it no longer held the lock"));
      status = EX_TEMPFAIL;
    }
  g_clear_object (&tool->child);
  return status;
}

/* -F: the command takes portalock's place, and with it the lock (POSIX
 * locks too: they belong to the process, which stays). */
static int
exec_command (Tool                *tool,
              const char * const  *argv)
{
#ifdef G_OS_UNIX
  sigset_t forwarded, old;

  /* A signal that comes from here on is held until the command runs, and
   * then is the command's; one that came before stops it from running. */
  sigemptyset (&forwarded);
  for (guint i = 0; i < G_N_ELEMENTS (forwarded_signals); i++)
    sigaddset (&forwarded, forwarded_signals[i]);
  sigprocmask (SIG_BLOCK, &forwarded, &old);
  dispatch_pending ();
  if (tool->signal_received != 0)
    {
      sigprocmask (SIG_SETMASK, &old, NULL);
      tool->die_signal = tool->signal_received;
      return EXIT_SIGNAL_BASE + tool->signal_received;
    }
  unwatch_signals (tool);
  if (tool->fd >= 0)
    fcntl (tool->fd, F_SETFD, 0);
  sigprocmask (SIG_SETMASK, &original_mask, NULL);
  if (tool->opts->verbose)
    {
      g_autofree char *message = g_strdup_printf (_("running %s"), argv[0]);

      say (message);
    }
  execvp (argv[0], (char * const *) argv);
  return cannot_run (argv[0], errno);
#else
  /* Refused when the options were read. */
  return EX_USAGE;
#endif
}

/* Closes the lock file after the command. When the command inherited it,
 * the lock stays with whatever the command left running that keeps the
 * descriptor open, as under flock(1): it is not unlocked, only closed. */
static void
finish_lock (Tool *tool)
{
  gboolean inherited = command_inherits_lock (tool);

  close_lock_file (tool);
  if (tool->opts->verbose)
    {
      g_autofree char *message =
        inherited ? g_strdup_printf (_("closed “%s”: the lock ends unless a process "
                                       "the command started keeps it open"), tool->display)
                  : g_strdup_printf (_("released the lock on “%s”"), tool->display);

      say (message);
    }
}

static void
tool_init (Tool          *tool,
           const Options *opts,
           Inheritance   *inheritance)
{
  tool->opts = opts;
  tool->loop = g_main_loop_new (NULL, FALSE);
  tool->cancellable = g_cancellable_new ();
  tool->inheritance = inheritance;
  watch_signals (tool);
}

static void
tool_clear (Tool *tool)
{
  unwatch_signals (tool);
  close_lock_file (tool);
  g_clear_error (&tool->error);
  g_clear_object (&tool->cancellable);
  g_clear_pointer (&tool->loop, g_main_loop_unref);
  g_clear_pointer (&tool->display, g_free);
}

/* FILE COMMAND: runs the command while the lock is held. */
static int
run_locked (const Options       *opts,
            const char          *path,
            const char * const  *argv,
            Inheritance         *inheritance)
{
  Tool tool = { .fd = -1 };
  g_autoptr(GError) error = NULL;
  gboolean ready;
  int status = 0;
  int signum;

  /* Opened before anything of GLib's, so that the command finds the lock
   * on the lowest free descriptor, as under flock(1) (usually 3). */
  tool.opts = opts;
  tool.path = path;
  tool.display = g_filename_display_name (path);
  ready = open_lock (&tool, &status, &error);
  tool_init (&tool, opts, inheritance);

  /* flock(1) -u with a file unlocks a descriptor that holds nothing, and
   * runs the command: so does portalock. */
  if (!ready)
    say (error->message);
  else if (!opts->unlock)
    ready = acquire_lock (&tool, &status);

  if (ready)
    {
      /* A signal that came while the lock was being taken still means
       * "stop": do not start the command. */
      dispatch_pending ();
      if (tool.signal_received != 0)
        {
          tool.die_signal = tool.signal_received;
          status = EXIT_SIGNAL_BASE + tool.signal_received;
        }
      else if (opts->no_fork)
        status = exec_command (&tool, argv);
      else
        status = run_command (&tool, argv);
      finish_lock (&tool);
    }

  signum = tool.die_signal;
  tool_clear (&tool);
  if (signum != 0)
    die_of_signal (signum);
  return status;
}

#ifdef G_OS_UNIX
static int lock_descriptor (const Options *opts, int fd, Inheritance *inheritance);
#endif

/* DESCRIPTOR-NUMBER: locks or unlocks a descriptor the shell opened; the
 * lock stays when portalock exits, held by the shell's descriptor. */
static int
run_descriptor (const Options *opts,
                const char    *number,
                Inheritance   *inheritance)
{
  gint64 fd;

  if (!parse_int (number, &fd))
    {
      g_autofree char *message =
        g_strdup_printf (_("“%s” is not a descriptor number, and no command was given"), number);

      return usage_error (message);
    }
#ifdef G_OS_WIN32
  return usage_error (_("Locking a descriptor for the shell is not supported on Windows: "
                        "the lock would end with portalock"));
#else
  if (fd < 0)
    {
      g_autofree char *message = g_strdup_printf (_("Cannot lock descriptor %d: %s"), (int) fd,
                                                  g_strerror (EBADF));

      say (message);
      return EX_DATAERR;
    }
  return lock_descriptor (opts, (int) fd, inheritance);
#endif
}

#ifdef G_OS_UNIX
static int
lock_descriptor (const Options *opts,
                 int            fd,
                 Inheritance   *inheritance)
{
  Tool tool = { 0 };
  int status = 0;
  int signum;

  if (opts->backend == PORTA_BACKEND_POSIX)
    return usage_error (_("The posix backend cannot lock a descriptor for the shell: "
                          "a POSIX lock belongs to the process that takes it, and would "
                          "end with portalock (use flock or ofd)"));

  /* Checked before GLib opens anything, which could take the number of a
   * descriptor the shell failed to open (exec 3>/missing/dir/x). */
  if (fcntl (fd, F_GETFD) < 0)
    {
      g_autofree char *message = g_strdup_printf (_("Cannot lock descriptor %d: %s"), fd,
                                                  g_strerror (EBADF));

      say (message);
      return EX_DATAERR;
    }

  tool.fd = fd;
  tool_init (&tool, opts, inheritance);
  tool.display = g_strdup_printf (_("descriptor %d"), tool.fd);
  if (opts->unlock)
    {
      g_autoptr(GError) error = NULL;

      if (!porta_fd_unlock (tool.fd, opts->backend, &error))
        {
          say (error->message);
          status = exit_code_for_error (error, EX_DATAERR);
        }
    }
  else if (acquire_lock (&tool, &status))
    {
      /* A signal that came as the lock was granted still means "stop",
       * and a wait given up never leaves the lock held. */
      dispatch_pending ();
      if (tool.signal_received != 0)
        {
          porta_fd_unlock (tool.fd, opts->backend, NULL);
          tool.die_signal = tool.signal_received;
          status = EXIT_SIGNAL_BASE + tool.signal_received;
        }
    }

  /* The shell's descriptor: neither closed nor unlocked here. */
  tool.fd = -1;
  signum = tool.die_signal;
  tool_clear (&tool);
  if (signum != 0)
    die_of_signal (signum);
  return status;
}
#endif

int
main (int    argc,
      char **argv)
{
  Inheritance inheritance;
  g_autoptr(GArray) inherited_fds = NULL;
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
  const char *shell_argv[] = { NULL, NULL, NULL, NULL };
  const char * const *command;
  char **args;
  int n_args;
  int first = 1;
  int status;

  /* Before anything of ours is open or any handler installed */
  find_inheritance (&inheritance);
  inherited_fds = inheritance.fds;
#ifdef G_OS_UNIX
  sigprocmask (SIG_SETMASK, NULL, &original_mask);
  /* An ignored SIGCHLD (inherited from the caller) would have the kernel
   * reap the command before its status is read: flock(1) resets it too,
   * for itself and the command. */
  signal (SIGCHLD, SIG_DFL);
#endif

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  g_set_prgname ("portalock");

  status = parse_options (argc, argv, &opts, &first);
  if (status >= 0)
    return status;
  args = argv + first;
  n_args = argc - first;

#ifdef G_OS_WIN32
  if (opts.no_fork)
    return usage_error (_("--no-fork is not supported on Windows"));
  {
    const char *comspec = g_getenv ("COMSPEC");

    shell_argv[0] = comspec != NULL ? comspec : "cmd.exe";
    shell_argv[1] = "/c";
  }
#else
  {
    const char *shell = g_getenv ("SHELL");

    shell_argv[0] = shell != NULL && *shell != '\0' ? shell : "/bin/sh";
    shell_argv[1] = "-c";
  }
#endif

  if (n_args < 1)
    return usage_error (_("No lock file given"));

  if (opts.status)
    {
      if (n_args > 1 || opts.shell_command != NULL)
        return usage_error (_("--status takes a lock file and no command"));
      return run_status (&opts, args[0]);
    }

  if (opts.shell_command != NULL)
    {
      if (n_args > 1)
        return usage_error (_("-c takes one shell command; put its arguments into it"));
      shell_argv[2] = opts.shell_command;
      command = shell_argv;
    }
  else if (n_args > 1 && (g_str_equal (args[1], "-c") || g_str_equal (args[1], "--command")))
    {
      if (n_args != 3)
        {
          g_autofree char *message =
            g_strdup_printf (_("%s takes exactly one shell command"), args[1]);

          return usage_error (message);
        }
      shell_argv[2] = args[2];
      command = shell_argv;
    }
  else if (n_args > 1)
    {
      int command_at = g_str_equal (args[1], "--") ? 2 : 1;

      if (n_args <= command_at)
        return usage_error (_("No command given"));
      command = (const char * const *) &args[command_at];
    }
  else if (opts.redis_uri != NULL)
    return usage_error (_("--redis takes a lock name and a command"));
  else
    return run_descriptor (&opts, args[0], &inheritance);

  return run_locked (&opts, args[0], command, &inheritance);
}
