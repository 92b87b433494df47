/* errno_table: file-path system calls with known outcomes, one line each.
 *
 *   errno_table DIR     makes DIR (which must not exist), works inside it and
 *                       prints "case-name RESULT [details]" lines, where
 *                       RESULT is OK or the errno's name (ENOENT, ...).
 *
 * The output names nothing that depends on where DIR is or when the program
 * ran (no inode numbers, no absolute paths, no current times), so that a run
 * on the host and a run inside a sandbox can be compared line by line: a
 * sandbox whose file calls are served by iod must answer exactly as the
 * kernel does.  The program first drops to a fixed set of capabilities (the
 * same as the sandbox's bundle grants), sets its umask, and runs three
 * phases: as root with those capabilities, as root with none, and as uid
 * 1000 (each of the last two in a forked child).  Raw syscalls are used for
 * the newer calls so that glibc's fallbacks cannot hide what the kernel, or
 * iod, answered. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif

#define UID_USER 1000
#define GID_USER 1000

/* CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE
 * AUDIT_WRITE: test_iod.py's ERRNO_CAPS, which the bundle grants. */
#define FIXED_CAPS                                                                                 \
	((1u << CAP_CHOWN) | (1u << CAP_DAC_OVERRIDE) | (1u << CAP_FOWNER) | (1u << CAP_FSETID) |  \
	 (1u << CAP_KILL) | (1u << CAP_SETGID) | (1u << CAP_SETUID) |                              \
	 (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_AUDIT_WRITE))

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

/* One line: the case, OK or the errno, and optional details. */
static void line(const char *name, long rc, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void line(const char *name, long rc, int err, const char *fmt, ...)
{
	printf("%s %s", name, rc < 0 ? ename(err) : "OK");
	if (fmt && rc >= 0) {
		va_list ap;
		va_start(ap, fmt);
		putchar(' ');
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

#define T(name, expr)                                                                              \
	do {                                                                                       \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		line(name, rc_, errno, NULL);                                                      \
	} while (0)

/* An fd-returning call: the result, then the fd is closed. */
#define TFD(name, expr)                                                                            \
	do {                                                                                       \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		line(name, rc_, errno, NULL);                                                      \
		if (rc_ >= 0)                                                                      \
			close((int)rc_);                                                           \
	} while (0)

/* Set-up that the cases rely on: silent unless it fails (then the line makes
 * the two outputs differ at the place that matters). */
#define S(expr)                                                                                    \
	do {                                                                                       \
		errno = 0;                                                                         \
		if ((long)(expr) < 0)                                                              \
			printf("setup-failed[%s:%d] %s\n", #expr, __LINE__, ename(errno));         \
	} while (0)

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		printf("setup-failed[create %s] %s\n", path, ename(errno));
		return;
	}
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		printf("setup-failed[write %s] %s\n", path, ename(errno));
	close(fd);
	S(chmod(path, mode));
}

static const char *read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return ename(errno);
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = 0;
	return buf;
}

static int set_caps(uint32_t caps)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{caps, caps, 0}, {0, 0, 0}};
	return (int)syscall(SYS_capset, &h, d);
}

static void stat_case(const char *name, const char *path, int flags)
{
	struct stat st;
	errno = 0;
	long rc = fstatat(AT_FDCWD, path, &st, flags);
	line(name, rc, errno, "mode=%o size=%lld nlink=%lu uid=%u gid=%u", st.st_mode,
	     (long long)st.st_size, (unsigned long)st.st_nlink, st.st_uid, st.st_gid);
}

static void readlink_case(const char *name, int dfd, const char *path, size_t size)
{
	char buf[PATH_MAX];
	errno = 0;
	ssize_t n = readlinkat(dfd, path, buf, size);
	line(name, n, errno, "len=%zd text=%.*s", n, (int)(n < 0 ? 0 : n), buf);
}

/* ---------------------------------------------------------------------------
 * phase 1: root with FIXED_CAPS */

static void open_cases(void)
{
	char big[400], longpath[PATH_MAX + 200], buf[64];

	TFD("open-missing", open("missing", O_RDONLY));
	TFD("open-creat-new", open("new", O_WRONLY | O_CREAT, 0666));
	stat_case("open-creat-new-umask022", "new", 0);
	TFD("open-creat-excl-existing", open("file", O_WRONLY | O_CREAT | O_EXCL, 0644));
	TFD("open-directory-on-file", open("file", O_RDONLY | O_DIRECTORY));
	TFD("open-wronly-dir", open("dir", O_WRONLY));
	TFD("open-rdonly-dir", open("dir", O_RDONLY));
	TFD("open-enotdir-component", open("file/x", O_RDONLY));
	TFD("open-trailing-slash-file", open("file/", O_RDONLY));
	TFD("open-creat-trailing-slash", open("newdir/", O_WRONLY | O_CREAT, 0644));
	TFD("open-creat-missing-parent", open("nodir/x", O_WRONLY | O_CREAT, 0644));
	memset(big, 'n', 300);
	big[300] = 0;
	TFD("open-name-too-long", open(big, O_RDONLY));
	big[255] = 0;
	TFD("open-creat-name-255", open(big, O_WRONLY | O_CREAT, 0644));
	S(unlink(big));
	for (size_t i = 0; i + 2 < sizeof(longpath); i += 2)
		memcpy(longpath + i, "./", 2);
	longpath[sizeof(longpath) - 1] = 0;
	TFD("open-path-too-long", open(longpath, O_RDONLY));
	TFD("open-empty-path", open("", O_RDONLY));
	TFD("open-efault", syscall(SYS_open, (char *)1, O_RDONLY));
	TFD("openat-efault", syscall(SYS_openat, AT_FDCWD, (char *)1, O_RDONLY));
	TFD("open-symlink-loop", open("loop1", O_RDONLY));
	TFD("open-nofollow-symlink", open("link-file", O_RDONLY | O_NOFOLLOW));
	TFD("open-follow-symlink", open("link-file", O_RDONLY));
	TFD("open-symlink-to-dir-creat", open("link-dir", O_WRONLY | O_CREAT, 0644));
	TFD("open-creat-excl-dangling", open("dangling", O_WRONLY | O_CREAT | O_EXCL, 0644));
	TFD("open-creat-dangling", open("dangling", O_WRONLY | O_CREAT, 0644));
	stat_case("open-creat-dangling-made", "dangling-target", 0);
	TFD("open-abs-dotdot-root", open("/../../..", O_RDONLY | O_DIRECTORY));
	TFD("open-tmpfile", open("dir", O_TMPFILE | O_RDWR, 0600));
	TFD("open-tmpfile-on-file", open("file", O_TMPFILE | O_RDWR, 0600));

	/* O_TRUNC, O_APPEND and what the returned fd looks like. */
	put_file("trunc", "0123456789", 0644);
	TFD("open-trunc", open("trunc", O_WRONLY | O_TRUNC));
	stat_case("open-trunc-size", "trunc", 0);
	int fd = open("trunc", O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd >= 0) {
		int fdf = fcntl(fd, F_GETFD), fl = fcntl(fd, F_GETFL);
		S(write(fd, "ab", 2));
		S(lseek(fd, 0, SEEK_SET));
		S(write(fd, "cd", 2));
		line("open-append-cloexec-flags", 0, 0, "cloexec=%d accmode=%d append=%d",
		     !!(fdf & FD_CLOEXEC), fl & O_ACCMODE, !!(fl & O_APPEND));
		close(fd);
		line("open-append-content", 0, 0, "%s", read_text("trunc", buf, sizeof(buf)));
	} else {
		line("open-append-cloexec", -1, errno, NULL);
	}
	int a = open("file", O_RDONLY), b;
	close(a);
	b = open("file", O_RDONLY);
	line("open-lowest-fd-reused", b, errno, "reused=%d", a == b);
	if (b >= 0)
		close(b);
	fd = open("file", O_RDWR | O_NONBLOCK);
	line("open-rdwr-nonblock", fd, errno, "flags=%o pos=%ld",
	     fd < 0 ? 0 : fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK),
	     fd < 0 ? 0L : (long)lseek(fd, 0, SEEK_CUR));
	if (fd >= 0)
		close(fd);
	line("read-content", 0, 0, "%s", read_text("file", buf, sizeof(buf)));

	TFD("creat-existing-truncates", creat("trunc", 0644));
	stat_case("creat-existing-size", "trunc", 0);
	TFD("creat-missing-dir", creat("nodir/x", 0644));
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* O_PATH: a handle, nothing opened: no read permission needed, no fifo
 * waits, a symlink itself with O_NOFOLLOW */
static void opath_cases(void)
{
	struct stat st;
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: EINTR */

	int fd = open("file", O_PATH);
	line("open-opath-flags", fd, errno, "o_path=%d",
	     fd < 0 ? -1 : !!(fcntl(fd, F_GETFL) & O_PATH));
	if (fd >= 0) {
		errno = 0;
		T("open-opath-read-fails", read(fd, (char[4]){0}, 4));
		close(fd);
	}
	errno = 0;
	fd = open("link-file", O_PATH | O_NOFOLLOW);
	long rc = fd < 0 ? -1 : fstat(fd, &st);
	line("open-opath-nofollow-symlink", rc, errno, "link=%d", S_ISLNK(st.st_mode));
	if (fd >= 0)
		close(fd);
	TFD("open-opath-mode-000", open("secret-000", O_PATH));
	S(mkfifo("opath-fifo", 0600));
	sigaction(SIGALRM, &sa, NULL);
	alarm(3);
	TFD("open-opath-fifo-no-writer", open("opath-fifo", O_PATH));
	alarm(0);
	TFD("open-opath-dir-then-openat", ({
		    int d = open("dir", O_PATH | O_DIRECTORY);
		    int r = d < 0 ? -1 : openat(d, "inner", O_RDONLY);
		    int e = errno;
		    if (d >= 0)
			    close(d);
		    errno = e;
		    r;
	    }));
}

static void openat2_cases(void)
{
	struct open_how how = {.flags = O_RDONLY};
	int dfd = open("dir", O_RDONLY | O_DIRECTORY);

	how.resolve = RESOLVE_BENEATH;
	TFD("openat2-beneath-dotdot", syscall(SYS_openat2, dfd, "../file", &how, sizeof(how)));
	TFD("openat2-beneath-inside", syscall(SYS_openat2, dfd, "inner", &how, sizeof(how)));
	how.resolve = RESOLVE_NO_SYMLINKS;
	TFD("openat2-no-symlinks", syscall(SYS_openat2, AT_FDCWD, "link-file", &how, sizeof(how)));
	how.resolve = RESOLVE_IN_ROOT;
	TFD("openat2-in-root-dotdot", syscall(SYS_openat2, dfd, "../../inner", &how, sizeof(how)));
	how.resolve = 0x80000;
	TFD("openat2-unknown-resolve", syscall(SYS_openat2, AT_FDCWD, "file", &how, sizeof(how)));
	how.resolve = 0;
	how.mode = 0644;
	TFD("openat2-mode-without-creat",
	    syscall(SYS_openat2, AT_FDCWD, "file", &how, sizeof(how)));
	how.mode = 0;
	TFD("openat2-small-size", syscall(SYS_openat2, AT_FDCWD, "file", &how, 8));
	how.flags = O_WRONLY | O_CREAT | O_EXCL;
	how.mode = 0640;
	TFD("openat2-creat", syscall(SYS_openat2, dfd, "made-by-openat2", &how, sizeof(how)));
	stat_case("openat2-creat-mode", "dir/made-by-openat2", 0);
	close(dfd);
}

static void dirfd_cases(void)
{
	int dfd = open("dir", O_RDONLY | O_DIRECTORY | O_PATH);
	int ffd = open("file", O_RDONLY);
	struct stat st;

	TFD("openat-dirfd", openat(dfd, "inner", O_RDONLY));
	TFD("openat-dirfd-dotdot", openat(dfd, "../file", O_RDONLY));
	TFD("openat-dirfd-absolute", openat(dfd, "/", O_RDONLY | O_DIRECTORY));
	TFD("openat-file-as-dirfd", openat(ffd, "x", O_RDONLY));
	TFD("openat-bad-dirfd", openat(999, "x", O_RDONLY));
	TFD("openat-bad-dirfd-absolute", openat(999, "/", O_RDONLY | O_DIRECTORY));
	errno = 0;
	long rc = fstatat(dfd, "", &st, AT_EMPTY_PATH);
	line("fstatat-empty-path-dirfd", rc, errno, "isdir=%d", S_ISDIR(st.st_mode));
	T("fstatat-empty-path-no-flag", fstatat(dfd, "", &st, 0));
	T("mkdirat-dirfd", mkdirat(dfd, "sub", 0755));
	stat_case("mkdirat-dirfd-mode", "dir/sub", 0);
	T("symlinkat-dirfd", symlinkat("inner", dfd, "sl"));
	readlink_case("readlinkat-dirfd", dfd, "sl", PATH_MAX);
	T("renameat-dirfd", renameat(dfd, "sl", AT_FDCWD, "moved-link"));
	readlink_case("readlinkat-moved", AT_FDCWD, "moved-link", PATH_MAX);
	T("linkat-dirfd", linkat(dfd, "inner", dfd, "inner-link", 0));
	stat_case("linkat-dirfd-nlink", "dir/inner", 0);
	T("unlinkat-dirfd", unlinkat(dfd, "inner-link", 0));
	T("unlinkat-removedir-on-file", unlinkat(dfd, "inner", AT_REMOVEDIR));
	T("unlinkat-bad-flag", unlinkat(dfd, "inner", 0x4000));
	T("unlinkat-removedir", unlinkat(dfd, "sub", AT_REMOVEDIR));
	T("fchownat-empty-path", fchownat(ffd, "", 0, 0, AT_EMPTY_PATH));
	T("faccessat2-empty-path", syscall(SYS_faccessat2, ffd, "", R_OK, AT_EMPTY_PATH));
	T("faccessat2-eaccess", syscall(SYS_faccessat2, AT_FDCWD, "file", R_OK, AT_EACCESS));
	T("faccessat2-bad-flag", syscall(SYS_faccessat2, AT_FDCWD, "file", R_OK, 0x1));
	T("faccessat-bad-mode", syscall(SYS_faccessat, AT_FDCWD, "file", 0x10));
	close(dfd);
	close(ffd);

	/* the same through a directory opened for reading, not O_PATH */
	dfd = open("dir", O_RDONLY | O_DIRECTORY);
	TFD("openat-rdonly-dirfd", openat(dfd, "inner", O_RDONLY));
	TFD("openat-rdonly-dirfd-dotdot", openat(dfd, "../file", O_RDONLY));
	T("mkdirat-rdonly-dirfd", mkdirat(dfd, "sub2", 0700));
	stat_case("mkdirat-rdonly-dirfd-mode", "dir/sub2", 0);
	T("unlinkat-rdonly-dirfd", unlinkat(dfd, "sub2", AT_REMOVEDIR));
	errno = 0;
	rc = fstatat(dfd, "", &st, AT_EMPTY_PATH);
	line("fstatat-empty-path-rdonly-dirfd", rc, errno, "isdir=%d", S_ISDIR(st.st_mode));
	T("fchdir-rdonly-dirfd", fchdir(dfd));
	T("relative-after-fchdir-rdonly", access("inner", R_OK));
	S(chdir(".."));
	close(dfd);

	/* readlinkat(fd, "") on an O_PATH fd of the link itself */
	int lfd = open("link-file", O_PATH | O_NOFOLLOW);
	readlink_case("readlinkat-empty-opath", lfd, "", PATH_MAX);
	close(lfd);
}

static void dir_cases(void)
{
	T("mkdir-existing", mkdir("dir", 0755));
	T("mkdir-missing-parent", mkdir("nodir/x", 0755));
	T("mkdir-trailing-slash", mkdir("newdir/", 0777));
	stat_case("mkdir-mode-umask022", "newdir", 0);
	T("mkdir-over-symlink", mkdir("link-dir", 0755));
	T("rmdir-nonempty", rmdir("dir"));
	T("rmdir-file", rmdir("file"));
	T("rmdir-dot", rmdir("newdir/."));
	T("rmdir-dotdot", rmdir("newdir/.."));
	T("rmdir-missing", rmdir("missing"));
	T("rmdir-trailing-slash", rmdir("newdir/"));
	T("rmdir-symlink-to-dir", rmdir("link-dir"));
	T("unlink-dir", unlink("dir"));
	T("unlink-missing", unlink("missing"));
	T("unlink-trailing-slash", unlink("file/"));
	T("unlink-symlink-only", unlink("link-dangling-2"));
	stat_case("unlink-symlink-target-left", "file", 0);

	/* the order in which getdents lists a directory is the filesystem's;
	 * what is in it is not */
	int dfd = open("dir", O_RDONLY | O_DIRECTORY);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	char names[512] = "";
	const char *sorted[32];
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL && n < 32)
		sorted[n++] = strdup(e->d_name);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(sorted[i], sorted[j]) > 0) {
				const char *t = sorted[i];
				sorted[i] = sorted[j];
				sorted[j] = t;
			}
	for (int i = 0; i < n; i++) {
		strncat(names, sorted[i], sizeof(names) - strlen(names) - 2);
		strcat(names, ",");
	}
	line("getdents-names", d ? 0 : -1, errno, "%s", names);
	if (d)
		closedir(d);
}

static void rename_cases(void)
{
	char buf[64];

	S(mkdir("rdir", 0755));
	S(mkdir("rdir/sub", 0755));
	S(mkdir("rfull", 0755));
	put_file("rfull/x", "x", 0644);
	put_file("ra", "content-a", 0644);
	put_file("rb", "content-b", 0644);
	T("rename-dir-over-file", rename("rdir", "ra"));
	T("rename-file-over-dir", rename("ra", "rdir"));
	T("rename-dir-into-itself", rename("rdir", "rdir/sub/x"));
	T("rename-over-nonempty-dir", rename("rdir", "rfull"));
	T("rename-missing", rename("missing", "x"));
	T("rename-to-missing-dir", rename("ra", "nodir/x"));
	T("rename-same", rename("ra", "ra"));
	T("renameat2-noreplace-existing",
	  syscall(SYS_renameat2, AT_FDCWD, "ra", AT_FDCWD, "rb", RENAME_NOREPLACE));
	T("renameat2-exchange",
	  syscall(SYS_renameat2, AT_FDCWD, "ra", AT_FDCWD, "rb", RENAME_EXCHANGE));
	line("renameat2-exchange-swapped", 0, 0, "a=%s", read_text("ra", buf, sizeof(buf)));
	T("renameat2-exchange-missing",
	  syscall(SYS_renameat2, AT_FDCWD, "ra", AT_FDCWD, "missing", RENAME_EXCHANGE));
	T("renameat2-both-flags", syscall(SYS_renameat2, AT_FDCWD, "ra", AT_FDCWD, "rb",
					  RENAME_EXCHANGE | RENAME_NOREPLACE));
	T("renameat2-noreplace-new",
	  syscall(SYS_renameat2, AT_FDCWD, "ra", AT_FDCWD, "rc", RENAME_NOREPLACE));
	T("rename-over-file", rename("rc", "rb"));
	line("rename-over-file-content", 0, 0, "b=%s", read_text("rb", buf, sizeof(buf)));
	T("rename-dir-over-empty-dir", rename("rdir/sub", "newdir2"));
}

static void link_cases(void)
{
	T("link-ok", link("file", "file-link"));
	stat_case("link-nlink", "file", 0);
	T("link-existing", link("file", "file-link"));
	T("link-dir", link("dir", "dir-link"));
	T("link-missing", link("missing", "x"));
	/* O_TMPFILE, then given a name through /proc/self/fd (its mode is the
	 * open's, under the umask) */
	{
		int tf = open(".", O_TMPFILE | O_RDWR, 0640);
		char pfd[64];
		line("tmpfile-open", tf < 0 ? -1 : 0, errno, NULL);
		if (tf >= 0) {
			T("tmpfile-write", write(tf, "tmp", 3) == 3 ? 0 : -1);
			snprintf(pfd, sizeof(pfd), "/proc/self/fd/%d", tf);
			T("tmpfile-linkat-proc",
			  linkat(AT_FDCWD, pfd, AT_FDCWD, "tmpfile-named", AT_SYMLINK_FOLLOW));
			close(tf);
		}
		stat_case("tmpfile-named", "tmpfile-named", 0);
		tf = open(".", O_TMPFILE | O_RDWR, 0600);
		T("tmpfile-linkat-empty-path",
		  tf < 0 ? -1 : linkat(tf, "", AT_FDCWD, "tmpfile-named-2", AT_EMPTY_PATH));
		if (tf >= 0)
			close(tf);
		stat_case("tmpfile-named-2", "tmpfile-named-2", 0);
	}
	T("linkat-follow-symlink",
	  linkat(AT_FDCWD, "link-file", AT_FDCWD, "followed", AT_SYMLINK_FOLLOW));
	stat_case("linkat-follow-made-regular", "followed", AT_SYMLINK_NOFOLLOW);
	T("linkat-nofollow-symlink", linkat(AT_FDCWD, "link-file", AT_FDCWD, "not-followed", 0));
	stat_case("linkat-nofollow-made-link", "not-followed", AT_SYMLINK_NOFOLLOW);
	T("symlink-ok", symlink("some/where", "new-link"));
	T("symlink-existing", symlink("x", "file"));
	T("symlink-empty-target", symlink("", "empty-link"));
	T("symlink-missing-dir", symlink("x", "nodir/x"));
	readlink_case("readlink-ok", AT_FDCWD, "new-link", PATH_MAX);
	readlink_case("readlink-short-buffer", AT_FDCWD, "new-link", 4);
	readlink_case("readlink-zero-buffer", AT_FDCWD, "new-link", 0);
	readlink_case("readlink-not-symlink", AT_FDCWD, "file", PATH_MAX);
	readlink_case("readlink-missing", AT_FDCWD, "missing", PATH_MAX);
	readlink_case("readlink-through-link-dir", AT_FDCWD, "link-dir/inner", PATH_MAX);
	T("readlink-efault-buffer", syscall(SYS_readlink, "new-link", (char *)1, 64));
	stat_case("lstat-symlink", "new-link", AT_SYMLINK_NOFOLLOW);
	stat_case("stat-symlink", "link-file", 0);
	stat_case("stat-missing", "missing", 0);
	stat_case("stat-dangling", "link-dangling-2", 0);
	stat_case("stat-through-loop", "loop1/x", 0);
	T("stat-efault-buffer", stat("file", (struct stat *)1));
	T("stat-efault-path", syscall(SYS_newfstatat, AT_FDCWD, (char *)1, &(struct stat){0}, 0));
}

static void statx_cases(void)
{
	struct statx sx;
	int fd = open("file", O_RDONLY);

	errno = 0;
	long rc = statx(AT_FDCWD, "file", 0, STATX_BASIC_STATS, &sx);
	line("statx-file", rc, errno, "mask-basic=%d mode=%o size=%llu nlink=%u",
	     (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS, sx.stx_mode,
	     (unsigned long long)sx.stx_size, sx.stx_nlink);
	T("statx-missing", statx(AT_FDCWD, "missing", 0, STATX_BASIC_STATS, &sx));
	errno = 0;
	rc = statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx);
	line("statx-empty-path", rc, errno, "size=%llu", (unsigned long long)sx.stx_size);
	errno = 0;
	rc = statx(AT_FDCWD, "new-link", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx);
	line("statx-nofollow", rc, errno, "link=%d", S_ISLNK(sx.stx_mode));
	T("statx-bad-flags", statx(AT_FDCWD, "file", 0x80000000, STATX_BASIC_STATS, &sx));
	T("statx-reserved-mask", statx(AT_FDCWD, "file", 0, 0x80000000u, &sx));
	close(fd);
}

static void access_cases(void)
{
	put_file("ro-file", "ro", 0444);
	put_file("noexec", "noexec", 0644);
	put_file("exec", "#!/bin/sh\n", 0700);
	T("access-missing", access("missing", F_OK));
	T("access-exists", access("file", F_OK));
	T("access-w-readonly-as-root", access("ro-file", W_OK));
	T("access-x-noexec-as-root", access("noexec", X_OK));
	T("access-x-exec-as-root", access("exec", X_OK));
	T("access-bad-mode", access("file", 0x40));
	T("access-enotdir", access("file/x", F_OK));
	T("faccessat-dirfd-missing", faccessat(AT_FDCWD, "dir/missing", F_OK, 0));
}

static void attr_cases(void)
{
	struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
	struct timespec omit[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
	struct timeval tv[2] = {{1100000000, 0}, {1100000001, 500000}};
	struct stat st;

	put_file("attr", "attr", 0644);
	T("chmod-ok", chmod("attr", 04751));
	stat_case("chmod-mode", "attr", 0);
	T("chmod-missing", chmod("missing", 0644));
	T("chmod-through-symlink", chmod("link-file", 0640));
	stat_case("chmod-through-symlink-target", "file", 0);
	T("fchmodat-nofollow-symlink",
	  syscall(__NR_fchmodat2, AT_FDCWD, "new-link", 0600, AT_SYMLINK_NOFOLLOW));
	T("fchmodat2-follow", syscall(__NR_fchmodat2, AT_FDCWD, "attr", 0600, 0));
	stat_case("fchmodat2-mode", "attr", 0);
	T("chown-ok", chown("attr", 1234, 4321));
	stat_case("chown-owner", "attr", 0);
	T("chown-keep", chown("attr", -1, -1));
	T("chown-missing", chown("missing", 0, 0));
	T("lchown-symlink", lchown("new-link", 77, 88));
	stat_case("lchown-symlink-owner", "new-link", AT_SYMLINK_NOFOLLOW);
	stat_case("lchown-target-untouched", "some/where", AT_SYMLINK_NOFOLLOW);
	T("fchownat-nofollow", fchownat(AT_FDCWD, "link-file", 5, 6, AT_SYMLINK_NOFOLLOW));
	stat_case("fchownat-nofollow-target", "file", 0);
	S(chmod("attr", 02755));
	T("chown-clears-setgid", chown("attr", 1000, 1000));
	stat_case("chown-clears-setgid-mode", "attr", 0);

	T("utimensat-explicit", utimensat(AT_FDCWD, "attr", ts, 0));
	errno = 0;
	long rc = stat("attr", &st);
	line("utimensat-explicit-times", rc, errno, "atime=%ld.%09ld mtime=%ld.%09ld",
	     (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec,
	     st.st_mtim.tv_nsec);
	T("utimensat-omit", utimensat(AT_FDCWD, "attr", omit, 0));
	rc = stat("attr", &st);
	line("utimensat-omit-times", rc, errno, "atime=%ld.%09ld mtime=%ld.%09ld",
	     (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec,
	     st.st_mtim.tv_nsec);
	T("utimensat-missing", utimensat(AT_FDCWD, "missing", ts, 0));
	T("utimensat-nofollow", utimensat(AT_FDCWD, "new-link", ts, AT_SYMLINK_NOFOLLOW));
	T("utimensat-bad-nsec",
	  utimensat(AT_FDCWD, "attr", (struct timespec[2]){{0, 2000000000}, {0, 0}}, 0));
	T("utimensat-now", utimensat(AT_FDCWD, "attr", NULL, 0));
	T("utimes-ok", utimes("attr", tv));
	rc = stat("attr", &st);
	line("utimes-times", rc, errno, "atime=%ld.%09ld mtime=%ld.%09ld", (long)st.st_atim.tv_sec,
	     st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);

	T("truncate-grow", truncate("attr", 10000));
	stat_case("truncate-grow-size", "attr", 0);
	T("truncate-shrink", truncate("attr", 3));
	stat_case("truncate-shrink-size", "attr", 0);
	T("truncate-dir", truncate("dir", 0));
	T("truncate-negative", truncate("attr", -1));
	T("truncate-missing", truncate("missing", 0));
	T("truncate-through-symlink", truncate("link-file", 4));
	stat_case("truncate-through-symlink-size", "file", 0);
	put_file("file", "file-content", 0644);
}

static void special_cases(void)
{
	struct statfs sf;
	char v[64];

	T("mknod-fifo", mknod("fifo", S_IFIFO | 0666, 0));
	stat_case("mknod-fifo-type", "fifo", 0);
	T("mknod-regular", mknod("regular", S_IFREG | 0600, 0));
	stat_case("mknod-regular-type", "regular", 0);
	T("mknod-existing", mknod("fifo", S_IFIFO | 0666, 0));
	T("mknodat-dirfd", mknodat(AT_FDCWD, "dir/fifo2", S_IFIFO | 0600, 0));
	T("mkfifo-missing-dir", mkfifo("nodir/f", 0600));
	T("mknod-char-device", mknod("chr", S_IFCHR | 0600, makedev(1, 3)));
	T("mknod-block-device", mknod("blk", S_IFBLK | 0600, makedev(7, 0)));
	TFD("open-fifo-nonblock-wronly", open("fifo", O_WRONLY | O_NONBLOCK));

	errno = 0;
	long rc = statfs("dir", &sf);
	line("statfs-dir", rc, errno, "type=%lx bsize=%ld namelen=%ld", (long)sf.f_type,
	     (long)sf.f_bsize, (long)sf.f_namelen);
	T("statfs-missing", statfs("missing", &sf));
	T("statfs-efault", statfs("dir", (struct statfs *)1));

	S(setxattr("file", "user.quiver", "v1", 2, 0));
	errno = 0;
	rc = getxattr("file", "user.quiver", v, sizeof(v));
	line("getxattr-ok", rc, errno, "value=%.*s", (int)(rc < 0 ? 0 : rc), v);
	T("getxattr-size-query", getxattr("file", "user.quiver", NULL, 0));
	T("getxattr-too-small", getxattr("file", "user.quiver", v, 1));
	T("getxattr-no-attr", getxattr("file", "user.nothere", v, sizeof(v)));
	T("getxattr-missing-file", getxattr("missing", "user.quiver", v, sizeof(v)));
	T("getxattr-through-symlink", getxattr("link-file", "user.quiver", v, sizeof(v)));
	T("lgetxattr-symlink", lgetxattr("link-file", "user.quiver", v, sizeof(v)));
	errno = 0;
	rc = listxattr("file", v, sizeof(v));
	line("listxattr-ok", rc, errno, "names=%.*s", (int)(rc < 0 ? 0 : rc), v);
	T("listxattr-too-small", listxattr("file", v, 2));
	T("listxattr-missing", listxattr("missing", v, sizeof(v)));
}

static void cwd_cases(void)
{
	char cwd[PATH_MAX], buf[64];

	T("chdir-missing", chdir("missing"));
	T("chdir-file", chdir("file"));
	T("chdir-dir", chdir("dir"));
	const char *base = getcwd(cwd, sizeof(cwd)) ? strrchr(cwd, '/') : NULL;
	line("getcwd-after-chdir", base ? 0 : -1, errno, "%s", base ? base : "");
	line("relative-after-chdir", 0, 0, "%s", read_text("inner", buf, sizeof(buf)));
	T("relative-dotdot-after-chdir", access("../file", R_OK));
	T("mkdir-relative-after-chdir", mkdir("rel", 0700));
	stat_case("mkdir-relative-after-chdir-mode", "../dir/rel", 0);
	T("chdir-dotdot", chdir(".."));
	line("relative-after-chdir-dotdot", 0, 0, "%s", read_text("file", buf, sizeof(buf)));

	int dfd = open("dir", O_RDONLY | O_DIRECTORY);
	T("fchdir-dir", fchdir(dfd));
	close(dfd);
	line("relative-after-fchdir", 0, 0, "%s", read_text("inner", buf, sizeof(buf)));
	T("chdir-dotdot-after-fchdir", chdir(".."));

	/* a child's chdir is its own */
	pid_t pid = fork();
	if (pid == 0) {
		_exit(chdir("dir") < 0 ? 1 : 0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	line("cwd-after-child-chdir", 0, 0, "child=%d still-here=%s", WEXITSTATUS(status),
	     read_text("file", buf, sizeof(buf)));

	T("chdir-symlink-to-dir", chdir("link-dir"));
	line("relative-after-chdir-symlink", 0, 0, "%s", read_text("inner", buf, sizeof(buf)));
	T("chdir-dotdot-after-symlink", chdir(".."));
	line("relative-after-symlink-dotdot", 0, 0, "%s", read_text("file", buf, sizeof(buf)));
}

static void umask_cases(void)
{
	mode_t old = umask(027);
	TFD("umask027-creat", open("um-file", O_WRONLY | O_CREAT, 0666));
	stat_case("umask027-creat-mode", "um-file", 0);
	T("umask027-mkdir", mkdir("um-dir", 0777));
	stat_case("umask027-mkdir-mode", "um-dir", 0);
	T("umask027-mknod", mknod("um-fifo", S_IFIFO | 0666, 0));
	stat_case("umask027-mknod-mode", "um-fifo", 0);
	umask(old);
}

/* ---------------------------------------------------------------------------
 * phase 2: root with no capabilities; phase 3: uid 1000 */

static void nocap_cases(void)
{
	struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};

	TFD("nocap-open-mode-000", open("secret-000", O_RDONLY));
	T("nocap-access-mode-000", access("secret-000", R_OK));
	T("nocap-chown", chown("file", 1, 1));
	T("nocap-chmod-others-file", chmod("user-file", 0600));
	T("nocap-utimensat-others-explicit", utimensat(AT_FDCWD, "user-file", ts, 0));
	T("nocap-mknod-fifo", mknod("nocap-fifo", S_IFIFO | 0600, 0));
	T("nocap-mkdir-in-others-dir", mkdir("user-dir-700/x", 0700));
	T("nocap-link-others-file", link("user-file-600", "nocap-hardlink"));
	T("nocap-stat-in-others-700", access("user-dir-700/f", F_OK));
}

static void user_cases(void)
{
	struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
	struct stat st;

	T("user-access-w-readonly", access("ro-file", W_OK));
	T("user-access-r-root-600", access("secret-600", R_OK));
	T("user-access-x-dir", access("dir", X_OK));
	TFD("user-open-wronly-root-644", open("file", O_WRONLY));
	TFD("user-open-rdonly-root-600", open("secret-600", O_RDONLY));
	TFD("user-open-rdonly-root-644", open("file", O_RDONLY));
	TFD("user-open-opath-root-600", open("secret-600", O_PATH));
	TFD("user-open-opath-in-root-700", open("root-dir-700/f", O_PATH));
	TFD("user-creat-in-root-dir", open("user-new", O_WRONLY | O_CREAT, 0644));
	T("user-mkdir-in-root-dir", mkdir("user-newdir", 0755));
	T("user-unlink-in-root-dir", unlink("file"));
	T("user-rename-in-root-dir", rename("file", "file2"));
	T("user-symlink-in-root-dir", symlink("x", "user-link"));
	T("user-mknod-in-root-dir", mknod("user-fifo", S_IFIFO | 0600, 0));
	T("user-chmod-root-file", chmod("file", 0777));
	T("user-chown-root-file", chown("file", UID_USER, GID_USER));
	T("user-utimensat-now-root-644", utimensat(AT_FDCWD, "file", NULL, 0));
	T("user-utimensat-explicit-root-644", utimensat(AT_FDCWD, "file", ts, 0));
	T("user-utimensat-now-root-666", utimensat(AT_FDCWD, "world-writable", NULL, 0));
	T("user-truncate-root-644", truncate("file", 0));
	T("user-chdir-root-700", chdir("root-dir-700"));
	T("user-stat-in-root-700", stat("root-dir-700/f", &st));
	T("user-readlink-in-root-700", readlink("root-dir-700/l", (char[64]){0}, 64));
	T("user-link-protected", link("secret-600", "sticky/hardlink"));
	T("user-link-own-file", link("sticky/own", "sticky/own-link"));
	T("user-unlink-others-in-sticky", unlink("sticky/roots"));
	T("user-rename-others-in-sticky", rename("sticky/roots", "sticky/mine"));
	T("user-rmdir-in-root-dir", rmdir("dir"));
	T("user-getxattr-root-600", getxattr("secret-600", "user.quiver", NULL, 0));
	T("user-statfs-root-700", statfs("root-dir-700/", &(struct statfs){0}));

	/* in a directory of its own */
	T("user-chdir-own", chdir("sticky/own-dir"));
	TFD("user-creat-own", open("f", O_WRONLY | O_CREAT | O_EXCL, 0666));
	stat_case("user-creat-own-owner", "f", 0);
	T("user-chmod-own", chmod("f", 04755));
	stat_case("user-chmod-own-setuid-kept", "f", 0);
	T("user-chown-own-to-root", chown("f", 0, 0));
	T("user-chown-own-to-own-group", chown("f", -1, GID_USER));
	T("user-chown-own-to-other-group", chown("f", -1, 4321));
	T("user-mkdir-own", mkdir("d", 0777));
	stat_case("user-mkdir-own-owner", "d", 0);
	T("user-utimensat-explicit-own", utimensat(AT_FDCWD, "f", ts, 0));
	T("user-mknod-fifo-own", mknod("p", S_IFIFO | 0600, 0));
	T("user-rename-own", rename("f", "g"));
	T("user-unlink-own", unlink("g"));
	T("user-chmod-own-dir-000", chmod("d", 0));
	T("user-mkdir-in-own-000", mkdir("d/x", 0755));
	T("user-access-own-000-dir", access("d", R_OK));
	T("user-rmdir-own-000", rmdir("d"));
}

static void in_child(void (*fn)(void), int caps, uid_t uid, gid_t gid)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		printf("setup-failed[fork] %s\n", ename(errno));
		return;
	}
	if (pid == 0) {
		/* a file call first: whoever serves these calls must see the
		 * credentials change after it (a server drops privileges after
		 * it has started) */
		if (access(".", F_OK) < 0)
			printf("setup-failed[access .] %s\n", ename(errno));
		if (uid != 0) {
			if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
			    setresuid(uid, uid, uid) < 0) {
				printf("setup-failed[setuid] %s\n", ename(errno));
				_exit(1);
			}
		} else if (set_caps((uint32_t)caps) < 0) {
			printf("setup-failed[capset] %s\n", ename(errno));
			_exit(1);
		}
		fn();
		fflush(stdout);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		printf("child-failed status=%d\n", status);
}

/* The tree every phase starts from; modes are set explicitly, not left to
 * the umask. */
static void make_tree(const char *top)
{
	S(mkdir(top, 0755));
	S(chmod(top, 0755));
	if (chdir(top) < 0) {
		printf("setup-failed[chdir %s] %s\n", top, ename(errno));
		exit(1);
	}
	S(mkdir("dir", 0755));
	put_file("dir/inner", "inner-content", 0644);
	put_file("file", "file-content", 0644);
	put_file("secret-600", "secret", 0600);
	put_file("secret-000", "secret", 0);
	put_file("world-writable", "ww", 0666);
	S(symlink("file", "link-file"));
	S(symlink("dir", "link-dir"));
	S(symlink("dangling-target", "dangling"));
	S(symlink("nothing-here", "link-dangling-2"));
	S(symlink("loop2", "loop1"));
	S(symlink("loop1", "loop2"));
	S(mkdir("root-dir-700", 0700));
	put_file("root-dir-700/f", "f", 0644);
	S(symlink("f", "root-dir-700/l"));
	S(mkdir("sticky", 01777));
	S(chmod("sticky", 01777));
	put_file("sticky/roots", "r", 0644);
	put_file("sticky/own", "own", 0644);
	S(chown("sticky/own", UID_USER, GID_USER));
	S(mkdir("sticky/own-dir", 0755));
	S(chown("sticky/own-dir", UID_USER, GID_USER));
	put_file("user-file", "u", 0644);
	S(chown("user-file", UID_USER, GID_USER));
	put_file("user-file-600", "u", 0600);
	S(chown("user-file-600", UID_USER, GID_USER));
	S(mkdir("user-dir-700", 0700));
	put_file("user-dir-700/f", "f", 0644);
	S(chown("user-dir-700", UID_USER, GID_USER));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: errno_table DIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (set_caps(FIXED_CAPS) < 0) {
		printf("setup-failed[capset fixed] %s\n", ename(errno));
		return 1;
	}
	umask(022);
	make_tree(argv[1]);

	open_cases();
	opath_cases();
	openat2_cases();
	dirfd_cases();
	dir_cases();
	rename_cases();
	link_cases();
	statx_cases();
	access_cases();
	attr_cases();
	special_cases();
	cwd_cases();
	umask_cases();
	in_child(nocap_cases, 0, 0, 0);
	in_child(user_cases, 0, UID_USER, GID_USER);
	printf("end\n");
	return 0;
}
