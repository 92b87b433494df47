/* Emulated system-information calls: what the workload sees of the machine
 * should be its sandbox, not the host. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "guest/policy.h"
#include "guest/trap.h"
#include "libcommon/cleanup.h"

/* The memory cgroup's current usage in bytes, or -1 if unknown. */
static int64_t read_usage(const char *path)
{
	cleanup_close int fd = -1;
	char buf[32];
	ssize_t n;
	char *end;
	unsigned long long v;

	if (!path)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || v > INT64_MAX)
		return -1;
	return (int64_t)v;
}

/* Like gVisor: with a memory limit, totalram is the limit and freeram what
 * is left of it; swap is not offered.  Without one the host's figures pass
 * (the workload could read them from /proc/meminfo anyway). */
int sys_sysinfo(const struct policy_call *call, int64_t *val)
{
	const struct trap_ctx *ctx = call->ctx;
	struct sysinfo si;
	uint64_t host_total, host_free, total, free_b;
	int64_t usage;
	int rc;

	if (sysinfo(&si) < 0)
		return -errno;
	host_total = (uint64_t)si.totalram * si.mem_unit;
	if (ctx && ctx->memory_limit > 0 && (uint64_t)ctx->memory_limit < host_total) {
		total = (uint64_t)ctx->memory_limit;
		usage = read_usage(ctx->memory_usage_path);
		host_free = (uint64_t)si.freeram * si.mem_unit;
		if (usage >= 0)
			free_b = (uint64_t)usage < total ? total - (uint64_t)usage : 0;
		else /* usage unknown: free is bounded by both */
			free_b = host_free < total ? host_free : total;
		si.totalram = total;
		si.freeram = free_b;
		si.sharedram = 0;
		si.bufferram = 0;
		si.totalswap = 0;
		si.freeswap = 0;
		si.totalhigh = 0;
		si.freehigh = 0;
		si.mem_unit = 1;
	}
	rc = sys_copy_to_user(call, call->args[0], &si, sizeof(si));
	if (rc < 0)
		return rc;
	*val = 0;
	return 0;
}
