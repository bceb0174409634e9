/* porta-backend-private.h: the kernel mechanisms behind a lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-types.h"

G_BEGIN_DECLS

/* A backend knows how to take, try and drop one kind of kernel lock on an
 * open descriptor. It knows nothing of GTask, GCancellable or timeouts: the
 * waiter decides how long to block and how to interrupt it. */
typedef struct _PortaBackendOps PortaBackendOps;

struct _PortaBackendOps
{
  PortaBackend  id;    /* porta_backend_get_name() names it */
  /* fcntl() write locks need a descriptor open for writing */
  guint         exclusive_needs_write : 1;
  /* owned by the process, not the open file description */
  guint         per_process : 1;

  /* Returns 0 or an errno value: EWOULDBLOCK when @block is FALSE and the
   * lock is taken, EINTR when a blocking call was interrupted. */
  int (*lock)   (int fd, PortaLockMode mode, gboolean block);
  int (*unlock) (int fd);
};

PortaBackend           porta_backend_resolve    (PortaBackend            backend);
const PortaBackendOps *porta_backend_get_ops    (PortaBackend            backend);
const char            *porta_backend_get_name   (PortaBackend            backend);

G_END_DECLS
