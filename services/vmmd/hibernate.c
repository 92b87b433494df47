/* Hibernate and wake (docs/hibernate.md): a sandbox keeps its processes,
 * namespaces, sockets and files, but its memory goes out to swap.
 *
 * hibernate: freeze (cgroup freezer), record the sandbox as hibernated,
 * then, on libuv's thread pool so that the loop keeps serving, ask the
 * kernel to empty the sandbox's memory cgroup (memory.force_empty: every
 * reclaimable page is reclaimed, anonymous and shmem pages to swap, clean
 * page cache dropped).  wake: thaw; pages come back on demand.
 *
 * The worker touches only cgroup files named in its job; what it found is
 * applied on the loop, and only if the sandbox is still the one that asked
 * (same id, same generation, still hibernated). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

struct hib_job {
	uv_work_t work;
	char id[SANDBOX_ID_MAX + 1];
	uint64_t gen;
	char memcg[PATH_MAX];
	int64_t t0_ns;
	/* results */
	int error;
	uint64_t usage_before, usage_after, swap_after;
	int64_t took_ns;
};

static int64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The sandbox's memory cgroup (v1): the one of its cgroups with
 * memory.force_empty. */
int memcg_dir(const struct sandbox *sb, char *out, size_t len)
{
	char p[PATH_MAX + 32];

	for (size_t i = 0; i < sb->ncgroups; i++) {
		snprintf(p, sizeof(p), "%s/memory.force_empty", sb->cgroups[i]);
		if (access(p, W_OK) == 0) {
			snprintf(out, len, "%s", sb->cgroups[i]);
			return 0;
		}
	}
	return -ENOENT;
}

static int read_u64_file(const char *dir, const char *name, uint64_t *out)
{
	char p[PATH_MAX + 64], buf[64];
	cleanup_close int fd = -1;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if ((n = read(fd, buf, sizeof(buf) - 1)) < 0)
		return -errno;
	buf[n] = '\0';
	*out = strtoull(buf, NULL, 10);
	return 0;
}

/* A "key value" line of memory.stat. */
static int memstat(const char *dir, const char *key, uint64_t *out)
{
	char p[PATH_MAX + 64], line[256];
	cleanup_fclose FILE *f = NULL;
	size_t kl = strlen(key);

	snprintf(p, sizeof(p), "%s/memory.stat", dir);
	if (!(f = fopen(p, "re")))
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
			*out = strtoull(line + kl + 1, NULL, 10);
			return 0;
		}
	}
	return -ENOENT;
}

/* Free swap on the host, in bytes (every active area). */
static uint64_t swap_free_bytes(void)
{
	cleanup_fclose FILE *f = fopen("/proc/swaps", "re");
	char line[PATH_MAX + 128], name[PATH_MAX + 1], type[32];
	unsigned long long size, used, sum = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%4096s %31s %llu %llu", name, type, &size, &used) == 4 &&
		    size > used)
			sum += size - used;
	return sum << 10;
}

static void hib_work(uv_work_t *w)
{
	struct hib_job *j = w->data;
	char p[PATH_MAX + 32];
	cleanup_close int fd = -1;

	read_u64_file(j->memcg, "memory.usage_in_bytes", &j->usage_before);
	snprintf(p, sizeof(p), "%s/memory.force_empty", j->memcg);
	/* Reclaims until the group holds nothing reclaimable; what stays is
	 * kernel memory: page tables, slab, the frozen tasks' stacks.  The
	 * kernel gives up after a few rounds without progress, and a page
	 * still being written to swap stays charged until the write is done
	 * (a tmpfs file's pages, typically): go again while a round frees a
	 * MiB or pages are under writeback, for up to about a second. */
	if ((fd = open(p, O_WRONLY | O_CLOEXEC)) < 0) {
		j->error = errno;
		return;
	}
	uint64_t last = j->usage_before, writeback = 0;
	for (int round = 0; round < 50; round++) {
		if (write(fd, "0", 1) < 0) {
			j->error = errno;
			break;
		}
		read_u64_file(j->memcg, "memory.usage_in_bytes", &j->usage_after);
		writeback = 0;
		memstat(j->memcg, "writeback", &writeback);
		if (j->usage_after + (1u << 20) > last && writeback == 0)
			break;
		last = j->usage_after;
		nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	}
	memstat(j->memcg, "swap", &j->swap_after);
	j->took_ns = mono_ns() - j->t0_ns;
}

static void hib_done(uv_work_t *w, int status)
{
	struct hib_job *j = w->data;
	struct sandbox *sb = sandbox_find(j->id);

	(void)status;
	if (!sb || sb->hib_gen != j->gen || sb->hib != HIB_GOING) {
		/* deleted or woken meanwhile: nothing to record */
		free(j);
		return;
	}
	sb->hib = HIB_DONE;
	sb->hib_swapped = j->swap_after;
	sb->hib_resident = j->usage_after;
	if (j->error)
		qlog_warn("%s: hibernate: memory.force_empty: %s (memory partly out)", sb->id,
			  strerror(j->error));
	qlog_info("%s: hibernated in %.1f ms: memory %.1f -> %.1f MiB, %.1f MiB in swap", sb->id,
		  (double)j->took_ns / 1e6, (double)j->usage_before / 1048576.0,
		  (double)j->usage_after / 1048576.0, (double)j->swap_after / 1048576.0);
	vmmd_metrics_hibernated(sb, (double)j->took_ns / 1e9);
	save_or_log(sb);
	events_publish("hibernated", sb);
	free(j);
}

static bool wants_auto_wake(const struct sandbox *sb)
{
	const char *v =
	    json_string_value(json_object_get(sb->annotations, "io.quiver.wake-on-connection"));

	return !v || strcmp(v, "off") != 0;
}

int hibernate_start(struct sandbox *sb, int auto_wake, struct qerr *err)
{
	struct hib_job *j;
	int r;

	if (sb->hib != HIB_NONE)
		return qerr_set(err, EINVAL, "container %s is already %s", sb->id,
				sb->hib == HIB_GOING ? "hibernating" : "hibernated");
	if (sb->status == SB_PAUSED)
		return qerr_set(err, EINVAL, "container %s is paused: resume it first", sb->id);
	if (sb->status != SB_RUNNING && sb->status != SB_CREATED)
		return qerr_set(err, EINVAL, "container %s is not running", sb->id);
	j = calloc(1, sizeof(*j));
	if (!j)
		return qerr_set(err, ENOMEM, "out of memory");
	if (memcg_dir(sb, j->memcg, sizeof(j->memcg)) < 0) {
		free(j);
		return qerr_set(err, ENOTSUP, "container %s has no memory cgroup to page out",
				sb->id);
	}
	/* Without swap the kernel can only drop page cache: say so rather
	 * than record a hibernation that keeps everything resident. */
	if (swap_free_bytes() == 0) {
		free(j);
		return qerr_set(err, ENOSPC,
				"no swap with room on this host: start poold with a swap area "
				"(\"swap\": {\"mib\": N} in its config, docs/hibernate.md)");
	}
	if (auto_wake < 0)
		auto_wake = wants_auto_wake(sb);
	/* Before the freeze: a connection that comes while it freezes wakes
	 * it rather than wait in the backlog of a listener not yet watched. */
	if (auto_wake)
		wake_watch_start(sb, j->memcg, true);
	if ((r = freezer_set(sb, true, err)) < 0) {
		wake_watch_stop(sb);
		free(j);
		return r;
	}
	sb->paused_from = sb->status;
	set_status(sb, SB_PAUSED);
	sb->hib = HIB_GOING;
	sb->hib_gen++;
	sb->hib_ns = now_ns();
	sb->hib_swapped = sb->hib_resident = 0;
	sb->hib_manual = !auto_wake;
	save_or_log(sb);
	snprintf(j->id, sizeof(j->id), "%s", sb->id);
	j->gen = sb->hib_gen;
	j->t0_ns = mono_ns();
	j->work.data = j;
	if ((r = uv_queue_work(vmmd.loop, &j->work, hib_work, hib_done)) < 0) {
		/* no thread: do it here */
		hib_work(&j->work);
		hib_done(&j->work, 0);
	}
	return 0;
}

/* ---- the working set (REAP-style) ----
 *
 * WS_WINDOW after a wake, vmmd notes which pages of the sandbox's
 * processes are resident: they were all paged out, so those are the pages
 * it touched since it woke (the request that woke it, typically).  The
 * ranges go to ROOT/ID/workingset ("PID START LENGTH" lines).  A wake with
 * prefetch asks the kernel to read them back before the thaw
 * (process_madvise MADV_WILLNEED: swap and file readahead, asynchronous),
 * instead of one fault at a time. */

#define WS_WINDOW_NS  (1000LL * 1000000LL)
#define WS_RANGES_MAX 65536
#define WS_VMA_MAX    (64ULL << 30)
#define WS_FILE	      "workingset"

struct ws_job {
	uv_work_t work;
	char id[SANDBOX_ID_MAX + 1];
	char memcg[PATH_MAX];
	char path[PATH_MAX + SANDBOX_ID_MAX + 32];
	int64_t t0_ns;
	uint64_t bytes, ranges;
	int error;
};

static uv_timer_t ws_timer;
static bool ws_timer_on;

/* The pids in the sandbox's memory cgroup (its processes; threads share
 * their memory). */
size_t cgroup_pids(const char *memcg, pid_t *out, size_t max)
{
	char p[PATH_MAX + 32];
	cleanup_fclose FILE *f = NULL;
	size_t n = 0;
	long v;

	snprintf(p, sizeof(p), "%s/cgroup.procs", memcg);
	if (!(f = fopen(p, "re")))
		return 0;
	while (n < max && fscanf(f, "%ld", &v) == 1)
		out[n++] = (pid_t)v;
	return n;
}

/* Append the resident runs of one process to out.  The mappings come from
 * smaps, which has each one's Rss: only those with pages resident are
 * walked in pagemap, and none larger than WS_VMA_MAX (a sanitizer's
 * shadow is terabytes of reserved address space with a few pages in it:
 * walking it page by page would take hours). */
static void ws_scan_pid(pid_t pid, FILE *out, struct ws_job *j)
{
	char p[64], line[PATH_MAX + 128];
	cleanup_fclose FILE *smaps = NULL;
	cleanup_close int pm = -1;
	const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
	unsigned long start = 0, end = 0;
	bool skip = true;

	snprintf(p, sizeof(p), "/proc/%d/smaps", (int)pid);
	if (!(smaps = fopen(p, "re")))
		return;
	snprintf(p, sizeof(p), "/proc/%d/pagemap", (int)pid);
	if ((pm = open(p, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	while (fgets(line, sizeof(line), smaps) && j->ranges < WS_RANGES_MAX) {
		unsigned long a, b, rss;
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			start = a;
			end = b;
			skip = strstr(line, "[vsyscall]") || strstr(line, "[vvar]") ||
			       strstr(line, "[vdso]");
			continue;
		}
		if (skip || sscanf(line, "Rss: %lu kB", &rss) != 1 || rss == 0 ||
		    end - start > WS_VMA_MAX)
			continue;
		unsigned long run = 0, run_start = 0;
		for (unsigned long a2 = start; a2 < end;) {
			uint64_t buf[512];
			size_t want = (end - a2) / page;
			if (want > 512)
				want = 512;
			ssize_t got = pread(pm, buf, want * 8, (off_t)(a2 / page * 8));
			if (got <= 0)
				break;
			for (size_t i = 0; i < (size_t)got / 8; i++, a2 += page) {
				if (buf[i] >> 63) { /* present */
					if (!run)
						run_start = a2;
					run += page;
					continue;
				}
				if (run && j->ranges < WS_RANGES_MAX) {
					fprintf(out, "%d %lx %lx\n", (int)pid, run_start, run);
					j->bytes += run;
					j->ranges++;
				}
				run = 0;
			}
		}
		if (run && j->ranges < WS_RANGES_MAX) {
			fprintf(out, "%d %lx %lx\n", (int)pid, run_start, run);
			j->bytes += run;
			j->ranges++;
		}
	}
}

static void ws_work(uv_work_t *w)
{
	struct ws_job *j = w->data;
	char tmp[sizeof(j->path) + 8];
	pid_t pids[256];
	size_t n = cgroup_pids(j->memcg, pids, 256);
	FILE *out;

	snprintf(tmp, sizeof(tmp), "%s.tmp", j->path);
	if (!(out = fopen(tmp, "we"))) {
		j->error = errno;
		return;
	}
	for (size_t i = 0; i < n; i++)
		ws_scan_pid(pids[i], out, j);
	if (fclose(out) != 0 || rename(tmp, j->path) < 0) {
		j->error = errno;
		unlink(tmp);
	}
}

static void ws_done(uv_work_t *w, int status)
{
	struct ws_job *j = w->data;

	(void)status;
	if (j->error)
		qlog_warn("%s: working set: %s", j->id, strerror(j->error));
	else
		qlog_info("%s: working set after the wake: %.1f MiB in %llu ranges (%.1f ms)",
			  j->id, (double)j->bytes / 1048576.0, (unsigned long long)j->ranges,
			  (double)(mono_ns() - j->t0_ns) / 1e6);
	free(j);
}

static void ws_tick(uv_timer_t *t)
{
	int64_t now = mono_ns();
	bool pending = false;

	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next) {
		struct ws_job *j;
		if (!sb->ws_due_ns)
			continue;
		if (sb->status != SB_RUNNING || sb->hib != HIB_NONE) {
			sb->ws_due_ns = 0; /* hibernated again, or gone: too late */
			continue;
		}
		if (sb->ws_due_ns > now) {
			pending = true;
			continue;
		}
		sb->ws_due_ns = 0;
		if (!(j = calloc(1, sizeof(*j))) || memcg_dir(sb, j->memcg, sizeof(j->memcg)) < 0) {
			free(j);
			continue;
		}
		snprintf(j->id, sizeof(j->id), "%s", sb->id);
		snprintf(j->path, sizeof(j->path), "%s/%s/%s", vmmd.root, sb->id, WS_FILE);
		j->t0_ns = now;
		j->work.data = j;
		if (uv_queue_work(vmmd.loop, &j->work, ws_work, ws_done) < 0)
			free(j);
	}
	if (!pending) {
		uv_timer_stop(t);
		ws_timer_on = false;
	}
}

static void ws_record_later(struct sandbox *sb)
{
	static bool inited; /* a handle is initialised once: it stays on the loop */

	sb->ws_due_ns = mono_ns() + WS_WINDOW_NS;
	if (!inited) {
		uv_timer_init(vmmd.loop, &ws_timer);
		uv_unref((uv_handle_t *)&ws_timer);
		inited = true;
	}
	if (!ws_timer_on) {
		uv_timer_start(&ws_timer, ws_tick, 100, 100);
		ws_timer_on = true;
	}
}

/* io.quiver.wake-prefetch: "on" makes prefetch the default of the
 * sandbox's wakes (those a kill or resume makes too). */
static bool wants_prefetch(const struct sandbox *sb)
{
	const char *v =
	    json_string_value(json_object_get(sb->annotations, "io.quiver.wake-prefetch"));
	return v && strcmp(v, "on") == 0;
}

/* MADV_WILLNEED over the recorded ranges of the processes still in the
 * sandbox: bytes asked for. */
/* Wait for the reads MADV_WILLNEED started: copy the ranges out of the
 * process (process_vm_readv faults each page in, waiting for its read),
 * into a scratch buffer that is thrown away. */
static void ws_wait(pid_t pid, const struct iovec *iov, size_t n)
{
	static char scratch[256 << 10];

	for (size_t i = 0; i < n; i++) {
		for (size_t off = 0; off < iov[i].iov_len; off += sizeof(scratch)) {
			size_t len = iov[i].iov_len - off;
			struct iovec local = {.iov_base = scratch,
					      .iov_len =
						  len < sizeof(scratch) ? len : sizeof(scratch)};
			struct iovec remote = {.iov_base = (char *)iov[i].iov_base + off,
					       .iov_len = local.iov_len};
			if (process_vm_readv(pid, &local, 1, &remote, 1, 0) < 0)
				break;
		}
	}
}

static uint64_t ws_prefetch(const char *path, const char *memcg, bool wait)
{
	cleanup_fclose FILE *f = NULL;
	pid_t pids[256], cur = -1;
	size_t npids, n = 0;
	struct iovec iov[IOV_MAX];
	uint64_t total = 0;
	int pidfd = -1, pid;
	unsigned long start, len;

	if (!(f = fopen(path, "re")))
		return 0;
	npids = cgroup_pids(memcg, pids, 256);
	for (;;) {
		int k = fscanf(f, "%d %lx %lx", &pid, &start, &len);
		if ((k != 3 || pid != cur || n == IOV_MAX) && n && pidfd >= 0) {
			ssize_t r = syscall(SYS_process_madvise, pidfd, iov, n, MADV_WILLNEED, 0);
			if (r > 0)
				total += (uint64_t)r;
			if (wait)
				ws_wait(cur, iov, n);
			n = 0;
		}
		if (k != 3)
			break;
		if (pid != cur) {
			bool ours = false;
			for (size_t i = 0; i < npids; i++)
				ours |= pids[i] == pid;
			if (pidfd >= 0)
				close(pidfd);
			/* a pid no longer in the sandbox may be anyone's now */
			pidfd = ours ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
			cur = pid;
		}
		if (pidfd >= 0)
			iov[n++] = (struct iovec){.iov_base = (void *)start, .iov_len = len};
	}
	if (pidfd >= 0)
		close(pidfd);
	return total;
}

/* Before the thaw: start every read, then wait for them, so that the
 * sandbox runs with its working set in memory. */
static void ws_prefetch_sync(const struct sandbox *sb)
{
	char path[PATH_MAX + SANDBOX_ID_MAX + 32], memcg[PATH_MAX];
	int64_t t0 = mono_ns();
	uint64_t total;

	if (memcg_dir(sb, memcg, sizeof(memcg)) < 0)
		return;
	snprintf(path, sizeof(path), "%s/%s/%s", vmmd.root, sb->id, WS_FILE);
	total = ws_prefetch(path, memcg, true);
	qlog_info("%s: prefetch: %.1f MiB of its working set read back in %.1f ms", sb->id,
		  (double)total / 1048576.0, (double)(mono_ns() - t0) / 1e6);
}

int hibernate_wake(struct sandbox *sb, const char *why, int prefetch, struct qerr *err)
{
	int64_t t0 = mono_ns();
	int r;

	if (sb->hib == HIB_NONE)
		return qerr_set(err, EINVAL, "container %s is not hibernated", sb->id);
	if (sb->hib_manual && strcmp(why, "connection") == 0)
		return qerr_set(err, EPERM,
				"container %s was hibernated with auto_wake off: a connection "
				"does not wake it",
				sb->id);
	if (prefetch < 0)
		prefetch = wants_prefetch(sb);
	if (prefetch && sb->hib == HIB_DONE)
		ws_prefetch_sync(sb);
	if ((r = freezer_set(sb, false, err)) < 0)
		return r;
	wake_watch_stop(sb);
	ws_record_later(sb);
	sb->hib = HIB_NONE;
	sb->hib_manual = false;
	sb->hib_gen++; /* a worker still paging out finds nothing to record */
	set_status(sb, sb->paused_from == SB_CREATED ? SB_CREATED : SB_RUNNING);
	save_or_log(sb);
	double took = (double)(mono_ns() - t0) / 1e9;
	vmmd_metrics_woken(took);
	qlog_info("%s: woken (%s) in %.2f ms%s", sb->id, why, took * 1e3,
		  prefetch ? ", prefetching its working set" : "");
	events_publish("woken", sb);
	return 0;
}

static void idle_sweep(uv_timer_t *t)
{
	int64_t now = mono_ns();

	(void)t;
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next) {
		struct sandbox_stats st;
		struct qerr err = {0};

		if (sb->status != SB_RUNNING || sb->hib != HIB_NONE) {
			sb->idle_since_ns = 0;
			continue;
		}
		memset(&st, 0, sizeof(st));
		sandbox_stats_read(sb->id, sb->cgroups, sb->ncgroups, NULL, NULL, &st);
		if (!st.has_cpu)
			continue;
		/* Busy, or first seen: the idle time starts now. */
		if (sb->idle_since_ns == 0 || st.cpu_ns != sb->idle_cpu_ns ||
		    st.syscalls_trapped != sb->idle_syscalls) {
			sb->idle_cpu_ns = st.cpu_ns;
			sb->idle_syscalls = st.syscalls_trapped;
			sb->idle_since_ns = now;
			continue;
		}
		if (now - sb->idle_since_ns < vmmd.hibernate_idle_ns)
			continue;
		qlog_info("%s: idle for %.1f s: hibernating", sb->id,
			  (double)(now - sb->idle_since_ns) / 1e9);
		sb->idle_since_ns = 0;
		if (hibernate_start(sb, -1, &err) < 0)
			qlog_warn("%s: idle, but not hibernated: %s", sb->id, err.msg);
		else
			events_publish("hibernating", sb);
	}
}

void hibernate_idle_start(void)
{
	static uv_timer_t timer;
	int64_t ms = vmmd.hibernate_idle_ns / 4000000;

	if (vmmd.hibernate_idle_ns <= 0)
		return;
	ms = ms < 250 ? 250 : ms > 5000 ? 5000 : ms;
	uv_timer_init(vmmd.loop, &timer);
	uv_unref((uv_handle_t *)&timer); /* the loop ends without waiting for it */
	uv_timer_start(&timer, idle_sweep, (uint64_t)ms, (uint64_t)ms);
	qlog_info("idle policy: hibernate after %.1f s without CPU or trapped calls",
		  (double)vmmd.hibernate_idle_ns / 1e9);
}
