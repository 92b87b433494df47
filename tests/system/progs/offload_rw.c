/* offload_rw: reads and writes of regular files with known outcomes, one
 * line each, for comparing a sandbox with io.quiver.iod "offload-all" (the
 * calls served by iod) against the host kernel.
 *
 *   offload_rw DIR     makes DIR (which must not exist), works inside it and
 *                      prints "case-name RESULT [details]" lines
 *
 * Besides the data and the return values it checks what a copy of the open
 * file held elsewhere would break: the file position shared with dup'd fds
 * and with a child, O_APPEND, the access mode (EBADF), a flock released by
 * close, a file once written being executable (no ETXTBSY) after close,
 * after its writer's exit and after its writer was killed, and an fd
 * number reused for another file.  Raw syscalls for the vector calls, so
 * that glibc cannot split them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *err_name(int e)
{
	switch (e) {
#define E(x)                                                                                       \
	case x:                                                                                    \
		return #x;
		E(EBADF)
		E(EFAULT)
		E(EINVAL)
		E(EAGAIN)
		E(ETXTBSY)
		E(ENOENT)
		E(EIO)
		E(ESPIPE)
		E(EISDIR)
		E(EACCES)
		E(EPERM)
#undef E
	}
	static char buf[32];
	snprintf(buf, sizeof(buf), "errno%d", e);
	return buf;
}

static void line(const char *name, long rv, const char *fmt, ...)
{
	char extra[512] = "";

	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(extra, sizeof(extra), fmt, ap);
		va_end(ap);
	}
	if (rv < 0)
		printf("%s %s%s%s\n", name, err_name(errno), extra[0] ? " " : "", extra);
	else
		printf("%s OK %ld%s%s\n", name, rv, extra[0] ? " " : "", extra);
	fflush(stdout);
}

static long pos(int fd)
{
	return (long)lseek(fd, 0, SEEK_CUR);
}

static uint32_t sum(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 31 + seed) ^ (i >> 9));
}

static const char *content(const char *path)
{
	static char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	for (char *c = buf; *c; c++)
		if (*c == '\n')
			*c = '|';
	return buf;
}

/* Run path: 0 when it ran and exited 0, else -1 with errno (ETXTBSY). */
static int exec_it(const char *path)
{
	int p[2];
	pid_t pid;
	int st, e = 0;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);
		dup2(nul, 1);
		execl(path, path, (char *)NULL);
		e = errno;
		if (write(p[1], &e, sizeof(e)) < 0)
			_exit(126);
		_exit(127);
	}
	close(p[1]);
	if (read(p[0], &e, sizeof(e)) != sizeof(e))
		e = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	if (e) {
		errno = e;
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

static const char SCRIPT[] = "#!/bin/sh\nexit 0\n";

/* Write the script as a child that then closes (how 0), exits without
 * closing (1) or is killed (2). */
static void write_script(const char *path, int how)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
		if (fd < 0 || write(fd, SCRIPT, sizeof(SCRIPT) - 1) != sizeof(SCRIPT) - 1)
			_exit(1);
		if (how == 0)
			close(fd);
		if (how == 2)
			raise(SIGKILL);
		_exit(0);
	}
	waitpid(pid, &st, 0);
}

struct appender {
	int fd;
	char tag;
};

static void *append_lines(void *arg)
{
	struct appender *a = arg;
	char l[8] = {a->tag, a->tag, a->tag, '\n'};

	for (int i = 0; i < 200; i++)
		if (write(a->fd, l, 4) != 4)
			return (void *)1;
	return NULL;
}

int main(int argc, char **argv)
{
	char buf[256];
	long r;
	int fd, fd2;

	if (argc != 2 || mkdir(argv[1], 0755) < 0 || chdir(argv[1]) < 0) {
		fprintf(stderr, "usage: offload_rw NEWDIR\n");
		return 2;
	}
	umask(022);

	/* the basics and the position */
	fd = open("a", O_RDWR | O_CREAT | O_TRUNC, 0644);
	r = write(fd, "hello world\n", 12);
	line("write", r, "pos=%ld", pos(fd));
	lseek(fd, 0, SEEK_SET);
	memset(buf, 0, sizeof(buf));
	r = read(fd, buf, 5);
	line("read", r, "data=%.5s pos=%ld", buf, pos(fd));
	r = read(fd, buf, sizeof(buf));
	line("read-rest", r, "pos=%ld", pos(fd));
	r = read(fd, buf, sizeof(buf));
	line("read-eof", r, NULL);
	r = read(fd, buf, 0);
	line("read-zero", r, NULL);
	r = pread(fd, buf, 5, 6);
	line("pread", r, "data=%.5s pos=%ld", buf, pos(fd));
	r = pread(fd, buf, 5, 100);
	line("pread-past-eof", r, NULL);
	r = pread(fd, buf, 5, -1);
	line("pread-negative", r, NULL);
	r = pwrite(fd, "HELLO", 5, 0);
	line("pwrite", r, "pos=%ld content=%s", pos(fd), content("a"));
	r = pwrite(fd, "x", 1, 20);
	line("pwrite-hole", r, "size=%ld", (long)lseek(fd, 0, SEEK_END));

	/* dup'd fds and a child share the position */
	lseek(fd, 0, SEEK_SET);
	fd2 = dup(fd);
	r = read(fd, buf, 3);
	r = read(fd2, buf, 3);
	line("dup-shares-position", r, "data=%.3s pos=%ld", buf, pos(fd));
	pid_t pid = fork();
	if (pid == 0) {
		_exit(read(fd, buf, 2) == 2 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	line("child-moves-position", WEXITSTATUS(st) == 0 ? 0 : -1, "pos=%ld", pos(fd2));
	close(fd2);
	close(fd);

	/* O_APPEND: writes go to the end, pwrite too (Linux) */
	fd = open("a", O_WRONLY | O_APPEND);
	r = write(fd, "tail\n", 5);
	line("append", r, "size=%ld", (long)lseek(fd, 0, SEEK_END));
	r = pwrite(fd, "PW", 2, 0);
	line("append-pwrite", r, "size=%ld", (long)lseek(fd, 0, SEEK_END));
	/* the access mode */
	r = read(fd, buf, 4);
	line("read-on-wronly", r, NULL);
	close(fd);
	fd = open("a", O_RDONLY);
	r = write(fd, "no", 2);
	line("write-on-rdonly", r, NULL);
	r = fsync(fd);
	line("fsync-rdonly", r, NULL);
	close(fd);
	r = read(fd, buf, 1);
	line("read-closed", r, NULL);
	r = write(987, "x", 1);
	line("write-bad-fd", r, NULL);

	/* bigger than one step of iod's data area, in one call */
	size_t big = 1024 * 1024 + 123;
	unsigned char *src = malloc(big), *dst = malloc(big + 4096);
	fill(src, big, 7);
	fd = open("big", O_RDWR | O_CREAT | O_TRUNC, 0644);
	r = write(fd, src, big);
	line("write-big", r, "pos=%ld", pos(fd));
	lseek(fd, 0, SEEK_SET);
	memset(dst, 0, big);
	r = read(fd, dst, big + 4096);
	line("read-big", r, "same=%d pos=%ld", memcmp(src, dst, big) == 0, pos(fd));
	memset(dst, 0, big);
	r = pread(fd, dst, 300000, 500000);
	line("pread-big", r, "same=%d", memcmp(src + 500000, dst, 300000) == 0);

	/* vectors, across a step's boundary, with an empty one */
	struct iovec iov[3] = {{dst, 100000}, {dst + 100000, 0}, {dst + 100000, 60000}};
	memset(dst, 0, 200000);
	lseek(fd, 1000, SEEK_SET);
	r = syscall(SYS_readv, fd, iov, 3);
	line("readv", r, "same=%d pos=%ld", memcmp(src + 1000, dst, 160000) == 0, pos(fd));
	memset(dst, 0, 200000);
	r = syscall(SYS_preadv, fd, iov, 3, 2000);
	line("preadv", r, "same=%d pos=%ld", memcmp(src + 2000, dst, 160000) == 0, pos(fd));
	fill(src, 200000, 9);
	struct iovec wv[3] = {{src, 70000}, {src + 70000, 0}, {src + 70000, 70000}};
	lseek(fd, 0, SEEK_SET);
	r = syscall(SYS_writev, fd, wv, 3);
	line("writev", r, "pos=%ld", pos(fd));
	r = syscall(SYS_pwritev, fd, wv, 3, 140000);
	pread(fd, dst, 280000, 0);
	line("pwritev", r, "same=%d sum=%08x",
	     memcmp(src, dst, 140000) == 0 && memcmp(src, dst + 140000, 140000) == 0,
	     sum(dst, 280000));
	r = syscall(SYS_readv, fd, iov, 1025);
	line("readv-too-many", r, NULL);
	struct iovec neg = {dst, (size_t)-1};
	r = syscall(SYS_readv, fd, &neg, 1);
	line("readv-negative-len", r, NULL);
	r = fsync(fd);
	line("fsync", r, NULL);
	r = fdatasync(fd);
	line("fdatasync", r, NULL);

	/* bad buffers: nothing read or written, the position unchanged */
	lseek(fd, 0, SEEK_SET);
	void *volatile unmapped = (void *)8;
	r = read(fd, unmapped, 100);
	line("read-efault", r, "pos=%ld", pos(fd));
	r = write(fd, unmapped, 100);
	line("write-efault", r, "pos=%ld", pos(fd));
	char *guard = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(guard + 4096, 4096);
	r = pread(fd, guard + 4096 - 100, 1000, 0);
	line("read-partly-efault", r, NULL);
	close(fd);

	/* not regular files: the kernel's */
	int p[2];
	if (pipe(p) == 0) {
		r = write(p[1], "pipe", 4);
		memset(buf, 0, 8);
		r = read(p[0], buf, 8);
		line("pipe", r, "data=%s", buf);
		r = fsync(p[0]);
		line("fsync-pipe", r, NULL);
		r = pread(p[0], buf, 1, 0);
		line("pread-pipe", r, NULL);
		close(p[0]);
		close(p[1]);
	}
	fd = open(".", O_RDONLY | O_DIRECTORY);
	r = read(fd, buf, 1);
	line("read-directory", r, NULL);
	close(fd);
	fd = open("/dev/zero", O_RDONLY);
	r = read(fd, buf, 4);
	line("read-dev-zero", r, "byte=%d", buf[0]);
	close(fd);

	/* an fd number reused for another file */
	int fa = open("a", O_RDONLY);
	r = read(fa, buf, 1);
	close(fa);
	int fb = open("b", O_RDWR | O_CREAT | O_TRUNC, 0644);
	r = write(fb, "bee", 3);
	lseek(fb, 0, SEEK_SET);
	memset(buf, 0, 8);
	r = read(fb, buf, 3);
	line("reused-number", r, "same-number=%d data=%s", fa == fb, buf);
	fa = open("a", O_RDONLY);
	r = read(fa, buf, 2);
	dup2(fb, fa);
	lseek(fa, 0, SEEK_SET);
	memset(buf, 0, 8);
	r = read(fa, buf, 3);
	line("dup2-over", r, "data=%s", buf);
	close(fa);
	close(fb);

	/* threads appending to one file */
	fd = open("lines", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	pthread_t t[2];
	struct appender ap[2] = {{fd, 'x'}, {fd, 'y'}};
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, append_lines, &ap[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	line("threads-append", 0, "size=%ld", (long)lseek(fd, 0, SEEK_END));
	close(fd);

	/* what a copy held elsewhere would break */
	fd = open("lock", O_RDWR | O_CREAT, 0644);
	flock(fd, LOCK_EX);
	r = write(fd, "x", 1);
	close(fd);
	fd = open("lock", O_RDWR);
	r = flock(fd, LOCK_EX | LOCK_NB);
	line("flock-released-by-close", r, NULL);
	close(fd);

	write_script("s0", 0);
	r = exec_it("./s0");
	line("exec-after-close", r, NULL);
	write_script("s1", 1);
	r = exec_it("./s1");
	line("exec-after-exit", r, NULL);
	write_script("s2", 2);
	/* Killed: nothing tells the supervisor but the process's end, seen
	 * in its loop; allow it a moment (the kernel needs none). */
	for (int i = 0; i < 100; i++) {
		r = exec_it("./s2");
		if (r == 0 || errno != ETXTBSY)
			break;
		usleep(10000);
	}
	line("exec-after-kill", r, NULL);

	fd = open("gone", O_RDWR | O_CREAT | O_TRUNC, 0644);
	r = write(fd, "x", 1);
	unlink("gone");
	r = read(fd, buf, 1);
	line("unlinked-still-open", r, NULL);
	close(fd);

	printf("end\n");
	return 0;
}
