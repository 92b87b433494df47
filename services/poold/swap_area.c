/* The swap area hibernated sandboxes are paged out to (docs/hibernate.md):
 * a swap file poold makes under its state directory and activates, when
 * its config asks for one ("swap": {"mib": N}).
 *
 * A poold killed with -9 leaves the file active: pages of hibernated
 * sandboxes may be in it, and the next poold adopts it (found in
 * /proc/swaps).  An orderly stop deactivates it: swapoff(2) brings every
 * page back into memory first (nothing is lost; the sandboxes are just no
 * longer light), then the file is removed.  A host that already has swap
 * keeps it: the kernel uses every area, ours at a lower priority. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/poold/swap_area.h"

extern char **environ;

/* Our file's line in /proc/swaps: its size and use in KiB; -ENOENT when it
 * is not an active swap area. */
int swap_area_usage(const char *path, uint64_t *size_kib, uint64_t *used_kib)
{
	cleanup_fclose FILE *f = fopen("/proc/swaps", "re");
	char line[PATH_MAX + 128], name[PATH_MAX + 1], type[32];
	unsigned long long size, used;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%4096s %31s %llu %llu", name, type, &size, &used) != 4)
			continue;
		if (strcmp(name, path) == 0) {
			if (size_kib)
				*size_kib = size;
			if (used_kib)
				*used_kib = used;
			return 0;
		}
	}
	return -ENOENT;
}

static int run_mkswap(const char *path, struct qerr *err)
{
	const char *argv[] = {"mkswap", "-q", path, NULL};
	posix_spawn_file_actions_t fa;
	int status, rc;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&pid, "mkswap", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return qerr_sys(err, rc, "mkswap (util-linux)");
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return qerr_sys(err, errno, "waitpid mkswap");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return qerr_set(err, EIO, "mkswap %s failed (status %d)", path, status);
	return 0;
}

int swap_area_start(struct swap_area *s, const char *state_dir, uint64_t mib, struct qerr *err)
{
	cleanup_close int fd = -1;

	memset(s, 0, sizeof(*s));
	if ((size_t)snprintf(s->path, sizeof(s->path), "%s/swap.img", state_dir) >= sizeof(s->path))
		return qerr_set(err, ENAMETOOLONG, "swap area: state directory too long");
	s->mib = mib;
	if (swap_area_usage(s->path, NULL, NULL) == 0) {
		s->active = true;
		qlog_info("swap area %s: already active (left by an earlier poold), adopted",
			  s->path);
		return 0;
	}
	unlink(s->path); /* an inactive leftover: made again */
	fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return qerr_sys(err, errno, "swap area: create %s", s->path);
	/* swapon refuses a file with holes: the blocks must be allocated. */
	int r = posix_fallocate(fd, 0, (off_t)(mib << 20));
	if (r != 0) {
		unlink(s->path);
		return qerr_sys(err, r, "swap area: allocate %llu MiB for %s",
				(unsigned long long)mib, s->path);
	}
	if (run_mkswap(s->path, err) < 0) {
		unlink(s->path);
		return -err->code;
	}
	/* No SWAP_FLAG_PREFER: the kernel gives it a priority below the
	 * host's own areas, which it fills first. */
	if (swapon(s->path, 0) < 0) {
		int e = errno;
		unlink(s->path);
		return qerr_sys(err, e, "swap area: swapon %s%s", s->path,
				e == EPERM ? " (this host forbids swap to us: no CAP_SYS_ADMIN in "
					     "the initial user namespace, or a seccomp filter)"
					   : "");
	}
	s->active = true;
	qlog_info("swap area %s: %llu MiB active", s->path, (unsigned long long)mib);
	return 0;
}

void swap_area_stop(struct swap_area *s)
{
	if (!s->active)
		return;
	/* Brings every page of it back into memory first: may take a while,
	 * and fails (ENOMEM) when they do not fit; then the area stays. */
	if (swapoff(s->path) < 0) {
		qlog_warn("swap area %s: swapoff: %s; left active", s->path, strerror(errno));
		return;
	}
	unlink(s->path);
	s->active = false;
	qlog_info("swap area %s: off and removed", s->path);
}
