/* The supervisor's connection to iod (guest/iod_client.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "guest/guest.h"
#include "guest/iod_client.h"
#include "guest/trap.h"
#include "libcommon/unix_connect.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"

#define WAIT_SLICE_MS 200
/* Poll the CQ this long before sleeping: iod usually answers within a few
 * microseconds, and a sleep and wake-up cost more than that here. */
#define SPIN_NS	    50000
#define SPIN_MIN_NS 2000

static void watch(struct iod_client *c, int fd, bool add)
{
	if (c->watch && fd >= 0)
		c->watch(c->watch_arg, fd, add);
}

/* iod is gone (or misbehaved): fail what is pending, drop the ring. */
static void detach(struct iod_client *c)
{
	if (c->attached) {
		watch(c, ring_wait_fd(&c->ring), false);
		watch(c, c->conn, false);
	}
	if (c->conn >= 0)
		close(c->conn);
	c->conn = -1;
	if (c->attached)
		ring_destroy(&c->ring);
	if (c->data)
		munmap(c->data, IOD_DATA_SIZE);
	c->data = NULL;
	bool was = c->attached;
	c->attached = false;
	for (unsigned i = 0; i < IOD_RING_ENTRIES; i++) {
		struct iod_pending p = c->pend[i];

		if (!p.ud)
			continue;
		c->pend[i].ud = 0;
		c->npend--;
		p.done(p.arg, NULL, -1);
	}
	if (was && c->detached)
		c->detached(c->detached_arg);
}

/* Offload-all's data area, from iod: a sealed memfd of exactly
 * IOD_DATA_SIZE bytes, so that the mapping can never fault. */
static int map_data(struct iod_client *c, int fd)
{
	void *p;
	int r = ring_shm_map(fd, IOD_DATA_SIZE, &p);

	if (r == 0)
		c->data = p;
	return r;
}

static int attach(struct iod_client *c, struct qerr *err)
{
	struct iod_hello h = {.version = IOD_PROTO_VERSION,
			      .flags = c->offload ? IOD_HELLO_OFFLOAD_ALL : 0};
	struct iod_welcome w;
	int fds[4] = {-1, -1, -1, -1}, r;
	ssize_t n;

	detach(c);
	c->conn = unix_connect_at(c->rundir, IOD_SOCK_NAME, 0);
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
	n = recv_fds(c->conn, &w, sizeof(w), fds, 4);
	if (n != (ssize_t)sizeof(w) || w.version != IOD_PROTO_VERSION || w.error || fds[0] < 0 ||
	    fds[1] < 0 || fds[2] < 0 || w.entries != IOD_RING_ENTRIES ||
	    w.entry_size != IOD_ENTRY_SIZE || c->offload != (fds[3] >= 0) ||
	    c->offload != !!(w.flags & IOD_WELCOME_DATA) ||
	    (c->offload && map_data(c, fds[3]) < 0)) {
		for (int i = 0; i < 4; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		detach(c);
		if (n == (ssize_t)sizeof(w) && w.error)
			return qerr_sys(err, w.error, "iod: refused the sandbox");
		return qerr_set(err, EPROTO, "iod: bad welcome");
	}
	r = ring_attach(&c->ring, RING_SUBMITTER, fds[0], fds[1], fds[2]);
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (r < 0) {
		detach(c);
		return qerr_sys(err, -r, "iod: ring");
	}
	c->attached = true;
	c->root_ro = w.flags & IOD_WELCOME_ROOT_RO;
	watch(c, ring_wait_fd(&c->ring), true);
	watch(c, c->conn, true);
	ring_wait_prepare(&c->ring);
	return 0;
}

int iod_client_open(struct iod_client *c, int state_dirfd, const char *id, bool offload,
		    struct qerr *err)
{
	memset(c, 0, sizeof(*c));
	c->conn = c->rundir = c->rootfd = -1;
	c->offload = offload;
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

int iod_client_submit(struct iod_client *c, struct iod_req *req, int with_fd, iod_done_fn done,
		      void *arg)
{
	struct qerr err = {0};
	unsigned slot = 0;

	if (!c->attached) {
		if (attach(c, &err) < 0)
			return -EIO;
		c->reconnects++;
		qlog_info("iod: re-attached");
	}
	if (c->npend >= IOD_RING_ENTRIES)
		return -EAGAIN;
	while (c->pend[slot].ud)
		slot++;
	req->hdr.user_data = ++c->seq;
	req->hdr.flags = (req->hdr.flags & IOD_REQ_CACHE) | (with_fd >= 0 ? IOD_REQ_FD : 0);
	req->hdr.len = (uint32_t)(offsetof(struct iod_req, paths) - sizeof(req->hdr)) +
		       req->path_len + req->path2_len;
	if (with_fd >= 0) {
		struct iod_fdmsg m = {.user_data = req->hdr.user_data};

		if (send_with_fds(c->conn, &m, sizeof(m), &with_fd, 1) < 0) {
			detach(c);
			return -EIO;
		}
	}
	if (ring_sq_push(&c->ring, req) < 0 || ring_notify_peer(&c->ring) < 0) {
		/* Full although we never have more in flight than it holds:
		 * iod stopped taking requests. */
		detach(c);
		return -EIO;
	}
	c->pend[slot] = (struct iod_pending){
	    .ud = req->hdr.user_data, .done = done, .arg = arg, .sent_ns = mono_ns()};
	c->npend++;
	return 0;
}

/* The spin adapts: halved each time it ends without the answer (a busy
 * host, where spinning only takes the CPU iod needs), doubled back when it
 * gets it, or when the answer came after the spin had ended but within the
 * longest spin (one()): otherwise a spin once shorter than iod's round trip
 * would never see an answer again and stay at its floor, every answer then
 * coming through the eventfd and the supervisor's loop.  It yields between
 * polls: iod may be waiting for this very CPU. */
static bool spinning(const struct iod_client *c, uint64_t t0)
{
	if ((long)(mono_ns() - t0) >= c->spin_ns)
		return false;
	sched_yield();
	return true;
}

/* One completion off the CQ: 1 handled, 0 none, -1 iod misbehaved. */
static int one(struct iod_client *c)
{
	union iod_resp_entry o;
	int r = ring_cq_pop(&c->ring, &o, iod_resp_valid, NULL);

	if (r == -EAGAIN)
		return 0;
	if (r < 0)
		return -1;
	for (unsigned i = 0; i < IOD_RING_ENTRIES; i++) {
		struct iod_pending p = c->pend[i];
		int fd = -1;

		if (p.ud != o.resp.hdr.user_data)
			continue;
		if ((o.resp.hdr.flags & IOD_RESP_FD) && (fd = take_fd(c, p.ud)) < 0)
			return -1;
		c->pend[i].ud = 0;
		c->npend--;
		uint64_t took = mono_ns() - p.sent_ns;
		if (took < SPIN_NS && (long)took >= c->spin_ns && c->spin_ns < SPIN_NS)
			c->spin_ns *= 2;
		p.done(p.arg, &o.resp, fd);
		return 1;
	}
	return -1; /* a completion nobody asked for */
}

void iod_client_dispatch(struct iod_client *c, bool spin)
{
	uint64_t t0;

	if (!c->attached)
		return;
	t0 = mono_ns();
	ring_wait_finish(&c->ring);
	if (!c->spin_ns)
		c->spin_ns = SPIN_NS;
	for (;;) {
		int r = one(c);

		if (r < 0) {
			detach(c);
			return;
		}
		if (r > 0) {
			if (spin && c->spin_ns < SPIN_NS)
				c->spin_ns *= 2;
			continue;
		}
		if (spin && c->npend > 0 && spinning(c, t0))
			continue;
		if (spin && c->npend > 0 && c->spin_ns > SPIN_MIN_NS)
			c->spin_ns /= 2;
		if (ring_wait_prepare(&c->ring) > 0)
			continue;
		break;
	}
	if (!spin && unix_peer_gone(c->conn)) {
		/* Completions pushed before iod died were taken above. */
		qlog_warn("iod: connection lost; %u calls fail with EIO", c->npend);
		detach(c);
	}
}

/* iod_client_call's completion: copied to the caller's buffer, or
 * dropped when the caller gave up (resp NULL in the struct). */
struct waiter {
	bool done, failed;
	struct iod_resp *resp;
	int fd;
};

static void wake_waiter(void *arg, const struct iod_resp *resp, int fd)
{
	struct waiter *w = arg;

	w->done = true;
	if (!resp) {
		w->failed = true;
		return;
	}
	memcpy(w->resp, resp, offsetof(struct iod_resp, data) + resp->data_len);
	w->fd = fd;
}

static void drop_late(void *arg, const struct iod_resp *resp, int fd)
{
	(void)arg;
	(void)resp;
	if (fd >= 0)
		close(fd);
}

int iod_client_call(struct iod_client *c, struct iod_req *req, int with_fd, struct iod_resp *resp,
		    int *fd, bool (*valid)(void *), void *arg)
{
	struct waiter w = {.resp = resp, .fd = -1};
	uint64_t ud;
	int r;

	*fd = -1;
	r = iod_client_submit(c, req, with_fd, wake_waiter, &w);
	if (r < 0)
		return -EIO;
	ud = req->hdr.user_data;
	iod_client_dispatch(c, true);
	while (!w.done) {
		struct pollfd p[2] = {{.fd = ring_wait_fd(&c->ring), .events = POLLIN},
				      {.fd = c->conn, .events = POLLRDHUP}};

		trap_sched_restore(); /* about to sleep: see trap_inject_fd */
		r = poll(p, 2, WAIT_SLICE_MS);
		if (r < 0 && errno != EINTR) {
			detach(c);
			break;
		}
		iod_client_dispatch(c, false);
		if (!w.done && r == 0 && valid && !valid(arg)) {
			/* The caller is gone: its completion will be dropped. */
			for (unsigned i = 0; i < IOD_RING_ENTRIES; i++)
				if (c->pend[i].ud == ud)
					c->pend[i].done = drop_late;
			return -ENOENT;
		}
	}
	if (!w.done || w.failed)
		return -EIO;
	*fd = w.fd;
	return 0;
}

void iod_client_set_watch(struct iod_client *c, void (*fn)(void *, int, bool), void *arg)
{
	c->watch = fn;
	c->watch_arg = arg;
	if (c->attached) {
		watch(c, ring_wait_fd(&c->ring), true);
		watch(c, c->conn, true);
	}
}
