/* cgroup_alloc: the time to give a new process a cgroup of its own, made on
 * the spot (mkdir) or taken from pre-made ones: renamed on v1 (RunD's
 * trick: no new cgroup is created on the start path), joined directly with
 * clone3(CLONE_INTO_CGROUP) on v2 (where rename is EPERM).  One run is one
 * round of one mode; it prints the microseconds per allocation.
 *
 *   cc -O2 -o cgroup_alloc bench/cgroup_alloc.c
 *   sudo ./cgroup_alloc MODE [-n ALLOCS] [-j WORKERS]
 *
 *   v1-mkdir        mkdir in every v1 hierarchy (cpuset: cpus/mems from the
 *                   parent) + the pid into each cgroup.procs
 *   v1-rename       rename a pre-made group in every v1 hierarchy + the pid
 *   v2-mkdir-clone  mkdir + open + clone3(CLONE_INTO_CGROUP)
 *   v2-pre-clone    open a pre-made group + clone3(CLONE_INTO_CGROUP)
 *   v2-mkdir-procs  mkdir + the pid into cgroup.procs
 *   v2-pre-procs    the pid into cgroup.procs of a pre-made group
 *   clone           clone3 alone (the process creation inside the two above)
 *
 * Each of WORKERS processes (default 1) makes ALLOCS (default 50)
 * allocations, all released at once; the time is the wall time from the
 * release to the last one done, divided by WORKERS * ALLOCS.  The pid moved
 * into cgroup.procs is a sleeping helper child of each worker, moved on to the
 * next group each time.  Everything lives under "quiver-bench-<pid>" below our
 * own cgroup in each hierarchy, and is removed before exit.
 * bench/cgroup_alloc.py compiles this and runs interleaved rounds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_HIER   16
#define MAX_ALLOCS 10000

struct hier {
	bool v2, cpuset;
	char parent[PATH_MAX]; /* <mount><own cgroup>/quiver-bench-<pid> */
};

static struct hier hs[MAX_HIER];
static int n_hier;
static const char *mode;
static int n_allocs = 50, n_workers = 1;

/* The v1 hierarchies Quiver puts sandboxes in (guest/cgroups.c). */
static const char *const used_v1[] = {"cpu",	 "cpuacct", "cpuset", "memory",	 "pids",
				      "devices", "freezer", "blkio",  "hugetlb", "name=systemd"};

static void die(const char *what)
{
	fprintf(stderr, "cgroup_alloc: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX + 64];
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		r = -1;
	close(fd);
	return r;
}

static int read_file(const char *dir, const char *file, char *buf, size_t size)
{
	char path[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static bool has_token(const char *list, const char *tok)
{
	size_t tl = strlen(tok);

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		if (n == tl && strncmp(p, tok, n) == 0)
			return true;
		p += n + (p[n] != '\0');
	}
	return false;
}

static bool all_in(const char *want, const char *have)
{
	char tok[128];

	for (const char *p = want; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 0 || n >= sizeof(tok))
			return false;
		snprintf(tok, sizeof(tok), "%.*s", (int)n, p);
		if (!has_token(have, tok))
			return false;
		p += n + (p[n] != '\0');
	}
	return true;
}

static bool used(const char *ctrls)
{
	for (size_t i = 0; i < sizeof(used_v1) / sizeof(used_v1[0]); i++)
		if (has_token(ctrls, used_v1[i]))
			return true;
	return false;
}

/* One hierarchy per /proc/self/cgroup line whose mount we find. */
static void add_hier(const char *ctrls, const char *path, char mounts[][3][PATH_MAX], int n_m)
{
	for (int m = 0; m < n_m; m++) {
		bool v2 = strcmp(mounts[m][2], "cgroup2") == 0;
		const char *root = mounts[m][0], *rel = path;
		size_t rl = strlen(root);
		struct hier *h = &hs[n_hier];

		if (ctrls[0] ? v2 || !all_in(ctrls, mounts[m][2] + 7) : !v2)
			continue;
		if (ctrls[0] && !used(ctrls))
			return;
		if (strcmp(root, "/") != 0 && strncmp(path, root, rl) == 0)
			rel = path + rl;
		h->v2 = v2;
		h->cpuset = !v2 && has_token(ctrls, "cpuset");
		if (snprintf(h->parent, sizeof(h->parent), "%s%s/quiver-bench-%d", mounts[m][1],
			     strcmp(rel, "/") == 0 ? "" : rel,
			     (int)getpid()) >= (int)sizeof(h->parent))
			return;
		n_hier++;
		return;
	}
}

/* mounts[m] = {root, mountpoint, "cgroup2" or "cgroup:<superopts>"}. */
static void detect(void)
{
	static char mounts[64][3][PATH_MAX];
	char line[4096];
	int n_m = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		die("/proc/self/mountinfo");
	while (fgets(line, sizeof(line), f) && n_m < 64) {
		char *fld[64], *save = NULL;
		int n = 0, sep = 0;

		for (char *t = strtok_r(line, " \n", &save); t && n < 64;
		     t = strtok_r(NULL, " \n", &save))
			fld[n++] = t;
		for (int i = 6; i < n; i++)
			if (strcmp(fld[i], "-") == 0 && !sep)
				sep = i;
		if (!sep || sep + 3 >= n)
			continue;
		if (strcmp(fld[sep + 1], "cgroup2") == 0)
			snprintf(mounts[n_m][2], PATH_MAX, "cgroup2");
		else if (strcmp(fld[sep + 1], "cgroup") == 0)
			snprintf(mounts[n_m][2], PATH_MAX, "cgroup:%s", fld[sep + 3]);
		else
			continue;
		snprintf(mounts[n_m][0], PATH_MAX, "%s", fld[3]);
		snprintf(mounts[n_m][1], PATH_MAX, "%s", fld[4]);
		n_m++;
	}
	fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		die("/proc/self/cgroup");
	while (fgets(line, sizeof(line), f) && n_hier < MAX_HIER) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2 = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		add_hier(c1 + 1, c2 + 1, mounts, n_m);
	}
	fclose(f);
}

/* ---- the groups ---- */

static void group_path(char *buf, size_t size, const struct hier *h, const char *prefix, int w,
		       int k)
{
	snprintf(buf, size, "%s/%s%d-%d", h->parent, prefix, w, k);
}

/* A new v1 cpuset has no cpus or mems and refuses tasks until it gets
 * some: the same two copies cgroups_create does. */
static int cpuset_fill(const char *from, const char *dir)
{
	char val[4096];

	if (read_file(from, "cpuset.cpus", val, sizeof(val)) < 0 ||
	    write_file(dir, "cpuset.cpus", val) < 0 ||
	    read_file(from, "cpuset.mems", val, sizeof(val)) < 0 ||
	    write_file(dir, "cpuset.mems", val) < 0)
		return -1;
	return 0;
}

static int make_group(const struct hier *h, const char *dir)
{
	if (mkdir(dir, 0755) < 0)
		return -1;
	return h->cpuset ? cpuset_fill(h->parent, dir) : 0;
}

static int rmdir_retry(const char *dir)
{
	for (int i = 0; i < 200; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -1;
		usleep(1000);
	}
	return -1;
}

static pid_t clone_into(int cgroup_fd)
{
	struct clone_args args = {.exit_signal = SIGCHLD};
	long pid;

	if (cgroup_fd >= 0) {
		args.flags = CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgroup_fd;
	}
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0)
		_exit(0);
	return (pid_t)pid;
}

static bool is(const char *m)
{
	return strcmp(mode, m) == 0;
}

/* Does the mode work on hierarchy h? */
static bool want(const struct hier *h)
{
	return !is("clone") && (strncmp(mode, "v2-", 3) == 0) == h->v2;
}

/* One allocation in one hierarchy (timed). */
static int alloc_in(const struct hier *h, int w, int k, pid_t helper, pid_t *child)
{
	char dir[PATH_MAX + 32], pre[PATH_MAX + 32], pid[24];
	int fd;

	group_path(dir, sizeof(dir), h, "g", w, k);
	group_path(pre, sizeof(pre), h, "p", w, k);
	if (strstr(mode, "mkdir") && make_group(h, dir) < 0)
		return -1;
	if (is("v1-rename") && rename(pre, dir) < 0)
		return -1;
	if (strstr(mode, "-pre-")) /* v2: the pre-made group, as it is */
		snprintf(dir, sizeof(dir), "%s", pre);
	if (strstr(mode, "clone")) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		*child = clone_into(fd);
		close(fd);
		return *child < 0 ? -1 : 0;
	}
	snprintf(pid, sizeof(pid), "%d", (int)helper);
	return write_file(dir, "cgroup.procs", pid);
}

static int alloc_one(int w, int k, pid_t helper, pid_t *child)
{
	if (is("clone"))
		return (*child = clone_into(-1)) < 0 ? -1 : 0;
	for (int i = 0; i < n_hier; i++)
		if (want(&hs[i]) && alloc_in(&hs[i], w, k, helper, child) < 0)
			return -1;
	return 0;
}

/* The pre-made groups of the modes that take one (not timed). */
static int premake(int w)
{
	char dir[PATH_MAX + 32];

	if (!is("v1-rename") && !strstr(mode, "-pre-"))
		return 0;
	for (int k = 0; k < n_allocs; k++)
		for (int i = 0; i < n_hier; i++) {
			if (!want(&hs[i]))
				continue;
			group_path(dir, sizeof(dir), &hs[i], "p", w, k);
			if (make_group(&hs[i], dir) < 0)
				return -1;
		}
	return 0;
}

/* Helper back to the bench parent, children reaped, groups removed. */
static int cleanup(int w, pid_t helper, const pid_t *kids)
{
	char dir[PATH_MAX + 32], pid[24];
	int r = 0;

	snprintf(pid, sizeof(pid), "%d", (int)helper);
	for (int i = 0; i < n_hier; i++)
		(void)write_file(hs[i].parent, "cgroup.procs", pid);
	kill(helper, SIGKILL);
	waitpid(helper, NULL, 0);
	for (int k = 0; k < n_allocs; k++)
		if (kids[k] > 0)
			waitpid(kids[k], NULL, 0);
	for (int i = 0; i < n_hier; i++)
		for (int k = 0; k < n_allocs; k++) {
			group_path(dir, sizeof(dir), &hs[i], "g", w, k);
			r |= rmdir_retry(dir);
			group_path(dir, sizeof(dir), &hs[i], "p", w, k);
			r |= rmdir_retry(dir);
		}
	return r;
}

/* The pid that allocations move into cgroup.procs: it sleeps. */
static pid_t start_helper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

/* A worker: set up, say ready, wait for go, allocate, say done, clean up. */
static int worker(int w, int ready_fd, int go_fd, int done_fd)
{
	static pid_t kids[MAX_ALLOCS];
	pid_t helper = start_helper();
	char c = 'r';
	int r = 0;

	if (helper < 0 || premake(w) < 0) {
		perror("cgroup_alloc: setup");
		c = 'e';
	}
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) < 0)
		c = 'e';
	for (int k = 0; k < n_allocs && c != 'e'; k++)
		if (alloc_one(w, k, helper, &kids[k]) < 0) {
			fprintf(stderr, "cgroup_alloc: %s #%d: %s\n", mode, k, strerror(errno));
			c = 'e';
		}
	c = c == 'e' ? 'e' : 'd';
	if (write(done_fd, &c, 1) != 1)
		r = -1;
	if (helper > 0 && cleanup(w, helper, kids) < 0) {
		fprintf(stderr, "cgroup_alloc: cleanup left groups behind\n");
		r = -1;
	}
	return c == 'e' ? -1 : r;
}

/* ---- main ---- */

static void make_parents(void)
{
	for (int i = 0; i < n_hier; i++) {
		char up[PATH_MAX];

		snprintf(up, sizeof(up), "%s", hs[i].parent);
		*strrchr(up, '/') = '\0';
		if (mkdir(hs[i].parent, 0755) < 0 ||
		    (hs[i].cpuset && cpuset_fill(up, hs[i].parent)))
			die(hs[i].parent);
	}
}

static int remove_parents(void)
{
	int r = 0;

	for (int i = 0; i < n_hier; i++)
		if (rmdir_retry(hs[i].parent) < 0) {
			fprintf(stderr, "cgroup_alloc: rmdir %s: %s\n", hs[i].parent,
				strerror(errno));
			r = -1;
		}
	return r;
}

/* Release every worker at once; the wall time until the last is done. */
static double run_workers(void)
{
	int ready[2], go[2], done[2], failed = 0;
	pid_t pids[64];
	double t0, t1;
	char c;

	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
		die("pipe");
	for (int w = 0; w < n_workers; w++) {
		pids[w] = fork();
		if (pids[w] < 0)
			die("fork");
		if (pids[w] == 0) {
			close(go[1]); /* go is the EOF of every copy of go[1] */
			_exit(worker(w, ready[1], go[0], done[1]) < 0 ? 1 : 0);
		}
	}
	for (int w = 0; w < n_workers; w++)
		failed |= read(ready[0], &c, 1) != 1 || c == 'e';
	t0 = now_us();
	close(go[1]);
	for (int w = 0; w < n_workers; w++)
		failed |= read(done[0], &c, 1) != 1 || c == 'e';
	t1 = now_us();
	for (int w = 0; w < n_workers; w++) {
		int status;
		failed |= waitpid(pids[w], &status, 0) != pids[w] || !WIFEXITED(status) ||
			  WEXITSTATUS(status) != 0;
	}
	return failed ? -1 : (t1 - t0) / (n_workers * n_allocs);
}

static void usage(void)
{
	fprintf(stderr, "usage: cgroup_alloc v1-mkdir|v1-rename|v2-mkdir-clone|v2-pre-clone|"
			"v2-mkdir-procs|v2-pre-procs|clone [-n ALLOCS] [-j WORKERS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const char *const modes[] = {"v1-mkdir",	    "v1-rename",      "v2-mkdir-clone",
					    "v2-pre-clone", "v2-mkdir-procs", "v2-pre-procs",
					    "clone"};
	bool known = false, any = false;
	double us;
	int opt;

	while ((opt = getopt(argc, argv, "n:j:")) != -1) {
		if (opt == 'n')
			n_allocs = atoi(optarg);
		else if (opt == 'j')
			n_workers = atoi(optarg);
		else
			usage();
	}
	if (optind != argc - 1 || n_allocs < 1 || n_allocs > MAX_ALLOCS || n_workers < 1 ||
	    n_workers > 64)
		usage();
	mode = argv[optind];
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		known |= is(modes[i]);
	if (!known)
		usage();
	detect();
	for (int i = 0; i < n_hier; i++)
		any |= want(&hs[i]);
	if (!any && !is("clone")) {
		fprintf(stderr, "cgroup_alloc: %s: no such hierarchy on this host\n", mode);
		return 3;
	}
	make_parents();
	us = run_workers();
	if (remove_parents() < 0 || us < 0)
		return 1;
	printf("%.2f\n", us);
	return 0;
}
