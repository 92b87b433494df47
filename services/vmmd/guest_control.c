/* Requests to a sandbox's supervisor over ROOT/ID/guest.sock: one
 * SOCK_SEQPACKET request, one reply (docs/guest-protocol.md). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/unix_connect.h"
#include "services/vmmd/vmmd.h"

int guest_call(struct sandbox *sb, const struct qmsg_out *req, struct qmsg_in *reply,
	       struct qerr *err)
{
	char path[PATH_MAX];
	cleanup_close int fd = -1;
	cleanup_free char *buf = NULL;
	struct pollfd pfd;
	ssize_t n;
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s/guest.sock", vmmd.root, sb->id) >=
	    sizeof(path))
		return qerr_set(err, ENAMETOOLONG, "%s/%s/guest.sock: path too long", vmmd.root,
				sb->id);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	if ((r = unix_connect(fd, path)) < 0)
		return qerr_sys(err, -r, "connect to the sandbox supervisor");
	if (send(fd, qmsg_data(req), qmsg_size(req), MSG_NOSIGNAL) < 0)
		return qerr_sys(err, errno, "send to the sandbox supervisor");
	pfd.fd = fd;
	pfd.events = POLLIN;
	do
		r = poll(&pfd, 1, GUEST_REPLY_TIMEOUT);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return qerr_set(err, ETIMEDOUT, "the sandbox supervisor did not answer");
	buf = malloc(QMSG_MAX_BYTES);
	if (!buf)
		return qerr_set(err, ENOMEM, "out of memory");
	n = recv(fd, buf, QMSG_MAX_BYTES, MSG_TRUNC);
	if (n < 0)
		return qerr_sys(err, errno, "receive from the sandbox supervisor");
	if (n == 0)
		return qerr_set(err, EPIPE, "the sandbox supervisor closed the connection");
	if ((size_t)n > QMSG_MAX_BYTES)
		return qerr_set(err, EMSGSIZE, "the sandbox supervisor's reply is too large");
	r = qmsg_parse(reply, buf, (size_t)n, err);
	if (r < 0)
		return qerr_prefix(err, "the sandbox supervisor's reply");
	r = qmsg_reply_error(reply, err);
	if (r < 0)
		qmsg_in_free(reply);
	return r;
}
