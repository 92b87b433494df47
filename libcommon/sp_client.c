/* REQ and SUB clients of the daemons' SP sockets, speaking the SP-over-IPC
 * wire format directly (a stream socket: an 8-byte greeting each way, then
 * frames of 0x01, a 64-bit big-endian length and the message, whose first
 * 4 bytes are the REQ request id with its top bit set).  qctl makes a
 * handful of calls and exits: starting nng's thread pools for them cost
 * more than the whole round trip.  vmmd's calls to poold, one per warm
 * start, took 31 us more through an nng REQ socket than this way. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/sp_client.h"

#define SP_PROTO_PUB0 0x20
#define SP_PROTO_SUB0 0x21
#define SP_PROTO_REQ0 0x30
#define SP_PROTO_REP0 0x31

static int wait_fd(int fd, short ev, int64_t deadline_ms)
{
	struct timespec t;
	struct pollfd p = {.fd = fd, .events = ev};
	int r;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		int64_t left = deadline_ms - ((int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000);
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int64_t deadline(int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000 + ms;
}

static int read_full(int fd, void *buf, size_t len, int64_t dl)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		int r = wait_fd(fd, POLLIN, dl);
		if (r < 0)
			return r;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, int64_t dl)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		int r = wait_fd(fd, POLLOUT, dl);
		if (r < 0)
			return r;
	}
	return 0;
}

static int dial(struct qspc *w, const char *path, uint8_t mine, uint8_t want, const char *what,
		struct qerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const uint8_t hello[8] = {0, 'S', 'P', 0, 0, mine, 0, 0};
	uint8_t peer[8];
	int64_t dl = deadline(2000);
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return qerr_set(err, ENAMETOOLONG, "%s: path too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return qerr_sys(err, -r, "connect to %s", path);
	}
	/* the listener must be ours, as we must be its (sp.c) */
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 || cr.uid != geteuid()) {
		close(fd);
		return qerr_set(err, EPERM, "%s: listened on by another user", path);
	}
	if ((r = write_full(fd, hello, sizeof(hello), dl)) < 0 ||
	    (r = read_full(fd, peer, sizeof(peer), dl)) < 0) {
		close(fd);
		return qerr_sys(err, -r, "handshake with %s", path);
	}
	if (peer[0] != 0 || peer[1] != 'S' || peer[2] != 'P' || peer[3] != 0 || peer[4] != 0 ||
	    peer[5] != want) {
		close(fd);
		return qerr_set(err, EPROTO, "%s: not %s", path, what);
	}
	w->fd = fd;
	w->next_id = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	return 0;
}

int qspc_dial(struct qspc *w, const char *path, struct qerr *err)
{
	return dial(w, path, SP_PROTO_REQ0, SP_PROTO_REP0, "a control socket (REP)", err);
}

/* PUB sends every message to every subscriber; a SUB's topic filter is
 * its own business, so nothing is sent after the greeting. */
int qspc_dial_sub(struct qspc *w, const char *path, struct qerr *err)
{
	return dial(w, path, SP_PROTO_SUB0, SP_PROTO_PUB0, "an event socket (PUB)", err);
}

/* One frame's payload, malloc'd into *buf. */
static int recv_frame(struct qspc *w, uint8_t **buf, uint64_t *len, uint64_t min, int64_t dl,
		      struct qerr *err)
{
	uint8_t rhdr[9];
	int r;

	*buf = NULL;
	if ((r = read_full(w->fd, rhdr, sizeof(rhdr), dl)) < 0)
		return r == -ETIMEDOUT ? qerr_set(err, ETIMEDOUT, "%s did not answer", w->peer)
		       : r == -ECONNRESET
			   ? qerr_set(err, ECONNRESET, "%s closed the connection", w->peer)
			   : qerr_sys(err, -r, "receive from %s", w->peer);
	*len = 0;
	for (int i = 0; i < 8; i++)
		*len = *len << 8 | rhdr[1 + i];
	if (rhdr[0] != 1 || *len < min || *len > QMSG_MAX_BYTES + min)
		return qerr_set(err, EPROTO, "%s: malformed frame", w->peer);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		return qerr_set(err, ENOMEM, "out of memory");
	if ((r = read_full(w->fd, *buf, *len, dl)) < 0) {
		free(*buf);
		*buf = NULL;
		return qerr_sys(err, -r, "receive from %s", w->peer);
	}
	return 0;
}

int qspc_recv(struct qspc *w, struct qmsg_in *msg, int timeout_ms, struct qerr *err)
{
	cleanup_free uint8_t *buf = NULL;
	uint64_t len;
	int r;

	msgpack_unpacked_init(&msg->up);
	msg->root = NULL;
	msg->op[0] = '\0';
	if ((r = recv_frame(w, &buf, &len, 0, deadline(timeout_ms), err)) < 0)
		return r;
	return qmsg_parse(msg, buf, len, err);
}

int qspc_call(struct qspc *w, const struct qmsg_out *req, struct qmsg_in *reply, int timeout_ms,
	      struct qerr *err)
{
	uint8_t hdr[13];
	uint32_t id = (w->next_id++ & 0x7fffffffu) | 0x80000000u;
	uint64_t len = qmsg_size(req) + 4, rlen;
	int64_t dl = deadline(timeout_ms);
	cleanup_free uint8_t *buf = NULL;
	int r;

	msgpack_unpacked_init(&reply->up);
	reply->root = NULL;
	reply->op[0] = '\0';
	if (w->fd < 0)
		return qerr_set(err, ENOTCONN, "not connected to %s", w->peer);
	hdr[0] = 1;
	for (int i = 0; i < 8; i++)
		hdr[1 + i] = (uint8_t)(len >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		hdr[9 + i] = (uint8_t)(id >> (24 - 8 * i));
	if ((r = write_full(w->fd, hdr, sizeof(hdr), dl)) < 0 ||
	    (r = write_full(w->fd, qmsg_data(req), qmsg_size(req), dl)) < 0) {
		qspc_close(w);
		return qerr_sys(err, -r, "send to %s", w->peer);
	}
	for (;;) {
		free(buf);
		if ((r = recv_frame(w, &buf, &rlen, 4, dl, err)) < 0) {
			qspc_close(w);
			return r;
		}
		/* A reply to an older request (one that timed out) is dropped. */
		if (((uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
		     buf[3]) == id)
			break;
	}
	if ((r = qmsg_parse(reply, buf + 4, rlen - 4, err)) < 0) {
		qspc_close(w);
		return qerr_prefix(err, "%s's reply", w->peer);
	}
	if ((r = qmsg_reply_error(reply, err)) < 0) {
		qmsg_in_free(reply);
		return r;
	}
	return 0;
}

bool qspc_peer_closed(const struct qspc *w)
{
	struct pollfd p = {.fd = w->fd, .events = POLLIN | POLLRDHUP};

	return w->fd >= 0 && poll(&p, 1, 0) > 0;
}

void qspc_close(struct qspc *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}
