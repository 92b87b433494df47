/* Tests for the shared-memory ring pair (libcommon/ring.h): the protocol
 * with honest peers, wrap-around, the wake-up protocol across processes,
 * and hostile peers that scribble over the shared memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/ring.h"

#define OP_REQ	1
#define OP_DONE 2

/* 64 bytes: header, a sequence number, a checksum over both, padding. */
struct ent {
	struct ring_entry_hdr hdr;
	uint64_t seq;
	uint64_t sum;
	uint64_t pad[4];
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static struct ent make_ent(uint16_t op, uint64_t seq)
{
	struct ent e;
	memset(&e, 0, sizeof(e));
	e.hdr.opcode = op;
	e.hdr.len = sizeof(e) - sizeof(e.hdr);
	e.hdr.user_data = seq ^ 0x5555;
	e.seq = seq;
	for (int i = 0; i < 4; i++)
		e.pad[i] = mix(seq + (uint64_t)i);
	e.sum = mix(seq ^ e.hdr.user_data ^ op) ^ e.pad[0] ^ e.pad[3];
	return e;
}

static bool ent_ok(const struct ent *e)
{
	return (e->hdr.opcode == OP_REQ || e->hdr.opcode == OP_DONE) &&
	       e->hdr.len == sizeof(*e) - sizeof(e->hdr) && e->pad[0] == mix(e->seq) &&
	       e->pad[3] == mix(e->seq + 3) &&
	       e->sum == (mix(e->seq ^ e->hdr.user_data ^ e->hdr.opcode) ^ e->pad[0] ^ e->pad[3]);
}

static int validations;

static bool validate(const void *entry, void *ctx)
{
	(void)ctx;
	validations++;
	return ent_ok(entry);
}

static struct ring_params params(uint32_t entries, uint32_t first)
{
	return (struct ring_params){
	    .entries = entries, .entry_size = sizeof(struct ent), .first_index = first};
}

/* A server that created the pair and a submitter attached to it, both in
 * this process (each with its own mapping). */
static void make_pair(struct ring *srv, struct ring *sub, uint32_t entries, uint32_t first)
{
	struct ring_params p = params(entries, first);
	assert_int_equal(ring_create(srv, RING_SERVER, &p), 0);
	assert_int_equal(ring_attach(sub, RING_SUBMITTER, srv->memfd, srv->sq_efd, srv->cq_efd), 0);
}

/* What a hostile peer sees: its own mapping of the whole region. */
static unsigned char *peer_map(const struct ring *r)
{
	void *m = mmap(NULL, r->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	assert_true(m != MAP_FAILED);
	return m;
}

static void put32(unsigned char *m, size_t off, uint32_t v)
{
	__atomic_store_n((uint32_t *)(m + off), v, __ATOMIC_RELEASE);
}

static uint32_t get32(const unsigned char *m, size_t off)
{
	return __atomic_load_n((const uint32_t *)(m + off), __ATOMIC_ACQUIRE);
}

static unsigned char *sq_slot(unsigned char *m, uint32_t entries, uint32_t idx)
{
	return m + RING_OFF_SQ_ENTRIES + (size_t)(idx & (entries - 1)) * sizeof(struct ent);
}

/* ---- parameters and basic behaviour ---- */

static void test_create_rejects_bad_params(void **state)
{
	(void)state;
	struct ring r;
	struct ring_params bad[] = {
	    {.entries = 0, .entry_size = 64},
	    {.entries = 1, .entry_size = 64},
	    {.entries = 12, .entry_size = 64},
	    {.entries = RING_ENTRIES_MAX * 2, .entry_size = 64},
	    {.entries = 8, .entry_size = 8},
	    {.entries = 8, .entry_size = 20},
	    {.entries = 8, .entry_size = RING_ENTRY_SIZE_MAX + 8},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ring_create(&r, RING_SERVER, &bad[i]), -EINVAL);
	assert_int_equal(ring_region_size(12, 64), 0);
	assert_int_equal(ring_region_size(8, 64), 4096);
	assert_int_equal(ring_region_size(64, 64), RING_OFF_SQ_ENTRIES + 2 * 64 * 64 + 3584);

	struct ring_params ok = params(8, 0);
	assert_int_equal(ring_create(&r, RING_SERVER, &ok), 0);
	int seals = fcntl(r.memfd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	assert_int_equal(ftruncate(r.memfd, 0), -1);
	ring_destroy(&r);
	ring_destroy(&r); /* idempotent */
}

static void test_push_pop_both_ways(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);

	for (uint64_t i = 0; i < 5; i++) {
		struct ent e = make_ent(OP_REQ, i);
		assert_int_equal(ring_sq_push(&sub, &e), 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		struct ent got, want = make_ent(OP_REQ, i);
		validations = 0;
		assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
		assert_int_equal(validations, 1);
		assert_memory_equal(&got, &want, sizeof(got));
		struct ent done = make_ent(OP_DONE, got.seq);
		assert_int_equal(ring_cq_push(&srv, &done), 0);
	}
	struct ent got;
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EAGAIN);
	for (uint64_t i = 0; i < 5; i++) {
		assert_int_equal(ring_cq_pop(&sub, &got, validate, NULL), 0);
		assert_int_equal(got.seq, i);
		assert_int_equal(got.hdr.opcode, OP_DONE);
	}
	assert_int_equal(ring_cq_pop(&sub, &got, NULL, NULL), -EAGAIN);

	/* Each side may only use its own ends. */
	struct ent e = make_ent(OP_REQ, 0);
	assert_int_equal(ring_cq_push(&sub, &e), -EINVAL);
	assert_int_equal(ring_sq_push(&srv, &e), -EINVAL);
	assert_int_equal(ring_sq_pop(&sub, &got, NULL, NULL), -EINVAL);
	assert_int_equal(ring_cq_pop(&srv, &got, NULL, NULL), -EINVAL);

	/* A producer never publishes an entry whose len overruns it. */
	e.hdr.len = sizeof(e) - sizeof(e.hdr) + 1;
	assert_int_equal(ring_sq_push(&sub, &e), -EINVAL);
	assert_int_equal(ring_sq_pop(&srv, &got, NULL, NULL), -EAGAIN);

	ring_destroy(&sub);
	ring_destroy(&srv);
}

static void test_full_and_empty(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 4, 0);
	struct ent e, got;

	for (uint64_t i = 0; i < 4; i++) {
		e = make_ent(OP_REQ, i);
		assert_int_equal(ring_sq_push(&sub, &e), 0);
	}
	e = make_ent(OP_REQ, 99);
	assert_int_equal(ring_sq_push(&sub, &e), -EAGAIN);
	assert_int_equal(ring_wait_prepare(&srv), 4);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_int_equal(got.seq, 0);
	/* One slot freed: exactly one more fits. */
	e = make_ent(OP_REQ, 4);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_sq_push(&sub, &e), -EAGAIN);
	for (uint64_t i = 1; i <= 4; i++) {
		assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
		assert_int_equal(got.seq, i);
	}
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EAGAIN);
	assert_false(srv.broken);
	assert_false(sub.broken);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* Free-running indices cross UINT32_MAX -> 0 in the middle of the run, with
 * the queue at every fill level; order and contents must survive. */
static void test_wraparound(void **state)
{
	(void)state;
	const uint32_t first = UINT32_MAX - 9;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, first);
	unsigned char *m = peer_map(&srv);
	assert_int_equal(get32(m, RING_OFF_SQ_TAIL), first);

	uint64_t pushed = 0, popped = 0;
	for (int round = 0; round < 40; round++) {
		int burst = round % 9; /* 0..8: empty up to full */
		for (int i = 0; i < burst; i++) {
			struct ent e = make_ent(OP_REQ, pushed);
			int ret = ring_sq_push(&sub, &e);
			if (ret == -EAGAIN)
				break;
			assert_int_equal(ret, 0);
			pushed++;
		}
		assert_true(pushed - popped <= 8);
		int drain = (round % 3 == 0) ? 8 : 3;
		for (int i = 0; i < drain; i++) {
			struct ent got;
			int ret = ring_sq_pop(&srv, &got, validate, NULL);
			if (ret == -EAGAIN) {
				assert_int_equal(pushed, popped);
				break;
			}
			assert_int_equal(ret, 0);
			assert_int_equal(got.seq, popped);
			popped++;
		}
	}
	assert_true(popped > 20);
	/* The shared tail really did wrap, and to the expected value. */
	assert_int_equal(get32(m, RING_OFF_SQ_TAIL), (uint32_t)(first + pushed));
	assert_true(get32(m, RING_OFF_SQ_TAIL) < 1000);
	assert_int_equal(get32(m, RING_OFF_SQ_HEAD), (uint32_t)(first + popped));
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* ---- wake-ups ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

static void test_wakeup_only_when_asked(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	struct ent e = make_ent(OP_REQ, 0), got;

	/* The server is busy (has not armed): pushing never writes the fd. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ring_sq_push(&sub, &e), 0);
		assert_int_equal(ring_notify_peer(&sub), 0);
	}
	assert_false(readable(ring_wait_fd(&srv)));
	/* Entries are there: prepare refuses to arm. */
	assert_int_equal(ring_wait_prepare(&srv), 3);
	assert_int_equal(ring_notify_peer(&sub), 0);
	while (ring_sq_pop(&srv, &got, NULL, NULL) == 0)
		;
	/* Empty: armed; the next notify writes the eventfd, once asked. */
	assert_int_equal(ring_wait_prepare(&srv), 0);
	assert_int_equal(ring_wait(&srv, 0), 0); /* timeout: nothing came */
	assert_int_equal(ring_wait_prepare(&srv), 0);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_notify_peer(&sub), 1);
	assert_true(readable(ring_wait_fd(&srv)));
	assert_int_equal(ring_wait(&srv, 1000), 1);
	/* Entries were there: ring_wait returned at once and disarmed (the
	 * eventfd still counts; finish drains it). */
	assert_int_equal(ring_notify_peer(&sub), 0);
	ring_wait_finish(&srv);
	assert_false(readable(ring_wait_fd(&srv)));

	/* A stale wake-up (flag seen, then entries found on re-check) is
	 * absorbed by ring_wait rather than reported as entries or timeout. */
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_int_equal(ring_wait_prepare(&srv), 0);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_notify_peer(&sub), 1);
	assert_int_equal(ring_wait_prepare(&srv), 1); /* disarms; the fd keeps its count */
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_true(readable(ring_wait_fd(&srv)));
	double t0 = now_s();
	assert_int_equal(ring_wait(&srv, 100), 0);
	assert_true(now_s() - t0 >= 0.09); /* slept out the timeout */
	assert_false(readable(ring_wait_fd(&srv)));

	/* Same in the other direction. */
	assert_int_equal(ring_wait_prepare(&sub), 0);
	struct ent d = make_ent(OP_DONE, 7);
	assert_int_equal(ring_cq_push(&srv, &d), 0);
	assert_int_equal(ring_notify_peer(&srv), 1);
	assert_int_equal(ring_wait(&sub, 1000), 1);
	assert_int_equal(ring_cq_pop(&sub, &got, validate, NULL), 0);
	assert_int_equal(got.seq, 7);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* A peer that clears O_NONBLOCK on the shared eventfd, or saturates its
 * counter, would make our notify block: refused as a broken ring. */
static void test_notify_refuses_tampered_eventfd(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	struct ent e = make_ent(OP_REQ, 0);

	assert_int_equal(ring_wait_prepare(&srv), 0);
	int fl = fcntl(srv.sq_efd, F_GETFL);
	assert_int_equal(fcntl(srv.sq_efd, F_SETFL, fl & ~O_NONBLOCK), 0);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_notify_peer(&sub), -EPROTO);
	assert_int_equal(ring_sq_push(&sub, &e), -EPROTO);
	ring_destroy(&sub);
	ring_destroy(&srv);

	make_pair(&srv, &sub, 8, 0);
	assert_int_equal(ring_wait_prepare(&sub), 0);
	uint64_t big = 0xfffffffffffffffeULL;
	assert_int_equal(write(srv.cq_efd, &big, sizeof(big)), (ssize_t)sizeof(big));
	struct ent d = make_ent(OP_DONE, 0);
	assert_int_equal(ring_cq_push(&srv, &d), 0);
	assert_int_equal(ring_notify_peer(&srv), -EPROTO);
	/* The waiter drains without blocking even with O_NONBLOCK cleared. */
	fl = fcntl(sub.cq_efd, F_GETFL);
	assert_int_equal(fcntl(sub.cq_efd, F_SETFL, fl & ~O_NONBLOCK), 0);
	ring_wait_finish(&sub);
	ring_wait_finish(&sub); /* counter now 0: must not block */
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* ---- two processes ---- */

static int send_fds(int sock, const int *fds, int n)
{
	char byte = 'R';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fds(int sock, int *fds, int n)
{
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u)};
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(n * sizeof(int)))
		return -1;
	memcpy(fds, CMSG_DATA(c), n * sizeof(int));
	return 0;
}

#define STRESS_N       1000000u
#define STRESS_ENTRIES 256u
#define WAIT_MS	       3000 /* a lost wake-up shows up as this timeout */

/* The child: attach from fds received over SCM_RIGHTS, submit STRESS_N
 * requests with at most STRESS_ENTRIES in flight, and check that every
 * completion comes back in order.  Returns the exit status. */
static int stress_submitter(int sock)
{
	int fds[3];
	struct ring r;
	if (recv_fds(sock, fds, 3) < 0)
		return 10;
	if (ring_attach(&r, RING_SUBMITTER, fds[0], fds[1], fds[2]) < 0)
		return 11;
	close(fds[0]);
	close(fds[1]);
	close(fds[2]);

	uint64_t sent = 0, done = 0;
	while (done < STRESS_N) {
		bool pushed = false;
		while (sent < STRESS_N && sent - done < STRESS_ENTRIES) {
			struct ent e = make_ent(OP_REQ, sent);
			if (ring_sq_push(&r, &e) != 0)
				return 12; /* in-flight <= entries: never full */
			sent++;
			pushed = true;
		}
		if (pushed && ring_notify_peer(&r) < 0)
			return 13;
		struct ent c;
		int ret;
		while ((ret = ring_cq_pop(&r, &c, validate, NULL)) == 0) {
			if (c.seq != done || c.hdr.user_data != (done ^ 0x5555) ||
			    c.hdr.opcode != OP_DONE)
				return 14;
			done++;
		}
		if (ret != -EAGAIN)
			return 15;
		if (done < STRESS_N && (sent == STRESS_N || sent - done == STRESS_ENTRIES)) {
			ret = ring_wait(&r, WAIT_MS);
			if (ret == 0)
				return 16; /* lost wake-up */
			if (ret < 0 && ret != -EINTR)
				return 17;
		}
	}
	ring_destroy(&r);
	return 0;
}

static void test_two_process_stress(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		alarm(60);
		_exit(stress_submitter(sv[1]));
	}
	close(sv[1]);

	struct ring srv;
	struct ring_params p = {.entries = STRESS_ENTRIES, .entry_size = sizeof(struct ent)};
	assert_int_equal(ring_create(&srv, RING_SERVER, &p), 0);
	int fds[3] = {srv.memfd, srv.sq_efd, srv.cq_efd};
	assert_int_equal(send_fds(sv[0], fds, 3), 0);
	close(sv[0]);

	double t0 = now_s();
	uint64_t got_n = 0, bad = 0, sleeps = 0, timeouts = 0;
	while (got_n < STRESS_N && !timeouts) {
		struct ent e;
		int ret, batch = 0;
		while ((ret = ring_sq_pop(&srv, &e, validate, NULL)) == 0) {
			if (e.seq != got_n || e.hdr.opcode != OP_REQ)
				bad++;
			got_n++;
			struct ent c = make_ent(OP_DONE, e.seq);
			if (ring_cq_push(&srv, &c) != 0)
				bad++;
			if (++batch == 32) {
				ring_notify_peer(&srv);
				batch = 0;
			}
		}
		if (ret != -EAGAIN)
			bad++;
		ring_notify_peer(&srv);
		if (got_n < STRESS_N) {
			sleeps++;
			ret = ring_wait(&srv, WAIT_MS);
			if (ret == 0)
				timeouts++;
		}
	}
	double dt = now_s() - t0;
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	print_message("ring stress: %u entries round trip in %.3f s = %.0f entries/s "
		      "(%u-entry queues, %zu-byte entries, %llu server sleeps)\n",
		      STRESS_N, dt, STRESS_N / dt, STRESS_ENTRIES, sizeof(struct ent),
		      (unsigned long long)sleeps);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(timeouts, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(got_n, STRESS_N);
	assert_false(srv.broken);
	ring_destroy(&srv);
}

/* ---- hostile producers and consumers ---- */

static void test_hostile_tail_far_ahead(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 100);
	unsigned char *m = peer_map(&srv);
	struct ent got;

	put32(m, RING_OFF_SQ_TAIL, 100 + 9); /* capacity + 1 */
	assert_int_equal(ring_sq_pop(&srv, &got, NULL, NULL), -EPROTO);
	assert_true(srv.broken);
	/* Sticky, for every call, even after the peer "repairs" the tail. */
	put32(m, RING_OFF_SQ_TAIL, 101);
	assert_int_equal(ring_sq_pop(&srv, &got, NULL, NULL), -EPROTO);
	assert_int_equal(ring_wait_prepare(&srv), -EPROTO);
	assert_int_equal(ring_wait(&srv, 0), -EPROTO);
	struct ent d = make_ent(OP_DONE, 0);
	assert_int_equal(ring_cq_push(&srv, &d), -EPROTO);
	assert_int_equal(ring_notify_peer(&srv), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);

	/* Far beyond, half the index space away. */
	make_pair(&srv, &sub, 8, 0);
	m = peer_map(&srv);
	put32(m, RING_OFF_SQ_TAIL, 0x80000000u);
	assert_int_equal(ring_wait_prepare(&srv), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

static void test_hostile_tail_behind_head(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 5);
	unsigned char *m = peer_map(&srv);
	struct ent e = make_ent(OP_REQ, 0), got;

	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	put32(m, RING_OFF_SQ_TAIL, 5); /* one behind the server's head (6) */
	assert_int_equal(ring_sq_pop(&srv, &got, NULL, NULL), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);

	/* Behind across the wrap: head 1, tail UINT32_MAX. */
	make_pair(&srv, &sub, 8, UINT32_MAX);
	m = peer_map(&srv);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_sq_push(&sub, &e), 0);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_int_equal(get32(m, RING_OFF_SQ_HEAD), 1);
	put32(m, RING_OFF_SQ_TAIL, UINT32_MAX);
	assert_int_equal(ring_wait_prepare(&srv), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* The consumer's own index is private: a peer rewriting it in shared memory
 * does not make the consumer skip or replay entries. */
static void test_hostile_rewrites_consumer_head(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	unsigned char *m = peer_map(&srv);
	struct ent e, got;

	for (uint64_t i = 0; i < 4; i++) {
		e = make_ent(OP_REQ, i);
		assert_int_equal(ring_sq_push(&sub, &e), 0);
	}
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	put32(m, RING_OFF_SQ_HEAD, 3);
	for (uint64_t i = 1; i < 4; i++) {
		assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
		assert_int_equal(got.seq, i);
	}
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EAGAIN);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* A hostile consumer moves its head past our tail, or too far behind it:
 * the producer refuses to follow. */
static void test_hostile_consumer_head(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 4, 0);
	unsigned char *m = peer_map(&srv);
	struct ent d = make_ent(OP_DONE, 0);

	for (int i = 0; i < 4; i++)
		assert_int_equal(ring_cq_push(&srv, &d), 0);
	put32(m, RING_OFF_CQ_HEAD, 5); /* past the tail (4) */
	assert_int_equal(ring_cq_push(&srv, &d), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);

	make_pair(&srv, &sub, 4, 0);
	m = peer_map(&srv);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ring_cq_push(&srv, &d), 0);
	put32(m, RING_OFF_CQ_HEAD, (uint32_t)-1); /* 5 behind the tail */
	assert_int_equal(ring_cq_push(&srv, &d), -EPROTO);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* Garbage entries are consumed and reported one by one; the ring stays
 * usable and the next good entry comes through. */
static void test_hostile_garbage_entries(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	unsigned char *m = peer_map(&srv);
	struct ent got;

	struct ent bad_len = make_ent(OP_REQ, 1);
	bad_len.hdr.len = 0xffffffffu;
	struct ent just_over = make_ent(OP_REQ, 2);
	just_over.hdr.len = sizeof(struct ent) - sizeof(struct ring_entry_hdr) + 1;
	struct ent bad_op = make_ent(OP_REQ, 3);
	bad_op.hdr.opcode = 0xbeef;
	struct ent bad_sum = make_ent(OP_REQ, 4);
	bad_sum.sum ^= 1;
	struct ent good = make_ent(OP_REQ, 5);
	struct ent *script[] = {&bad_len, &just_over, &bad_op, &bad_sum, &good};
	for (uint32_t i = 0; i < 5; i++)
		memcpy(sq_slot(m, 8, i), script[i], sizeof(struct ent));
	put32(m, RING_OFF_SQ_TAIL, 5);

	/* bad len is rejected by the ring even without a validator */
	assert_int_equal(ring_sq_pop(&srv, &got, NULL, NULL), -EBADMSG);
	assert_int_equal(got.hdr.user_data, bad_len.hdr.user_data);
	validations = 0;
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EBADMSG);
	assert_int_equal(validations, 0); /* the len check comes first */
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EBADMSG);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EBADMSG);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
	assert_memory_equal(&got, &good, sizeof(got));
	assert_false(srv.broken);
	assert_int_equal(get32(m, RING_OFF_SQ_HEAD), 5);

	/* A full ring of garbage (tail = head + capacity is in range). */
	for (uint32_t i = 5; i < 13; i++)
		memset(sq_slot(m, 8, i), 0xa5, sizeof(struct ent));
	put32(m, RING_OFF_SQ_TAIL, 13);
	for (int i = 0; i < 8; i++)
		assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EBADMSG);
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EAGAIN);
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* The peer rewrites the header after attach: our geometry is our own copy,
 * so nothing reads outside the region (ASan/SEGV would catch it). */
static void test_hostile_header_rewrite_after_attach(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	unsigned char *m = peer_map(&srv);
	put32(m, RING_OFF_ENTRIES, 1u << 30);
	put32(m, RING_OFF_ENTRY_SIZE, 1u << 20);
	put32(m, RING_OFF_MAGIC, 0);
	for (uint64_t i = 0; i < 20; i++) {
		struct ent e = make_ent(OP_REQ, i), got;
		assert_int_equal(ring_sq_push(&sub, &e), 0);
		assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), 0);
		assert_int_equal(got.seq, i);
	}
	munmap(m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* An entry rewritten while it is being consumed: what the validator
 * accepted must be exactly what pop returns (one read of shared memory). */
struct flipper {
	unsigned char *m;
	uint32_t entries;
	atomic_bool stop;
	uint64_t flips;
};

static void store_words(unsigned char *slot, const struct ent *e)
{
	uint64_t w[sizeof(*e) / 8];
	memcpy(w, e, sizeof(w));
	for (size_t i = 0; i < sizeof(w) / 8; i++)
		__atomic_store_n((uint64_t *)slot + i, w[i], __ATOMIC_RELAXED);
}

static void *flipper_run(void *arg)
{
	struct flipper *f = arg;
	uint64_t n = 0;
	while (!atomic_load(&f->stop)) {
		uint32_t head = get32(f->m, RING_OFF_SQ_HEAD);
		unsigned char *slot = sq_slot(f->m, f->entries, head);
		struct ent a = make_ent(OP_REQ, n), b = make_ent(OP_REQ, n + 1);
		b.hdr.len = 0x7fffffff;
		b.sum = 0;
		store_words(slot, &a);
		put32(f->m, RING_OFF_SQ_TAIL, head + 1);
		/* Keep rewriting this slot until it is consumed. */
		for (int k = 0; get32(f->m, RING_OFF_SQ_HEAD) == head && !atomic_load(&f->stop);
		     k++) {
			store_words(slot, (k & 1) ? &a : &b);
			a = make_ent(OP_REQ, n + 2 + (uint64_t)k);
		}
		n += 1000;
		f->flips++;
	}
	return NULL;
}

static void test_hostile_entry_changes_during_pop(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 8, 0);
	struct flipper f = {.m = peer_map(&srv), .entries = 8};
	atomic_init(&f.stop, false);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, flipper_run, &f), 0);

	/* Counted, not timed, and yielding when empty: on a loaded machine the
	 * two threads may share one CPU. */
	int ok = 0, bad = 0;
	double end = now_s() + 5.0;
	while (ok + bad < 20000 && now_s() < end) {
		struct ent got;
		int ret = ring_sq_pop(&srv, &got, validate, NULL);
		if (ret == 0) {
			/* The validator passed on this very copy. */
			assert_true(ent_ok(&got));
			ok++;
		} else if (ret == -EBADMSG) {
			bad++;
		} else {
			assert_int_equal(ret, -EAGAIN);
			sched_yield();
		}
	}
	atomic_store(&f.stop, true);
	pthread_join(th, NULL);
	print_message("entry flipping: %d accepted, %d rejected, %llu rewrites\n", ok, bad,
		      (unsigned long long)f.flips);
	assert_true(ok + bad >= 1000);
	assert_false(srv.broken);
	munmap(f.m, srv.mem_size);
	ring_destroy(&sub);
	ring_destroy(&srv);
}

/* A separate hostile process writes random bytes over the indices and the
 * entries while we consume; we must only ever see the documented errors,
 * and a broken ring must stay broken. */
static void test_hostile_process_scribbles(void **state)
{
	(void)state;
	struct ring srv, sub;
	make_pair(&srv, &sub, 16, 0);
	ring_destroy(&sub);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char *m =
		    mmap(NULL, srv.mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, srv.memfd, 0);
		if (m == MAP_FAILED)
			_exit(1);
		uint64_t x = 0x9e3779b97f4a7c15ULL;
		uint32_t tail = 0;
		/* Go wild (out-of-range tails) once the consumer has eaten 64
		 * garbage entries, or after 3 s on a starved machine. */
		double start = now_s(), wild = 0;
		for (double t = start; !wild || t < wild + 0.2; t = now_s()) {
			if (!wild && ((get32(m, RING_OFF_SQ_HEAD) >= 64 && t > start + 0.2) ||
				      t > start + 3))
				wild = t;
			x = mix(x);
			uint32_t head = get32(m, RING_OFF_SQ_HEAD);
			size_t off;
			switch (x % 4) {
			case 0: /* a tail in range, so garbage entries get consumed:
				 * never behind the consumer, never > 16 ahead */
				tail += (uint32_t)(x >> 8) % (16 - (tail - head) + 1);
				put32(m, RING_OFF_SQ_TAIL, tail);
				break;
			case 1: /* random entry bytes */
				m[RING_OFF_SQ_ENTRIES + (x >> 16) % (16 * sizeof(struct ent))] =
				    (unsigned char)(x >> 40);
				break;
			case 2: /* a well-formed header over a random slot */
				store_words(sq_slot(m, 16, head + (uint32_t)(x >> 20) % 16),
					    &(struct ent){.hdr = {.opcode = OP_REQ, .len = 48}});
				break;
			default: /* header fields; wild tails in the last 0.2 s */
				off = ((x >> 24) % RING_OFF_SQ_ENTRIES) & ~(size_t)3;
				if ((off != RING_OFF_SQ_TAIL && off != RING_OFF_SQ_HEAD) || wild)
					put32(m, off, (uint32_t)(x >> 7));
			}
		}
		_exit(0);
	}

	int counts[4] = {0}; /* ok, EAGAIN, EBADMSG, EPROTO */
	double end = now_s() + 6.0;
	while (!srv.broken && now_s() < end) {
		struct ent got;
		int ret = ring_sq_pop(&srv, &got, validate, NULL);
		if (ret == 0) {
			assert_true(ent_ok(&got));
			counts[0]++;
		} else if (ret == -EAGAIN) {
			counts[1]++;
		} else if (ret == -EBADMSG) {
			counts[2]++;
		} else {
			assert_int_equal(ret, -EPROTO);
			assert_true(srv.broken);
			counts[3]++;
		}
	}
	/* Broken for good, whatever the scribbler does meanwhile. */
	struct ent got;
	assert_int_equal(ring_sq_pop(&srv, &got, validate, NULL), -EPROTO);
	assert_int_equal(ring_wait_prepare(&srv), -EPROTO);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	print_message("scribbler: ok %d, empty %d, bad entry %d, broken %d\n", counts[0], counts[1],
		      counts[2], counts[3]);
	assert_true(counts[2] >= 64);
	assert_int_equal(counts[3], 1);
	ring_destroy(&srv);
}

/* ---- attach validation ---- */

struct fake {
	int memfd, sq_efd, cq_efd;
	unsigned char *m;
	size_t size;
};

/* A well-formed region made by hand, that each test then spoils. */
static void fake_make(struct fake *f, uint32_t entries, uint32_t esize, size_t size)
{
	f->memfd = memfd_create("fake-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(f->memfd >= 0);
	f->size = size;
	assert_int_equal(ftruncate(f->memfd, (off_t)size), 0);
	f->m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_true(f->m != MAP_FAILED);
	uint64_t total = ring_region_size(entries, esize);
	put32(f->m, RING_OFF_MAGIC, RING_MAGIC);
	put32(f->m, RING_OFF_VERSION, RING_VERSION);
	put32(f->m, RING_OFF_ENTRIES, entries);
	put32(f->m, RING_OFF_ENTRY_SIZE, esize);
	memcpy(f->m + RING_OFF_SIZE, &total, 8);
	f->sq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->cq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(f->sq_efd >= 0 && f->cq_efd >= 0);
}

static void fake_seal(struct fake *f)
{
	assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 0);
}

static int fake_attach(struct fake *f)
{
	struct ring r;
	int ret = ring_attach(&r, RING_SERVER, f->memfd, f->sq_efd, f->cq_efd);
	if (ret == 0)
		ring_destroy(&r);
	munmap(f->m, f->size);
	close(f->memfd);
	close(f->sq_efd);
	close(f->cq_efd);
	return ret;
}

static void test_attach_validation(void **state)
{
	(void)state;
	struct fake f;
	const size_t good = ring_region_size(8, 64);

	fake_make(&f, 8, 64, good);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), 0); /* the control */

	fake_make(&f, 8, 64, good);
	put32(f.m, RING_OFF_MAGIC, 0x474e5252);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good);
	put32(f.m, RING_OFF_VERSION, 2);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* not a power of two */
	put32(f.m, RING_OFF_ENTRIES, 6);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* entries claim more than the fd holds */
	put32(f.m, RING_OFF_ENTRIES, 64);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* entry size not a multiple of 8 */
	put32(f.m, RING_OFF_ENTRY_SIZE, 60);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* header size field disagrees */
	uint64_t wrong = good * 2;
	memcpy(f.m + RING_OFF_SIZE, &wrong, 8);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 64, 64, good); /* the fd is smaller than the header says */
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good + 4096); /* ... or larger */
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, 4096);
	munmap(f.m, f.size);
	f.size = 256; /* too small for even the header */
	assert_int_equal(ftruncate(f.memfd, 256), 0);
	f.m = mmap(NULL, f.size, PROT_READ | PROT_WRITE, MAP_SHARED, f.memfd, 0);
	assert_true(f.m != MAP_FAILED);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* unsealed: could shrink under us */
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* sealed, but not against shrinking */
	assert_int_equal(fcntl(f.memfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL), 0);
	assert_int_equal(fake_attach(&f), -EINVAL);

	fake_make(&f, 8, 64, good); /* indices already out of range */
	put32(f.m, RING_OFF_SQ_TAIL, 9);
	fake_seal(&f);
	assert_int_equal(fake_attach(&f), -EPROTO);

	fake_make(&f, 8, 64, good); /* a pipe is not an eventfd */
	fake_seal(&f);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	close(f.cq_efd);
	f.cq_efd = p[1];
	assert_int_equal(fake_attach(&f), -EINVAL);
	close(p[0]);

	/* not a memfd at all */
	struct ring r;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	int efd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(ring_attach(&r, RING_SERVER, p[0], efd, efd), -EINVAL);
	assert_int_equal(ring_attach(&r, RING_SERVER, -1, efd, efd), -EBADF);
	close(p[0]);
	close(p[1]);
	close(efd);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_rejects_bad_params),
	    cmocka_unit_test(test_push_pop_both_ways),
	    cmocka_unit_test(test_full_and_empty),
	    cmocka_unit_test(test_wraparound),
	    cmocka_unit_test(test_wakeup_only_when_asked),
	    cmocka_unit_test(test_notify_refuses_tampered_eventfd),
	    cmocka_unit_test(test_two_process_stress),
	    cmocka_unit_test(test_hostile_tail_far_ahead),
	    cmocka_unit_test(test_hostile_tail_behind_head),
	    cmocka_unit_test(test_hostile_rewrites_consumer_head),
	    cmocka_unit_test(test_hostile_consumer_head),
	    cmocka_unit_test(test_hostile_garbage_entries),
	    cmocka_unit_test(test_hostile_header_rewrite_after_attach),
	    cmocka_unit_test(test_hostile_entry_changes_during_pop),
	    cmocka_unit_test(test_hostile_process_scribbles),
	    cmocka_unit_test(test_attach_validation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
