/* connect(2) by a path longer than sun_path (unix_connect.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "libcommon/cleanup.h"
#include "libcommon/unix_connect.h"

int unix_connect(int fd, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cleanup_close int dirfd = -1;
	size_t len = strlen(path);

	if (len < sizeof(sa.sun_path)) {
		memcpy(sa.sun_path, path, len + 1);
	} else {
		const char *slash = strrchr(path, '/');
		char dir[PATH_MAX];
		if (!slash || slash == path || (size_t)(slash - path) >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
		dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			return -errno;
		int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd,
				 slash + 1);
		if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
	}
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
}

int unix_listen_seqpacket(const char *dir, const char *name, struct qerr *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", dir, name) >=
	    sizeof(a.sun_path))
		return qerr_set(err, ENAMETOOLONG, "%s/%s: path too long", dir, name);
	unlink(a.sun_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(a.sun_path, 0600) < 0 ||
	    listen(fd, 256) < 0) {
		int e = errno;
		close(fd);
		return qerr_sys(err, e, "listen on %s", a.sun_path);
	}
	return fd;
}

int unix_connect_at(int dirfd, const char *name, int flags)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd, here, e = 0;

	if (strlen(name) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
	here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (here < 0)
		return -errno;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | flags, 0);
	if (fd < 0) {
		e = errno;
	} else if (fchdir(dirfd) < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		e = errno;
		close(fd);
	}
	if (fchdir(here) < 0 && !e)
		e = errno;
	close(here);
	return e ? -e : fd;
}

bool unix_peer_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}
