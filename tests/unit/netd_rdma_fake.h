/* An in-memory fake of an RDMA queue pair for the unit tests of the RDMA
 * backend (transport_rdma.h): two endpoints in one process, each with its
 * send and receive ring, exchanging "completions".  A WRITE WITH IMMEDIATE
 * copies the bytes into the peer's receive ring at once, consumes one of
 * the peer's posted RECVs (none posted: the receiver-not-ready error a real
 * RC queue pair would end in, on both sides) and queues a RECV completion
 * there and a WRITE completion here; an eventfd per endpoint is the fd the
 * loop polls.  Destroying one endpoint makes the other DOWN.
 *
 * Header-only (static functions) so that each test program has its own. */
#ifndef QUIVER_TESTS_NETD_RDMA_FAKE_H
#define QUIVER_TESTS_NETD_RDMA_FAKE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "services/netd/transport_rdma.h"

struct fake_ep {
	struct fake_ep *peer;
	uint8_t *sbuf, *rbuf;
	uint32_t size, recv_depth, send_depth;
	uint32_t recv_posted;
	struct qt_rdev_wc *cq;
	size_t cq_len, cq_cap, cq_head;
	int efd;
	enum qt_rdev_state state;
	bool rnr; /* a write found no RECV posted: the test failed */
	uint64_t writes;
	char name[16];
};

static void fake_signal(struct fake_ep *e)
{
	uint64_t one = 1;
	if (write(e->efd, &one, sizeof(one)) < 0) {
		/* a saturated eventfd is still readable: nothing lost */
	}
}

static void fake_push(struct fake_ep *e, struct qt_rdev_wc wc)
{
	if (e->cq_len == e->cq_cap) {
		if (e->cq_head) {
			memmove(e->cq, e->cq + e->cq_head, (e->cq_len - e->cq_head) * sizeof(wc));
			e->cq_len -= e->cq_head;
			e->cq_head = 0;
		}
		if (e->cq_len == e->cq_cap) {
			e->cq_cap = e->cq_cap ? e->cq_cap * 2 : 64;
			e->cq = realloc(e->cq, e->cq_cap * sizeof(wc));
			if (!e->cq)
				abort();
		}
	}
	e->cq[e->cq_len++] = wc;
	fake_signal(e);
}

static int fake_post_write_imm(void *dev, uint64_t wr_id, uint32_t off, uint32_t len, uint32_t imm)
{
	struct fake_ep *e = dev;
	struct fake_ep *p = e->peer;
	if ((uint64_t)off + len > e->size)
		return -EINVAL;
	if (!p) {
		fake_push(e,
			  (struct qt_rdev_wc){.wr_id = wr_id, .op = QT_WC_WRITE, .status = -EIO});
		return 0;
	}
	if (p->recv_posted == 0) {
		e->rnr = p->rnr = true;
		fake_push(e,
			  (struct qt_rdev_wc){.wr_id = wr_id, .op = QT_WC_WRITE, .status = -EIO});
		return 0;
	}
	memcpy(p->rbuf + off, e->sbuf + off, len);
	p->recv_posted--;
	e->writes++;
	fake_push(p, (struct qt_rdev_wc){.op = QT_WC_RECV, .imm = imm});
	fake_push(e, (struct qt_rdev_wc){.wr_id = wr_id, .op = QT_WC_WRITE});
	return 0;
}

static int fake_post_recv(void *dev)
{
	struct fake_ep *e = dev;
	if (e->recv_posted >= e->recv_depth)
		return -ENOSPC; /* more RECVs than the queue holds: a ring bug */
	e->recv_posted++;
	return 0;
}

static int fake_poll(void *dev, struct qt_rdev_wc *wc, int max)
{
	struct fake_ep *e = dev;
	int n = 0;
	while (n < max && e->cq_head < e->cq_len)
		wc[n++] = e->cq[e->cq_head++];
	if (e->cq_head == e->cq_len)
		e->cq_head = e->cq_len = 0;
	return n;
}

static const struct qt_rdev_ops fake_work = {
    .post_write_imm = fake_post_write_imm,
    .post_recv = fake_post_recv,
    .poll = fake_poll,
};

static int fake_fd(const void *dev)
{
	return ((const struct fake_ep *)dev)->efd;
}

static int fake_events(void *dev, enum qt_rdev_state *state, struct qerr *err)
{
	struct fake_ep *e = dev;
	uint64_t v;
	(void)err;
	if (read(e->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	*state = e->state;
	return 0;
}

static void fake_params(const void *dev, struct qt_rring_params *p, uint32_t *recv_depth)
{
	const struct fake_ep *e = dev;
	p->sbuf = e->sbuf;
	p->rbuf = e->rbuf;
	p->size = e->size;
	p->send_depth = e->send_depth;
	p->peer_recv_depth = e->peer ? e->peer->recv_depth : e->recv_depth;
	*recv_depth = e->recv_depth;
}

static void fake_describe(const void *dev, char *buf, size_t len)
{
	snprintf(buf, len, "fake-rdma %s", ((const struct fake_ep *)dev)->name);
}

static void fake_destroy(void *dev)
{
	struct fake_ep *e = dev;
	if (e->peer) {
		e->peer->peer = NULL;
		e->peer->state = QT_RDEV_DOWN;
		fake_signal(e->peer);
	}
	close(e->efd);
	free(e->sbuf);
	free(e->rbuf);
	free(e->cq);
	free(e);
}

static const struct qt_rdev_conn_ops fake_conn = {
    .work = &fake_work,
    .fd = fake_fd,
    .events = fake_events,
    .params = fake_params,
    .describe = fake_describe,
    .destroy = fake_destroy,
};

static struct fake_ep *fake_ep_new(const char *name, uint32_t size, uint32_t depth)
{
	struct fake_ep *e = calloc(1, sizeof(*e));
	if (!e)
		abort();
	e->sbuf = calloc(1, size);
	e->rbuf = calloc(1, size);
	e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!e->sbuf || !e->rbuf || e->efd < 0)
		abort();
	e->size = size;
	e->recv_depth = depth;
	e->send_depth = depth;
	/* The device posts its RECVs before the connection is up. */
	e->recv_posted = depth;
	e->state = QT_RDEV_UP;
	snprintf(e->name, sizeof(e->name), "%s", name);
	fake_signal(e);
	return e;
}

/* Two connected endpoints. */
static void fake_pair(uint32_t size, uint32_t depth, struct fake_ep **a, struct fake_ep **b)
{
	*a = fake_ep_new("a", size, depth);
	*b = fake_ep_new("b", size, depth);
	(*a)->peer = *b;
	(*b)->peer = *a;
}

/* Two backends over a fake pair. */
static void fake_backends(uint32_t size, uint32_t depth, struct qt_backend **ba,
			  struct qt_backend **bb)
{
	struct fake_ep *a, *b;
	fake_pair(size, depth, &a, &b);
	*ba = qt_rdma_backend_new(&fake_conn, a, NULL);
	*bb = qt_rdma_backend_new(&fake_conn, b, NULL);
	if (!*ba || !*bb)
		abort();
}

#endif
