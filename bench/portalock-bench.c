/* portalock-bench.c: portalock against the kernel, side by side in one run
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Prints one table: each figure, the baseline measured in the same run, and
 * their ratio. The holders of contended locks are forked children that only
 * make system calls, so both sides of every hand-off are measured with the
 * same CLOCK_MONOTONIC.
 *
 * Each figure with a target gets PASS or MISS: a ratio to its baseline
 * ("<= 2x") where it has one, else a bound in its own unit ("<= 50"),
 * judged on the median over the runs (9 by default, --runs N). The
 * program exits 1 if a figure misses its target.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <portalock/portalock.h>

static char *workdir;
static char *self_exe;

static gint64
now_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gint64) ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static gint64
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp_i64 (const void *a, const void *b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static double
percentile (gint64 *v, guint n, double p)
{
  qsort (v, n, sizeof *v, cmp_i64);
  return (double) v[MIN (n - 1, (guint) (p * n))];
}

/* Each figure is recorded once per run; the table shows the median of
 * the runs, for the figure and its baseline alike, the median of their
 * ratios run by run, and the range of the figure. */
typedef struct
{
  char   *figure;
  char   *unit;
  char   *baseline_name;
  char   *target;
  GArray *values;      /* double */
  GArray *baselines;   /* double, empty without a baseline */
} Row;

/* A target is "<= 1.5x" or ">= 0.85x", a ratio of the medians of the
 * figure and its baseline; or, for a figure that has no baseline to
 * compare with (the CPU a wait uses against the kernel's nothing, a
 * count), "<= 2000" or ">= 1000" in the figure's unit; or "" for a figure
 * that is only shown. */
typedef enum { VERDICT_NONE, VERDICT_PASS, VERDICT_MISS } Verdict;

static Verdict
judge (const char *target,
       double      value,
       double      ratio)
{
  gboolean at_most;
  const char *p = target;
  char *end;
  double limit, x;

  if (*p == '\0')
    return VERDICT_NONE;
  if (g_str_has_prefix (p, "<="))
    at_most = TRUE;
  else if (g_str_has_prefix (p, ">="))
    at_most = FALSE;
  else
    g_error ("bad target “%s”", target);
  limit = g_ascii_strtod (p + 2, &end);
  if (end == p + 2)
    g_error ("bad target “%s”", target);
  if (*end == 'x')
    {
      if (ratio <= 0)
        return VERDICT_MISS;
      x = ratio;
    }
  else
    x = value;
  return (at_most ? x <= limit : x >= limit) ? VERDICT_PASS : VERDICT_MISS;
}

static GPtrArray *rows;

static void
row_free (gpointer data)
{
  Row *r = data;

  g_free (r->figure);
  g_free (r->unit);
  g_free (r->baseline_name);
  g_free (r->target);
  g_array_unref (r->values);
  g_array_unref (r->baselines);
  g_free (r);
}

static void
row (const char *figure, double value, const char *unit, const char *baseline_name,
     double baseline, const char *target)
{
  Row *r = NULL;

  for (guint i = 0; i < rows->len && r == NULL; i++)
    {
      Row *candidate = rows->pdata[i];

      if (g_str_equal (candidate->figure, figure) &&
          g_str_equal (candidate->baseline_name, baseline_name))
        r = candidate;
    }
  if (r == NULL)
    {
      r = g_new0 (Row, 1);
      r->figure = g_strdup (figure);
      r->unit = g_strdup (unit);
      r->baseline_name = g_strdup (baseline_name);
      r->target = g_strdup (target);
      r->values = g_array_new (FALSE, FALSE, sizeof (double));
      r->baselines = g_array_new (FALSE, FALSE, sizeof (double));
      g_ptr_array_add (rows, r);
    }
  g_array_append_val (r->values, value);
  if (baseline > 0)
    g_array_append_val (r->baselines, baseline);
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (GArray *values)
{
  guint n = values->len;

  g_array_sort (values, compare_doubles);
  if (n % 2 == 0)
    return (g_array_index (values, double, n / 2 - 1) + g_array_index (values, double, n / 2)) / 2;
  return g_array_index (values, double, n / 2);
}

/* Prints the table; returns the number of rows whose median misses its
 * target. A ratio is the median of each round's figure over the same
 * round's baseline, so that a slow moment of the machine weighs on both
 * sides of it. */
static int
print_rows (int runs)
{
  int misses = 0;

  g_print ("%-44s %12s %-5s %-24s %12s %7s  %-10s %-5s %s\n", "figure",
           runs > 1 ? "median" : "portalock", "", "baseline", "", "ratio", "target", "",
           runs > 1 ? "portalock's range" : "");
  for (guint i = 0; i < rows->len; i++)
    {
      Row *r = rows->pdata[i];
      g_autoptr(GArray) ratios = g_array_new (FALSE, FALSE, sizeof (double));
      double value, baseline, ratio = 0;
      Verdict verdict;
      const char *verdict_text;
      g_autofree char *range = NULL;

      if (r->baselines->len == r->values->len)
        {
          for (guint k = 0; k < r->values->len; k++)
            {
              double q = g_array_index (r->values, double, k) /
                         g_array_index (r->baselines, double, k);

              g_array_append_val (ratios, q);
            }
          ratio = median (ratios);
        }
      value = median (r->values);
      baseline = r->baselines->len > 0 ? median (r->baselines) : 0;
      if (ratio == 0 && baseline > 0)
        ratio = value / baseline;
      verdict = judge (r->target, value, ratio);
      verdict_text = verdict == VERDICT_PASS ? "PASS" : verdict == VERDICT_MISS ? "MISS" : "";

      if (verdict == VERDICT_MISS)
        misses++;
      if (r->values->len > 1)
        range = g_strdup_printf ("%.1f .. %.1f", g_array_index (r->values, double, 0),
                                 g_array_index (r->values, double, r->values->len - 1));
      if (r->baselines->len > 0)
        g_print ("%-44s %12.1f %-5s %-24s %12.1f %6.2fx  %-10s %-5s %s\n",
                 r->figure, value, r->unit, r->baseline_name, baseline,
                 ratio, r->target, verdict_text, range ? range : "");
      else
        g_print ("%-44s %12.1f %-5s %-24s %12s %7s  %-10s %-5s %s\n",
                 r->figure, value, r->unit, r->baseline_name, "-", "", r->target,
                 verdict_text, range ? range : "");
    }
  return misses;
}

/* 1. Uncontended acquire + release */

static void
bench_uncontended (void)
{
  const int n = 200000;
  g_autofree char *path = g_build_filename (workdir, "uncontended.lock", NULL);
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  double raw_ns, porta_ns;
  gint64 t;

  close (open (path, O_RDWR | O_CREAT, 0644));

  for (int round = 0; round < 2; round++)   /* the first round warms up */
    {
      t = now_ns ();
      for (int i = 0; i < n; i++)
        {
          int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

          flock (fd, LOCK_EX | LOCK_NB);
          close (fd);
        }
      raw_ns = (double) (now_ns () - t) / n;

      t = now_ns ();
      for (int i = 0; i < n; i++)
        {
          if (!porta_lock_acquire (lock, 0, NULL, NULL))
            g_error ("uncontended acquire failed");
          porta_lock_release (lock, NULL);
        }
      porta_ns = (double) (now_ns () - t) / n;
    }

  row ("1. uncontended acquire+release", porta_ns, "ns", "open+flock+close", raw_ns, "<= 2x");
}

/* 2. Hand-off latency. A forked holder takes the lock, waits until the
 * waiter says it is about to block, gives it 3 ms to get into the kernel,
 * stamps the time and releases; the waiter stamps the time it holds it.
 * Both stamps are in nanoseconds: the figures are a few microseconds, and
 * whole microseconds would make a ratio of 5 to 4 out of 4.6 to 4.4. The
 * "after the wake" rows time the sync waiters again from their flock()
 * returning, which leaves out the kernel's wake-up and its noise: what is
 * left is portalock's own code, against what its floor does then. */

typedef struct
{
  volatile gint64 released_at;   /* ns */
} Shared;

/* When the last flock() of this process returned (ns), while
 * stamp_flock is set: the time a waiter takes from there to holding the
 * lock is what it does after the kernel handed it over, apart from the
 * wake-up itself, whose noise hides a few hundred nanoseconds. */
static gboolean stamp_flock;
static gint64 flock_returned_at;

/* The bench's own flock(2), which the library's calls reach too: a symbol
 * of the executable comes before libc's. */
int
flock (int fd,
       int operation)
{
  int r = syscall (SYS_flock, fd, operation);

  if (stamp_flock)
    flock_returned_at = now_ns ();
  return r;
}

/* The kinds of waiter take turns, HANDOFF_BLOCK hand-offs each, so that a
 * slow moment of the machine falls on all of them alike. A kind's first
 * hand-off after the others' finds its code out of the caches (on this
 * VM, a waiter's first after 10 ms of others is 3-5 us slower), and the
 * hand-offs of a block are those of a waiter that keeps contending. The
 * two floors are bare waiters doing what any correct lock must do after
 * its wait, so that the distance to them is what portalock adds: CHECKED
 * makes sure the file it waited for was not deleted meanwhile (one
 * fstat()), TIMED also arms, before, and disarms, after, a timer that
 * would have sent this thread a signal at the wait's deadline. */
typedef enum
{
  WAIT_RAW,
  WAIT_RAW_CHECKED,
  WAIT_RAW_TIMED,
  WAIT_SYNC,
  WAIT_SYNC_FOREVER,
  WAIT_ASYNC,
  N_WAIT_KINDS
} WaitKind;

static pid_t
fork_holder (const char *path, int rounds, int *to_child, int *from_child, Shared *sh,
             int hold_ms)
{
  int down[2], up[2];
  pid_t pid;

  if (pipe (down) != 0 || pipe (up) != 0)
    g_error ("pipe: %s", g_strerror (errno));
  pid = fork ();
  if (pid == 0)
    {
      char c;

      close (down[1]);
      close (up[0]);
      for (int i = 0; i < rounds; i++)
        {
          int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
          struct timespec ts = { hold_ms / 1000, (hold_ms % 1000) * 1000000L };

          flock (fd, LOCK_EX);
          if (write (up[1], "H", 1) != 1 || read (down[0], &c, 1) != 1)
            _exit (1);
          nanosleep (&ts, NULL);
          sh->released_at = now_ns ();
          flock (fd, LOCK_UN);
          close (fd);
          if (read (down[0], &c, 1) != 1)
            _exit (1);
        }
      _exit (0);
    }
  close (down[0]);
  close (up[1]);
  *to_child = down[1];
  *from_child = up[0];
  return pid;
}

static void
end_holder (pid_t pid, int to_child, int from_child)
{
  int status;

  close (to_child);
  close (from_child);
  waitpid (pid, &status, 0);
}

typedef struct
{
  GMainLoop *loop;
  gint64     done_at;
  GError    *error;
} AsyncWait;

static void
on_acquired (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncWait *w = user_data;

  w->done_at = now_us ();
  porta_lock_acquire_finish (PORTA_LOCK (source), result, &w->error);
  g_main_loop_quit (w->loop);
}

static void
on_handed_off (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncWait *w = user_data;

  w->done_at = now_ns ();
  porta_lock_acquire_finish (PORTA_LOCK (source), result, &w->error);
  g_main_loop_quit (w->loop);
}

#define HANDOFF_BLOCK 25

/* One hand-off to a waiter of @kind; returns when it got the lock (ns),
 * and sets @after to how long that was after its flock() returned (ns),
 * or 0 for the async waiter, whose flock() returns in another thread. */
static gint64
handoff_once (WaitKind kind, const char *path, PortaLock *lock, GMainLoop *loop,
              timer_t timer, gint64 *after)
{
  gint64 got = 0;

  *after = 0;

  if (kind == WAIT_RAW || kind == WAIT_RAW_CHECKED || kind == WAIT_RAW_TIMED)
    {
      int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      struct itimerspec its = { { 0, 0 }, { 10, 0 } };
      struct stat st;

      if (kind == WAIT_RAW_TIMED)
        timer_settime (timer, 0, &its, NULL);
      flock (fd, LOCK_EX);
      if (kind == WAIT_RAW_TIMED)
        {
          memset (&its, 0, sizeof its);
          timer_settime (timer, 0, &its, NULL);
        }
      if (kind != WAIT_RAW && (fstat (fd, &st) != 0 || st.st_nlink == 0))
        g_error ("the lock file went away");
      got = now_ns ();
      *after = got - flock_returned_at;
      close (fd);
    }
  else if (kind == WAIT_SYNC || kind == WAIT_SYNC_FOREVER)
    {
      g_autoptr(GError) error = NULL;

      if (!porta_lock_acquire (lock, kind == WAIT_SYNC ? 10000 : -1, NULL, &error))
        g_error ("%s", error->message);
      got = now_ns ();
      *after = got - flock_returned_at;
      porta_lock_release (lock, NULL);
    }
  else
    {
      AsyncWait w = { loop, 0, NULL };

      porta_lock_acquire_async (lock, 10000, G_PRIORITY_DEFAULT, NULL, on_handed_off, &w);
      g_main_loop_run (loop);
      if (w.error != NULL)
        g_error ("%s", w.error->message);
      got = w.done_at;
      porta_lock_release (lock, NULL);
    }
  return got;
}

/* Fills lat[kind][i] (ns) for @rounds hand-offs of each kind, and
 * after[kind][i] (ns) with how long after its flock() returned the
 * waiter held the lock. */
static void
handoff (int rounds, gint64 **lat, gint64 **after)
{
  g_autofree char *path = g_build_filename (workdir, "handoff.lock", NULL);
  Shared *sh = mmap (NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  struct sigevent sev = { 0 };
  timer_t timer;
  int to_child, from_child;
  pid_t pid = fork_holder (path, rounds * N_WAIT_KINDS, &to_child, &from_child, sh, 3);

  /* SIGURG, which is ignored: the timer never fires, but it must be one
   * that would signal (the kernel does not start a SIGEV_NONE timer). */
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGURG;
  sev._sigev_un._tid = gettid ();
  if (timer_create (CLOCK_MONOTONIC, &sev, &timer) != 0)
    g_error ("timer_create: %s", g_strerror (errno));
  stamp_flock = TRUE;   /* after the fork: not in the holder */
  for (int i = 0; i < rounds * N_WAIT_KINDS; i++)
    {
      int block = i / HANDOFF_BLOCK;
      WaitKind kind = block % N_WAIT_KINDS;
      int n = (block / N_WAIT_KINDS) * HANDOFF_BLOCK + i % HANDOFF_BLOCK;
      gint64 got;
      char c;

      if (read (from_child, &c, 1) != 1 || write (to_child, "W", 1) != 1)
        g_error ("holder died");
      got = handoff_once (kind, path, lock, loop, timer, &after[kind][n]);
      lat[kind][n] = got - sh->released_at;
      if (write (to_child, "D", 1) != 1)
        g_error ("holder died");
    }
  stamp_flock = FALSE;
  timer_delete (timer);
  end_holder (pid, to_child, from_child);
  munmap (sh, sizeof *sh);
}

/* The rows of figure 2, each against the bare waiter's same percentile;
 * the floors have no target. */
static const struct
{
  const char *figure;
  WaitKind    kind;
  double      q;
  const char *target;
} handoff_rows[] = {
  { "2. hand-off, sync acquire(timeout) p50", WAIT_SYNC, 0.50, "<= 1.25x" },
  { "2. hand-off, sync acquire(timeout) p99", WAIT_SYNC, 0.99, "<= 2x" },
  { "2. hand-off, sync acquire(-1) p50", WAIT_SYNC_FOREVER, 0.50, "<= 1.5x" },
  { "2. hand-off, async on GMainLoop p50", WAIT_ASYNC, 0.50, "<= 10x" },
  { "2. hand-off, async on GMainLoop p99", WAIT_ASYNC, 0.99, "<= 3x" },
  { "2. floor: flock + fstat p50", WAIT_RAW_CHECKED, 0.50, "" },
  { "2. floor: timer + flock + fstat p50", WAIT_RAW_TIMED, 0.50, "" },
};

/* What a sync waiter does after its flock() returned, against what its
 * floor does then: the part of a hand-off that is portalock's own code. */
static const struct
{
  const char *figure;
  WaitKind    kind;
  WaitKind    floor;
  const char *floor_name;
} after_wake_rows[] = {
  { "2. after the wake, acquire(timeout) p50", WAIT_SYNC, WAIT_RAW_TIMED, "floor: timer + fstat p50" },
  { "2. after the wake, acquire(-1) p50", WAIT_SYNC_FOREVER, WAIT_RAW_CHECKED, "floor: fstat p50" },
};

static void
bench_handoff (void)
{
  const int rounds = 300;   /* a multiple of HANDOFF_BLOCK */
  gint64 *lat[N_WAIT_KINDS];
  gint64 *after[N_WAIT_KINDS];

  for (int k = 0; k < N_WAIT_KINDS; k++)
    {
      lat[k] = g_new (gint64, rounds);
      after[k] = g_new (gint64, rounds);
    }
  handoff (rounds, lat, after);
  for (guint i = 0; i < G_N_ELEMENTS (handoff_rows); i++)
    {
      double q = handoff_rows[i].q;

      row (handoff_rows[i].figure, percentile (lat[handoff_rows[i].kind], rounds, q) / 1000.0,
           "us", q == 0.50 ? "flock(2) waiter p50" : "flock(2) waiter p99",
           percentile (lat[WAIT_RAW], rounds, q) / 1000.0, handoff_rows[i].target);
    }
  for (guint i = 0; i < G_N_ELEMENTS (after_wake_rows); i++)
    row (after_wake_rows[i].figure, percentile (after[after_wake_rows[i].kind], rounds, 0.50),
         "ns", after_wake_rows[i].floor_name,
         percentile (after[after_wake_rows[i].floor], rounds, 0.50), "");
  for (int k = 0; k < N_WAIT_KINDS; k++)
    {
      g_free (lat[k]);
      g_free (after[k]);
    }
}

/* 3. CPU used while waiting 2 s for a held lock */

static double
cpu_us (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}

static void
bench_cpu (void)
{
  g_autofree char *path = g_build_filename (workdir, "cpu.lock", NULL);
  Shared *sh = mmap (NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  int to_child, from_child;
  pid_t pid = fork_holder (path, 2, &to_child, &from_child, sh, 2000);
  double before, sync_cpu, async_cpu;
  AsyncWait w = { loop, 0, NULL };
  char c;

  if (read (from_child, &c, 1) != 1 || write (to_child, "W", 1) != 1)
    g_error ("holder died");
  before = cpu_us ();
  if (!porta_lock_acquire (lock, 10000, NULL, NULL))
    g_error ("acquire failed");
  sync_cpu = cpu_us () - before;
  porta_lock_release (lock, NULL);
  if (write (to_child, "D", 1) != 1)
    g_error ("holder died");

  if (read (from_child, &c, 1) != 1 || write (to_child, "W", 1) != 1)
    g_error ("holder died");
  before = cpu_us ();
  porta_lock_acquire_async (lock, 10000, G_PRIORITY_DEFAULT, NULL, on_acquired, &w);
  g_main_loop_run (loop);
  async_cpu = cpu_us () - before;
  porta_lock_release (lock, NULL);
  if (write (to_child, "D", 1) != 1)
    g_error ("holder died");
  end_holder (pid, to_child, from_child);
  munmap (sh, sizeof *sh);

  row ("3. CPU while waiting 2 s, sync", sync_cpu, "us", "", 0, "<= 2000");
  row ("3. CPU while waiting 2 s, async", async_cpu, "us", "", 0, "<= 2000");
}

/* 4. Timeout precision and cancellation latency */

typedef struct
{
  GCancellable *cancellable;
  gint64        delay_us;
  gint64        cancelled_at;
} Canceller;

static gpointer
cancel_later (gpointer data)
{
  Canceller *c = data;

  g_usleep (c->delay_us);
  c->cancelled_at = now_us ();
  g_cancellable_cancel (c->cancellable);
  return NULL;
}

/* Baselines for figure 4: what the machine does with the same deadline or
 * the same cancellation when nothing but the kernel or GLib is involved. */

static gint64
deadline_timespec_sleep (gint64 deadline_us)
{
  struct timespec ts = { deadline_us / G_USEC_PER_SEC, (deadline_us % G_USEC_PER_SEC) * 1000 };

  while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
  return now_us () - deadline_us;
}

static gboolean
on_glib_timeout (gpointer user_data)
{
  AsyncWait *w = user_data;

  w->done_at = now_us ();
  g_main_loop_quit (w->loop);
  return G_SOURCE_REMOVE;
}

static gboolean
on_cancellable_source (GCancellable *cancellable, gpointer user_data)
{
  return on_glib_timeout (user_data);
}

/* A thread blocked in poll() on a GCancellable's descriptor: how soon
 * g_cancellable_cancel() from another thread wakes it. */
static gint64
cancel_poll_latency (Canceller *canceller)
{
  GPollFD pfd;
  GThread *thread;
  gint64 woken;

  if (!g_cancellable_make_pollfd (canceller->cancellable, &pfd))
    g_error ("no cancellable descriptor");
  thread = g_thread_new ("canceller", cancel_later, canceller);
  while (g_poll (&pfd, 1, -1) != 1)
    ;
  woken = now_us ();
  g_thread_join (thread);
  g_cancellable_release_fd (canceller->cancellable);
  return woken - canceller->cancelled_at;
}

/* The floor of an async cancellation that, like portalock's, makes sure
 * the wait has left the kernel before its callback runs: a thread blocked
 * in flock(2), which the canceller interrupts with a signal (again every
 * 0.2 ms, in case the first came before the thread blocked), and which
 * then wakes the main loop for the callback. */
typedef struct
{
  int            fd;
  GMainContext  *context;
  AsyncWait     *w;
  gint64         delay_us;
  gint64         cancelled_at;
  pthread_t      thread;
  int            started;  /* atomic */
  int            done;     /* atomic */
} FloorWait;

#define FLOOR_SIGNAL (SIGRTMIN + 2)

static void
on_floor_signal (int signo)
{
}

static gboolean
on_floor_done (gpointer user_data)
{
  return on_glib_timeout (user_data);
}

static gpointer
floor_waiter (gpointer data)
{
  FloorWait *f = data;

  f->thread = pthread_self ();
  g_atomic_int_set (&f->started, 1);
  if (flock (f->fd, LOCK_EX) != -1 || errno != EINTR)
    g_error ("the floor waiter's flock() was not interrupted: %s", g_strerror (errno));
  g_atomic_int_set (&f->done, 1);
  g_main_context_invoke (f->context, on_floor_done, f->w);
  return NULL;
}

static gpointer
floor_cancel_later (gpointer data)
{
  FloorWait *f = data;

  while (!g_atomic_int_get (&f->started))
    g_usleep (100);
  g_usleep (f->delay_us);
  f->cancelled_at = now_us ();
  while (!g_atomic_int_get (&f->done))
    {
      pthread_kill (f->thread, FLOOR_SIGNAL);
      g_usleep (200);
    }
  return NULL;
}

static gint64
cancel_floor_latency (const char *path, AsyncWait *w, gint64 delay_us)
{
  FloorWait f = { open (path, O_RDWR | O_CLOEXEC), g_main_context_default (), w, delay_us, };
  GThread *waiter, *canceller;

  if (f.fd < 0)
    g_error ("open %s: %s", path, g_strerror (errno));
  waiter = g_thread_new ("floor-waiter", floor_waiter, &f);
  canceller = g_thread_new ("canceller", floor_cancel_later, &f);
  g_main_loop_run (w->loop);
  g_thread_join (canceller);
  g_thread_join (waiter);
  close (f.fd);
  return w->done_at - f.cancelled_at;
}

/* 300 rounds, so that a p99 is the third-worst sample of a run, not the
 * worst (which one late wake-up of the VM decides). */
static void
bench_timeouts (void)
{
  const int rounds = 300;
  const int timeout_ms = 20;
  g_autofree char *path = g_build_filename (workdir, "timeout.lock", NULL);
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaLock) holder = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autofree gint64 *sync_late = g_new (gint64, rounds);
  g_autofree gint64 *async_late = g_new (gint64, rounds);
  g_autofree gint64 *sync_cancel = g_new (gint64, rounds);
  g_autofree gint64 *async_cancel = g_new (gint64, rounds);
  g_autofree gint64 *sleep_late = g_new (gint64, rounds);
  g_autofree gint64 *source_late = g_new (gint64, rounds);
  g_autofree gint64 *poll_cancel = g_new (gint64, rounds);
  g_autofree gint64 *source_cancel = g_new (gint64, rounds);
  g_autofree gint64 *floor_cancel = g_new (gint64, rounds);
  struct sigaction sa = { 0 };

  sa.sa_handler = on_floor_signal;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = 0;  /* no SA_RESTART: flock() must return EINTR */
  sigaction (FLOOR_SIGNAL, &sa, NULL);

  /* Another PortaLock on the same file excludes this one exactly as
   * another process would. */
  if (!porta_lock_acquire (holder, 0, NULL, NULL))
    g_error ("could not take the holder lock");

  for (int i = 0; i < rounds; i++)
    {
      gint64 start = now_us ();
      AsyncWait w = { loop, 0, NULL };
      g_autoptr(GCancellable) c1 = g_cancellable_new ();
      g_autoptr(GCancellable) c2 = g_cancellable_new ();
      g_autoptr(GCancellable) c3 = g_cancellable_new ();
      g_autoptr(GCancellable) c4 = g_cancellable_new ();
      g_autoptr(GSource) cancel_source = g_cancellable_source_new (c4);
      Canceller canceller = { c1, 5000 + g_random_int_range (0, 5000), 0 };
      GThread *thread;

      if (porta_lock_acquire (lock, timeout_ms, NULL, NULL))
        g_error ("acquired a held lock");
      sync_late[i] = now_us () - (start + timeout_ms * 1000);
      sleep_late[i] = deadline_timespec_sleep (now_us () + timeout_ms * 1000);

      start = now_us ();
      porta_lock_acquire_async (lock, timeout_ms, G_PRIORITY_DEFAULT, NULL, on_acquired, &w);
      g_main_loop_run (loop);
      g_clear_error (&w.error);
      async_late[i] = w.done_at - (start + timeout_ms * 1000);
      start = now_us ();
      g_timeout_add (timeout_ms, on_glib_timeout, &w);
      g_main_loop_run (loop);
      source_late[i] = w.done_at - (start + timeout_ms * 1000);

      thread = g_thread_new ("canceller", cancel_later, &canceller);
      if (porta_lock_acquire (lock, -1, c1, NULL))
        g_error ("acquired a held lock");
      sync_cancel[i] = now_us () - canceller.cancelled_at;
      g_thread_join (thread);
      canceller.cancellable = c3;
      poll_cancel[i] = cancel_poll_latency (&canceller);

      canceller.cancellable = c2;
      thread = g_thread_new ("canceller", cancel_later, &canceller);
      porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, c2, on_acquired, &w);
      g_main_loop_run (loop);
      g_clear_error (&w.error);
      async_cancel[i] = w.done_at - canceller.cancelled_at;
      g_thread_join (thread);

      canceller.cancellable = c4;
      g_source_set_callback (cancel_source, G_SOURCE_FUNC (on_cancellable_source), &w, NULL);
      g_source_attach (cancel_source, NULL);
      thread = g_thread_new ("canceller", cancel_later, &canceller);
      g_main_loop_run (loop);
      source_cancel[i] = w.done_at - canceller.cancelled_at;
      g_thread_join (thread);
      g_source_destroy (cancel_source);

      floor_cancel[i] = cancel_floor_latency (path, &w, canceller.delay_us);
    }

  row ("4. timeout lateness, sync p50", percentile (sync_late, rounds, 0.50), "us",
       "clock_nanosleep p50", percentile (sleep_late, rounds, 0.50), "<= 1.5x");
  row ("4. timeout lateness, sync p99", percentile (sync_late, rounds, 0.99), "us",
       "clock_nanosleep p99", percentile (sleep_late, rounds, 0.99), "<= 1.5x");
  row ("4. timeout lateness, async p50", percentile (async_late, rounds, 0.50), "us",
       "g_timeout_add p50", percentile (source_late, rounds, 0.50), "<= 2x");
  row ("4. timeout lateness, async p99", percentile (async_late, rounds, 0.99), "us",
       "g_timeout_add p99", percentile (source_late, rounds, 0.99), "<= 1.5x");
  row ("4. cancellation latency, sync p50", percentile (sync_cancel, rounds, 0.50), "us",
       "poll() on its fd p50", percentile (poll_cancel, rounds, 0.50), "<= 3x");
  row ("4. cancellation latency, sync p99", percentile (sync_cancel, rounds, 0.99), "us",
       "poll() on its fd p99", percentile (poll_cancel, rounds, 0.99), "<= 2x");
  row ("4. cancellation latency, async p50", percentile (async_cancel, rounds, 0.50), "us",
       "GCancellable source p50", percentile (source_cancel, rounds, 0.50), "<= 3x");
  row ("4. cancellation latency, async p99", percentile (async_cancel, rounds, 0.99), "us",
       "GCancellable source p99", percentile (source_cancel, rounds, 0.99), "<= 2x");
  row ("4. floor: flock thread interrupted p50", percentile (floor_cancel, rounds, 0.50), "us",
       "GCancellable source p50", percentile (source_cancel, rounds, 0.50), "");
  row ("4. floor: flock thread interrupted p99", percentile (floor_cancel, rounds, 0.99), "us",
       "GCancellable source p99", percentile (source_cancel, rounds, 0.99), "");
}

/* 5. Throughput under contention: 8 processes x 2000 lock/unlock */

/* A worker is started, gets ready (a PortaLock is made before, so that
 * neither program start nor GType setup is timed), says so with a byte on
 * stdout, and runs when a byte arrives on stdin. */
static void
worker_ready (void)
{
  char c;

  if (write (STDOUT_FILENO, "r", 1) != 1 || read (STDIN_FILENO, &c, 1) != 1)
    exit (1);
}

static int
worker_main (const char *kind, const char *path, int n)
{
  if (g_str_equal (kind, "raw"))
    {
      int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

      worker_ready ();
      for (int i = 0; i < n; i++)
        {
          flock (fd, LOCK_EX);
          flock (fd, LOCK_UN);
        }
      close (fd);
    }
  else if (g_str_equal (kind, "raw-open"))
    {
      worker_ready ();
      for (int i = 0; i < n; i++)
        {
          int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

          flock (fd, LOCK_EX);
          close (fd);
        }
    }
  else if (g_str_equal (kind, "raw-checked"))
    {
      /* the floor: what a correct lock adds, one fstat() once the lock is
       * held (a deleted lock file guards nothing) and an explicit unlock
       * (a forked child's copy of the descriptor must not keep it), with
       * portalock's first try that does not block, which under this
       * contention is faster than blocking at once */
      worker_ready ();
      for (int i = 0; i < n; i++)
        {
          int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
          struct stat st;

          if (flock (fd, LOCK_EX | LOCK_NB) != 0)
            flock (fd, LOCK_EX);
          if (fstat (fd, &st) != 0 || st.st_nlink == 0)
            return 1;
          flock (fd, LOCK_UN);
          close (fd);
        }
    }
  else
    {
      g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
      int timeout = g_str_equal (kind, "porta-timeout") ? 10000 : -1;

      worker_ready ();
      for (int i = 0; i < n; i++)
        {
          g_autoptr(GError) error = NULL;

          if (!porta_lock_acquire (lock, timeout, NULL, &error))
            {
              g_printerr ("%s\n", error->message);
              return 1;
            }
          porta_lock_release (lock, NULL);
        }
    }
  return 0;
}

/* Operations per second of @procs workers, from the moment all of them
 * are told to start to the moment the last one has exited. */
static double
run_workers (const char *kind, int procs, int n)
{
  g_autofree char *path = g_build_filename (workdir, "throughput.lock", NULL);
  g_autofree char *count = g_strdup_printf ("%d", n);
  g_autoptr(GPtrArray) children = g_ptr_array_new_with_free_func (g_object_unref);
  gint64 start;

  for (int i = 0; i < procs; i++)
    {
      g_autoptr(GError) error = NULL;
      GSubprocess *p = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                         G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                                         &error, self_exe,
                                         "--worker", kind, path, count, NULL);
      char c;

      if (p == NULL)
        g_error ("%s", error->message);
      g_ptr_array_add (children, p);
      if (g_input_stream_read (g_subprocess_get_stdout_pipe (p), &c, 1, NULL, &error) != 1)
        g_error ("a %s worker did not start", kind);
    }
  start = now_us ();
  for (guint i = 0; i < children->len; i++)
    if (!g_output_stream_write_all (g_subprocess_get_stdin_pipe (children->pdata[i]),
                                    "g", 1, NULL, NULL, NULL))
      g_error ("a %s worker died", kind);
  for (guint i = 0; i < children->len; i++)
    if (!g_subprocess_wait_check (children->pdata[i], NULL, NULL))
      g_error ("a %s worker failed", kind);
  return (double) procs * n / ((now_us () - start) / 1e6);
}

/* Each kind runs THROUGHPUT_ROUNDS times, taking turns with the others so
 * that a slow moment of the machine does not fall on one of them only;
 * every round is a row value of its own, and the table takes the median. */
#define THROUGHPUT_ROUNDS 3

static void
bench_throughput (void)
{
  for (int r = 0; r < THROUGHPUT_ROUNDS; r++)
    {
      double raw = run_workers ("raw", 8, 2000);
      double raw_open = run_workers ("raw-open", 8, 2000);
      double porta = run_workers ("porta", 8, 2000);
      double porta_timeout = run_workers ("porta-timeout", 8, 2000);
      double raw_checked = run_workers ("raw-checked", 8, 2000);

      /* Two baselines: the open+flock+close per operation that lock
       * libraries (portalocker, filelock, portalock) do, so that no
       * descriptor outlives a release, and flock(2) on one descriptor kept
       * open, which does not check either that the file it locks is still
       * the one at the path. */
      row ("5. 8 procs x 2000, acquire(-1)", porta, "op/s", "open+flock+close", raw_open, ">= 0.85x");
      row ("5. 8 procs x 2000, acquire(10 s)", porta_timeout, "op/s", "open+flock+close", raw_open, ">= 0.85x");
      row ("5. 8 procs x 2000, acquire(-1)", porta, "op/s", "flock/unlock, fd kept", raw, "");
      row ("5. floor: open+flock+fstat+unlock+close", raw_checked, "op/s", "open+flock+close", raw_open, "");
    }
}

/* 6. 1,000 async acquires pending at once */

typedef struct
{
  GMainLoop *loop;
  int        pending;
  int        failed;
  gint64     last_tick;
  gint64     max_stall;
  int        max_threads;
  gint64     query_started;
  gint64     query_us;
  gint64     stall_at;
} Scale;

static int
thread_count (void)
{
  g_autofree char *status = NULL;
  const char *p;

  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return -1;
  p = strstr (status, "Threads:");
  return p ? atoi (p + 8) : -1;
}

static void
scale_acquired (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Scale *s = user_data;

  if (!porta_lock_acquire_finish (PORTA_LOCK (source), result, NULL))
    s->failed++;
  if (--s->pending == 0)
    g_main_loop_quit (s->loop);
}

static gboolean
scale_tick (gpointer user_data)
{
  Scale *s = user_data;
  gint64 t = now_us ();

  if (t - s->last_tick > s->max_stall)
    {
      s->max_stall = t - s->last_tick;
      s->stall_at = t;
    }
  s->last_tick = t;
  s->max_threads = MAX (s->max_threads, thread_count ());
  return G_SOURCE_CONTINUE;
}

static void
scale_queried (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Scale *s = user_data;
  g_autoptr(GFileInfo) info = g_file_query_info_finish (G_FILE (source), result, NULL);

  s->query_us = now_us () - s->query_started;
}

/* The longest stall of an idle main context running the same 1 ms tick
 * for @duration_us: what the machine alone does to a main loop. */
static gint64
idle_stall (gint64 duration_us)
{
  Scale s = { NULL, 0, 0, 0, 0, 0, 0, -1, 0 };
  gint64 start = now_us ();
  guint tick;

  s.last_tick = start;
  tick = g_timeout_add (1, scale_tick, &s);
  while (now_us () - start < duration_us)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  return s.max_stall;
}

static void
bench_scale (void)
{
  const int n = 1000;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GPtrArray) locks = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GFile) dir = g_file_new_for_path (workdir);
  Scale s = { loop, n, 0, 0, 0, 0, 0, -1, 0 };
  int to_child[2], from_child[2];
  pid_t pid;
  guint tick;
  char c;
  gint64 released_at, start, done_at, idle;

  if (pipe (to_child) != 0 || pipe (from_child) != 0)
    g_error ("pipe");
  pid = fork ();
  if (pid == 0)
    {
      for (int i = 0; i < n; i++)
        {
          char path[4096];
          int fd;

          snprintf (path, sizeof path, "%s/scale-%d.lock", workdir, i);
          fd = open (path, O_RDWR | O_CREAT, 0644);
          flock (fd, LOCK_EX);
        }
      if (write (from_child[1], "H", 1) != 1 || read (to_child[0], &c, 1) != 1)
        _exit (1);
      _exit (0);   /* releases all 1,000 locks */
    }
  if (read (from_child[0], &c, 1) != 1)
    g_error ("holder died");

  start = now_us ();
  for (int i = 0; i < n; i++)
    {
      g_autofree char *path = g_strdup_printf ("%s/scale-%d.lock", workdir, i);
      PortaLock *lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

      g_ptr_array_add (locks, lock);
      porta_lock_acquire_async (lock, 60000, G_PRIORITY_DEFAULT, NULL, scale_acquired, &s);
    }
  s.last_tick = now_us ();
  tick = g_timeout_add (1, scale_tick, &s);
  s.query_started = now_us ();
  g_file_query_info_async (dir, G_FILE_ATTRIBUTE_STANDARD_TYPE, G_FILE_QUERY_INFO_NONE,
                           G_PRIORITY_DEFAULT, NULL, scale_queried, &s);
  /* let the waits settle into the kernel, then release them all */
  while (now_us () - start < 500000)
    g_main_context_iteration (NULL, TRUE);
  released_at = now_us ();
  if (write (to_child[1], "R", 1) != 1)
    g_error ("holder died");
  g_main_loop_run (loop);
  g_source_remove (tick);
  waitpid (pid, NULL, 0);

  done_at = now_us ();
  idle = idle_stall (done_at - start);
  g_printerr ("   scale: longest stall %.1f ms, ending %.1f ms %s the release\n",
              s.max_stall / 1000.0, ABS (s.stall_at - released_at) / 1000.0,
              s.stall_at < released_at ? "before" : "after");

  row ("6. 1000 async acquires: completed", n - s.failed - s.pending, "", "", 0, ">= 1000");
  row ("6. all done after the release", (done_at - released_at) / 1000.0, "ms", "", 0, "<= 50");
  row ("6. longest main-loop stall", s.max_stall / 1000.0, "ms", "idle main loop, same tick",
       idle / 1000.0, "<= 3x");
  row ("6. g_file_query_info_async meanwhile", s.query_us / 1000.0, "ms", "", 0, "<= 50");
  row ("6. peak threads", s.max_threads, "", "", 0, "<= 70");
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  const char *only = NULL;
  int runs = 9;
  int misses;

  if (argc == 5 && g_str_equal (argv[1], "--worker"))
    return worker_main (argv[2], argv[3], atoi (argv[4]));
  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--runs") && i + 1 < argc)
        runs = atoi (argv[++i]);
      else if (g_str_has_prefix (argv[i], "--runs="))
        runs = atoi (argv[i] + strlen ("--runs="));
      else if (argv[i][0] != '-' && only == NULL)
        only = argv[i];
      else
        {
          g_printerr ("usage: %s [--runs N] [uncontended|handoff|cpu|timeouts|throughput|scale]\n",
                      argv[0]);
          return 2;
        }
    }
  if (runs < 1)
    runs = 1;

  self_exe = g_file_read_link ("/proc/self/exe", NULL);
  workdir = g_dir_make_tmp ("portalock-bench-XXXXXX", &error);
  if (workdir == NULL)
    g_error ("%s", error->message);
  rows = g_ptr_array_new_with_free_func (row_free);

  g_print ("portalock %s benchmark, %d CPUs, %d run%s, files in %s\n\n", PORTA_VERSION,
           g_get_num_processors (), runs, runs > 1 ? "s" : "", workdir);

  for (int run = 1; run <= runs; run++)
    {
      g_printerr ("run %d of %d...\n", run, runs);
#define RUN(name, fn) if (only == NULL || g_str_equal (only, name)) fn ()
      RUN ("uncontended", bench_uncontended);
      RUN ("handoff", bench_handoff);
      RUN ("cpu", bench_cpu);
      RUN ("timeouts", bench_timeouts);
      RUN ("throughput", bench_throughput);
      RUN ("scale", bench_scale);
#undef RUN
    }
  misses = print_rows (runs);
  g_ptr_array_unref (rows);
  if (misses > 0)
    g_print ("\n%d figure%s missed %s target\n", misses, misses > 1 ? "s" : "",
             misses > 1 ? "their" : "its");

  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", workdir);
    if (system (cmd) != 0)
      g_printerr ("could not remove %s\n", workdir);
  }
  return misses > 0 ? 1 : 0;
}
