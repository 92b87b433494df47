/* The launcher's channel (launch_proto.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcommon/launch_proto.h"

const char *const warm_premade_suffix[WARM_PREMADE_N] = {"counters", "log", "ctl"};

int gs_recv(int fd, struct gs_msg *m, pid_t *cred_pid, int flags)
{
	char cbuf[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n;

	*cred_pid = 0;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(*m))
		return 0;
	m->msg[sizeof(m->msg) - 1] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cr;
			memcpy(&cr, CMSG_DATA(c), sizeof(cr));
			*cred_pid = cr.pid;
		}
	}
	return 1;
}

int send_with_fds(int fd, const void *data, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds < 0 || nfds > 8)
		return -EINVAL;
	memset(cbuf, 0, sizeof(cbuf));
	if (nfds > 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

ssize_t recv_fds(int sock, void *buf, size_t len, int *fds, int max)
{
	/* room for a few more: extra ones a hostile sender attaches are closed */
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int got = 0;
	for (int i = 0; i < max; i++)
		fds[i] = -1;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < max)
				fds[got++] = f;
			else
				close(f);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++) {
			close(fds[i]);
			fds[i] = -1;
		}
		return -EMSGSIZE;
	}
	return n;
}

ssize_t recv_fd(int sock, void *buf, size_t len, int *fd)
{
	return recv_fds(sock, buf, len, fd, 1);
}

int gs_handle(int fd, const struct gs_msg *m, pid_t cred_pid, pid_t *w_host, struct qerr *err)
{
	switch (m->type) {
	case GS_HELLO_W: {
		if (!cred_pid)
			return qerr_set(err, EIO, "workload hello without credentials");
		*w_host = cred_pid;
		/* S needs it too, for its `started` reply.  S may be gone
		 * already (W failed at once and S reported it): its error is
		 * still queued for us, so read on instead of failing here. */
		struct gs_msg back = {.type = GS_HELLO_W, .code = cred_pid};
		if (send(fd, &back, sizeof(back), MSG_NOSIGNAL) < 0 && errno != EPIPE &&
		    errno != ECONNRESET)
			return qerr_sys(err, errno, "supervisor channel");
		return 0;
	}
	case GS_READY:
		return 1;
	case GS_ERROR:
		return qerr_set(err, m->code > 0 ? m->code : EIO, "%s", m->msg);
	default:
		return qerr_set(err, EIO, "supervisor: bad message %d", m->type);
	}
}
