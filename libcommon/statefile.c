/* Crash-safe state files (statefile.h): temp file, fsync, rename, fsync dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/statefile.h"

/* Length of the random part of a temporary name. */
#define TMP_RAND 6

/* Open the directory holding name and point *base at its last component. */
static int open_parent(int dirfd, const char *name, const char **base, struct qerr *err)
{
	const char *slash;
	char dir[PATH_MAX];
	int fd;

	if (!name || !name[0])
		return qerr_set(err, EINVAL, "state file: empty name");
	slash = strrchr(name, '/');
	if (!slash) {
		*base = name;
		snprintf(dir, sizeof(dir), ".");
	} else {
		size_t n = slash == name ? 1 : (size_t)(slash - name);

		if (n >= sizeof(dir))
			return qerr_set(err, ENAMETOOLONG, "state file %s: path too long", name);
		memcpy(dir, name, n);
		dir[n] = '\0';
		*base = slash + 1;
	}
	if (!**base || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0)
		return qerr_set(err, EINVAL, "state file %s: not a file name", name);
	fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "state file %s: open directory %s", name, dir);
	return fd;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Create ".<base>.tmp.XXXXXX" exclusively; the random part keeps two
 * writers (or a leftover from a crash) from colliding. */
static int create_tmp(int dfd, const char *base, mode_t mode, char *tmp, size_t tmplen)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";

	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char rnd[TMP_RAND];
		char suffix[TMP_RAND + 1];
		int fd;

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return -EIO;
		for (int i = 0; i < TMP_RAND; i++)
			suffix[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
		suffix[TMP_RAND] = '\0';
		if ((size_t)snprintf(tmp, tmplen, ".%s" STATEFILE_TMP_INFIX "%s", base, suffix) >=
		    tmplen)
			return -ENAMETOOLONG;
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int write_file(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
		      bool durable, struct qerr *err)
{
	cleanup_close int dfd = -1;
	cleanup_close int fd = -1;
	char tmp[NAME_MAX + 1];
	const char *base;
	int r;

	if (!data && len)
		return qerr_set(err, EINVAL, "state file %s: no data", name);
	dfd = open_parent(dirfd, name, &base, err);
	if (dfd < 0)
		return dfd;
	fd = create_tmp(dfd, base, mode, tmp, sizeof(tmp));
	if (fd < 0)
		return qerr_sys(err, -fd, "state file %s: create temporary file", name);
	/* The creation mode went through the umask; state must not depend on
	 * the umask of whoever started the daemon. */
	if (fchmod(fd, mode) < 0) {
		r = qerr_sys(err, errno, "state file %s: chmod %s", name, tmp);
		goto fail_unlink;
	}
	if ((r = write_all(fd, data, len)) < 0) {
		r = qerr_sys(err, -r, "state file %s: write %s", name, tmp);
		goto fail_unlink;
	}
	/* Data first, then the name: without this fsync a crash after the
	 * rename can leave the new name pointing at an empty file (ext4,
	 * XFS with delayed allocation). */
	if (durable && fsync(fd) < 0) {
		r = qerr_sys(err, errno, "state file %s: fsync %s", name, tmp);
		goto fail_unlink;
	}
	r = close(steal_fd(fd));
	if (r < 0 && errno != EINTR) {
		r = qerr_sys(err, errno, "state file %s: close %s", name, tmp);
		goto fail_unlink;
	}
	if (renameat(dfd, tmp, dfd, base) < 0) {
		r = qerr_sys(err, errno, "state file %s: rename %s", name, tmp);
		goto fail_unlink;
	}
	/* The rename lives in the directory; it is durable only once the
	 * directory is. */
	if (durable && fsync(dfd) < 0)
		return qerr_sys(err, errno, "state file %s: fsync directory", name);
	return 0;

fail_unlink:
	unlinkat(dfd, tmp, 0);
	return r;
}

int statefile_write_mode(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 struct qerr *err)
{
	return write_file(dirfd, name, data, len, mode, true, err);
}

int statefile_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			   struct qerr *err)
{
	return write_file(dirfd, name, data, len, mode, false, err);
}

int statefile_write(int dirfd, const char *name, const void *data, size_t len, struct qerr *err)
{
	return statefile_write_mode(dirfd, name, data, len, 0600, err);
}

int statefile_read(int dirfd, const char *name, size_t maxlen, char **data, size_t *len,
		   struct qerr *err)
{
	cleanup_close int fd = -1;
	cleanup_free char *buf = NULL;
	struct stat st;
	size_t got = 0;

	if (!name || !name[0])
		return qerr_set(err, EINVAL, "state file: empty name");
	if (maxlen >= SIZE_MAX - 1)
		return qerr_set(err, EINVAL, "state file %s: size bound too large", name);
	/* O_NONBLOCK: a FIFO planted in place of the file must not hang the
	 * reader; it is refused below as not regular. */
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return qerr_sys(err, errno, "state file %s: open", name);
	if (fstat(fd, &st) < 0)
		return qerr_sys(err, errno, "state file %s: stat", name);
	if (!S_ISREG(st.st_mode))
		return qerr_set(err, EINVAL, "state file %s: not a regular file", name);
	if ((uint64_t)st.st_size > maxlen)
		return qerr_set(err, EFBIG, "state file %s: %lld bytes, more than %zu", name,
				(long long)st.st_size, maxlen);
	/* One byte over the bound, to notice a file that grew after fstat. */
	buf = malloc(maxlen + 2);
	if (!buf)
		return qerr_set(err, ENOMEM, "state file %s: out of memory", name);
	for (;;) {
		ssize_t n = read(fd, buf + got, maxlen + 1 - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return qerr_sys(err, errno, "state file %s: read", name);
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > maxlen)
			return qerr_set(err, EFBIG, "state file %s: more than %zu bytes", name,
					maxlen);
	}
	buf[got] = '\0';
	*data = steal_ptr(buf);
	if (len)
		*len = got;
	return 0;
}

int statefile_remove(int dirfd, const char *name, struct qerr *err)
{
	cleanup_close int dfd = -1;
	const char *base;

	dfd = open_parent(dirfd, name, &base, err);
	if (dfd < 0)
		return dfd;
	if (unlinkat(dfd, base, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		return qerr_sys(err, errno, "state file %s: unlink", name);
	}
	if (fsync(dfd) < 0)
		return qerr_sys(err, errno, "state file %s: fsync directory", name);
	return 0;
}

static bool is_tmp_name(const char *n)
{
	const char *infix;

	if (n[0] != '.')
		return false;
	infix = strstr(n + 1, STATEFILE_TMP_INFIX);
	return infix && infix > n + 1 && strlen(infix) == strlen(STATEFILE_TMP_INFIX) + TMP_RAND;
}

int statefile_sweep(int atfd, const char *dir, struct qerr *err)
{
	cleanup_dir DIR *d = NULL;
	struct dirent *de;
	int removed = 0;
	int fd;

	fd = openat(atfd, dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "state dir %s: open", dir ? dir : ".");
	/* From here d owns fd; fd stays usable for the *at calls. */
	d = fdopendir(fd);
	if (!d) {
		int e = errno;

		close(fd);
		return qerr_sys(err, e, "state dir %s: fdopendir", dir ? dir : ".");
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (!is_tmp_name(de->d_name))
			continue;
		if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
			return qerr_sys(err, errno, "state dir %s: unlink %s", dir ? dir : ".",
					de->d_name);
		removed++;
	}
	if (errno)
		return qerr_sys(err, errno, "state dir %s: readdir", dir ? dir : ".");
	if (removed && fsync(fd) < 0)
		return qerr_sys(err, errno, "state dir %s: fsync", dir ? dir : ".");
	return removed;
}
