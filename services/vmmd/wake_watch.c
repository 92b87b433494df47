/* Automatic wake by connection (docs/hibernate.md): while a sandbox is
 * hibernated, vmmd holds a duplicate of each of its listening sockets
 * (pidfd_getfd) in an edge-triggered epoll set.  The kernel still completes
 * handshakes into a frozen listener's backlog, and each new connection
 * there is an edge: vmmd wakes the sandbox, the workload accepts.  This
 * covers every path to the listener alike: a published port (the kernel's
 * DNAT), a bridge neighbour, the host, a unix socket.  netd's socket
 * service wakes its channels' listeners itself (services/netd/wake.c).
 *
 * A listener whose backlog was already waiting when the sandbox
 * hibernated has its first edge ignored: that client waited before, and
 * waking for it at once would undo every hibernation of a workload that
 * does not accept.  A new vmmd that re-arms the watch cannot tell: a
 * waiting connection may have come while no vmmd watched, and wakes the
 * sandbox at once.  The duplicates are closed at wake, at exit and at
 * delete: held any longer they would keep a dead sandbox's port, and its
 * network namespace, alive. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

#define WATCH_MAX 256 /* listeners per sandbox */
#define PIDS_MAX  4096
/* fds looked at per sandbox: the scan runs on vmmd's loop, and a workload
 * may hold a million fds */
#define SCAN_MAX 65536

struct wake_watch {
	uv_poll_t poll;
	struct sandbox *sb;
	int epfd;
	size_t n;
	size_t scanned; /* fds looked at */
	int fd[WATCH_MAX];
	ino_t ino[WATCH_MAX];
	bool stale[WATCH_MAX]; /* its backlog waited already: ignore one edge */
};

static bool seen(const struct wake_watch *w, ino_t ino)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->ino[i] == ino)
			return true;
	return false;
}

/* A copy of fd N of pid if it is a listening socket not yet watched, else -1. */
static int listener_copy(struct wake_watch *w, int pidfd, int n)
{
	struct stat st;
	int fd, on = 0;
	socklen_t len = sizeof(on);

	if ((fd = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || seen(w, st.st_ino) ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0 || !on) {
		close(fd);
		return -1;
	}
	w->ino[w->n] = st.st_ino;
	return fd;
}

static void watch_pid(struct wake_watch *w, pid_t pid, bool at_hibernate)
{
	char dir[64], link[64];
	cleanup_dir DIR *d = NULL;
	cleanup_close int pidfd = -1;
	struct dirent *de;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if (!(d = opendir(dir)) || (pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0)
		return; /* gone meanwhile */
	while (w->n < WATCH_MAX && w->scanned < SCAN_MAX && (de = readdir(d))) {
		char *end;
		long n = strtol(de->d_name, &end, 10);
		ssize_t k;

		if (*end || end == de->d_name)
			continue;
		w->scanned++;
		/* Only sockets are copied into vmmd. */
		k = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
		if (k < 8 || memcmp(link, "socket:[", 8) != 0)
			continue;
		int fd = listener_copy(w, pidfd, (int)n);
		if (fd < 0)
			continue;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)w->n};
		w->stale[w->n] = at_hibernate && poll(&p, 1, 0) > 0;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		w->fd[w->n++] = fd;
	}
}

static void watch_closed(uv_handle_t *h)
{
	struct wake_watch *w = h->data;

	close(w->epfd);
	free(w);
}

void wake_watch_stop(struct sandbox *sb)
{
	struct wake_watch *w = sb->watch;

	if (!w)
		return;
	sb->watch = NULL;
	for (size_t i = 0; i < w->n; i++)
		close(w->fd[i]);
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void watch_ready(uv_poll_t *h, int status, int events)
{
	struct wake_watch *w = h->data;
	struct epoll_event ev[16];
	struct qerr err = {0};
	bool wake = status < 0;
	int k;

	(void)events;
	while ((k = epoll_wait(w->epfd, ev, 16, 0)) > 0) {
		for (int i = 0; i < k; i++) {
			uint32_t j = ev[i].data.u32;
			if (j < w->n && w->stale[j])
				w->stale[j] = false;
			else
				wake = true;
		}
	}
	if (!wake)
		return;
	/* hibernate_wake stops the watch: w is not used after it. */
	struct sandbox *sb = w->sb;
	if (hibernate_wake(sb, "connection", -1, &err) < 0) {
		qlog_warn("%s: a connection waits, but it was not woken: %s", sb->id, err.msg);
		wake_watch_stop(sb);
	}
}

void wake_watch_start(struct sandbox *sb, const char *memcg, bool at_hibernate)
{
	struct wake_watch *w;
	pid_t *pids;
	size_t npids;
	int e;

	wake_watch_stop(sb);
	if (!(w = calloc(1, sizeof(*w))) || !(pids = calloc(PIDS_MAX, sizeof(*pids)))) {
		free(w);
		qlog_warn("%s: out of memory: a connection will not wake it", sb->id);
		return;
	}
	w->sb = sb;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	e = errno;
	npids = cgroup_pids(memcg, pids, PIDS_MAX);
	/* The workload's processes: not the supervisor, whose guest.sock
	 * vmmd itself calls. */
	for (size_t i = 0; w->epfd >= 0 && i < npids && w->n < WATCH_MAX; i++)
		if (pids[i] != sb->pid)
			watch_pid(w, pids[i], at_hibernate);
	free(pids);
	if (w->n == WATCH_MAX)
		qlog_warn("%s: only its first %d listening sockets wake it", sb->id, WATCH_MAX);
	if (w->scanned >= SCAN_MAX)
		qlog_warn("%s: only the listening sockets among its first %d fds wake it", sb->id,
			  SCAN_MAX);
	if (w->epfd < 0 || w->n == 0 || uv_poll_init(vmmd.loop, &w->poll, w->epfd) < 0) {
		if (w->epfd < 0)
			qlog_warn("%s: epoll: %s: a connection will not wake it", sb->id,
				  strerror(e));
		for (size_t i = 0; i < w->n; i++)
			close(w->fd[i]);
		if (w->epfd >= 0)
			close(w->epfd);
		free(w);
		return;
	}
	w->poll.data = w;
	uv_poll_start(&w->poll, UV_READABLE, watch_ready);
	sb->watch = w;
	qlog_info("%s: a connection to any of its %zu listening sockets wakes it", sb->id, w->n);
}
