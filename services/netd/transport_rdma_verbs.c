/* The verbs layer of the RDMA backend (transport_rdma.h): rdma-core under
 * the ring protocol of transport_rdma_ring.c.
 *
 * NOT RUN: the machines this was written on have no RDMA device (no
 * /sys/class/infiniband, a kernel without modules, so no soft-RoCE either).
 * This file is compiled with -Werror and its error paths are written to
 * release everything they took, but no connection has ever been set up
 * with it.  What is tested is everything above it: the ring and credit
 * protocol and the backend, over an in-memory fake device
 * (tests/unit/test_netd_rdma_ring.c), and qt_rdma_probe's "no device" path.
 *
 * Per connection: an event channel of its own (the listener migrates each
 * accepted id to one), a protection domain, a completion channel and one
 * completion queue for both directions, an RC queue pair made by
 * rdma_create_qp, and two rings: the send ring (local access only) and
 * the receive ring (remote write).  The receive ring's address, rkey, size
 * and RECV depth travel in the connection's private data.  The fd the loop
 * polls is an epoll fd holding the event channel's fd and the completion
 * channel's fd, so a connection is one fd whatever its state.
 */
#include "services/netd/transport_rdma.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "libcommon/cleanup.h"

#define DEFAULT_RING_SIZE  (1u << 20)
#define DEFAULT_DEPTH	   256u
#define DEFAULT_TIMEOUT_MS 2000
#define PDATA_MAGIC	   0x51545231u /* "QTR1" */

/* The private data of connect and accept, big-endian. */
struct pdata {
	uint32_t magic;
	uint32_t size;
	uint32_t recv_depth;
	uint32_t rkey;
	uint64_t addr;
};

enum vstate {
	V_RESOLVING_ADDR,
	V_RESOLVING_ROUTE,
	V_CONNECTING, /* rdma_connect or rdma_accept sent, waiting for ESTABLISHED */
	V_UP,
	V_DOWN,
};

struct vdev {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	bool qp;
	struct ibv_mr *smr, *rmr;
	uint8_t *sbuf, *rbuf;
	uint32_t size, recv_depth, send_depth;
	uint64_t peer_addr;
	uint32_t peer_rkey, peer_depth;
	int epfd;
	enum vstate state;
	int timeout_ms;
	char desc[96];
};

static void fill_params(struct qt_rdma_params *out, const struct qt_rdma_params *in)
{
	memset(out, 0, sizeof(*out));
	if (in)
		*out = *in;
	if (!out->ring_size)
		out->ring_size = DEFAULT_RING_SIZE;
	if (!out->recv_depth)
		out->recv_depth = DEFAULT_DEPTH;
	if (!out->send_depth)
		out->send_depth = DEFAULT_DEPTH;
	if (!out->timeout_ms)
		out->timeout_ms = DEFAULT_TIMEOUT_MS;
}

static int check_params(const struct qt_rdma_params *p, struct qerr *err)
{
	if (p->ring_size < QT_RRING_SIZE_MIN || p->ring_size > QT_RRING_SIZE_MAX ||
	    (p->ring_size & (p->ring_size - 1)))
		return qerr_set(err, EINVAL, "rdma: ring size %u: a power of two in [%u, %u]",
				p->ring_size, QT_RRING_SIZE_MIN, QT_RRING_SIZE_MAX);
	if (p->recv_depth < QT_RRING_DEPTH_MIN || p->recv_depth > QT_RRING_DEPTH_MAX ||
	    p->send_depth < 2 || p->send_depth > 4096)
		return qerr_set(err, EINVAL, "rdma: queue depths %u/%u out of range", p->recv_depth,
				p->send_depth);
	return 0;
}

static void describe_sa(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "rdma %s:%u", host, ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "rdma [%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "rdma");
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static void vdev_free(struct vdev *d)
{
	if (!d)
		return;
	if (d->id && d->state == V_UP)
		rdma_disconnect(d->id);
	if (d->qp)
		rdma_destroy_qp(d->id);
	if (d->smr)
		ibv_dereg_mr(d->smr);
	if (d->rmr)
		ibv_dereg_mr(d->rmr);
	if (d->cq)
		ibv_destroy_cq(d->cq);
	if (d->cc)
		ibv_destroy_comp_channel(d->cc);
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	if (d->id)
		rdma_destroy_id(d->id);
	if (d->ec)
		rdma_destroy_event_channel(d->ec);
	if (d->epfd >= 0)
		close(d->epfd);
	free(d->sbuf);
	free(d->rbuf);
	free(d);
}

static struct vdev *vdev_new(const struct qt_rdma_params *p, struct qerr *err)
{
	struct vdev *d = calloc(1, sizeof(*d));
	if (!d) {
		qerr_set(err, ENOMEM, "rdma: out of memory");
		return NULL;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0) {
		qerr_sys(err, errno, "rdma: epoll_create1");
		vdev_free(d);
		return NULL;
	}
	d->size = p->ring_size;
	d->recv_depth = p->recv_depth;
	d->send_depth = p->send_depth;
	d->timeout_ms = p->timeout_ms;
	return d;
}

static int watch(struct vdev *d, int fd, struct qerr *err)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	int r = set_nonblock(fd);
	if (r < 0)
		return qerr_sys(err, -r, "rdma: O_NONBLOCK");
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return qerr_sys(err, errno, "rdma: epoll_ctl");
	return 0;
}

/* Protection domain, completion channel and queue, queue pair, rings and
 * the RECVs the peer will write into, on the device the id resolved to. */
static int vdev_setup(struct vdev *d, struct qerr *err)
{
	struct ibv_context *ctx = d->id->verbs;
	if (!ctx)
		return qerr_set(err, ENODEV, "%s: no device behind the address", d->desc);
	d->pd = ibv_alloc_pd(ctx);
	if (!d->pd)
		return qerr_sys(err, errno ? errno : ENOMEM, "%s: ibv_alloc_pd", d->desc);
	d->cc = ibv_create_comp_channel(ctx);
	if (!d->cc)
		return qerr_sys(err, errno ? errno : ENOMEM, "%s: ibv_create_comp_channel",
				d->desc);
	if (watch(d, d->cc->fd, err) < 0)
		return -err->code;
	d->cq = ibv_create_cq(ctx, (int)(d->send_depth + d->recv_depth), NULL, d->cc, 0);
	if (!d->cq)
		return qerr_sys(err, errno ? errno : ENOMEM, "%s: ibv_create_cq", d->desc);
	if (ibv_req_notify_cq(d->cq, 0))
		return qerr_sys(err, errno ? errno : EIO, "%s: ibv_req_notify_cq", d->desc);

	struct ibv_qp_init_attr qa = {
	    .send_cq = d->cq,
	    .recv_cq = d->cq,
	    .qp_type = IBV_QPT_RC,
	    .cap =
		{
		    .max_send_wr = d->send_depth,
		    .max_recv_wr = d->recv_depth,
		    .max_send_sge = 1,
		    .max_recv_sge = 1,
		},
	    .sq_sig_all = 1,
	};
	if (rdma_create_qp(d->id, d->pd, &qa))
		return qerr_sys(err, errno ? errno : EIO, "%s: rdma_create_qp", d->desc);
	d->qp = true;

	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *s = NULL, *r = NULL;
	if (posix_memalign(&s, page, d->size) || posix_memalign(&r, page, d->size)) {
		free(s);
		free(r);
		return qerr_set(err, ENOMEM, "%s: out of memory for the rings", d->desc);
	}
	d->sbuf = s;
	d->rbuf = r;
	memset(d->rbuf, 0, d->size);
	d->smr = ibv_reg_mr(d->pd, d->sbuf, d->size, IBV_ACCESS_LOCAL_WRITE);
	if (!d->smr)
		return qerr_sys(err, errno ? errno : EIO, "%s: ibv_reg_mr (send ring)", d->desc);
	/* The peer writes here and nowhere else: REMOTE_WRITE on this one
	 * region of exactly the ring's size, no REMOTE_READ anywhere. */
	d->rmr =
	    ibv_reg_mr(d->pd, d->rbuf, d->size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!d->rmr)
		return qerr_sys(err, errno ? errno : EIO, "%s: ibv_reg_mr (receive ring)", d->desc);
	for (uint32_t i = 0; i < d->recv_depth; i++) {
		struct ibv_recv_wr wr = {.wr_id = 0, .num_sge = 0}, *bad = NULL;
		int e = ibv_post_recv(d->id->qp, &wr, &bad);
		if (e)
			return qerr_sys(err, e, "%s: ibv_post_recv", d->desc);
	}
	return 0;
}

static void pdata_ours(const struct vdev *d, struct pdata *pd)
{
	pd->magic = htonl(PDATA_MAGIC);
	pd->size = htonl(d->size);
	pd->recv_depth = htonl(d->recv_depth);
	pd->rkey = htonl(d->rmr->rkey);
	pd->addr = htobe64((uint64_t)(uintptr_t)d->rbuf);
}

/* The peer's private data: its ring must be the size of ours. */
static int pdata_theirs(struct vdev *d, const void *data, size_t len, struct qerr *err)
{
	struct pdata pd;
	if (!data || len < sizeof(pd))
		return qerr_set(err, EPROTO, "%s: peer sent %zu bytes of private data", d->desc,
				len);
	memcpy(&pd, data, sizeof(pd));
	if (ntohl(pd.magic) != PDATA_MAGIC)
		return qerr_set(err, EPROTO, "%s: peer is not a quiver transport", d->desc);
	if (ntohl(pd.size) != d->size)
		return qerr_set(err, EPROTO, "%s: peer ring of %u bytes, ours is %u", d->desc,
				ntohl(pd.size), d->size);
	uint32_t depth = ntohl(pd.recv_depth);
	if (depth < QT_RRING_DEPTH_MIN || depth > QT_RRING_DEPTH_MAX)
		return qerr_set(err, EPROTO, "%s: peer RECV depth %u", d->desc, depth);
	d->peer_depth = depth;
	d->peer_rkey = ntohl(pd.rkey);
	d->peer_addr = be64toh(pd.addr);
	return 0;
}

/* ---- struct qt_rdev_ops -------------------------------------------------- */

static int v_post_write_imm(void *dev, uint64_t wr_id, uint32_t off, uint32_t len, uint32_t imm)
{
	struct vdev *d = dev;
	if ((uint64_t)off + len > d->size)
		return -EINVAL;
	struct ibv_sge sge = {
	    .addr = (uint64_t)(uintptr_t)(d->sbuf + off),
	    .length = len,
	    .lkey = d->smr->lkey,
	};
	struct ibv_send_wr wr = {
	    .wr_id = wr_id,
	    .sg_list = len ? &sge : NULL,
	    .num_sge = len ? 1 : 0,
	    .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
	    .send_flags = IBV_SEND_SIGNALED,
	    .imm_data = htonl(imm),
	    .wr.rdma = {.remote_addr = d->peer_addr + off, .rkey = d->peer_rkey},
	};
	struct ibv_send_wr *bad = NULL;
	int e = ibv_post_send(d->id->qp, &wr, &bad);
	return e ? -e : 0;
}

static int v_post_recv(void *dev)
{
	struct vdev *d = dev;
	struct ibv_recv_wr wr = {.wr_id = 0, .num_sge = 0}, *bad = NULL;
	int e = ibv_post_recv(d->id->qp, &wr, &bad);
	return e ? -e : 0;
}

static int v_poll(void *dev, struct qt_rdev_wc *out, int max)
{
	struct vdev *d = dev;
	struct ibv_wc wc[16];
	if (max > 16)
		max = 16;
	int n = ibv_poll_cq(d->cq, max, wc);
	if (n < 0)
		return -EIO;
	for (int i = 0; i < n; i++) {
		out[i].wr_id = wc[i].wr_id;
		out[i].status = wc[i].status == IBV_WC_SUCCESS ? 0 : -EIO;
		out[i].imm = 0;
		if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
			out[i].op = QT_WC_RECV;
			out[i].imm = ntohl(wc[i].imm_data);
		} else {
			/* A failed work request's opcode is undefined; it is
			 * reported by status alone. */
			out[i].op = QT_WC_WRITE;
		}
	}
	return n;
}

static const struct qt_rdev_ops verbs_work = {
    .post_write_imm = v_post_write_imm,
    .post_recv = v_post_recv,
    .poll = v_poll,
};

/* ---- connection events ---------------------------------------------------- */

static int on_cm_event(struct vdev *d, struct rdma_cm_event *ev, struct qerr *err)
{
	struct rdma_conn_param cp;
	struct pdata pd;

	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (d->state != V_RESOLVING_ADDR)
			break;
		if (vdev_setup(d, err) < 0)
			return -err->code;
		if (rdma_resolve_route(d->id, d->timeout_ms))
			return qerr_sys(err, errno, "%s: rdma_resolve_route", d->desc);
		d->state = V_RESOLVING_ROUTE;
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (d->state != V_RESOLVING_ROUTE)
			break;
		pdata_ours(d, &pd);
		memset(&cp, 0, sizeof(cp));
		cp.private_data = &pd;
		cp.private_data_len = sizeof(pd);
		/* Only WRITEs: no RDMA READ resources either way. */
		cp.retry_count = 7;
		cp.rnr_retry_count = 7;
		if (rdma_connect(d->id, &cp))
			return qerr_sys(err, errno, "%s: rdma_connect", d->desc);
		d->state = V_CONNECTING;
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (d->state != V_CONNECTING)
			break;
		/* The dialer learns the acceptor's ring here; the acceptor
		 * took the dialer's from the connect request. */
		if (!d->peer_rkey && pdata_theirs(d, ev->param.conn.private_data,
						  ev->param.conn.private_data_len, err) < 0)
			return -err->code;
		d->state = V_UP;
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return qerr_set(err, EHOSTUNREACH, "%s: %s", d->desc, rdma_event_str(ev->event));
	case RDMA_CM_EVENT_REJECTED:
		return qerr_set(err, ECONNREFUSED, "%s: connection rejected", d->desc);
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		if (d->state != V_UP && d->state != V_DOWN)
			return qerr_set(err, ECONNRESET, "%s: %s during set-up", d->desc,
					rdma_event_str(ev->event));
		d->state = V_DOWN;
		break;
	default:
		break;
	}
	return 0;
}

static int v_fd(const void *dev)
{
	return ((const struct vdev *)dev)->epfd;
}

static int v_events(void *dev, enum qt_rdev_state *state, struct qerr *err)
{
	struct vdev *d = dev;
	for (;;) {
		struct rdma_cm_event *ev = NULL;
		if (rdma_get_cm_event(d->ec, &ev)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return qerr_sys(err, errno, "%s: rdma_get_cm_event", d->desc);
		}
		int r = on_cm_event(d, ev, err);
		rdma_ack_cm_event(ev);
		if (r < 0)
			return r;
	}
	if (d->cc) {
		struct ibv_cq *cq;
		void *cq_ctx;
		unsigned acked = 0;
		while (ibv_get_cq_event(d->cc, &cq, &cq_ctx) == 0)
			acked++;
		if (acked) {
			ibv_ack_cq_events(d->cq, acked);
			/* Re-arm before the ring polls, so a completion that
			 * lands in between still wakes us. */
			if (ibv_req_notify_cq(d->cq, 0))
				return qerr_sys(err, errno ? errno : EIO, "%s: ibv_req_notify_cq",
						d->desc);
		}
	}
	*state = d->state == V_UP     ? QT_RDEV_UP
		 : d->state == V_DOWN ? QT_RDEV_DOWN
				      : QT_RDEV_CONNECTING;
	return 0;
}

static void v_params(const void *dev, struct qt_rring_params *p, uint32_t *recv_depth)
{
	const struct vdev *d = dev;
	p->sbuf = d->sbuf;
	p->rbuf = d->rbuf;
	p->size = d->size;
	p->send_depth = d->send_depth;
	p->peer_recv_depth = d->peer_depth;
	*recv_depth = d->recv_depth;
}

static void v_describe(const void *dev, char *buf, size_t len)
{
	snprintf(buf, len, "%s", ((const struct vdev *)dev)->desc);
}

static void v_destroy(void *dev)
{
	vdev_free(dev);
}

static const struct qt_rdev_conn_ops verbs_conn = {
    .work = &verbs_work,
    .fd = v_fd,
    .events = v_events,
    .params = v_params,
    .describe = v_describe,
    .destroy = v_destroy,
};

/* ---- dial, listen, accept ------------------------------------------------ */

struct qt_backend *qt_rdma_dial(const struct sockaddr *addr, socklen_t len,
				const struct qt_rdma_params *params, struct qerr *err)
{
	struct qt_rdma_params p;
	fill_params(&p, params);
	if (check_params(&p, err) < 0)
		return NULL;
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
	    len < (socklen_t)sizeof(struct sockaddr_in)) {
		qerr_set(err, EAFNOSUPPORT, "rdma: dial: not an IPv4 or IPv6 address");
		return NULL;
	}
	struct vdev *d = vdev_new(&p, err);
	if (!d)
		return NULL;
	describe_sa(addr, d->desc, sizeof(d->desc));
	d->ec = rdma_create_event_channel();
	if (!d->ec) {
		qerr_sys(err, errno ? errno : ENODEV, "%s: rdma_create_event_channel", d->desc);
		goto fail;
	}
	if (watch(d, d->ec->fd, err) < 0)
		goto fail;
	if (rdma_create_id(d->ec, &d->id, d, RDMA_PS_TCP)) {
		d->id = NULL;
		qerr_sys(err, errno, "%s: rdma_create_id", d->desc);
		goto fail;
	}
	struct sockaddr_storage dst;
	memset(&dst, 0, sizeof(dst));
	memcpy(&dst, addr, len < sizeof(dst) ? len : sizeof(dst));
	if (rdma_resolve_addr(d->id, NULL, (struct sockaddr *)&dst, d->timeout_ms)) {
		qerr_sys(err, errno, "%s: rdma_resolve_addr", d->desc);
		goto fail;
	}
	d->state = V_RESOLVING_ADDR;
	return qt_rdma_backend_new(&verbs_conn, d, err);
fail:
	vdev_free(d);
	return NULL;
}

struct rdma_listener {
	struct qt_listener base;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct qt_rdma_params params;
	char desc[96];
};

static int rl_fd(const struct qt_listener *l)
{
	return ((const struct rdma_listener *)l)->ec->fd;
}

/* A connection request: resources on the device it came in on, its own
 * event channel, and accept with our ring's keys. */
static struct qt_backend *accept_request(struct rdma_listener *rl, struct rdma_cm_id *id,
					 const void *pdata, size_t pdata_len, struct qerr *err)
{
	struct vdev *d = vdev_new(&rl->params, err);
	if (!d) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return NULL;
	}
	d->id = id;
	describe_sa(rdma_get_peer_addr(id), d->desc, sizeof(d->desc));
	if (pdata_theirs(d, pdata, pdata_len, err) < 0 || vdev_setup(d, err) < 0)
		goto reject;
	d->ec = rdma_create_event_channel();
	if (!d->ec) {
		qerr_sys(err, errno ? errno : ENOMEM, "%s: rdma_create_event_channel", d->desc);
		goto reject;
	}
	if (watch(d, d->ec->fd, err) < 0)
		goto reject;
	if (rdma_migrate_id(id, d->ec)) {
		qerr_sys(err, errno, "%s: rdma_migrate_id", d->desc);
		goto reject;
	}
	struct pdata pd;
	struct rdma_conn_param cp;
	pdata_ours(d, &pd);
	memset(&cp, 0, sizeof(cp));
	cp.private_data = &pd;
	cp.private_data_len = sizeof(pd);
	cp.rnr_retry_count = 7;
	if (rdma_accept(id, &cp)) {
		qerr_sys(err, errno, "%s: rdma_accept", d->desc);
		goto reject;
	}
	d->state = V_CONNECTING;
	return qt_rdma_backend_new(&verbs_conn, d, err);
reject:
	rdma_reject(id, NULL, 0);
	vdev_free(d);
	return NULL;
}

static struct qt_backend *rl_accept(struct qt_listener *l, struct qerr *err)
{
	struct rdma_listener *rl = (struct rdma_listener *)l;
	for (;;) {
		struct rdma_cm_event *ev = NULL;
		if (rdma_get_cm_event(rl->ec, &ev)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				qerr_set(err, EAGAIN, "rdma: no connection request waiting");
				return NULL;
			}
			qerr_sys(err, errno, "%s: rdma_get_cm_event", rl->desc);
			return NULL;
		}
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdma_ack_cm_event(ev);
			continue;
		}
		/* Copy what we need, then ack: rdma_migrate_id waits for every
		 * event of the id to be acked. */
		struct rdma_cm_id *id = ev->id;
		uint8_t pdata[sizeof(struct pdata)];
		size_t plen = ev->param.conn.private_data_len;
		if (plen > sizeof(pdata))
			plen = sizeof(pdata);
		if (ev->param.conn.private_data)
			memcpy(pdata, ev->param.conn.private_data, plen);
		else
			plen = 0;
		rdma_ack_cm_event(ev);
		struct qt_backend *b = accept_request(rl, id, pdata, plen, err);
		if (b)
			return b;
		/* One bad request must not stop the listener: report it and let
		 * the caller come back for the next. */
		return NULL;
	}
}

static void rl_destroy(struct qt_listener *l)
{
	struct rdma_listener *rl = (struct rdma_listener *)l;
	if (rl->id)
		rdma_destroy_id(rl->id);
	if (rl->ec)
		rdma_destroy_event_channel(rl->ec);
	free(rl);
}

static const struct qt_listener_ops rdma_listener_ops = {
    .name = "rdma",
    .fd = rl_fd,
    .accept = rl_accept,
    .destroy = rl_destroy,
};

struct qt_listener *qt_rdma_listen(const struct sockaddr *addr, socklen_t len,
				   const struct qt_rdma_params *params, struct qerr *err)
{
	struct rdma_listener *rl = calloc(1, sizeof(*rl));
	if (!rl) {
		qerr_set(err, ENOMEM, "rdma: out of memory");
		return NULL;
	}
	rl->base.ops = &rdma_listener_ops;
	fill_params(&rl->params, params);
	if (check_params(&rl->params, err) < 0)
		goto fail;
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
	    len < (socklen_t)sizeof(struct sockaddr_in)) {
		qerr_set(err, EAFNOSUPPORT, "rdma: listen: not an IPv4 or IPv6 address");
		goto fail;
	}
	describe_sa(addr, rl->desc, sizeof(rl->desc));
	rl->ec = rdma_create_event_channel();
	if (!rl->ec) {
		qerr_sys(err, errno ? errno : ENODEV, "%s: rdma_create_event_channel", rl->desc);
		goto fail;
	}
	int r = set_nonblock(rl->ec->fd);
	if (r < 0) {
		qerr_sys(err, -r, "%s: O_NONBLOCK", rl->desc);
		goto fail;
	}
	if (rdma_create_id(rl->ec, &rl->id, rl, RDMA_PS_TCP)) {
		rl->id = NULL;
		qerr_sys(err, errno, "%s: rdma_create_id", rl->desc);
		goto fail;
	}
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, addr, len < sizeof(ss) ? len : sizeof(ss));
	if (rdma_bind_addr(rl->id, (struct sockaddr *)&ss) || rdma_listen(rl->id, 64)) {
		qerr_sys(err, errno, "%s: listen", rl->desc);
		goto fail;
	}
	return &rl->base;
fail:
	rl_destroy(&rl->base);
	return NULL;
}

/* ---- is there a device at all? ----------------------------------------- */

#define SYSFS_IB "/sys/class/infiniband"

int qt_rdma_probe(char *msg, size_t len)
{
	/* sysfs first: it says why in words ibv_get_device_list does not. */
	cleanup_dir DIR *dir = opendir(SYSFS_IB);
	if (!dir) {
		snprintf(msg, len, "no RDMA device (%s %s)", SYSFS_IB,
			 errno == ENOENT ? "does not exist" : "cannot be read");
		return 0;
	}
	bool any = false;
	struct dirent *de;
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			any = true;
	if (!any) {
		snprintf(msg, len, "no RDMA device (%s is empty)", SYSFS_IB);
		return 0;
	}
	int num = 0;
	struct ibv_device **list = ibv_get_device_list(&num);
	if (!list || num <= 0) {
		snprintf(msg, len,
			 "no RDMA device (%s lists devices, but ibv_get_device_list "
			 "found none: is the provider library installed?)",
			 SYSFS_IB);
		if (list)
			ibv_free_device_list(list);
		return 0;
	}
	snprintf(msg, len, "RDMA device %s%s", ibv_get_device_name(list[0]),
		 num > 1 ? " (and more)" : "");
	ibv_free_device_list(list);
	return 1;
}
