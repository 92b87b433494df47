/* pause/resume through the cgroup v1 freezer (the only freezer these hosts
 * have: the v2 hierarchy carries no controllers but hugetlb). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "services/vmmd/vmmd.h"

static int freezer_dir(struct sandbox *sb, char *path, size_t len)
{
	for (size_t i = 0; i < sb->ncgroups; i++) {
		snprintf(path, len, "%s/freezer.state", sb->cgroups[i]);
		if (access(path, F_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

static int read_state(const char *path, char *buf, size_t len)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

int freezer_set(struct sandbox *sb, bool frozen, struct qerr *err)
{
	const char *want = frozen ? "FROZEN" : "THAWED";
	char path[PATH_MAX + 32], state[32];
	cleanup_close int fd = -1;

	if (freezer_dir(sb, path, sizeof(path)) < 0)
		return qerr_set(err, ENOTSUP, "container %s has no freezer cgroup", sb->id);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "open %s", path);
	/* FREEZING may persist while a task is in an uninterruptible sleep:
	 * write again and re-check, for up to a second, as runc does. */
	for (int i = 0; i < 1000; i++) {
		if (write(fd, want, strlen(want)) < 0)
			return qerr_sys(err, errno, "write %s", path);
		if (read_state(path, state, sizeof(state)) < 0)
			return qerr_sys(err, errno, "read %s", path);
		if (strcmp(state, want) == 0)
			return 0;
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	if (frozen) {
		(void)!write(fd, "THAWED", 6);
		return qerr_set(err, EBUSY, "container %s: freezer stuck in %s", sb->id, state);
	}
	return qerr_set(err, EBUSY, "container %s: could not thaw (%s)", sb->id, state);
}
