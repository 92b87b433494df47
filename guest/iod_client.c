/* The supervisor's connection to iod (guest/iod_client.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest/guest.h"
#include "guest/iod_client.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"

#define WAIT_SLICE_MS 200

static void detach(struct iod_client *c)
{
	if (c->conn >= 0)
		close(c->conn);
	c->conn = -1;
	if (c->attached)
		ring_destroy(&c->ring);
	c->attached = false;
}

/* connect(2) has no *at form: go to the directory, connect to the name. */
static int connect_in(int dirfd, const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd, here, e = 0;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
	here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (here < 0)
		return -errno;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
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

static int attach(struct iod_client *c, struct qerr *err)
{
	struct iod_hello h = {.version = IOD_PROTO_VERSION};
	struct iod_welcome w;
	int fds[3] = {-1, -1, -1}, r;
	ssize_t n;

	detach(c);
	c->conn = connect_in(c->rundir, IOD_SOCK_NAME);
	if (c->conn < 0) {
		r = c->conn;
		c->conn = -1;
		return qerr_sys(err, -r, "iod: not running (connect to %s): start quiver-iod",
				IOD_SOCK_NAME);
	}
	memcpy(h.id, c->id, sizeof(h.id));
	if (send_with_fds(c->conn, &h, sizeof(h), &c->rootfd, 1) < 0) {
		r = errno;
		detach(c);
		return qerr_sys(err, r, "iod: hello");
	}
	n = recv_fds(c->conn, &w, sizeof(w), fds, 3);
	if (n != (ssize_t)sizeof(w) || w.version != IOD_PROTO_VERSION || w.error || fds[0] < 0 ||
	    fds[1] < 0 || fds[2] < 0 || w.entries != IOD_RING_ENTRIES ||
	    w.entry_size != IOD_ENTRY_SIZE) {
		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		detach(c);
		if (n == (ssize_t)sizeof(w) && w.error)
			return qerr_sys(err, w.error, "iod: refused the sandbox");
		return qerr_set(err, EPROTO, "iod: bad welcome");
	}
	r = ring_attach(&c->ring, RING_SUBMITTER, fds[0], fds[1], fds[2]);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	if (r < 0) {
		detach(c);
		return qerr_sys(err, -r, "iod: ring");
	}
	c->attached = true;
	return 0;
}

int iod_client_open(struct iod_client *c, int state_dirfd, const char *id, struct qerr *err)
{
	memset(c, 0, sizeof(*c));
	c->conn = c->rundir = c->rootfd = -1;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->rundir = openat(state_dirfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->rundir < 0)
		return qerr_sys(err, errno, "iod: open the runtime directory");
	c->rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->rootfd < 0) {
		int e = errno;
		iod_client_close(c);
		return qerr_sys(err, e, "iod: open the sandbox's root");
	}
	if (attach(c, err) < 0) {
		iod_client_close(c);
		return -err->code;
	}
	return 0;
}

void iod_client_close(struct iod_client *c)
{
	detach(c);
	if (c->rundir >= 0)
		close(c->rundir);
	if (c->rootfd >= 0)
		close(c->rootfd);
	c->rundir = c->rootfd = -1;
}

/* The fd iod sent for this request (fd messages come in completion order,
 * before their completion); stale ones (a call given up on) are closed. */
static int take_fd(struct iod_client *c, uint64_t user_data)
{
	for (;;) {
		struct iod_fdmsg m;
		int fd = -1;
		ssize_t n = recv_fd(c->conn, &m, sizeof(m), &fd);

		if (n != (ssize_t)sizeof(m)) {
			if (fd >= 0)
				close(fd);
			return -EIO;
		}
		if (m.user_data == user_data)
			return fd >= 0 ? fd : -EIO;
		if (fd >= 0)
			close(fd);
	}
}

int iod_client_call(struct iod_client *c, struct iod_req *req, struct iod_resp *resp, int *fd,
		    bool (*valid)(void *), void *arg)
{
	struct qerr err = {0};
	uint64_t ud;
	int r;

	*fd = -1;
	if (!c->attached) {
		if (attach(c, &err) < 0)
			return -EIO;
		c->reconnects++;
		qlog_info("iod: re-attached");
	}
	ud = ++c->seq;
	req->hdr.user_data = ud;
	req->hdr.flags = 0;
	req->hdr.len = (uint32_t)(offsetof(struct iod_req, paths) - sizeof(req->hdr)) +
		       req->path_len + req->path2_len;
	r = ring_sq_push(&c->ring, req);
	if (r < 0 || ring_notify_peer(&c->ring) < 0) {
		/* Full: iod stopped taking requests (it takes at most as many
		 * as the CQ holds, and we wait for each). */
		detach(c);
		return -EIO;
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = ring_wait_fd(&c->ring), .events = POLLIN},
				      {.fd = c->conn, .events = POLLRDHUP}};

		r = ring_cq_pop(&c->ring, resp, iod_resp_valid, NULL);
		if (r == 0 || r == -EBADMSG) {
			if (resp->hdr.user_data != ud)
				goto stale;
			if (r == -EBADMSG) {
				detach(c);
				return -EIO;
			}
			if (resp->hdr.flags & IOD_RESP_FD) {
				int f = take_fd(c, ud);
				if (f < 0) {
					detach(c);
					return -EIO;
				}
				*fd = f;
			}
			return 0;
		}
		if (r != -EAGAIN) {
			detach(c);
			return -EIO;
		}
		r = ring_wait_prepare(&c->ring);
		if (r > 0)
			continue;
		r = poll(p, 2, WAIT_SLICE_MS);
		if (r < 0 && errno != EINTR) {
			detach(c);
			return -EIO;
		}
		if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			/* iod is gone: a completion it pushed before dying
			 * still counts. */
			ring_wait_finish(&c->ring);
			if (ring_cq_pop(&c->ring, resp, iod_resp_valid, NULL) == 0 &&
			    resp->hdr.user_data == ud && !(resp->hdr.flags & IOD_RESP_FD)) {
				detach(c);
				return 0;
			}
			detach(c);
			return -EIO;
		}
		if (p[0].revents & POLLIN)
			ring_wait_finish(&c->ring);
		if (r == 0 && valid && !valid(arg)) {
			/* The caller is gone; its completion will be stale. */
			return -ENOENT;
		}
		continue;
	stale:
		/* A completion of a call given up on: drop it, and its fd. */
		if (resp->hdr.flags & IOD_RESP_FD) {
			int f = take_fd(c, resp->hdr.user_data);
			if (f >= 0)
				close(f);
		}
	}
}
