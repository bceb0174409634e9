/* porta-backend-private.h: the kernel mechanisms behind a lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <sys/types.h>

#include <glib.h>

#include "porta-types.h"

G_BEGIN_DECLS

/* A backend knows how to take, try and drop one kind of kernel lock on an
 * open descriptor. It knows nothing of GTask, GCancellable or timeouts: the
 * waiter decides how long to block and how to interrupt it. */
typedef struct _PortaBackendOps PortaBackendOps;

struct _PortaBackendOps
{
  PortaBackend  id;
  const char   *name;
  /* fcntl() write locks need a descriptor open for writing */
  guint         exclusive_needs_write : 1;
  /* owned by the process, not the open file description */
  guint         per_process : 1;

  /* Returns 0 or an errno value: EWOULDBLOCK when @block is FALSE and the
   * lock is taken, EINTR when a blocking call was interrupted. */
  int (*lock)   (int fd, PortaLockMode mode, gboolean block);
  int (*unlock) (int fd);
};

/* The open lock file: its descriptor and the identity of what it opened. */
typedef struct
{
  int   fd;
  dev_t dev;
  ino_t ino;
} PortaLockFile;

#define PORTA_LOCK_FILE_INIT { -1, 0, 0 }

PortaBackend           porta_backend_resolve    (PortaBackend            backend);
const PortaBackendOps *porta_backend_get_ops    (PortaBackend            backend);
const char            *porta_backend_get_name   (PortaBackend            backend);

gboolean               porta_lock_file_open     (PortaLockFile          *lf,
                                                 const char             *path,
                                                 const char             *display,
                                                 PortaLockMode           mode,
                                                 PortaLockFlags          flags,
                                                 const PortaBackendOps  *ops,
                                                 GError                **error);
int                    porta_lock_file_check    (const PortaLockFile    *lf,
                                                 const char             *path,
                                                 PortaLockFlags          flags);
void                   porta_lock_file_close    (PortaLockFile          *lf,
                                                 const PortaBackendOps  *ops);
gboolean               porta_lock_file_is_remote (const PortaLockFile   *lf);

void                   porta_set_wait_error     (GError                **error,
                                                 int                     result,
                                                 int                     timeout_ms,
                                                 const char             *holder,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);
void                   porta_set_lock_error     (GError                **error,
                                                 int                     errsv,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);

G_END_DECLS
