/* What a sandbox uses: CPU, memory and pids from its cgroups, trapped
 * syscalls from ROOT/ID/counters.  One reader for the `stats` op and for
 * /metrics, so that `qctl stats` and Prometheus agree.
 *
 * cgroup v1 (cpuacct, memory, pids hierarchies) and v2 (one directory with
 * cpu.stat, memory.current, pids.current) are both read: the sandbox's
 * cgroups list says where each controller is, and the first directory that
 * has a file wins.  Memory is the working set: usage minus the inactive
 * file cache, which the kernel reclaims first (what kubelet and `docker
 * stats` report). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "guest/counters.h"
#include "libcommon/cleanup.h"
#include "services/vmmd/vmmd.h"

#define CGROUP_FILE_MAX 8192 /* memory.stat is ~1.5 KiB */

/* A directory on a cgroup filesystem (the list came from a root client,
 * but a path that is not a cgroup is not read). */
static int cgroup_dir_open(const char *path)
{
	struct statfs fs;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstatfs(fd, &fs) < 0 ||
	    (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The file's text, NUL-terminated, in buf; -1 if it is not there. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t len)
{
	cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	size_t off = 0;

	if (fd < 0)
		return -1;
	while (off + 1 < len) {
		ssize_t n = read(fd, buf + off, len - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	return (ssize_t)off;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || (*end && *end != '\n'))
		return false;
	*out = v;
	return true;
}

/* "key value" lines (memory.stat, cpu.stat) */
static bool stat_key(const char *text, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);

	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
			return parse_u64(p + klen + 1, out);
		if (!nl)
			break;
		p = nl + 1;
	}
	return false;
}

static bool read_u64(int dirfd, const char *name, uint64_t *out)
{
	char buf[64];

	return read_small(dirfd, name, buf, sizeof(buf)) > 0 && parse_u64(buf, out);
}

static void read_cgroup_dir(int dirfd, struct sandbox_stats *st)
{
	char buf[CGROUP_FILE_MAX];
	uint64_t v, inactive;

	if (!st->has_cpu) {
		if (read_u64(dirfd, "cpuacct.usage", &v)) {
			st->cpu_ns = v;
			st->has_cpu = true;
		} else if (read_small(dirfd, "cpu.stat", buf, sizeof(buf)) > 0 &&
			   stat_key(buf, "usage_usec", &v)) {
			st->cpu_ns = v * 1000;
			st->has_cpu = true;
		}
	}
	if (!st->has_memory) {
		const char *inactive_key = "total_inactive_file";
		bool got = read_u64(dirfd, "memory.usage_in_bytes", &v);
		if (!got && (got = read_u64(dirfd, "memory.current", &v)))
			inactive_key = "inactive_file";
		if (got) {
			if (read_small(dirfd, "memory.stat", buf, sizeof(buf)) > 0 &&
			    stat_key(buf, inactive_key, &inactive))
				v = inactive < v ? v - inactive : 0;
			st->memory_bytes = v;
			st->has_memory = true;
		}
	}
	if (!st->has_pids && read_u64(dirfd, "pids.current", &v)) {
		st->pids = v;
		st->has_pids = true;
	}
}

int sandbox_syscalls_read(const char *id, uint64_t *trapped_by_nr, uint64_t *denied_by_nr,
			  uint64_t *trapped, uint64_t *denied)
{
	char path[PATH_MAX + SANDBOX_ID_MAX + 32];
	const struct guest_counters *c;

	*trapped = *denied = 0;
	snprintf(path, sizeof(path), "%s/%s/counters", vmmd.root, id);
	if (guest_counters_open(path, &c, NULL) < 0)
		return -ENOENT;
	for (uint32_t nr = 0; nr < GUEST_NR_MAX; nr++) {
		uint64_t t = atomic_load(&c->trapped[nr]), d = atomic_load(&c->denied[nr]);
		if (trapped_by_nr)
			trapped_by_nr[nr] += t;
		if (denied_by_nr)
			denied_by_nr[nr] += d;
		*trapped += t;
		*denied += d;
	}
	*trapped += atomic_load(&c->trapped_other);
	guest_counters_unmap(c);
	return 0;
}

void sandbox_stats_read(const char *id, char *const *cgroups, size_t ncgroups,
			uint64_t *trapped_by_nr, uint64_t *denied_by_nr, struct sandbox_stats *st)
{
	*st = (struct sandbox_stats){0};
	for (size_t i = 0; i < ncgroups; i++) {
		int fd = cgroup_dir_open(cgroups[i]);
		if (fd < 0)
			continue;
		read_cgroup_dir(fd, st);
		close(fd);
	}
	st->has_syscalls = sandbox_syscalls_read(id, trapped_by_nr, denied_by_nr,
						 &st->syscalls_trapped, &st->syscalls_denied) == 0;
}
