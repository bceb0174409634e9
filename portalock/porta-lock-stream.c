/* porta-lock-stream.c: reading and writing a locked file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>

#include "porta-i18n-private.h"
#include "porta-lock-stream-private.h"

/* A GFileIOStream over the lock's own descriptor. It must not open the file
 * again: closing a second descriptor would drop the process's POSIX locks.
 * Both halves share the descriptor's file offset, so a seek on the stream
 * moves reads and writes alike. The descriptor belongs to the lock, which
 * closes this stream before it closes the descriptor. */
struct _PortaLockStream
{
  GFileIOStream  parent_instance;

  GFile         *file;
  int            fd;
  GInputStream  *input;
  GOutputStream *output;
};

G_DEFINE_FINAL_TYPE (PortaLockStream, porta_lock_stream, G_TYPE_FILE_IO_STREAM)

static gboolean
set_io_error (GError          **error,
              gboolean          truncating,
              PortaLockStream  *self)
{
  int errsv = errno;
  g_autofree char *display = g_file_get_parse_name (self->file);

  if (truncating)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                 _("Cannot truncate “%s”: %s"), display, g_strerror (errsv));
  else
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                 _("Cannot seek in “%s”: %s"), display, g_strerror (errsv));
  return FALSE;
}

static GInputStream *
porta_lock_stream_get_input_stream (GIOStream *stream)
{
  return PORTA_LOCK_STREAM (stream)->input;
}

static GOutputStream *
porta_lock_stream_get_output_stream (GIOStream *stream)
{
  return PORTA_LOCK_STREAM (stream)->output;
}

static goffset
porta_lock_stream_tell (GFileIOStream *stream)
{
  off_t pos = lseek (PORTA_LOCK_STREAM (stream)->fd, 0, SEEK_CUR);

  return pos < 0 ? 0 : pos;
}

static gboolean
porta_lock_stream_can_seek (GFileIOStream *stream)
{
  return TRUE;
}

static gboolean
porta_lock_stream_seek (GFileIOStream  *stream,
                        goffset         offset,
                        GSeekType       type,
                        GCancellable   *cancellable,
                        GError        **error)
{
  PortaLockStream *self = PORTA_LOCK_STREAM (stream);
  int whence;

  switch (type)
    {
    case G_SEEK_CUR:
      whence = SEEK_CUR;
      break;
    case G_SEEK_SET:
      whence = SEEK_SET;
      break;
    case G_SEEK_END:
      whence = SEEK_END;
      break;
    default:
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Invalid seek type"));
      return FALSE;
    }

  if (lseek (self->fd, offset, whence) < 0)
    return set_io_error (error, FALSE, self);
  return TRUE;
}

static gboolean
porta_lock_stream_can_truncate (GFileIOStream *stream)
{
  return TRUE;
}

static gboolean
porta_lock_stream_truncate (GFileIOStream  *stream,
                            goffset         size,
                            GCancellable   *cancellable,
                            GError        **error)
{
  PortaLockStream *self = PORTA_LOCK_STREAM (stream);
  int r;

  do
    r = ftruncate (self->fd, size);
  while (r != 0 && errno == EINTR);
  if (r != 0)
    return set_io_error (error, TRUE, self);
  return TRUE;
}

static GFileInfo *
porta_lock_stream_query_info (GFileIOStream  *stream,
                              const char     *attributes,
                              GCancellable   *cancellable,
                              GError        **error)
{
  PortaLockStream *self = PORTA_LOCK_STREAM (stream);

  return g_file_query_info (self->file, attributes,
                            G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS,
                            cancellable, error);
}

static char *
porta_lock_stream_get_etag (GFileIOStream *stream)
{
  return NULL;
}

static void
porta_lock_stream_dispose (GObject *object)
{
  PortaLockStream *self = PORTA_LOCK_STREAM (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);
  g_clear_object (&self->file);

  G_OBJECT_CLASS (porta_lock_stream_parent_class)->dispose (object);
}

static void
porta_lock_stream_class_init (PortaLockStreamClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GIOStreamClass *io_class = G_IO_STREAM_CLASS (klass);
  GFileIOStreamClass *file_io_class = G_FILE_IO_STREAM_CLASS (klass);

  object_class->dispose = porta_lock_stream_dispose;

  io_class->get_input_stream = porta_lock_stream_get_input_stream;
  io_class->get_output_stream = porta_lock_stream_get_output_stream;

  file_io_class->tell = porta_lock_stream_tell;
  file_io_class->can_seek = porta_lock_stream_can_seek;
  file_io_class->seek = porta_lock_stream_seek;
  file_io_class->can_truncate = porta_lock_stream_can_truncate;
  file_io_class->truncate_fn = porta_lock_stream_truncate;
  file_io_class->query_info = porta_lock_stream_query_info;
  file_io_class->get_etag = porta_lock_stream_get_etag;
}

static void
porta_lock_stream_init (PortaLockStream *self)
{
  self->fd = -1;
}

GIOStream *
porta_lock_stream_new (GFile *file,
                       int    fd)
{
  PortaLockStream *self = g_object_new (PORTA_TYPE_LOCK_STREAM, NULL);

  self->file = g_object_ref (file);
  self->fd = fd;
  self->input = g_unix_input_stream_new (fd, FALSE);
  self->output = g_unix_output_stream_new (fd, FALSE);
  return G_IO_STREAM (self);
}
