/* porta-lock-stream.c: reading and writing a locked file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <sys/types.h>

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <unistd.h>
# include <gio/gunixinputstream.h>
# include <gio/gunixoutputstream.h>
#else
# include <io.h>
# include <unistd.h>
# include "porta-win32-private.h"
#endif

#include "porta-i18n-private.h"
#include "porta-lock-stream-private.h"

/* meson builds with _FILE_OFFSET_BITS=64: off_t, lseek() and ftruncate()
 * are 64-bit on Windows' C runtime too. */
G_STATIC_ASSERT (sizeof (off_t) == 8);

/* A GFileIOStream over the lock's own descriptor. It must not open the file
 * again: closing a second descriptor would drop the process's POSIX locks.
 * Both halves share the descriptor's file offset, so a seek on the stream
 * moves reads and writes alike. The descriptor belongs to the lock, which
 * closes this stream before it closes the descriptor.
 *
 * On Windows the lock's handle is open for overlapped I/O, which takes an
 * offset with every call and keeps no file position; so the stream has a
 * handle of its own on the same file (ReOpenFile(), never by path), which
 * it closes when it is closed. The lock's byte lies far past the data, so
 * the second handle's reads and writes are never blocked by it. */
struct _PortaLockStream
{
  GFileIOStream  parent_instance;

  GFile         *file;
  int            fd;
  GInputStream  *input;
  GOutputStream *output;
};

G_DEFINE_FINAL_TYPE (PortaLockStream, porta_lock_stream, G_TYPE_FILE_IO_STREAM)

#ifdef G_OS_WIN32

/* The halves of the stream on Windows: read() and write() on the
 * stream's descriptor. They never close it; the stream does. */

#define PORTA_TYPE_FD_INPUT_STREAM (porta_fd_input_stream_get_type ())
G_DECLARE_FINAL_TYPE (PortaFdInputStream, porta_fd_input_stream, PORTA, FD_INPUT_STREAM, GInputStream)
#define PORTA_TYPE_FD_OUTPUT_STREAM (porta_fd_output_stream_get_type ())
G_DECLARE_FINAL_TYPE (PortaFdOutputStream, porta_fd_output_stream, PORTA, FD_OUTPUT_STREAM, GOutputStream)

struct _PortaFdInputStream
{
  GInputStream parent_instance;
  int          fd;
  char        *display;
};

struct _PortaFdOutputStream
{
  GOutputStream parent_instance;
  int           fd;
  char        *display;
};

G_DEFINE_FINAL_TYPE (PortaFdInputStream, porta_fd_input_stream, G_TYPE_INPUT_STREAM)
G_DEFINE_FINAL_TYPE (PortaFdOutputStream, porta_fd_output_stream, G_TYPE_OUTPUT_STREAM)

static void
set_rw_error (GError     **error,
              gboolean     writing,
              const char  *display)
{
  int errsv = errno;

  if (writing)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                 _("Cannot write to “%s”: %s"), display, g_strerror (errsv));
  else
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                 _("Cannot read from “%s”: %s"), display, g_strerror (errsv));
}

static gssize
porta_fd_input_stream_read (GInputStream  *stream,
                            void          *buffer,
                            gsize          count,
                            GCancellable  *cancellable,
                            GError       **error)
{
  int n;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;
  n = _read (PORTA_FD_INPUT_STREAM (stream)->fd, buffer, (unsigned int) MIN (count, G_MAXINT));
  if (n < 0)
    set_rw_error (error, FALSE, PORTA_FD_INPUT_STREAM (stream)->display);
  return n;
}

static gboolean
porta_fd_input_stream_close (GInputStream  *stream,
                             GCancellable  *cancellable,
                             GError       **error)
{
  return TRUE;
}

static void
porta_fd_input_stream_finalize (GObject *object)
{
  g_free (PORTA_FD_INPUT_STREAM (object)->display);
  G_OBJECT_CLASS (porta_fd_input_stream_parent_class)->finalize (object);
}

static void
porta_fd_input_stream_class_init (PortaFdInputStreamClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = porta_fd_input_stream_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = porta_fd_input_stream_read;
  G_INPUT_STREAM_CLASS (klass)->close_fn = porta_fd_input_stream_close;
}

static void
porta_fd_input_stream_init (PortaFdInputStream *self)
{
  self->fd = -1;
}

static gssize
porta_fd_output_stream_write (GOutputStream  *stream,
                              const void     *buffer,
                              gsize           count,
                              GCancellable   *cancellable,
                              GError        **error)
{
  int n;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;
  n = _write (PORTA_FD_OUTPUT_STREAM (stream)->fd, buffer, (unsigned int) MIN (count, G_MAXINT));
  if (n < 0)
    set_rw_error (error, TRUE, PORTA_FD_OUTPUT_STREAM (stream)->display);
  return n;
}

static gboolean
porta_fd_output_stream_close (GOutputStream  *stream,
                              GCancellable   *cancellable,
                              GError        **error)
{
  return TRUE;
}

static void
porta_fd_output_stream_finalize (GObject *object)
{
  g_free (PORTA_FD_OUTPUT_STREAM (object)->display);
  G_OBJECT_CLASS (porta_fd_output_stream_parent_class)->finalize (object);
}

static void
porta_fd_output_stream_class_init (PortaFdOutputStreamClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = porta_fd_output_stream_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = porta_fd_output_stream_write;
  G_OUTPUT_STREAM_CLASS (klass)->close_fn = porta_fd_output_stream_close;
}

static void
porta_fd_output_stream_init (PortaFdOutputStream *self)
{
  self->fd = -1;
}

static gboolean
porta_lock_stream_close (GIOStream     *stream,
                         GCancellable  *cancellable,
                         GError       **error)
{
  PortaLockStream *self = PORTA_LOCK_STREAM (stream);
  gboolean ok;

  ok = G_IO_STREAM_CLASS (porta_lock_stream_parent_class)->close_fn (stream, cancellable, error);
  if (self->fd >= 0)
    {
      _close (self->fd);
      self->fd = -1;
    }
  return ok;
}

#endif /* G_OS_WIN32 */

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
#ifdef G_OS_WIN32
  if (self->fd >= 0)
    {
      _close (self->fd);
      self->fd = -1;
    }
#endif

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
#ifdef G_OS_WIN32
  io_class->close_fn = porta_lock_stream_close;
#endif

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
  PortaLockStream *self;

#ifdef G_OS_WIN32
  fd = porta_win32_reopen_fd (fd);
  if (fd < 0)
    {
      g_autofree char *display = g_file_get_parse_name (file);

      g_debug ("Cannot open a stream on the locked file “%s”: %s",
               display, g_strerror (errno));
      return NULL;
    }
#endif

  self = g_object_new (PORTA_TYPE_LOCK_STREAM, NULL);
  self->file = g_object_ref (file);
  self->fd = fd;
#ifdef G_OS_WIN32
  self->input = g_object_new (PORTA_TYPE_FD_INPUT_STREAM, NULL);
  PORTA_FD_INPUT_STREAM (self->input)->fd = fd;
  PORTA_FD_INPUT_STREAM (self->input)->display = g_file_get_parse_name (file);
  self->output = g_object_new (PORTA_TYPE_FD_OUTPUT_STREAM, NULL);
  PORTA_FD_OUTPUT_STREAM (self->output)->fd = fd;
  PORTA_FD_OUTPUT_STREAM (self->output)->display = g_file_get_parse_name (file);
#else
  self->input = g_unix_input_stream_new (fd, FALSE);
  self->output = g_unix_output_stream_new (fd, FALSE);
#endif
  return G_IO_STREAM (self);
}
