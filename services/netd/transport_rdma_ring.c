/* The ring and credit protocol of the RDMA backend over an abstract
 * posted-work device, and the struct qt_backend built on it
 * (transport_rdma.h, docs/netd-transport.md "RDMA"). */
#include "services/netd/transport_rdma.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int broken(struct qt_rring *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int broken(struct qt_rring *r, int code, const char *fmt, ...)
{
	if (r->error)
		return r->error;
	va_list ap;
	va_start(ap, fmt);
	char msg[QERR_MSG_MAX];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->error = qerr_set(&r->err, code, "rdma ring: %s", msg);
	return r->error;
}

int qt_rring_init(struct qt_rring *r, const struct qt_rdev_ops *ops, void *dev,
		  const struct qt_rring_params *p, uint32_t recv_depth)
{
	memset(r, 0, sizeof(*r));
	if (!ops || !p || !p->sbuf || !p->rbuf || p->size < QT_RRING_SIZE_MIN ||
	    p->size > QT_RRING_SIZE_MAX || (p->size & (p->size - 1)) ||
	    recv_depth < QT_RRING_DEPTH_MIN || recv_depth > QT_RRING_DEPTH_MAX ||
	    p->peer_recv_depth < QT_RRING_DEPTH_MIN || p->peer_recv_depth > QT_RRING_DEPTH_MAX ||
	    p->send_depth < 2)
		return -EINVAL;
	r->ops = ops;
	r->dev = dev;
	r->sbuf = p->sbuf;
	r->rbuf = p->rbuf;
	r->size = p->size;
	r->mask = p->size - 1;
	r->send_depth = p->send_depth;
	r->peer_depth = p->peer_recv_depth;
	r->peer_recvs = p->peer_recv_depth;
	r->recv_depth = recv_depth;
	return 0;
}

static int post(struct qt_rring *r, uint32_t off, uint32_t len, uint32_t imm)
{
	/* WRITEs on one queue pair complete in order, so a completion's
	 * wr_id, the s_tail after its bytes, is how far the send ring may be
	 * reused. */
	int ret = r->ops->post_write_imm(r->dev, r->s_tail + len, off, len, imm);
	if (ret < 0)
		return broken(r, -ret, "posting a write: %s", strerror(-ret));
	r->s_tail += len;
	r->peer_recvs--;
	r->inflight++;
	r->writes_posted++;
	return 0;
}

/* Tell the peer what we consumed and re-posted, once it is worth a write:
 * a quarter of the ring, or half of its RECV credits.  Thresholds, not
 * every time: each doorbell costs the peer a RECV it must credit back,
 * and a doorbell per doorbell would never stop. */
static int maybe_doorbell(struct qt_rring *r)
{
	uint64_t bytes = r->r_head - r->r_reported;
	uint32_t recvs = r->recvs_owed;
	if (bytes < r->size / 4 && recvs < r->recv_depth / 2)
		return 0;
	if (r->peer_recvs == 0 || r->inflight >= r->send_depth)
		return 0; /* retried when credits or completions come back */
	if (recvs > QT_IMM_RECVS_MASK)
		recvs = QT_IMM_RECVS_MASK;
	uint32_t imm = QT_IMM_DOORBELL | recvs << QT_IMM_RECVS_SHIFT | (uint32_t)bytes;
	int ret = post(r, 0, 0, imm);
	if (ret < 0)
		return ret;
	r->r_reported += bytes;
	r->recvs_owed -= recvs;
	r->doorbells_sent++;
	return 0;
}

ssize_t qt_rring_send(struct qt_rring *r, const void *buf, size_t len)
{
	const uint8_t *src = buf;
	size_t done = 0;

	if (r->error)
		return r->error;
	while (done < len) {
		/* Keep one RECV credit and one send slot for a doorbell, or
		 * two sides busy sending could each wait for the other's. */
		if (r->peer_recvs < 2 || r->inflight + 1 >= r->send_depth)
			break;
		uint64_t used_remote = r->s_tail - r->s_peer_head;
		uint64_t used_local = r->s_tail - r->s_done;
		uint64_t used = used_remote > used_local ? used_remote : used_local;
		if (used >= r->size)
			break;
		uint32_t off = (uint32_t)(r->s_tail & r->mask);
		size_t n = len - done;
		if (n > r->size - used)
			n = (size_t)(r->size - used);
		if (n > r->size - off)
			n = r->size - off; /* one write never wraps */
		memcpy(r->sbuf + off, src + done, n);
		int ret = post(r, off, (uint32_t)n, (uint32_t)n);
		if (ret < 0)
			return done ? (ssize_t)done : ret;
		done += n;
	}
	return done ? (ssize_t)done : -EAGAIN;
}

ssize_t qt_rring_recv(struct qt_rring *r, void *buf, size_t len)
{
	uint8_t *dst = buf;
	uint64_t avail = r->r_tail - r->r_head;

	/* Bytes that arrived before the ring broke are still read: after
	 * a disconnect they come before the end of stream. */
	if (avail == 0)
		return r->error ? r->error : -EAGAIN;
	size_t n = len < avail ? len : (size_t)avail;
	uint32_t off = (uint32_t)(r->r_head & r->mask);
	size_t first = n < r->size - off ? n : r->size - off;
	/* The peer can rewrite these bytes at any moment; this copy is the
	 * only read of them. */
	memcpy(dst, r->rbuf + off, first);
	memcpy(dst + first, r->rbuf, n - first);
	r->r_head += n;
	if (!r->error)
		maybe_doorbell(r); /* a failure is sticky: reported next time */
	return (ssize_t)n;
}

static int on_recv(struct qt_rring *r, uint32_t imm)
{
	/* Re-post first: the peer may use the credit as soon as it hears. */
	int ret = r->ops->post_recv(r->dev);
	if (ret < 0)
		return broken(r, -ret, "re-posting a RECV: %s", strerror(-ret));
	r->recvs_owed++;
	if (imm & QT_IMM_DOORBELL) {
		uint32_t bytes = imm & QT_IMM_BYTES_MASK;
		uint32_t recvs = imm >> QT_IMM_RECVS_SHIFT & QT_IMM_RECVS_MASK;
		if (bytes > r->s_tail - r->s_peer_head)
			return broken(r, EPROTO,
				      "doorbell: peer consumed %u bytes, %" PRIu64 " were sent",
				      bytes, r->s_tail - r->s_peer_head);
		if (recvs > r->peer_depth - r->peer_recvs)
			return broken(r, EPROTO, "doorbell: %u RECVs back, %u were used", recvs,
				      r->peer_depth - r->peer_recvs);
		r->s_peer_head += bytes;
		r->peer_recvs += recvs;
		r->doorbells_rcvd++;
		return 0;
	}
	uint64_t room = r->size - (r->r_tail - r->r_head);
	if (imm == 0 || imm > room)
		return broken(r, EPROTO, "peer wrote %u bytes into a ring with %" PRIu64 " free",
			      imm, room);
	r->r_tail += imm;
	return 0;
}

int qt_rring_process(struct qt_rring *r)
{
	struct qt_rdev_wc wc[16];
	int n;

	if (r->error)
		return r->error;
	do {
		n = r->ops->poll(r->dev, wc, (int)(sizeof(wc) / sizeof(wc[0])));
		if (n < 0)
			return broken(r, -n, "polling completions: %s", strerror(-n));
		for (int i = 0; i < n; i++) {
			if (wc[i].status)
				return broken(r, -wc[i].status > 0 ? -wc[i].status : EIO,
					      "work request failed: the connection is gone");
			if (wc[i].op == QT_WC_WRITE) {
				/* Ours, so an inconsistency is a device bug, not
				 * the peer's: still, never trust it blindly. */
				if (wc[i].wr_id < r->s_done || wc[i].wr_id > r->s_tail ||
				    r->inflight == 0)
					return broken(r, EIO, "write completion out of order");
				r->s_done = wc[i].wr_id;
				r->inflight--;
			} else if (wc[i].op == QT_WC_RECV) {
				int ret = on_recv(r, wc[i].imm);
				if (ret < 0)
					return ret;
			} else {
				return broken(r, EIO, "completion of unknown kind %d", wc[i].op);
			}
		}
	} while (n == (int)(sizeof(wc) / sizeof(wc[0])));
	return maybe_doorbell(r);
}

/* ---- struct qt_backend over a device -------------------------------------- */

struct rdma_backend {
	struct qt_backend base;
	const struct qt_rdev_conn_ops *ops;
	void *dev;
	enum qt_rdev_state state;
	bool ring_up;
	struct qt_rring ring;
};

static int rb_process(struct qt_backend *b, struct qerr *err)
{
	struct rdma_backend *rb = (struct rdma_backend *)b;
	enum qt_rdev_state st = rb->state;
	int ret = rb->ops->events(rb->dev, &st, err);
	if (ret < 0)
		return ret;
	if (st == QT_RDEV_UP && !rb->ring_up) {
		struct qt_rring_params p;
		uint32_t recv_depth;
		rb->ops->params(rb->dev, &p, &recv_depth);
		ret = qt_rring_init(&rb->ring, rb->ops->work, rb->dev, &p, recv_depth);
		if (ret < 0)
			return qerr_set(err, -ret, "rdma: bad ring geometry");
		rb->ring_up = true;
	}
	rb->state = st;
	if (rb->ring_up) {
		/* Completions that arrived before DOWN still count: their
		 * bytes are read before the end of stream. */
		ret = qt_rring_process(&rb->ring);
		if (ret < 0 && rb->state != QT_RDEV_DOWN) {
			if (err)
				*err = rb->ring.err;
			return ret;
		}
	}
	return 0;
}

static int rb_connect_step(struct qt_backend *b, struct qerr *err)
{
	struct rdma_backend *rb = (struct rdma_backend *)b;
	if (rb->ring_up)
		return 1;
	if (rb->state == QT_RDEV_DOWN)
		return qerr_set(err, ECONNREFUSED, "rdma: connection closed during set-up");
	/* First call (from attach): nothing may have been processed yet. */
	int ret = rb_process(b, err);
	if (ret < 0)
		return ret;
	return rb->ring_up ? 1 : 0;
}

static ssize_t rb_send(struct qt_backend *b, const void *buf, size_t len, struct qerr *err)
{
	struct rdma_backend *rb = (struct rdma_backend *)b;
	if (rb->state == QT_RDEV_DOWN)
		return qerr_set(err, ECONNRESET, "rdma: the peer disconnected");
	ssize_t n = qt_rring_send(&rb->ring, buf, len);
	if (n < 0 && n != -EAGAIN && err)
		*err = rb->ring.err;
	return n;
}

static ssize_t rb_recv(struct qt_backend *b, void *buf, size_t len, struct qerr *err)
{
	struct rdma_backend *rb = (struct rdma_backend *)b;
	if (rb->ring_up && qt_rring_readable(&rb->ring))
		return qt_rring_recv(&rb->ring, buf, len);
	if (rb->state == QT_RDEV_DOWN)
		return 0;
	if (rb->ring.error) {
		if (err)
			*err = rb->ring.err;
		return rb->ring.error;
	}
	return -EAGAIN;
}

static int rb_fd(const struct qt_backend *b)
{
	const struct rdma_backend *rb = (const struct rdma_backend *)b;
	return rb->ops->fd(rb->dev);
}

static unsigned rb_events(const struct qt_backend *b, bool want_read, bool want_send)
{
	/* Every change (connection events, completions, credits) comes as a
	 * readable fd; there is nothing to wait for being writable. */
	(void)b;
	(void)want_read;
	(void)want_send;
	return POLLIN;
}

static int rb_shutdown(struct qt_backend *b)
{
	/* No half-close on a queue pair: the peer disconnects after our
	 * GOAWAY, and that is our end of stream. */
	(void)b;
	return 0;
}

static void rb_describe(const struct qt_backend *b, char *buf, size_t len)
{
	const struct rdma_backend *rb = (const struct rdma_backend *)b;
	rb->ops->describe(rb->dev, buf, len);
}

static void rb_destroy(struct qt_backend *b)
{
	struct rdma_backend *rb = (struct rdma_backend *)b;
	rb->ops->destroy(rb->dev);
	free(rb);
}

static const struct qt_backend_ops rdma_backend_ops = {
    .name = "rdma",
    .connect_step = rb_connect_step,
    .send = rb_send,
    .recv = rb_recv,
    .fd = rb_fd,
    .events = rb_events,
    .process = rb_process,
    .shutdown = rb_shutdown,
    .describe = rb_describe,
    .destroy = rb_destroy,
};

struct qt_backend *qt_rdma_backend_new(const struct qt_rdev_conn_ops *ops, void *dev,
				       struct qerr *err)
{
	struct rdma_backend *rb = calloc(1, sizeof(*rb));
	if (!rb) {
		ops->destroy(dev);
		qerr_set(err, ENOMEM, "rdma: out of memory");
		return NULL;
	}
	rb->base.ops = &rdma_backend_ops;
	rb->ops = ops;
	rb->dev = dev;
	rb->state = QT_RDEV_CONNECTING;
	return &rb->base;
}

const struct qt_rring *qt_rdma_backend_ring(const struct qt_backend *b)
{
	if (!b || b->ops != &rdma_backend_ops)
		return NULL;
	const struct rdma_backend *rb = (const struct rdma_backend *)b;
	return rb->ring_up ? &rb->ring : NULL;
}
