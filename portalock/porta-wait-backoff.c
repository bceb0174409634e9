/* porta-wait-backoff.c: a wait that retries with a jittered exponential back-off:
 * on network filesystems, where no signal is free, and for async waits
 * that find no waiter thread free
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include <gio/gio.h>

#include "porta-wait-private.h"

#define BACKOFF_MIN_US        1000
#define BACKOFF_MAX_US        (100 * 1000)

static gint64
backoff_sleep_us (gint64 *delay,
                  gint64  deadline)
{
  gint64 sleep_us = g_random_int_range ((gint32) (*delay / 2), (gint32) *delay + 1);

  if (deadline >= 0)
    sleep_us = CLAMP (deadline - g_get_monotonic_time (), 0, sleep_us);
  *delay = MIN (*delay * 2, BACKOFF_MAX_US);
  return sleep_us;
}

int
porta_wait_backoff_sync (const PortaBackendOps *ops,
                         int                    fd,
                         PortaLockMode          mode,
                         gint64                 deadline,
                         GCancellable          *cancellable)
{
  gint64 delay = BACKOFF_MIN_US;
  GPollFD pfd;
  gboolean have_pfd;
  int r;

  have_pfd = cancellable != NULL && g_cancellable_make_pollfd (cancellable, &pfd);

  for (;;)
    {
      gint64 sleep_us;

      if (g_cancellable_is_cancelled (cancellable))
        {
          r = ECANCELED;
          break;
        }
      r = ops->lock (fd, mode, FALSE);
      if (r != EWOULDBLOCK)
        break;
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          r = ETIMEDOUT;
          break;
        }
      sleep_us = backoff_sleep_us (&delay, deadline);
      if (have_pfd)
        g_poll (&pfd, 1, (int) ((sleep_us + 999) / 1000));
      else
        g_usleep (sleep_us);
    }

  if (have_pfd)
    g_cancellable_release_fd (cancellable);
  return r;
}

/* Async back-off waits. */

/* The back-off waits of one main context, at one priority, share one
 * source, ready when the first of them is to try again. GLib looks at
 * every source of a context at each iteration, so with a source of its own
 * for each wait, a thousand waits cost their context about 100 us an
 * iteration: a quarter of a core while they wait. */
typedef struct _RetrySource
{
  GSource       source;
  GMainContext *context;   /* not owned: the attached source lives in it */
  int           priority;
  GSequence    *queue;     /* PortaAsyncWait *, by retry_at; under retry_lock */
  guint         n_waits;   /* under retry_lock */
} RetrySource;

/* Waits retried at most in one dispatch: a chain of kicks (see
 * porta_wait_slot_kick()) or many retries due at once must not stall the
 * context; the rest go in the next iteration. */
#define RETRY_BATCH 64

static GMutex  retry_lock;     /* taken before any GMainContext's lock */
static GSList *retry_sources;  /* RetrySource *; under retry_lock */

static void backoff_retry (PortaAsyncWait *w);

static int
compare_retry_at (gconstpointer a,
                  gconstpointer b,
                  gpointer      user_data)
{
  const PortaAsyncWait *wa = a, *wb = b;

  if (wa->retry_at != wb->retry_at)
    return wa->retry_at < wb->retry_at ? -1 : 1;
  return wa < wb ? -1 : wa > wb;
}

/* Under retry_lock. */
static void
retry_source_update (RetrySource *rs)
{
  GSequenceIter *first = g_sequence_get_begin_iter (rs->queue);

  g_source_set_ready_time (&rs->source,
                           g_sequence_iter_is_end (first) ? -1 :
                           ((PortaAsyncWait *) g_sequence_get (first))->retry_at);
}

static gboolean
retry_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  RetrySource *rs = (RetrySource *) source;
  gint64 now = g_get_monotonic_time ();

  for (int n = 0; n < RETRY_BATCH; n++)
    {
      GSequenceIter *first;
      PortaAsyncWait *w;

      g_mutex_lock (&retry_lock);
      if (g_source_is_destroyed (source))
        {
          g_mutex_unlock (&retry_lock);
          return G_SOURCE_REMOVE;
        }
      first = g_sequence_get_begin_iter (rs->queue);
      if (g_sequence_iter_is_end (first) ||
          ((PortaAsyncWait *) g_sequence_get (first))->retry_at > now)
        {
          retry_source_update (rs);
          g_mutex_unlock (&retry_lock);
          return G_SOURCE_CONTINUE;
        }
      w = g_sequence_get (first);
      g_sequence_remove (first);
      w->retry_iter = NULL;
      g_mutex_unlock (&retry_lock);

      /* It may finish, and free itself, or take a thread, or schedule
       * its next try. */
      backoff_retry (w);
    }
  return G_SOURCE_CONTINUE;   /* more are due: ready still */
}

static void
retry_source_finalize (GSource *source)
{
  g_sequence_free (((RetrySource *) source)->queue);
}

static GSourceFuncs retry_source_funcs = {
  NULL, NULL, retry_source_dispatch, retry_source_finalize, NULL, NULL,
};

static void
retry_register (PortaAsyncWait *w)
{
  RetrySource *rs = NULL;

  g_mutex_lock (&retry_lock);
  for (GSList *l = retry_sources; l != NULL && rs == NULL; l = l->next)
    {
      RetrySource *candidate = l->data;

      if (candidate->context == w->context && candidate->priority == w->priority)
        rs = candidate;
    }
  if (rs == NULL)
    {
      rs = (RetrySource *) g_source_new (&retry_source_funcs, sizeof (RetrySource));
      rs->context = w->context;
      rs->priority = w->priority;
      rs->queue = g_sequence_new (NULL);
      g_source_set_priority (&rs->source, w->priority);
      g_source_set_static_name (&rs->source, "[portalock] retry locks");
      g_source_attach (&rs->source, w->context);
      retry_sources = g_slist_prepend (retry_sources, rs);
    }
  rs->n_waits++;
  w->retry_source = rs;
  g_mutex_unlock (&retry_lock);
}

/* When @w is to try again (0: at once); from any thread. */
void
porta_wait_backoff_retry_at (PortaAsyncWait *w,
                             gint64          at)
{
  g_mutex_lock (&retry_lock);
  if (w->retry_iter != NULL)
    g_sequence_remove (w->retry_iter);
  w->retry_at = at;
  w->retry_iter = g_sequence_insert_sorted (w->retry_source->queue, w, compare_retry_at, NULL);
  retry_source_update (w->retry_source);
  g_mutex_unlock (&retry_lock);
}

static void
retry_unregister (PortaAsyncWait *w)
{
  RetrySource *rs = w->retry_source;

  if (rs == NULL)
    return;
  g_mutex_lock (&retry_lock);
  if (w->retry_iter != NULL)
    g_sequence_remove (w->retry_iter);
  w->retry_iter = NULL;
  w->retry_source = NULL;
  if (--rs->n_waits == 0)
    {
      retry_sources = g_slist_remove (retry_sources, rs);
      g_source_destroy (&rs->source);
      g_source_unref (&rs->source);
    }
  else
    retry_source_update (rs);
  g_mutex_unlock (&retry_lock);
}

static void
backoff_detach (PortaAsyncWait *w)
{
  retry_unregister (w);
  if (w->cancel_source != NULL)
    {
      g_source_destroy (w->cancel_source);
      g_clear_pointer (&w->cancel_source, g_source_unref);
    }
}

static void
backoff_finish (PortaAsyncWait *w,
                int             result)
{
  if (w->slots != NULL && w->slots->leave (w))
    w->slots->kick ();
  backoff_detach (w);
  w->callback (result, NULL, PORTA_HOLDER_RETRYING_WAIT, w->user_data);
  porta_async_wait_free (w);
}

/* The next try, at a microsecond time: many waits' retries stay spread out
 * instead of bunched into the same millisecond. */
static void
backoff_schedule (PortaAsyncWait *w)
{
  gint64 sleep_us = backoff_sleep_us (&w->delay, w->deadline);

  porta_wait_backoff_retry_at (w, g_get_monotonic_time () + sleep_us);
}

static void
backoff_retry (PortaAsyncWait *w)
{
  gboolean kicked = w->slots != NULL && w->slots->leave (w);
  int r;

  /* Cancelled, but this retry came first in the same main-loop iteration:
   * the cancellation wins. */
  if (g_cancellable_is_cancelled (w->cancellable))
    r = ECANCELED;
  else
    r = w->ops->lock (w->fd, w->mode, FALSE);

  if (r == EWOULDBLOCK && w->deadline >= 0 && g_get_monotonic_time () >= w->deadline)
    r = ETIMEDOUT;
  if (r != EWOULDBLOCK)
    {
      const PortaWaitSlots *slots = w->slots;

      backoff_finish (w, r);
      if (kicked)
        slots->kick ();
      return;
    }
  /* A local wait that backs off only for want of a thread takes one as
   * soon as one is free. */
  if (w->slots != NULL && w->slots->start (w))
    {
      backoff_detach (w);
      return;
    }
  backoff_schedule (w);
  if (w->slots != NULL)
    w->slots->join (w);
}

static gboolean
backoff_cancelled (GCancellable *cancellable,
                   gpointer      user_data)
{
  backoff_finish (user_data, ECANCELED);
  return G_SOURCE_REMOVE;
}

void
porta_wait_backoff_async (PortaAsyncWait *w)
{
  /* Many waits that start together (say, more than there are waiter
   * threads) must not retry in lockstep: start each at a random delay. */
  w->delay = g_random_int_range (BACKOFF_MIN_US, 4 * BACKOFF_MIN_US);
  if (w->cancellable != NULL)
    {
      w->cancel_source = g_cancellable_source_new (w->cancellable);
      g_source_set_priority (w->cancel_source, w->priority);
      g_source_set_callback (w->cancel_source, G_SOURCE_FUNC (backoff_cancelled), w, NULL);
      g_source_set_static_name (w->cancel_source, "[portalock] lock wait cancelled");
      g_source_attach (w->cancel_source, w->context);
    }
  retry_register (w);
  backoff_schedule (w);
  if (w->slots != NULL)
    w->slots->join (w);
}
