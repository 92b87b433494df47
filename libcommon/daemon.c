/* Daemon start-up helpers (daemon.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/daemon.h"
#include "libcommon/log.h"

int daemon_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int daemon_detach(void)
{
	int p[2];
	pid_t pid;
	char c = 0;

	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe");
	pid = fork();
	if (pid < 0)
		fatal("fork");
	if (pid > 0) {
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(c == 'R' || c == 'B' ? 0 : 1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

void daemon_ready(int *fd, char c)
{
	if (*fd < 0)
		return;
	(void)!write(*fd, &c, 1);
	close(*fd);
	*fd = -1;
}

void daemon_stdio_to_null(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
}

int daemon_sibling(const char *prog, const char *env, char *buf, size_t len)
{
	const char *e = env ? getenv(env) : NULL;
	char self[PATH_MAX];
	ssize_t n;

	if (e && *e)
		return (size_t)snprintf(buf, len, "%s", e) < len ? 0 : -ENAMETOOLONG;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	return (size_t)snprintf(buf, len, "%s/%s", self, prog) < len ? 0 : -ENAMETOOLONG;
}

int daemon_claim_root(const char *root, const char *name, int *rootfd, int *readyfd)
{
	char lock[64];
	int fd;

	snprintf(lock, sizeof(lock), "%s.lock", name);
	*rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*rootfd < 0)
		fatal("open %s", root);
	fd = openat(*rootfd, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		fatal("open %s/%s", root, lock);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			fatal("lock %s/%s", root, lock);
		/* Another one serves this root (qctl may race to start one). */
		close(fd);
		daemon_ready(readyfd, 'B');
		return -1;
	}
	return fd;
}

void daemon_log_init(const char *prog, const char *root, const char *name, const char *logpath,
		     enum qlog_format fmt, enum qlog_level level)
{
	char buf[PATH_MAX + 16];
	struct qerr err = {0};

	if (!logpath) {
		snprintf(buf, sizeof(buf), "%s/%s.log", root, name);
		logpath = buf;
	}
	if (qlog_init(prog, strcmp(logpath, "-") == 0 ? NULL : logpath, fmt, level, &err) < 0)
		fatalx("%s", err.msg);
}
