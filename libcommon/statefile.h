/* Crash-safe state files.
 *
 * A state file is either its old contents or its new contents after a crash
 * or power loss, never a mix: statefile_write() writes a temporary file in
 * the same directory, fsyncs it, renames it over the target and fsyncs the
 * directory so the rename itself is durable.  Readers bound what they read,
 * because a state directory may have been tampered with.
 *
 * dirfd is a directory descriptor or AT_FDCWD; name is relative to it and
 * may contain '/' (the temporary file goes next to the final one, since
 * rename(2) is atomic only within one filesystem).  Symlinks in the last
 * component are refused (O_NOFOLLOW).
 */
#ifndef QUIVER_STATEFILE_H
#define QUIVER_STATEFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "libcommon/err.h"

/* Temporary files are named ".<name>.tmp.XXXXXX"; statefile_sweep() removes
 * the ones a crash left behind. */
#define STATEFILE_TMP_INFIX ".tmp."

/* Replace name with len bytes of data, durably.  The file is created with
 * mode 0600.  Returns 0 or a negative errno. */
int statefile_write(int dirfd, const char *name, const void *data, size_t len, struct qerr *err);

/* As statefile_write() with an explicit file mode (e.g. 0644 for files that
 * unprivileged tools read). */
int statefile_write_mode(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct qerr *err);

/* As statefile_write_mode() without the two fsyncs: readers still see the
 * old or the new contents, never a mix, and a crash of the writer leaves at
 * most a temporary file; but a power loss may lose the update.  For records
 * whose subject does not survive a machine crash either (a sandbox's exit
 * report), where the fsyncs would sit on the critical path. */
int statefile_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			   struct qerr *err);

/* Read a whole regular file of at most maxlen bytes.  *data is malloc'd and
 * NUL-terminated (not counted in *len) so text formats can be parsed in
 * place; the caller frees it.  Returns 0, -ENOENT when absent, -EFBIG when
 * larger than maxlen, -EINVAL when not a regular file, or another -errno. */
int statefile_read(int dirfd, const char *name, size_t maxlen, char **data, size_t *len,
		   struct qerr *err);

/* Remove name and fsync its directory so the removal survives a crash.
 * A missing file is not an error (returns 0). */
int statefile_remove(int dirfd, const char *name, struct qerr *err);

/* Remove leftover temporary files (".*.tmp.*") from the directory dir
 * (relative to dirfd, "." for dirfd itself); run at start-up, before
 * recovery reads the directory.  Returns how many were removed, or -errno. */
int statefile_sweep(int dirfd, const char *dir, struct qerr *err);

#endif
