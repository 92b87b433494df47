/* iod_lat: file-path syscalls timed from inside a sandbox (bench/iod.py).
 *
 * Built static by bench/iod.py (gcc -static) and copied into the bench's
 * rootfs, so it runs the same in crun, in Quiver with the path syscalls
 * passed to the kernel, and in Quiver with them served by iod.
 *
 *	iod_lat open N [PATH]        N x openat(AT_FDCWD, PATH, O_RDONLY|O_CLOEXEC) + close
 *	iod_lat fstat N              N x fstat() of an open /etc/passwd (glibc: newfstatat(fd,
 *	                             "", AT_EMPTY_PATH), which traps like a path call)
 *	iod_lat stat N [START_NS]    N x stat() over a few paths, from CLOCK_MONOTONIC START_NS
 *	                             (late_ns: how long after START it got there)
 *	iod_lat time PROG [ARG...]   fork + exec PROG + wait, timed
 *
 * Each prints one line "iod_lat MODE key=value ..." on stdout; a failed
 * call prints its errno on stderr and exits 2.  CLOCK_MONOTONIC is the
 * host's clock (no time namespace in the bench's configs), so the script
 * can line up the start and end times of many sandboxes. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long count_arg(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || n <= 0) {
		fprintf(stderr, "iod_lat: bad count \"%s\"\n", s);
		exit(1);
	}
	return n;
}

static void fail(const char *what, const char *path)
{
	fprintf(stderr, "iod_lat: %s %s: %s (errno %d)\n", what, path, strerror(errno), errno);
	exit(2);
}

static void open_close(const char *path)
{
	int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("openat", path);
	if (close(fd) < 0)
		fail("close", path);
}

static int do_open(long n, const char *path)
{
	/* A tenth unrecorded first: the dentry cache, the supervisor's and
	 * iod's first requests, page faults of the loop itself. */
	for (long i = 0; i < n / 10 + 1; i++)
		open_close(path);
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		open_close(path);
	uint64_t dt = now_ns() - t0;
	printf("iod_lat open n=%ld total_ns=%llu ns_per_op=%.1f\n", n, (unsigned long long)dt,
	       (double)dt / (double)n);
	return 0;
}

static int do_fstat(long n)
{
	struct stat st;
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		fail("open", "/etc/passwd");
	for (long i = 0; i < n / 10 + 1; i++)
		if (fstat(fd, &st) < 0)
			fail("fstat", "/etc/passwd");
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (fstat(fd, &st) < 0)
			fail("fstat", "/etc/passwd");
	uint64_t dt = now_ns() - t0;
	printf("iod_lat fstat n=%ld total_ns=%llu ns_per_op=%.1f\n", n, (unsigned long long)dt,
	       (double)dt / (double)n);
	return 0;
}

/* Inside the bench's rootfs: a file, the binary itself, a directory of the
 * rootfs and one on the /usr bind mount (a walk that crosses a mount). */
static const char *const stat_paths[] = {"/etc/passwd", "/iod_lat", "/etc", "/usr/bin", "/"};
#define NSTAT_PATHS (sizeof(stat_paths) / sizeof(stat_paths[0]))

static int do_stat(long n, uint64_t start)
{
	struct stat st;
	/* Late: reached the barrier after START (its sandbox started too
	 * slowly), not merely scheduled after START among the others. */
	uint64_t ready = now_ns(), late = start && ready > start ? ready - start : 0;

	if (start) {
		struct timespec ts = {.tv_sec = (time_t)(start / 1000000000u),
				      .tv_nsec = (long)(start % 1000000000u)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++) {
		const char *p = stat_paths[i % NSTAT_PATHS];
		if (stat(p, &st) < 0)
			fail("stat", p);
	}
	uint64_t t1 = now_ns();
	printf("iod_lat stat n=%ld start_ns=%llu end_ns=%llu late_ns=%llu ns_per_op=%.1f\n", n,
	       (unsigned long long)t0, (unsigned long long)t1, (unsigned long long)late,
	       (double)(t1 - t0) / (double)n);
	return 0;
}

static int do_time(char **argv)
{
	int status;
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	if (pid < 0)
		fail("fork", argv[0]);
	if (pid == 0) {
		execv(argv[0], argv);
		fprintf(stderr, "iod_lat: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail("waitpid", argv[0]);
	uint64_t dt = now_ns() - t0;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	fflush(stdout);
	printf("iod_lat time ns=%llu status=%d\n", (unsigned long long)dt, code);
	return code;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "open") == 0)
		return do_open(count_arg(argv[2]), argc >= 4 ? argv[3] : "/etc/passwd");
	if (argc >= 3 && strcmp(argv[1], "fstat") == 0)
		return do_fstat(count_arg(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "stat") == 0)
		return do_stat(count_arg(argv[2]), argc >= 4 ? strtoull(argv[3], NULL, 10) : 0);
	if (argc >= 3 && strcmp(argv[1], "time") == 0)
		return do_time(argv + 2);
	fprintf(
	    stderr,
	    "usage: iod_lat open N [PATH] | fstat N | stat N [START_NS] | time PROG [ARG...]\n");
	return 1;
}
