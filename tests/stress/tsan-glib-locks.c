/* tsan-glib-locks.c: tells ThreadSanitizer about GLib's mutexes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Preloaded (LD_PRELOAD) into the test programs of a -Db_sanitize=thread
 * build by build-aux/sanitizers.sh. GLib's GMutex and GRecMutex are futexes
 * that an uninstrumented GLib hides from TSan, so data that portalock
 * guards with them (the POSIX lock registry) looks racy. These wrappers
 * call the real functions and annotate the acquire and the release. Only
 * calls through the PLT are seen: portalock's, GObject's and GIO's, not
 * GLib's calls to itself. The same goes for the hand-offs that GLib makes
 * with locks of its own: g_once_init_leave() to a later g_once_init_enter(),
 * and g_thread_pool_push() to the pool's thread that runs the job.
 */

#define _GNU_SOURCE
#include <dlfcn.h>

#include <glib.h>

void __tsan_acquire (void *addr) __attribute__ ((weak));
void __tsan_release (void *addr) __attribute__ ((weak));

/* Declares real_NAME, the next definition of NAME, looked up once; the
 * pointer is shared between threads, so it is read and written atomically. */
#define REAL(ret, name, args)                                            \
  static ret (*next_##name) args;                                        \
  ret (*real_##name) args = __atomic_load_n (&next_##name, __ATOMIC_ACQUIRE); \
  if (real_##name == NULL)                                               \
    {                                                                    \
      real_##name = (ret (*) args) dlsym (RTLD_NEXT, #name);             \
      __atomic_store_n (&next_##name, real_##name, __ATOMIC_RELEASE);    \
    }

static void
annotate_acquire (gpointer lock)
{
  if (__tsan_acquire != NULL)
    __tsan_acquire (lock);
}

static void
annotate_release (gpointer lock)
{
  if (__tsan_release != NULL)
    __tsan_release (lock);
}

void
g_mutex_lock (GMutex *mutex)
{
  REAL (void, g_mutex_lock, (GMutex *));
  real_g_mutex_lock (mutex);
  annotate_acquire (mutex);
}

gboolean
g_mutex_trylock (GMutex *mutex)
{
  REAL (gboolean, g_mutex_trylock, (GMutex *));
  if (!real_g_mutex_trylock (mutex))
    return FALSE;
  annotate_acquire (mutex);
  return TRUE;
}

void
g_mutex_unlock (GMutex *mutex)
{
  REAL (void, g_mutex_unlock, (GMutex *));
  annotate_release (mutex);
  real_g_mutex_unlock (mutex);
}

void
g_rec_mutex_lock (GRecMutex *mutex)
{
  REAL (void, g_rec_mutex_lock, (GRecMutex *));
  real_g_rec_mutex_lock (mutex);
  annotate_acquire (mutex);
}

gboolean
g_rec_mutex_trylock (GRecMutex *mutex)
{
  REAL (gboolean, g_rec_mutex_trylock, (GRecMutex *));
  if (!real_g_rec_mutex_trylock (mutex))
    return FALSE;
  annotate_acquire (mutex);
  return TRUE;
}

void
g_rec_mutex_unlock (GRecMutex *mutex)
{
  REAL (void, g_rec_mutex_unlock, (GRecMutex *));
  annotate_release (mutex);
  real_g_rec_mutex_unlock (mutex);
}

void
g_cond_wait (GCond  *cond,
             GMutex *mutex)
{
  REAL (void, g_cond_wait, (GCond *, GMutex *));
  annotate_release (mutex);
  real_g_cond_wait (cond, mutex);
  annotate_acquire (mutex);
}

gboolean
g_cond_wait_until (GCond  *cond,
                   GMutex *mutex,
                   gint64  end_time)
{
  gboolean r;
  REAL (gboolean, g_cond_wait_until, (GCond *, GMutex *, gint64));
  annotate_release (mutex);
  r = real_g_cond_wait_until (cond, mutex, end_time);
  annotate_acquire (mutex);
  return r;
}

#undef g_once_init_enter
gboolean
g_once_init_enter (volatile void *location)
{
  gboolean first;
  REAL (gboolean, g_once_init_enter, (volatile void *));
  first = real_g_once_init_enter (location);
  /* FALSE: another thread initialised it, maybe while we waited in GLib */
  if (!first)
    annotate_acquire ((gpointer) location);
  return first;
}

#undef g_once_init_leave
void
g_once_init_leave (volatile void *location,
                   gsize          result)
{
  REAL (void, g_once_init_leave, (volatile void *, gsize));
  annotate_release ((gpointer) location);
  real_g_once_init_leave (location, result);
}

typedef struct
{
  GFunc    func;
  gpointer user_data;
} PoolJob;

static void
pool_trampoline (gpointer data,
                 gpointer user_data)
{
  PoolJob *job = user_data;

  annotate_acquire (data);
  job->func (data, job->user_data);
}

GThreadPool *
g_thread_pool_new (GFunc      func,
                   gpointer   user_data,
                   gint       max_threads,
                   gboolean   exclusive,
                   GError   **error)
{
  /* One per pool, for the life of the process, as pools usually are. */
  PoolJob *job = g_new (PoolJob, 1);
  REAL (GThreadPool *, g_thread_pool_new, (GFunc, gpointer, gint, gboolean, GError **));

  job->func = func;
  job->user_data = user_data;
  return real_g_thread_pool_new (pool_trampoline, job, max_threads, exclusive, error);
}

gboolean
g_thread_pool_push (GThreadPool  *pool,
                    gpointer      data,
                    GError      **error)
{
  REAL (gboolean, g_thread_pool_push, (GThreadPool *, gpointer, GError **));
  annotate_release (data);
  return real_g_thread_pool_push (pool, data, error);
}
