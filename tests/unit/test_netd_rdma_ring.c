/* Tests for the RDMA backend's ring and credit protocol
 * (services/netd/transport_rdma_ring.c) over the in-memory fake device of
 * netd_rdma_fake.h: data integrity both ways at once with tiny rings and
 * queues (every credit runs out again and again, and the fake device fails
 * the test if a write ever finds no RECV posted), a bounded number of
 * doorbells, hostile immediates, the verbs layer's "no device" probe. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "netd_rdma_fake.h"
#include "services/netd/transport.h"
#include "services/netd/transport_rdma.h"

static uint8_t pattern(uint64_t i, uint32_t seed)
{
	uint64_t x = (i + seed) * 0x9e3779b97f4a7c15ULL;
	return (uint8_t)(x >> 56);
}

struct side {
	struct fake_ep *ep;
	struct qt_rring r;
	uint64_t sent, rcvd, total;
	uint32_t seed_tx, seed_rx;
};

static void side_init(struct side *s, struct fake_ep *ep, uint32_t recv_depth)
{
	struct qt_rring_params p = {
	    .sbuf = ep->sbuf,
	    .rbuf = ep->rbuf,
	    .size = ep->size,
	    .send_depth = ep->send_depth,
	    .peer_recv_depth = ep->peer->recv_depth,
	};
	assert_int_equal(qt_rring_init(&s->r, &fake_work, ep, &p, recv_depth), 0);
	s->ep = ep;
}

/* Push what fits, read what came, with chunk sizes that never line up
 * with the ring. */
static void step(struct side *s, size_t chunk)
{
	uint8_t buf[9000];
	if (chunk > sizeof(buf))
		chunk = sizeof(buf);
	while (s->sent < s->total) {
		size_t n = chunk;
		if (n > s->total - s->sent)
			n = (size_t)(s->total - s->sent);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(s->sent + i, s->seed_tx);
		ssize_t r = qt_rring_send(&s->r, buf, n);
		if (r == -EAGAIN)
			break;
		assert_true(r > 0);
		s->sent += (uint64_t)r;
	}
	assert_int_equal(qt_rring_process(&s->r), 0);
	for (;;) {
		ssize_t r = qt_rring_recv(&s->r, buf, chunk);
		if (r == -EAGAIN)
			break;
		assert_true(r > 0);
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(s->rcvd + (uint64_t)i, s->seed_rx))
				fail_msg("byte %" PRIu64 " differs", s->rcvd + (uint64_t)i);
		s->rcvd += (uint64_t)r;
	}
	assert_int_equal(qt_rring_process(&s->r), 0);
}

static void run_pair(uint32_t size, uint32_t depth, uint64_t bytes, size_t chunk_a, size_t chunk_b)
{
	struct fake_ep *a, *b;
	fake_pair(size, depth, &a, &b);
	struct side sa = {.total = bytes, .seed_tx = 1, .seed_rx = 2};
	struct side sb = {.total = bytes, .seed_tx = 2, .seed_rx = 1};
	side_init(&sa, a, depth);
	side_init(&sb, b, depth);
	unsigned idle = 0;
	while (sa.rcvd < bytes || sb.rcvd < bytes) {
		uint64_t before = sa.rcvd + sb.rcvd + sa.sent + sb.sent;
		step(&sa, chunk_a);
		step(&sb, chunk_b);
		if (sa.rcvd + sb.rcvd + sa.sent + sb.sent == before) {
			if (++idle > 4)
				fail_msg("stalled: a sent %" PRIu64 " got %" PRIu64
					 ", b sent %" PRIu64 " got %" PRIu64
					 " (a: peer_recvs %u inflight %u; b: "
					 "peer_recvs %u inflight %u)",
					 sa.sent, sa.rcvd, sb.sent, sb.rcvd, sa.r.peer_recvs,
					 sa.r.inflight, sb.r.peer_recvs, sb.r.inflight);
		} else {
			idle = 0;
		}
	}
	assert_false(a->rnr);
	assert_false(b->rnr);
	/* Doorbells are rationed: at most one per write that came in (each
	 * needs a quarter ring consumed or half the RECVs re-posted), so a
	 * doorbell answering a doorbell dies out instead of ping-ponging. */
	assert_true(sa.r.doorbells_sent <= sb.r.writes_posted);
	assert_true(sb.r.doorbells_sent <= sa.r.writes_posted);
	print_message("  ring %u depth %u: %" PRIu64 "/%" PRIu64 " writes, %" PRIu64 "/%" PRIu64
		      " of them doorbells\n",
		      size, depth, sa.r.writes_posted, sb.r.writes_posted, sa.r.doorbells_sent,
		      sb.r.doorbells_sent);
	fake_destroy(a);
	fake_destroy(b);
}

static void test_both_ways_small_ring(void **state)
{
	(void)state;
	run_pair(4096, 4, 3u << 20, 1000, 777);
}

static void test_both_ways_deeper(void **state)
{
	(void)state;
	run_pair(65536, 16, 8u << 20, 8999, 64);
	run_pair(4096, QT_RRING_DEPTH_MAX, 1u << 20, 4096, 1);
}

static void test_one_way(void **state)
{
	(void)state;
	struct fake_ep *a, *b;
	fake_pair(8192, 4, &a, &b);
	struct side sa = {.total = 5u << 20, .seed_tx = 7};
	struct side sb = {.total = 0, .seed_rx = 7};
	side_init(&sa, a, 4);
	side_init(&sb, b, 4);
	unsigned rounds = 0;
	while (sb.rcvd < sa.total) {
		step(&sa, 3000);
		step(&sb, 5000);
		assert_true(++rounds < 100000);
	}
	assert_false(a->rnr || b->rnr);
	fake_destroy(a);
	fake_destroy(b);
}

/* A sender is held at exactly the ring's size while nothing is read. */
static void test_ring_full_backpressure(void **state)
{
	(void)state;
	struct fake_ep *a, *b;
	fake_pair(4096, 64, &a, &b);
	struct side sa = {0}, sb = {0};
	side_init(&sa, a, 64);
	side_init(&sb, b, 64);
	uint8_t buf[1000];
	memset(buf, 0x5a, sizeof(buf));
	uint64_t sent = 0;
	for (int i = 0; i < 100; i++) {
		ssize_t r = qt_rring_send(&sa.r, buf, sizeof(buf));
		if (r > 0)
			sent += (uint64_t)r;
		assert_int_equal(qt_rring_process(&sa.r), 0);
		assert_int_equal(qt_rring_process(&sb.r), 0);
	}
	assert_int_equal(sent, 4096);
	assert_int_equal(qt_rring_readable(&sb.r), 4096);
	assert_int_equal(qt_rring_send(&sa.r, buf, 1), -EAGAIN);
	/* Reading a quarter rings the doorbell; the sender may go on. */
	assert_int_equal(qt_rring_recv(&sb.r, buf, 1000), 1000);
	assert_int_equal(qt_rring_process(&sa.r), 0);
	assert_int_equal(qt_rring_send(&sa.r, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(qt_rring_recv(&sb.r, buf, 24), 24);
	assert_int_equal(qt_rring_process(&sa.r), 0);
	assert_int_equal(qt_rring_send(&sa.r, buf, sizeof(buf)), 1000);
	fake_destroy(a);
	fake_destroy(b);
}

/* A compromised peer's immediates: each breaks the ring for good. */
static void hostile(uint32_t imm, uint64_t preload, const char *needle)
{
	struct fake_ep *a, *b;
	fake_pair(4096, 8, &a, &b);
	struct side sa = {0}, sb = {0};
	side_init(&sa, a, 8);
	side_init(&sb, b, 8);
	if (preload) {
		uint8_t buf[4096] = {0};
		assert_int_equal(qt_rring_send(&sb.r, buf, preload), (ssize_t)preload);
		assert_int_equal(qt_rring_process(&sb.r), 0);
	}
	/* The peer (b) posts a write whose immediate lies. */
	assert_int_equal(fake_post_write_imm(b, 0, 0, 0, imm), 0);
	assert_int_equal(qt_rring_process(&sa.r), -EPROTO);
	assert_non_null(strstr(sa.r.err.msg, needle));
	/* Sticky. */
	assert_int_equal(qt_rring_process(&sa.r), -EPROTO);
	assert_int_equal(qt_rring_send(&sa.r, "x", 1), -EPROTO);
	uint8_t c;
	ssize_t got = qt_rring_recv(&sa.r, &c, 1);
	assert_true(got == -EPROTO || got == 1);
	fake_destroy(a);
	fake_destroy(b);
}

static void test_hostile_immediates(void **state)
{
	(void)state;
	hostile(0, 0, "wrote 0 bytes");		     /* empty data write */
	hostile(4097, 0, "wrote 4097 bytes");	     /* more than the ring */
	hostile(100, 4000, "wrote 100 bytes");	     /* more than is free */
	hostile(QT_IMM_DOORBELL | 1, 0, "consumed"); /* consumed what we never sent */
	hostile(QT_IMM_DOORBELL | 5u << QT_IMM_RECVS_SHIFT, 0, "RECVs back");
}

static void test_init_rejects_bad_geometry(void **state)
{
	(void)state;
	struct fake_ep *a, *b;
	fake_pair(4096, 8, &a, &b);
	struct qt_rring r;
	struct qt_rring_params p = {a->sbuf, a->rbuf, 4096, 8, 8};
	assert_int_equal(qt_rring_init(&r, &fake_work, a, &p, 8), 0);
	p.size = 3000;
	assert_int_equal(qt_rring_init(&r, &fake_work, a, &p, 8), -EINVAL);
	p.size = 4096;
	assert_int_equal(qt_rring_init(&r, &fake_work, a, &p, 2), -EINVAL);
	p.peer_recv_depth = 5000;
	assert_int_equal(qt_rring_init(&r, &fake_work, a, &p, 8), -EINVAL);
	fake_destroy(a);
	fake_destroy(b);
}

/* The backend over a fake pair ends the stream after the peer goes, and
 * delivers what arrived first. */
static void test_backend_eof_after_data(void **state)
{
	(void)state;
	struct qt_backend *ba, *bb;
	struct qerr err = {0};
	fake_backends(4096, 8, &ba, &bb);
	assert_int_equal(ba->ops->connect_step(ba, &err), 1);
	assert_int_equal(bb->ops->connect_step(bb, &err), 1);
	assert_string_equal(ba->ops->name, "rdma");
	assert_int_equal(ba->ops->send(ba, "hello", 5, &err), 5);
	bb->ops->destroy(bb);
	uint8_t buf[16];
	assert_int_equal(ba->ops->process(ba, &err), 0);
	/* a's own data went nowhere, but nothing breaks before EOF. */
	assert_int_equal(ba->ops->recv(ba, buf, sizeof(buf), &err), 0);
	ba->ops->destroy(ba);

	fake_backends(4096, 8, &ba, &bb);
	assert_int_equal(ba->ops->connect_step(ba, &err), 1);
	assert_int_equal(bb->ops->connect_step(bb, &err), 1);
	assert_int_equal(ba->ops->send(ba, "hello", 5, &err), 5);
	ba->ops->destroy(ba);
	assert_int_equal(bb->ops->process(bb, &err), 0);
	assert_int_equal(bb->ops->recv(bb, buf, sizeof(buf), &err), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(bb->ops->recv(bb, buf, sizeof(buf), &err), 0);
	bb->ops->destroy(bb);
}

/* No device here: the probe must say so in words, and the backend choice
 * fall back to TCP (or refuse when RDMA was demanded). */
static void test_probe_without_device(void **state)
{
	(void)state;
	struct stat st;
	char msg[512];
	if (stat("/sys/class/infiniband", &st) == 0) {
		int r = qt_rdma_probe(msg, sizeof(msg));
		print_message("(this machine has /sys/class/infiniband: probe says %d, %s)\n", r,
			      msg);
		skip();
	}
	assert_int_equal(qt_rdma_probe(msg, sizeof(msg)), 0);
	assert_string_equal(msg, "no RDMA device (/sys/class/infiniband does not exist)");
	assert_int_equal(qt_backend_select(QT_BACKEND_AUTO, msg, sizeof(msg)), QT_BACKEND_TCP);
	assert_string_equal(msg, "no RDMA device (/sys/class/infiniband does not exist): using "
				 "the TCP transport");
	assert_int_equal(qt_backend_select(QT_BACKEND_RDMA, msg, sizeof(msg)), -ENODEV);
	assert_int_equal(qt_backend_select(QT_BACKEND_TCP, msg, sizeof(msg)), QT_BACKEND_TCP);
}

/* Without a device the verbs layer fails cleanly (no crash, no leak under
 * ASan), whatever librdmacm says. */
static void test_verbs_without_device(void **state)
{
	(void)state;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(7471)};
	sin.sin_addr.s_addr = htonl(0x7f000001);
	struct qerr err = {0};
	struct qt_backend *b = qt_rdma_dial((struct sockaddr *)&sin, sizeof(sin), NULL, &err);
	if (b) {
		/* rdma_cm may accept the request and fail later: process must
		 * say so rather than hang. */
		struct qerr e2 = {0};
		int r = b->ops->process(b, &e2);
		print_message("(rdma dial without a device: process %d %s)\n", r, e2.msg);
		b->ops->destroy(b);
	} else {
		assert_true(err.code != 0);
		assert_true(err.msg[0] != '\0');
	}
	qerr_clear(&err);
	struct qt_listener *l = qt_rdma_listen((struct sockaddr *)&sin, sizeof(sin), NULL, &err);
	if (l)
		qt_listener_free(l);
	else
		assert_true(err.code != 0);
	struct qt_rdma_params bad = {.ring_size = 3000};
	qerr_clear(&err);
	assert_null(qt_rdma_dial((struct sockaddr *)&sin, sizeof(sin), &bad, &err));
	assert_int_equal(err.code, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_both_ways_small_ring),
	    cmocka_unit_test(test_both_ways_deeper),
	    cmocka_unit_test(test_one_way),
	    cmocka_unit_test(test_ring_full_backpressure),
	    cmocka_unit_test(test_hostile_immediates),
	    cmocka_unit_test(test_init_rejects_bad_geometry),
	    cmocka_unit_test(test_backend_eof_after_data),
	    cmocka_unit_test(test_probe_without_device),
	    cmocka_unit_test(test_verbs_without_device),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
