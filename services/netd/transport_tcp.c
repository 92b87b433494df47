/* The TCP backend of netd's node-to-node transport (transport.h): one
 * non-blocking stream socket per connection, TCP_NODELAY (frames are
 * already batched by the connection's send queue, and a small DATA frame
 * of an interactive stream must not wait for Nagle).  The bounded send
 * queue lives in the connection (struct qt_conn's out, config send_queue):
 * send() here writes what the socket takes and reports -EAGAIN, and the
 * connection stops taking DATA from channels until the socket drains. */
#include "services/netd/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcommon/cleanup.h"

struct tcp_backend {
	struct qt_backend base;
	int fd;
	bool connecting;
	char desc[80];
};

struct tcp_listener {
	struct qt_listener base;
	int fd;
};

static void describe_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "tcp %s:%u", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "tcp [%s]:%u", host, port);
	} else {
		snprintf(buf, len, "tcp (family %u)", ss->ss_family);
	}
}

static int tcp_connect_step(struct qt_backend *b, struct qerr *err)
{
	struct tcp_backend *t = (struct tcp_backend *)b;
	if (!t->connecting)
		return 1;
	int so_err = 0;
	socklen_t len = sizeof(so_err);
	if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0)
		return qerr_sys(err, errno, "%s: getsockopt", t->desc);
	if (so_err)
		return qerr_sys(err, so_err, "%s", t->desc);
	/* SO_ERROR is 0 both when connected and while still connecting. */
	struct sockaddr_storage peer;
	len = sizeof(peer);
	if (getpeername(t->fd, (struct sockaddr *)&peer, &len) < 0) {
		if (errno == ENOTCONN)
			return 0;
		return qerr_sys(err, errno, "%s: getpeername", t->desc);
	}
	t->connecting = false;
	return 1;
}

static ssize_t tcp_send(struct qt_backend *b, const void *buf, size_t len, struct qerr *err)
{
	struct tcp_backend *t = (struct tcp_backend *)b;
	ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return -EAGAIN;
	return qerr_sys(err, errno, "%s: send", t->desc);
}

static ssize_t tcp_recv(struct qt_backend *b, void *buf, size_t len, struct qerr *err)
{
	struct tcp_backend *t = (struct tcp_backend *)b;
	ssize_t n = recv(t->fd, buf, len, MSG_DONTWAIT);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return -EAGAIN;
	return qerr_sys(err, errno, "%s: recv", t->desc);
}

static int tcp_fd(const struct qt_backend *b)
{
	return ((const struct tcp_backend *)b)->fd;
}

static unsigned tcp_events(const struct qt_backend *b, bool want_read, bool want_send)
{
	const struct tcp_backend *t = (const struct tcp_backend *)b;
	if (t->connecting)
		return POLLOUT;
	return (want_read ? POLLIN : 0u) | (want_send ? POLLOUT : 0u);
}

static int tcp_process(struct qt_backend *b, struct qerr *err)
{
	(void)b;
	(void)err;
	return 0;
}

static int tcp_shutdown(struct qt_backend *b)
{
	struct tcp_backend *t = (struct tcp_backend *)b;
	return shutdown(t->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void tcp_describe(const struct qt_backend *b, char *buf, size_t len)
{
	snprintf(buf, len, "%s", ((const struct tcp_backend *)b)->desc);
}

static void tcp_destroy(struct qt_backend *b)
{
	struct tcp_backend *t = (struct tcp_backend *)b;
	if (t->fd >= 0)
		close(t->fd);
	free(t);
}

static const struct qt_backend_ops tcp_ops = {
    .name = "tcp",
    .connect_step = tcp_connect_step,
    .send = tcp_send,
    .recv = tcp_recv,
    .fd = tcp_fd,
    .events = tcp_events,
    .process = tcp_process,
    .shutdown = tcp_shutdown,
    .describe = tcp_describe,
    .destroy = tcp_destroy,
};

static int tune_socket(int fd, struct qerr *err)
{
	int one = 1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return qerr_sys(err, errno, "tcp: O_NONBLOCK");
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return qerr_sys(err, errno, "tcp: FD_CLOEXEC");
	/* A unix socketpair (tests) has no TCP_NODELAY: that is fine. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 &&
	    errno != EOPNOTSUPP && errno != ENOPROTOOPT)
		return qerr_sys(err, errno, "tcp: TCP_NODELAY");
	return 0;
}

struct qt_backend *qt_tcp_from_fd(int fd, bool connecting, struct qerr *err)
{
	cleanup_close int owned = fd;
	if (fd < 0) {
		qerr_set(err, EBADF, "tcp: bad fd");
		return NULL;
	}
	if (tune_socket(fd, err) < 0)
		return NULL;
	struct tcp_backend *t = calloc(1, sizeof(*t));
	if (!t) {
		qerr_set(err, ENOMEM, "tcp: out of memory");
		return NULL;
	}
	t->base.ops = &tcp_ops;
	t->fd = steal_fd(owned);
	t->connecting = connecting;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getpeername(t->fd, (struct sockaddr *)&ss, &len) == 0)
		describe_addr(&ss, t->desc, sizeof(t->desc));
	else
		snprintf(t->desc, sizeof(t->desc), "tcp fd %d", t->fd);
	return &t->base;
}

struct qt_backend *qt_tcp_dial(const struct sockaddr *addr, socklen_t len, struct qerr *err)
{
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
		qerr_set(err, EAFNOSUPPORT, "tcp: dial: not an IPv4 or IPv6 address");
		return NULL;
	}
	cleanup_close int fd =
	    socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		qerr_sys(err, errno, "tcp: socket");
		return NULL;
	}
	bool connecting = false;
	if (connect(fd, addr, len) < 0) {
		if (errno != EINPROGRESS) {
			struct sockaddr_storage ss;
			char desc[80];
			memset(&ss, 0, sizeof(ss));
			memcpy(&ss, addr, len < sizeof(ss) ? len : sizeof(ss));
			describe_addr(&ss, desc, sizeof(desc));
			qerr_sys(err, errno, "%s: connect", desc);
			return NULL;
		}
		connecting = true;
	}
	struct qt_backend *b = qt_tcp_from_fd(steal_fd(fd), connecting, err);
	if (b) {
		struct tcp_backend *t = (struct tcp_backend *)b;
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, addr, len < sizeof(ss) ? len : sizeof(ss));
		describe_addr(&ss, t->desc, sizeof(t->desc));
	}
	return b;
}

static int tcp_listener_fd(const struct qt_listener *l)
{
	return ((const struct tcp_listener *)l)->fd;
}

static struct qt_backend *tcp_accept(struct qt_listener *l, struct qerr *err)
{
	struct tcp_listener *tl = (struct tcp_listener *)l;
	for (;;) {
		int fd = accept4(tl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return qt_tcp_from_fd(fd, false, err);
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			qerr_set(err, EAGAIN, "tcp: no connection waiting");
			return NULL;
		}
		qerr_sys(err, errno, "tcp: accept");
		return NULL;
	}
}

static void tcp_listener_destroy(struct qt_listener *l)
{
	struct tcp_listener *tl = (struct tcp_listener *)l;
	if (tl->fd >= 0)
		close(tl->fd);
	free(tl);
}

static const struct qt_listener_ops tcp_listener_ops = {
    .name = "tcp",
    .fd = tcp_listener_fd,
    .accept = tcp_accept,
    .destroy = tcp_listener_destroy,
};

struct qt_listener *qt_tcp_listen(const struct sockaddr *addr, socklen_t len, struct qerr *err)
{
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
		qerr_set(err, EAFNOSUPPORT, "tcp: listen: not an IPv4 or IPv6 address");
		return NULL;
	}
	cleanup_close int fd =
	    socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		qerr_sys(err, errno, "tcp: socket");
		return NULL;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		qerr_sys(err, errno, "tcp: SO_REUSEADDR");
		return NULL;
	}
	if (bind(fd, addr, len) < 0 || listen(fd, 128) < 0) {
		struct sockaddr_storage ss;
		char desc[80];
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, addr, len < sizeof(ss) ? len : sizeof(ss));
		describe_addr(&ss, desc, sizeof(desc));
		qerr_sys(err, errno, "%s: listen", desc);
		return NULL;
	}
	struct tcp_listener *tl = calloc(1, sizeof(*tl));
	if (!tl) {
		qerr_set(err, ENOMEM, "tcp: out of memory");
		return NULL;
	}
	tl->base.ops = &tcp_listener_ops;
	tl->fd = steal_fd(fd);
	return &tl->base;
}

int qt_tcp_listener_port(const struct qt_listener *l)
{
	const struct tcp_listener *tl = (const struct tcp_listener *)l;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (l->ops != &tcp_listener_ops)
		return -EINVAL;
	if (getsockname(tl->fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}
