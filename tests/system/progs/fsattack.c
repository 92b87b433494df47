/* fsattack: path-resolution attacks on a sandbox's root, from inside it.
 *
 *   fsattack HOSTBUNDLE GROUP...
 *
 * HOSTBUNDLE is the bundle directory's path on the host.  The test puts
 * files outside the rootfs that no path inside the sandbox names:
 *
 *	HOSTBUNDLE/secret.txt		"QUIVER-SECRET-..." (mode 0666)
 *	HOSTBUNDLE/outside-only.txt	"QUIVER-SECRET-OUTSIDE" (0666)
 *	HOSTBUNDLE/outside.sh		a script printing QUIVER-SECRET-EXEC (0777)
 *
 * and decoys inside it: /secret.txt ("decoy-root") and /mnt/secret.txt
 * ("decoy-mnt"), which is what `..` past the root must find, as the kernel
 * resolves it.  Every check prints one line
 *
 *	CHECK group/name OUTCOME	OUTCOME: OK, an errno name, or read=TEXT
 *	STATS group/name k=v ...	(the race: counts, not compared)
 *	ESCAPE group/name OUTCOME	the secret was read, or a path that
 *					exists only outside the root resolved
 *
 * then "SUMMARY checks=N escapes=M"; the exit status is 1 if anything
 * escaped, 3 if a check hung.  What was written outside the root (a file
 * created, a mode changed, a link made) only the host can see: the test
 * compares the bundle directory before and after. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif

#define SECRET	  "QUIVER-SECRET"
#define RACE_SECS 3
#define HANG_SECS 20

static const char *hb; /* the bundle's path on the host */
static int checks, escapes;
static char current[128] = "start";

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static void on_alarm(int sig)
{
	(void)sig;
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "HUNG %s\nSUMMARY checks=%d escapes=%d\n", current,
			 checks, escapes);
	if (write(1, msg, (size_t)n) < 0)
		_exit(4);
	_exit(3);
}

static void begin(const char *group, const char *name)
{
	snprintf(current, sizeof(current), "%s/%s", group, name);
	alarm(HANG_SECS);
}

static void emit(bool escaped, const char *outcome)
{
	checks++;
	if (escaped)
		escapes++;
	printf("%s %s %s\n", escaped ? "ESCAPE" : "CHECK", current, outcome);
	fflush(stdout);
}

/* Outcomes that show a name was not found, or was refused, before anything
 * outside the root could be touched. */
static bool refused(int e)
{
	return e == ENOENT || e == ELOOP || e == EXDEV || e == EACCES || e == EPERM ||
	       e == ENOSYS || e == ENOTDIR || e == EBADF;
}

/* A path call on something that exists only outside the root: success, or
 * an errno that needs the file found (ENODATA, EEXIST, ...), is an escape. */
static bool any_refusal; /* print "refused", not which errno */

static void probe(const char *group, const char *name, long rc, int err)
{
	begin(group, name);
	if (rc < 0 && refused(err) && any_refusal)
		emit(false, "refused");
	else
		emit(rc >= 0 || !refused(err), rc >= 0 ? "OK" : ename(err));
}

#define PROBE(group, name, expr)                                                                   \
	do {                                                                                       \
		begin(group, name);                                                                \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		probe(group, name, rc_, errno);                                                    \
	} while (0)

/* The same for a call that returns an fd, closed afterwards. */
#define PROBE_FD(group, name, expr)                                                                \
	do {                                                                                       \
		begin(group, name);                                                                \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		probe(group, name, rc_, errno);                                                    \
		if (rc_ >= 0)                                                                      \
			close((int)rc_);                                                           \
	} while (0)

/* A call whose result is compared with the kernel's (no escape possible to
 * see from here: the host checks what it did). */
#define RESULT(group, name, expr)                                                                  \
	do {                                                                                       \
		begin(group, name);                                                                \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		emit(false, rc_ >= 0 ? "OK" : ename(errno));                                       \
	} while (0)

#define RESULT_FD(group, name, expr)                                                               \
	do {                                                                                       \
		begin(group, name);                                                                \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		emit(false, rc_ >= 0 ? "OK" : ename(errno));                                       \
		if (rc_ >= 0)                                                                      \
			close((int)rc_);                                                           \
	} while (0)

/* Read a file through dirfd/path: "read=TEXT" (first line, at most 40
 * bytes) or the errno; the secret in it is an escape. */
static void read_at(const char *group, const char *name, int dfd, const char *path)
{
	char buf[128], out[96];
	begin(group, name);
	int fd = openat(dfd, path, O_RDONLY);
	if (fd < 0) {
		emit(false, ename(errno));
		return;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(out, sizeof(out), "read-error=%s", ename(e));
		emit(false, out);
		return;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	snprintf(out, sizeof(out), "read=%.40s", buf);
	emit(strstr(buf, SECRET) != NULL, out);
}

static void read_path(const char *group, const char *name, const char *path)
{
	read_at(group, name, AT_FDCWD, path);
}

static char *hpath(const char *prefix, const char *suffix)
{
	static char bufs[8][4096];
	static int i;
	char *b = bufs[i++ % 8];
	snprintf(b, sizeof(bufs[0]), "%s%s%s", prefix, hb, suffix);
	return b;
}

static void put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		printf("SETUP %s: %s\n", path, ename(errno));
	if (fd >= 0)
		close(fd);
}

static void link_to(const char *target, const char *path)
{
	unlink(path);
	if (symlink(target, path) < 0)
		printf("SETUP symlink %s: %s\n", path, ename(errno));
}

/* ---------------------------------------------------------------------------
 * `..` past the root.  On the host, the root's parent is the bundle
 * directory (secret.txt, outside-only.txt) and its parent holds another
 * secret.txt: each climb is made at exactly the depth that would reach one
 * of them, and past it. */

static void g_dotdot(void)
{
	const char *g = "dotdot";
	read_path(g, "abs-dotdot-1", "/../secret.txt");
	read_path(g, "abs-dotdot-2", "/../../secret.txt");
	read_path(g, "abs-dotdot-8", "/../../../../../../../../secret.txt");
	read_path(g, "abs-dot-dotdot", "/./.././secret.txt");
	read_path(g, "tmp-dotdot", "/tmp/../../secret.txt");
	read_path(g, "host-path", hpath("", "/secret.txt"));
	read_path(g, "dotdot-host-path", hpath("/../../../../../../../..", "/secret.txt"));
	read_path(g, "dotdot-outside-only", "/../outside-only.txt");
	if (chdir("/tmp") == 0) {
		read_path(g, "cwd-tmp-relative-dotdot-1", "../../secret.txt");
		read_path(g, "cwd-tmp-relative-dotdot-2", "../../../secret.txt");
		read_path(g, "cwd-tmp-relative-host",
			  hpath("../../../../../../../../..", "/secret.txt"));
		read_path(g, "cwd-tmp-relative-outside-only", "../../outside-only.txt");
		if (chdir("../..") < 0)
			printf("SETUP chdir ../..: %s\n", ename(errno));
	}
	read_path(g, "cwd-after-chdir-dotdot", "secret.txt");
	if (chdir("/") < 0)
		printf("SETUP chdir /: %s\n", ename(errno));

	int rfd = open("/", O_RDONLY | O_DIRECTORY);
	int up1 = openat(rfd, "..", O_RDONLY | O_DIRECTORY);
	int up2 = openat(up1, "..", O_RDONLY | O_DIRECTORY);
	read_at(g, "openat-dotdot-1", up1, "secret.txt");
	read_at(g, "openat-dotdot-2", up2, "secret.txt");
	PROBE_FD(g, "openat-dotdot-1-outside-only", openat(up1, "outside-only.txt", O_RDONLY));
	PROBE_FD(g, "openat-rootfd-dotdot-outside-only",
		 openat(rfd, "../outside-only.txt", O_RDONLY));
	close(rfd);
	close(up1);
	close(up2);

	struct stat st;
	PROBE(g, "stat-host-bundle", stat(hpath("", ""), &st));
	PROBE(g, "stat-dotdot-outside-only", stat("/../outside-only.txt", &st));
	PROBE(g, "lstat-dotdot-rootfs", lstat("/../rootfs", &st));
	PROBE(g, "access-dotdot-outside-only", access("/../outside-only.txt", F_OK));
	PROBE(g, "readlink-dotdot-rootfs", readlink("/../rootfs", (char[64]){0}, 64));
	PROBE(g, "statfs-dotdot-rootfs", statfs("/../rootfs", &(struct statfs){0}));
	PROBE(g, "getxattr-dotdot-outside-only",
	      getxattr("/../outside-only.txt", "user.keep", (char[64]){0}, 64));
	PROBE(g, "chdir-dotdot-rootfs", chdir("/../rootfs"));
	RESULT(g, "mkdir-dotdot", mkdir("/../pwned-dir", 0777));
	RESULT_FD(g, "creat-dotdot", open("/../pwned-file", O_WRONLY | O_CREAT, 0666));
	RESULT(g, "chmod-dotdot-secret", chmod("/../secret.txt", 0600));
	RESULT(g, "truncate-dotdot-secret", truncate("/../secret.txt", 0));
	RESULT(g, "unlink-dotdot-outside-only", unlink("/../outside-only.txt"));
	RESULT(g, "rename-dotdot-outside-only", rename("/../outside-only.txt", "/tmp/stolen"));
	RESULT(g, "symlink-dotdot", symlink("x", "/../pwned-link"));
	RESULT(g, "mknod-dotdot", mknod("/../pwned-fifo", S_IFIFO | 0666, 0));
}

/* ---------------------------------------------------------------------------
 * symlinks out of the root */

static void g_symlinks(void)
{
	const char *g = "symlinks";
	struct stat st;
	struct timespec ts[2] = {{1, 0}, {1, 0}};
	char buf[256];

	if (mkdir("/tmp/sl", 0777) < 0 && errno != EEXIST)
		printf("SETUP mkdir /tmp/sl: %s\n", ename(errno));
	link_to(hpath("", "/secret.txt"), "/tmp/sl/abs-host");
	link_to(hpath("", "/outside-only.txt"), "/tmp/sl/abs-outside-only");
	link_to("/../secret.txt", "/tmp/sl/abs-dotdot");
	link_to("../../../secret.txt", "/tmp/sl/rel-dotdot-1");
	link_to("../../../../secret.txt", "/tmp/sl/rel-dotdot-2");
	link_to("../../../outside-only.txt", "/tmp/sl/rel-outside-only");
	link_to(hpath("../../../../../../../..", "/secret.txt"), "/tmp/sl/rel-host");
	link_to(hpath("", ""), "/tmp/sl/dir-host");
	link_to("../../..", "/tmp/sl/dir-up");
	link_to("c2", "/tmp/sl/c1");
	link_to("../../..", "/tmp/sl/c2");
	link_to("/proc", "/tmp/sl/proc");
	link_to(hpath("/proc/self/root", "/secret.txt"), "/tmp/sl/proc-self-root-host");
	put("/tmp/sl/plain", "plain");

	read_path(g, "abs-host", "/tmp/sl/abs-host");
	read_path(g, "abs-dotdot", "/tmp/sl/abs-dotdot");
	read_path(g, "rel-dotdot-1", "/tmp/sl/rel-dotdot-1");
	read_path(g, "rel-dotdot-2", "/tmp/sl/rel-dotdot-2");
	read_path(g, "rel-outside-only", "/tmp/sl/rel-outside-only");
	read_path(g, "rel-host", "/tmp/sl/rel-host");
	read_path(g, "dir-host", "/tmp/sl/dir-host/secret.txt");
	read_path(g, "dir-up", "/tmp/sl/dir-up/secret.txt");
	read_path(g, "dir-up-dotdot", "/tmp/sl/dir-up/../secret.txt");
	read_path(g, "chain", "/tmp/sl/c1/secret.txt");
	read_path(g, "chain-host", hpath("/tmp/sl/c1", "/secret.txt"));
	read_path(g, "link-to-proc-self-root", hpath("/tmp/sl/proc/self/root", "/secret.txt"));
	read_path(g, "link-to-proc-1-root", hpath("/tmp/sl/proc/1/root", "/secret.txt"));
	read_path(g, "proc-self-root-host-link", "/tmp/sl/proc-self-root-host");
	PROBE_FD(g, "open-wronly-abs-host", open("/tmp/sl/abs-host", O_WRONLY | O_TRUNC));
	PROBE_FD(g, "open-path-abs-outside-only", open("/tmp/sl/abs-outside-only", O_PATH));
	PROBE_FD(g, "open-path-rel-outside-only", open("/tmp/sl/rel-outside-only", O_PATH));
	PROBE(g, "stat-abs-outside-only", stat("/tmp/sl/abs-outside-only", &st));
	PROBE(g, "stat-rel-outside-only", stat("/tmp/sl/rel-outside-only", &st));
	PROBE(g, "stat-dir-host", stat("/tmp/sl/dir-host/", &st));
	PROBE(g, "access-abs-outside-only", access("/tmp/sl/abs-outside-only", F_OK));
	PROBE(g, "chmod-abs-host", chmod("/tmp/sl/abs-host", 0600));
	PROBE(g, "chmod-rel-outside-only", chmod("/tmp/sl/rel-outside-only", 0600));
	PROBE(g, "chown-abs-host", chown("/tmp/sl/abs-host", 1, 1));
	PROBE(g, "truncate-abs-host", truncate("/tmp/sl/abs-host", 0));
	PROBE(g, "truncate-rel-outside-only", truncate("/tmp/sl/rel-outside-only", 0));
	PROBE(g, "utimensat-abs-host", utimensat(AT_FDCWD, "/tmp/sl/abs-host", ts, 0));
	PROBE(g, "utimes-abs-host", utimes("/tmp/sl/abs-host", NULL));
	PROBE(g, "utime-abs-host", utime("/tmp/sl/abs-host", NULL));
	PROBE(g, "getxattr-abs-outside-only",
	      getxattr("/tmp/sl/abs-outside-only", "user.keep", buf, sizeof(buf)));
	PROBE(g, "listxattr-rel-outside-only", listxattr("/tmp/sl/rel-outside-only", buf, 0));
	PROBE(g, "setxattr-abs-host", setxattr("/tmp/sl/abs-host", "user.pwned", "1", 1, 0));
	PROBE(g, "setxattr-rel-outside-only",
	      setxattr("/tmp/sl/rel-outside-only", "user.pwned", "1", 1, 0));
	PROBE(g, "removexattr-rel-outside-only",
	      removexattr("/tmp/sl/rel-outside-only", "user.keep"));
	PROBE(g, "statfs-dir-host", statfs("/tmp/sl/dir-host", &(struct statfs){0}));
	PROBE_FD(g, "creat-in-dir-host", open("/tmp/sl/dir-host/pwned", O_WRONLY | O_CREAT, 0666));
	PROBE(g, "mkdir-in-dir-host", mkdir("/tmp/sl/dir-host/pwned-dir", 0777));
	PROBE(g, "mknod-in-dir-host", mknod("/tmp/sl/dir-host/pwned-fifo", S_IFIFO | 0666, 0));
	PROBE(g, "symlink-in-dir-host", symlink("x", "/tmp/sl/dir-host/pwned-link"));
	PROBE(g, "link-into-dir-host", link("/tmp/sl/plain", "/tmp/sl/dir-host/pwned-hard"));
	PROBE(g, "rename-into-dir-host", rename("/tmp/sl/plain", "/tmp/sl/dir-host/pwned-moved"));
	PROBE(g, "rename-out-of-dir-host", rename("/tmp/sl/dir-host/secret.txt", "/tmp/sl/stolen"));
	PROBE(g, "rename-out-of-dir-up",
	      rename("/tmp/sl/dir-up/outside-only.txt", "/tmp/sl/stolen"));
	PROBE(g, "unlink-in-dir-host", unlink("/tmp/sl/dir-host/outside-only.txt"));
	PROBE(g, "unlink-in-dir-up", unlink("/tmp/sl/dir-up/outside-only.txt"));
	PROBE(g, "rmdir-in-dir-up", rmdir("/tmp/sl/dir-up/emptydir"));
	PROBE(g, "chdir-dir-host", chdir("/tmp/sl/dir-host"));
	read_path(g, "relative-after-chdir-dir-host", "secret.txt");
	if (chdir("/tmp/sl/dir-up") < 0)
		printf("SETUP chdir dir-up: %s\n", ename(errno));
	read_path(g, "relative-after-chdir-dir-up", "secret.txt");
	read_path(g, "relative-dotdot-after-chdir-dir-up", "../secret.txt");
	PROBE(g, "relative-after-chdir-dir-up-outside-only", access("outside-only.txt", F_OK));
	if (chdir("/") < 0)
		printf("SETUP chdir /: %s\n", ename(errno));
	/* O_CREAT through a dangling link creates its target: inside the root */
	link_to(hpath("", "/pwned-by-dangling"), "/tmp/sl/dangling-host");
	RESULT_FD(g, "creat-through-dangling-host",
		  open("/tmp/sl/dangling-host", O_WRONLY | O_CREAT, 0666));
	link_to("../../../pwned-by-dangling-up", "/tmp/sl/dangling-up");
	RESULT_FD(g, "creat-through-dangling-up",
		  open("/tmp/sl/dangling-up", O_WRONLY | O_CREAT, 0666));
	RESULT(g, "dangling-up-made-inside", access("/pwned-by-dangling-up", F_OK));
}

/* ---------------------------------------------------------------------------
 * a directory swapped for a symlink while another thread opens through it */

static atomic_bool race_stop;
struct race {
	const char *dir, *alt; /* exchanged with each other */
	const char *path;      /* opened through dir */
	long opens, inside, decoy, enoent, other, escaped, swaps, swap_errors, creates;
};

static void *race_swap(void *arg)
{
	struct race *r = arg;
	uint32_t x = (uint32_t)(uintptr_t)r ^ (uint32_t)time(NULL) ^ 0x9e3779b9u;
	while (!atomic_load(&race_stop)) {
		if (syscall(SYS_renameat2, AT_FDCWD, r->dir, AT_FDCWD, r->alt, RENAME_EXCHANGE) ==
		    0)
			r->swaps++;
		else
			r->swap_errors++;
		/* Now and then a call that swaps nothing.  Served one at a
		 * time, in order, the two threads' calls can fall into step:
		 * the opener's open, a swap, its create, a swap, ... and the
		 * open then always finds the same side of the swap. */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		if (x % 3 == 0)
			(void)access(r->dir, F_OK);
	}
	return NULL;
}

static void *race_open(void *arg)
{
	struct race *r = arg;
	char buf[128], pwned[256];
	snprintf(pwned, sizeof(pwned), "%s/x/pwned-race", r->dir);
	while (!atomic_load(&race_stop)) {
		int fd = open(r->path, O_RDONLY);
		r->opens++;
		if (fd < 0) {
			if (errno == ENOENT)
				r->enoent++;
			else
				r->other++;
		} else {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			buf[n < 0 ? 0 : n] = 0;
			if (strstr(buf, SECRET))
				r->escaped++;
			else if (strstr(buf, "inside"))
				r->inside++;
			else if (strstr(buf, "decoy"))
				r->decoy++;
			else
				r->other++;
		}
		/* a create through the same swapping directory (left there: the
		 * host looks for it next to the rootfs) */
		fd = open(pwned, O_WRONLY | O_CREAT, 0666);
		if (fd >= 0) {
			r->creates++;
			close(fd);
		}
	}
	return NULL;
}

static void g_race(void)
{
	struct race races[2] = {
	    {.dir = "/tmp/race/d1", .alt = "/tmp/race/l1", .path = "/tmp/race/d1/x/secret.txt"},
	    {.dir = "/tmp/race/d2", .alt = "/tmp/race/l2", .path = "/tmp/race/d2/x/secret.txt"},
	};
	pthread_t th[4];
	char stats[512];

	if (mkdir("/tmp/race", 0777) < 0 && errno != EEXIST)
		printf("SETUP mkdir /tmp/race: %s\n", ename(errno));
	for (int i = 0; i < 2; i++) {
		char p[128];
		snprintf(p, sizeof(p), "%s", races[i].dir);
		mkdir(p, 0777);
		snprintf(p, sizeof(p), "%s/x", races[i].dir);
		mkdir(p, 0777);
		snprintf(p, sizeof(p), "%s/x/secret.txt", races[i].dir);
		put(p, "inside-race");
	}
	/* l1 names the bundle directory on the host, l2 climbs to it with ..;
	 * the test put x/secret.txt there */
	link_to(hpath("", ""), "/tmp/race/l1");
	link_to("../../..", "/tmp/race/l2");
	/* the targets inside the root that the links reach: /x/secret.txt */
	mkdir("/x", 0777);
	put("/x/secret.txt", "decoy-race");

	begin("race", "run");
	alarm(RACE_SECS + HANG_SECS);
	for (int i = 0; i < 2; i++) {
		pthread_create(&th[2 * i], NULL, race_swap, &races[i]);
		pthread_create(&th[2 * i + 1], NULL, race_open, &races[i]);
	}
	sleep(RACE_SECS);
	atomic_store(&race_stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		struct race *r = &races[i];
		snprintf(current, sizeof(current), "race/%s", i == 0 ? "host-link" : "dotdot-link");
		snprintf(
		    stats, sizeof(stats),
		    "opens=%ld inside=%ld decoy=%ld enoent=%ld other=%ld escaped=%ld swaps=%ld "
		    "swap_errors=%ld creates=%ld",
		    r->opens, r->inside, r->decoy, r->enoent, r->other, r->escaped, r->swaps,
		    r->swap_errors, r->creates);
		printf("STATS %s %s\n", current, stats);
		checks++;
		if (r->escaped) {
			escapes++;
			printf("ESCAPE %s read the secret %ld times\n", current, r->escaped);
		}
	}
	fflush(stdout);
}

/* ---------------------------------------------------------------------------
 * the path changed under the call: one thread rewrites the buffer between
 * an ordinary file and a path the workload may not open while another opens
 * it; whoever reads the path must read it once */

static char flip_buf[64] = "/secret.txt";
static const char *flip_to;

static void *flipper(void *arg)
{
	(void)arg;
	while (!atomic_load(&race_stop)) {
		strcpy(flip_buf, flip_to);
		strcpy(flip_buf, "/secret.txt");
	}
	return NULL;
}

static void g_pathflip(void)
{
	static const char *targets[] = {"/proc/1/environ", "/proc/1/mem", "/proc/1/fd/3"};
	char buf[128], stats[256];

	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		long opens = 0, decoy = 0, refused_n = 0, other = 0;
		pthread_t th;
		flip_to = targets[i];
		atomic_store(&race_stop, false);
		begin("pathflip", targets[i]);
		pthread_create(&th, NULL, flipper, NULL);
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			int fd = open(flip_buf, O_RDONLY);
			opens++;
			if (fd < 0) {
				refused_n++;
			} else {
				ssize_t n = read(fd, buf, sizeof(buf) - 1);
				close(fd);
				buf[n < 0 ? 0 : n] = 0;
				if (!strncmp(buf, "decoy-root", 10))
					decoy++;
				else
					other++;
			}
			clock_gettime(CLOCK_MONOTONIC, &t);
			/* a second at least, until both shapes were seen often */
		} while (t.tv_sec - t0.tv_sec < 1 ||
			 ((decoy < 20 || refused_n < 20) && t.tv_sec - t0.tv_sec < 4));
		atomic_store(&race_stop, true);
		pthread_join(th, NULL);
		snprintf(current, sizeof(current), "pathflip/%s", targets[i]);
		snprintf(stats, sizeof(stats), "opens=%ld decoy=%ld refused=%ld other=%ld", opens,
			 decoy, refused_n, other);
		printf("STATS %s %s\n", current, stats);
		checks++;
		if (other) {
			escapes++;
			printf("ESCAPE %s opened %ld times\n", current, other);
		}
	}
	atomic_store(&race_stop, false);
	fflush(stdout);
}

/* ---------------------------------------------------------------------------
 * /proc magic links */

static void g_procmagic(void)
{
	const char *g = "procmagic";
	char p[4096], buf[4096];

	read_path(g, "self-root-host", hpath("/proc/self/root", "/secret.txt"));
	read_path(g, "self-root-dotdot", "/proc/self/root/../../secret.txt");
	read_path(g, "pid1-root-dotdot", "/proc/1/root/../secret.txt");
	read_path(g, "thread-self-root-dotdot", "/proc/thread-self/root/../secret.txt");
	/* pid 1 is the supervisor, which the workload may not ptrace: its
	 * links and fds (some are the host's) stay closed, whoever serves the
	 * call.  Which fds it has open varies: ENOENT and EACCES are alike. */
	any_refusal = true;
	PROBE_FD(g, "pid1-cwd", open("/proc/1/cwd", O_RDONLY | O_DIRECTORY));
	PROBE_FD(g, "pid1-root", open("/proc/1/root", O_RDONLY | O_DIRECTORY));
	PROBE_FD(g, "pid1-mem", open("/proc/1/mem", O_RDONLY));
	PROBE_FD(g, "pid1-environ", open("/proc/1/environ", O_RDONLY));
	for (int n = 0; n < 16; n++) {
		char name[64], path[64];
		snprintf(path, sizeof(path), "/proc/1/fd/%d", n);
		snprintf(name, sizeof(name), "pid1-fd%d-open", n);
		PROBE_FD(g, name, open(path, O_RDONLY));
		snprintf(name, sizeof(name), "pid1-fd%d-readlink", n);
		PROBE(g, name, readlink(path, (char[256]){0}, 256));
		snprintf(path, sizeof(path), "/proc/1/fd/%d/..", n);
		snprintf(name, sizeof(name), "pid1-fd%d-dotdot", n);
		PROBE(g, name, access(path, F_OK));
	}
	any_refusal = false;

	int rfd = open("/", O_RDONLY | O_DIRECTORY);
	int tfd = open("/tmp", O_RDONLY | O_DIRECTORY);
	int ofd = open("/", O_PATH);
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../secret.txt", rfd);
	read_path(g, "self-fd-root-dotdot", p);
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../outside-only.txt", rfd);
	read_path(g, "self-fd-root-dotdot-outside-only", p);
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../../secret.txt", tfd);
	read_path(g, "self-fd-tmp-dotdot", p);
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../secret.txt", ofd);
	read_path(g, "self-fd-opath-dotdot", p);
	snprintf(p, sizeof(p), "/proc/%d/fd/%d/../secret.txt", (int)getpid(), rfd);
	read_path(g, "pid-fd-root-dotdot", p);

	/* what the links say: a host path here would tell where the root is */
	snprintf(p, sizeof(p), "/proc/self/fd/%d", rfd);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	begin(g, "readlink-self-fd-root");
	buf[n < 0 ? 0 : n] = 0;
	emit(false, n < 0 ? ename(errno) : buf);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", tfd);
	n = readlink(p, buf, sizeof(buf) - 1);
	begin(g, "readlink-self-fd-tmp");
	buf[n < 0 ? 0 : n] = 0;
	emit(false, n < 0 ? ename(errno) : buf);

	/* through the fd itself, the cwd, and a child's cwd */
	read_at(g, "openat-rootfd-dotdot", rfd, "../secret.txt");
	PROBE_FD(g, "openat-rootfd-dotdot-outside-only",
		 openat(rfd, "../outside-only.txt", O_RDONLY));
	if (fchdir(rfd) < 0)
		printf("SETUP fchdir: %s\n", ename(errno));
	read_path(g, "fchdir-root-relative-dotdot", "../secret.txt");
	read_path(g, "fchdir-root-self-cwd-dotdot", "/proc/self/cwd/../secret.txt");
	begin(g, "getcwd-after-fchdir");
	emit(false, getcwd(buf, sizeof(buf)) ? buf : ename(errno));

	int sync_pipe[2];
	if (pipe(sync_pipe) < 0)
		printf("SETUP pipe: %s\n", ename(errno));
	pid_t child = fork();
	if (child == 0) {
		if (fchdir(tfd) < 0)
			_exit(1);
		if (write(sync_pipe[1], "x", 1) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	if (read(sync_pipe[0], buf, 1) < 0)
		printf("SETUP child: %s\n", ename(errno));
	snprintf(p, sizeof(p), "/proc/%d/cwd/../../secret.txt", (int)child);
	read_path(g, "child-cwd-dotdot", p);
	snprintf(p, sizeof(p), "/proc/%d/cwd/../../outside-only.txt", (int)child);
	read_path(g, "child-cwd-dotdot-outside-only", p);
	snprintf(p, sizeof(p), "/proc/%d/root/../secret.txt", (int)child);
	read_path(g, "child-root-dotdot", p);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	/* calls the kernel resolves itself from the cwd or a dirfd (fchdir'd
	 * above to an fd this sandbox was handed): nothing outside the root
	 * may be found */
	if (fchdir(rfd) < 0)
		printf("SETUP fchdir: %s\n", ename(errno));
	struct timeval tv[2] = {{1, 0}, {1, 0}};
	PROBE_FD(g, "cwd-open-outside-only", open("../outside-only.txt", O_RDONLY));
	PROBE(g, "cwd-setxattr-outside-only",
	      setxattr("../outside-only.txt", "user.pwned", "1", 1, 0));
	PROBE(g, "cwd-lsetxattr-outside-only",
	      lsetxattr("../outside-only.txt", "user.pwned", "1", 1, 0));
	PROBE(g, "cwd-removexattr-outside-only", removexattr("../outside-only.txt", "user.keep"));
	PROBE(g, "cwd-lremovexattr-outside-only", lremovexattr("../outside-only.txt", "user.keep"));
	PROBE(g, "cwd-utime-outside-only", utime("../outside-only.txt", NULL));
	PROBE(g, "cwd-futimesat-outside-only", futimesat(AT_FDCWD, "../outside-only.txt", tv));
	PROBE(g, "cwd-fchmodat2-outside-only",
	      syscall(__NR_fchmodat2, AT_FDCWD, "../outside-only.txt", 0600, 0));
	int ifd = inotify_init1(IN_CLOEXEC);
	PROBE(g, "cwd-inotify-outside-only",
	      inotify_add_watch(ifd, "../outside-only.txt", IN_ALL_EVENTS));
	PROBE(g, "rootfd-futimesat-outside-only", futimesat(rfd, "../outside-only.txt", tv));
	PROBE(g, "rootfd-fchmodat2-outside-only",
	      syscall(__NR_fchmodat2, rfd, "../outside-only.txt", 0600, 0));
	PROBE(g, "rootfd-faccessat2-outside-only",
	      syscall(SYS_faccessat2, rfd, "../outside-only.txt", F_OK, 0));
	PROBE(g, "rootfd-fstatat-outside-only",
	      fstatat(rfd, "../outside-only.txt", &(struct stat){0}, 0));
	PROBE(g, "rootfd-readlinkat-outside-only",
	      readlinkat(rfd, "../outside-only.txt", (char[64]){0}, 64));
	close(ifd);

	/* exec of a script that exists only outside the root */
	pid_t pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		if (dn >= 0)
			dup2(dn, 1);
		execl("../outside.sh", "outside.sh", (char *)NULL);
		_exit(100);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	begin(g, "cwd-exec-outside-script");
	emit(!WIFEXITED(status) || WEXITSTATUS(status) != 100,
	     WIFEXITED(status) && WEXITSTATUS(status) == 100 ? "refused" : "RAN");
	pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		if (dn >= 0)
			dup2(dn, 1);
		char *argv[] = {"outside.sh", NULL};
		syscall(SYS_execveat, rfd, "../outside.sh", argv, environ, 0);
		_exit(100);
	}
	waitpid(pid, &status, 0);
	begin(g, "rootfd-execveat-outside-script");
	emit(!WIFEXITED(status) || WEXITSTATUS(status) != 100,
	     WIFEXITED(status) && WEXITSTATUS(status) == 100 ? "refused" : "RAN");
	if (chdir("/") < 0)
		printf("SETUP chdir /: %s\n", ename(errno));
	close(rfd);
	close(tfd);
	close(ofd);
}

/* ---------------------------------------------------------------------------
 * hard links to files outside */

static void g_hardlink(void)
{
	const char *g = "hardlink";
	mkdir("/tmp/hl", 0777);
	link_to(hpath("", "/secret.txt"), "/tmp/hl/abs-host");
	link_to("../../../secret.txt", "/tmp/hl/rel-up");
	PROBE(g, "link-host-path", link(hpath("", "/secret.txt"), "/tmp/hl/h1"));
	PROBE(g, "link-dotdot-outside-only", link("/../outside-only.txt", "/tmp/hl/h2"));
	PROBE(g, "linkat-follow-abs-host",
	      linkat(AT_FDCWD, "/tmp/hl/abs-host", AT_FDCWD, "/tmp/hl/h3", AT_SYMLINK_FOLLOW));
	int rfd = open("/", O_RDONLY | O_DIRECTORY);
	PROBE(g, "linkat-rootfd-dotdot-outside-only",
	      linkat(rfd, "../outside-only.txt", AT_FDCWD, "/tmp/hl/h4", 0));
	char p[128];
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../outside-only.txt", rfd);
	PROBE(g, "linkat-proc-fd-dotdot-outside-only",
	      linkat(AT_FDCWD, p, AT_FDCWD, "/tmp/hl/h5", AT_SYMLINK_FOLLOW));
	close(rfd);
	/* links that stay inside: they must name the decoy */
	RESULT(g, "linkat-follow-rel-up",
	       linkat(AT_FDCWD, "/tmp/hl/rel-up", AT_FDCWD, "/tmp/hl/h6", AT_SYMLINK_FOLLOW));
	read_path(g, "linkat-follow-rel-up-content", "/tmp/hl/h6");
	int dfd = open("/secret.txt", O_RDONLY);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", dfd);
	RESULT(g, "linkat-proc-fd-decoy",
	       linkat(AT_FDCWD, p, AT_FDCWD, "/tmp/hl/h7", AT_SYMLINK_FOLLOW));
	read_path(g, "linkat-proc-fd-decoy-content", "/tmp/hl/h7");
	close(dfd);
}

/* ---------------------------------------------------------------------------
 * O_PATH fds */

static void g_opath(void)
{
	const char *g = "opath";
	char buf[256];
	struct open_how how = {.flags = O_RDONLY, .resolve = RESOLVE_IN_ROOT};

	int root = open("/", O_PATH | O_DIRECTORY);
	struct stat rst;
	char desc[96];
	begin(g, "open-opath-root");
	snprintf(desc, sizeof(desc), "%s o_path=%d fstat=%s", root < 0 ? ename(errno) : "OK",
		 root < 0 ? -1 : !!(fcntl(root, F_GETFL) & O_PATH),
		 root < 0		 ? "-"
		 : fstat(root, &rst) < 0 ? ename(errno)
					 : "OK");
	emit(false, desc);
	int up = openat(root, "..", O_PATH | O_DIRECTORY);
	read_at(g, "opath-root-dotdot", up, "secret.txt");
	PROBE_FD(g, "opath-root-dotdot-outside-only", openat(up, "outside-only.txt", O_RDONLY));
	PROBE_FD(g, "opath-root-dotdot-outside-only-path",
		 openat(root, "../outside-only.txt", O_PATH));
	int tmp = open("/tmp", O_PATH | O_DIRECTORY);
	read_at(g, "opath-tmp-dotdot", tmp, "../../secret.txt");
	PROBE_FD(g, "opath-host-bundle", open(hpath("", ""), O_PATH));
	PROBE_FD(g, "openat2-in-root-tmp-outside-only",
		 syscall(SYS_openat2, tmp, "../../outside-only.txt", &how, sizeof(how)));
	how.resolve = 0;
	PROBE_FD(g, "openat2-tmp-dotdot-outside-only",
		 syscall(SYS_openat2, tmp, "../../outside-only.txt", &how, sizeof(how)));
	PROBE(g, "fstatat-opath-dotdot-outside-only",
	      fstatat(tmp, "../../outside-only.txt", &(struct stat){0}, 0));
	RESULT(g, "mkdirat-opath-dotdot", mkdirat(root, "../pwned-opath", 0777));
	RESULT(g, "fstatat-empty-path-opath-root",
	       fstatat(up, "", &(struct stat){0}, AT_EMPTY_PATH));

	mkdir("/tmp/op", 0777);
	link_to(hpath("", "/secret.txt"), "/tmp/op/abs-host");
	int lfd = open("/tmp/op/abs-host", O_PATH | O_NOFOLLOW);
	begin(g, "readlinkat-opath-symlink");
	ssize_t n = readlinkat(lfd, "", buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	emit(false, n < 0 ? ename(errno) : "OK");
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", lfd);
	read_path(g, "open-proc-fd-of-opath-symlink", p);
	close(lfd);

	int ffd = open("/secret.txt", O_PATH);
	RESULT_FD(g, "openat-opath-file-dotdot", openat(ffd, "..", O_RDONLY));
	snprintf(p, sizeof(p), "/proc/self/fd/%d", ffd);
	read_path(g, "reopen-opath-file-via-proc", p);
	close(ffd);

	RESULT(g, "fchdir-opath-root", fchdir(root));
	PROBE_FD(g, "fchdir-opath-root-outside-only", open("../outside-only.txt", O_RDONLY));
	if (chdir("/") < 0)
		printf("SETUP chdir /: %s\n", ename(errno));
	close(root);
	close(up);
	close(tmp);
}

/* ---------------------------------------------------------------------------
 * bind mounts: /mnt/share (rw) and /mnt/ro (ro), both from the bundle
 * directory; .. out of a mount goes to its mount point's parent */

static void g_bindmount(void)
{
	const char *g = "bindmount";
	struct timespec ts[2] = {{1, 0}, {1, 0}};

	read_path(g, "share-file", "/mnt/share/hello.txt");
	read_path(g, "share-dotdot", "/mnt/share/../secret.txt");
	read_path(g, "share-link-up", "/mnt/share/link-up");
	read_path(g, "share-link-up2", "/mnt/share/link-up2");
	read_path(g, "share-link-abs", "/mnt/share/link-abs");
	read_path(g, "share-link-host", "/mnt/share/link-host");
	read_path(g, "share-dotdot-outside-only", "/mnt/share/../outside-only.txt");
	read_path(g, "share-link-dir-up", "/mnt/share/link-dir-up/secret.txt");
	int sfd = open("/mnt/share", O_RDONLY | O_DIRECTORY);
	read_at(g, "openat-share-dotdot", sfd, "../secret.txt");
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d/../secret.txt", sfd);
	read_path(g, "proc-fd-share-dotdot", p);
	close(sfd);
	if (chdir("/mnt/share") == 0) {
		read_path(g, "cwd-share-dotdot", "../secret.txt");
		PROBE(g, "cwd-share-setxattr-dotdot-outside-only",
		      setxattr("../outside-only.txt", "user.pwned", "1", 1, 0));
		if (chdir("/") < 0)
			printf("SETUP chdir /: %s\n", ename(errno));
	}
	RESULT_FD(g, "share-creat", open("/mnt/share/new.txt", O_WRONLY | O_CREAT, 0644));
	RESULT(g, "share-rename-to-rootfs", rename("/mnt/share/hello.txt", "/tmp/hello-moved"));
	RESULT(g, "share-link-to-rootfs", link("/mnt/share/hello.txt", "/tmp/hello-linked"));
	RESULT_FD(g, "ro-open-wronly", open("/mnt/ro/ro.txt", O_WRONLY));
	RESULT_FD(g, "ro-creat", open("/mnt/ro/new", O_WRONLY | O_CREAT, 0644));
	RESULT(g, "ro-unlink", unlink("/mnt/ro/ro.txt"));
	RESULT(g, "ro-mkdir", mkdir("/mnt/ro/d", 0755));
	RESULT(g, "ro-rmdir", rmdir("/mnt/ro/sub"));
	RESULT(g, "ro-rename", rename("/mnt/ro/ro.txt", "/mnt/ro/moved"));
	RESULT(g, "ro-symlink", symlink("x", "/mnt/ro/l"));
	RESULT(g, "ro-link", link("/mnt/ro/ro.txt", "/mnt/ro/h"));
	RESULT(g, "ro-mknod", mknod("/mnt/ro/fifo", S_IFIFO | 0600, 0));
	RESULT(g, "ro-chmod", chmod("/mnt/ro/ro.txt", 0777));
	RESULT(g, "ro-chown", chown("/mnt/ro/ro.txt", 1, 1));
	RESULT(g, "ro-utimensat", utimensat(AT_FDCWD, "/mnt/ro/ro.txt", ts, 0));
	RESULT(g, "ro-truncate", truncate("/mnt/ro/ro.txt", 0));
	RESULT(g, "ro-setxattr", setxattr("/mnt/ro/ro.txt", "user.x", "1", 1, 0));
	RESULT(g, "ro-access-w", access("/mnt/ro/ro.txt", W_OK));
	read_path(g, "ro-read", "/mnt/ro/ro.txt");
}

/* the root itself read-only (the bundle's root.readonly) */
static void g_rorootfs(void)
{
	const char *g = "rorootfs";
	struct timespec ts[2] = {{1, 0}, {1, 0}};
	RESULT_FD(g, "creat", open("/pwned", O_WRONLY | O_CREAT, 0644));
	RESULT_FD(g, "open-wronly", open("/secret.txt", O_WRONLY));
	RESULT_FD(g, "open-trunc", open("/secret.txt", O_RDONLY | O_TRUNC));
	RESULT(g, "mkdir", mkdir("/tmp/pwned", 0755));
	RESULT(g, "unlink", unlink("/secret.txt"));
	RESULT(g, "rename", rename("/secret.txt", "/moved"));
	RESULT(g, "symlink", symlink("x", "/tmp/l"));
	RESULT(g, "link", link("/secret.txt", "/tmp/h"));
	RESULT(g, "mknod-fifo", mknod("/tmp/f", S_IFIFO | 0600, 0));
	RESULT(g, "chmod", chmod("/secret.txt", 0777));
	RESULT(g, "chown", chown("/secret.txt", 1, 1));
	RESULT(g, "utimensat", utimensat(AT_FDCWD, "/secret.txt", ts, 0));
	RESULT(g, "truncate", truncate("/secret.txt", 0));
	RESULT(g, "rmdir", rmdir("/mnt/share"));
	RESULT(g, "access-w", access("/secret.txt", W_OK));
	read_path(g, "read", "/secret.txt");
	/* a writable mount inside a read-only root stays writable */
	RESULT_FD(g, "dev-shm-creat", open("/dev/shm/ok", O_WRONLY | O_CREAT, 0644));
}

/* ---------------------------------------------------------------------------
 * device nodes: none may be made, and the ones an image brings may not be
 * opened (the device cgroup denies them all) */

static void g_devices(void)
{
	const char *g = "devices";
	RESULT(g, "mknod-char", mknod("/tmp/null", S_IFCHR | 0666, makedev(1, 3)));
	RESULT(g, "mknod-block", mknod("/tmp/disk", S_IFBLK | 0666, makedev(8, 0)));
	RESULT(g, "mknodat-char", mknodat(AT_FDCWD, "/tmp/zero", S_IFCHR | 0666, makedev(1, 5)));
	RESULT(g, "mknod-whiteout", mknod("/tmp/wh", S_IFCHR | 0666, makedev(0, 0)));
	RESULT(g, "mknod-socket", mknod("/tmp/sock", S_IFSOCK | 0666, 0));
	/* /dev/zero and /dev/null are among the devices every sandbox may use
	 * (the default rules); 240:123 (a local/experimental major) is not */
	RESULT_FD(g, "open-planted-zero-rdonly", open("/planted/zero", O_RDONLY));
	RESULT_FD(g, "open-planted-null-wronly", open("/planted/null", O_WRONLY));
	PROBE_FD(g, "open-planted-denied-rdonly", open("/planted/denied", O_RDONLY));
	PROBE_FD(g, "open-planted-denied-wronly", open("/planted/denied", O_WRONLY));
	PROBE_FD(g, "open-planted-denied-path-then-proc", ({
			 int o = open("/planted/denied", O_PATH);
			 char pp[64];
			 snprintf(pp, sizeof(pp), "/proc/self/fd/%d", o);
			 int r = o < 0 ? -1 : open(pp, O_RDONLY);
			 int e = errno;
			 if (o >= 0)
				 close(o);
			 errno = e;
			 r;
		 }));
	PROBE_FD(g, "openat-planted-denied", openat(AT_FDCWD, "planted/denied", O_RDWR));
	PROBE_FD(g, "open-planted-denied-block", open("/planted/block", O_RDONLY));
	struct stat st;
	begin(g, "stat-planted-denied");
	errno = 0;
	int rc = stat("/planted/denied", &st);
	char out[64];
	snprintf(out, sizeof(out), "%s chr=%d rdev=%u:%u", rc < 0 ? ename(errno) : "OK",
		 S_ISCHR(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
	emit(false, out);
}

/* ---------------------------------------------------------------------------
 * a blocking open (a fifo with no writer yet) must not stop the sandbox's
 * other file calls */

static const char *fifo_path = "/tmp/fifo-block";
static atomic_int fifo_opened; /* 0: blocked; 1: opened; else -errno */

static void *fifo_reader(void *arg)
{
	(void)arg;
	int fd = open(fifo_path, O_RDONLY);
	atomic_store(&fifo_opened, fd >= 0 ? 1 : -errno);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static const char *fifo_state(void)
{
	int v = atomic_load(&fifo_opened);
	return v == 0 ? "blocked" : v == 1 ? "opened" : ename(-v);
}

static void g_fifo(void)
{
	const char *g = "fifo";
	pthread_t th;
	struct stat st;

	unlink(fifo_path);
	RESULT(g, "mkfifo", mkfifo(fifo_path, 0666));
	pthread_create(&th, NULL, fifo_reader, NULL);
	usleep(200 * 1000);
	begin(g, "stat-while-open-blocks");
	int ok = 0;
	for (int i = 0; i < 50; i++)
		ok += stat("/secret.txt", &st) == 0;
	emit(false, ok == 50 ? "OK" : "FAILED");
	begin(g, "reader-before-writer");
	emit(false, fifo_state());
	RESULT(g, "open-writer", ({
		       int w = open(fifo_path, O_WRONLY);
		       if (w >= 0)
			       close(w);
		       w;
	       }));
	begin(g, "reader-after-writer");
	pthread_join(th, NULL);
	emit(false, fifo_state());
}

/* ---------------------------------------------------------------------------
 * statloop SECONDS [read]: stat in a loop (or pread of an open file: the
 * offload-all crash test); a line per 250 ms with the counts so far (the
 * crash test kills iod in the middle) */

static atomic_long loop_ok, loop_err, loop_eio, loop_other;
static atomic_int loop_last_errno;

static void *loop_report(void *arg)
{
	long secs = (long)arg;
	for (long tick = 1; tick <= secs * 4; tick++) {
		usleep(250 * 1000);
		printf("tick %ld ok=%ld err=%ld eio=%ld other=%ld last=%s\n", tick,
		       atomic_load(&loop_ok), atomic_load(&loop_err), atomic_load(&loop_eio),
		       atomic_load(&loop_other), ename(atomic_load(&loop_last_errno)));
		fflush(stdout);
	}
	printf("done ok=%ld err=%ld eio=%ld other=%ld\n", atomic_load(&loop_ok),
	       atomic_load(&loop_err), atomic_load(&loop_eio), atomic_load(&loop_other));
	fflush(stdout);
	_exit(0);
}

static int statloop(long secs, bool reads)
{
	pthread_t th;
	struct stat st;
	char buf[64];
	int fd = reads ? open("/etc/passwd", O_RDONLY | O_CLOEXEC) : -1;
	if (reads && fd < 0) {
		perror("statloop: /etc/passwd");
		return 1;
	}
	pthread_create(&th, NULL, loop_report, (void *)secs);
	for (;;) {
		if (reads ? pread(fd, buf, sizeof(buf), 0) > 0 : stat("/etc/passwd", &st) == 0) {
			atomic_fetch_add(&loop_ok, 1);
			continue;
		}
		int e = errno;
		atomic_store(&loop_last_errno, e);
		atomic_fetch_add(&loop_err, 1);
		if (e == EIO)
			atomic_fetch_add(&loop_eio, 1);
		else
			atomic_fetch_add(&loop_other, 1);
		usleep(1000);
	}
	return 0;
}

struct group {
	const char *name;
	void (*fn)(void);
};

static const struct group groups[] = {
    {"dotdot", g_dotdot},	{"symlinks", g_symlinks}, {"race", g_race},
    {"procmagic", g_procmagic}, {"hardlink", g_hardlink}, {"opath", g_opath},
    {"bindmount", g_bindmount}, {"rorootfs", g_rorootfs}, {"devices", g_devices},
    {"fifo", g_fifo},		{"pathflip", g_pathflip},
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* These attempts create and change files wherever a path leads: refuse
	 * to run anywhere but in a fresh pid namespace. */
	if (getpid() > 64) {
		fprintf(stderr, "fsattack: pid %d: not in a sandbox, refusing to run\n",
			(int)getpid());
		return 2;
	}
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "statloop"))
		return statloop(atol(argv[2]), argc == 4 && !strcmp(argv[3], "read"));
	if (argc < 3) {
		fprintf(stderr, "usage: fsattack HOSTBUNDLE GROUP... | statloop SECONDS [read]\n");
		return 2;
	}
	hb = argv[1];
	signal(SIGALRM, on_alarm);
	for (int i = 2; i < argc; i++) {
		size_t j;
		for (j = 0; j < sizeof(groups) / sizeof(groups[0]); j++)
			if (!strcmp(argv[i], groups[j].name))
				break;
		if (j == sizeof(groups) / sizeof(groups[0])) {
			fprintf(stderr, "fsattack: unknown group %s\n", argv[i]);
			return 2;
		}
		if (chdir("/") < 0)
			return 2;
		groups[j].fn();
	}
	alarm(0);
	printf("SUMMARY checks=%d escapes=%d\n", checks, escapes);
	return escapes ? 1 : 0;
}
