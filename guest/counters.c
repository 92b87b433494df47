/* Per-sandbox syscall counters in a shared file (counters.h). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/counters.h"
#include "libcommon/cleanup.h"

int guest_counters_create(int dirfd, const char *name, struct guest_counters **out,
			  struct qerr *err)
{
	cleanup_close int fd = -1;
	struct guest_counters *c;

	*out = NULL;
	/* O_EXCL|O_NOFOLLOW: never adopt a file or link someone left in the
	 * state directory. */
	fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return qerr_sys(err, errno, "counters: create %s", name);
	if (ftruncate(fd, sizeof(*c)) < 0) {
		int e = errno;

		unlinkat(dirfd, name, 0);
		return qerr_sys(err, e, "counters: size %s", name);
	}
	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (c == MAP_FAILED) {
		int e = errno;

		unlinkat(dirfd, name, 0);
		return qerr_sys(err, e, "counters: map %s", name);
	}
	/* ftruncate zero-filled the counts; the header is written last, magic
	 * after the rest, so a reader never sees a valid magic with a stale
	 * header. */
	c->version = GUEST_COUNTERS_VERSION;
	c->nr_max = GUEST_NR_MAX;
	c->reserved = 0;
	atomic_thread_fence(memory_order_release);
	c->magic = GUEST_COUNTERS_MAGIC;
	*out = c;
	return 0;
}

int guest_counters_open(const char *path, const struct guest_counters **out, struct qerr *err)
{
	cleanup_close int fd = -1;
	const struct guest_counters *c;
	struct stat st;

	*out = NULL;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "counters: open %s", path);
	if (fstat(fd, &st) < 0)
		return qerr_sys(err, errno, "counters: stat %s", path);
	if (!S_ISREG(st.st_mode))
		return qerr_set(err, EINVAL, "counters: %s: not a regular file", path);
	/* Exact size: a shorter file would fault (SIGBUS) past its end, a
	 * different layout must not be read as this one. */
	if (st.st_size != (off_t)sizeof(*c))
		return qerr_set(err, EINVAL, "counters: %s: size %lld, expected %zu", path,
				(long long)st.st_size, sizeof(*c));
	c = mmap(NULL, sizeof(*c), PROT_READ, MAP_SHARED, fd, 0);
	if (c == MAP_FAILED)
		return qerr_sys(err, errno, "counters: map %s", path);
	if (c->magic != GUEST_COUNTERS_MAGIC || c->version != GUEST_COUNTERS_VERSION ||
	    c->nr_max != GUEST_NR_MAX) {
		int e = c->magic != GUEST_COUNTERS_MAGIC ? EINVAL : EPROTO;
		uint32_t magic = c->magic, version = c->version, nr_max = c->nr_max;

		munmap((void *)c, sizeof(*c));
		return qerr_set(err, e,
				"counters: %s: bad header (magic %#x, version %u, nr_max %u; "
				"expected %#x, %u, %u)",
				path, magic, version, nr_max, GUEST_COUNTERS_MAGIC,
				GUEST_COUNTERS_VERSION, GUEST_NR_MAX);
	}
	atomic_thread_fence(memory_order_acquire);
	*out = c;
	return 0;
}

void guest_counters_unmap(const struct guest_counters *c)
{
	if (c)
		munmap((void *)c, sizeof(*c));
}
