/* Tests for netd's node-to-node transport (services/netd/transport.h).
 *
 * Two (or more) nodes in one process, over real TCP on 127.0.0.1 and over
 * the fake RDMA device of netd_rdma_fake.h, driven by a poll(2) loop the
 * way netd's libuv loop drives them; a raw-socket "evil" peer that sends
 * malformed frames; and two nodes in two network namespaces joined by a
 * veth pair, each in its own process.  Every payload byte is checked
 * against a pattern derived from its position, its channel and its sender.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netd_rdma_fake.h"
#include "services/netd/transport.h"
#include "services/netd/transport_frame.h"
#include "services/netd/transport_rdma.h"

#define MAXCONN 16
#define MAXCH	1024

enum kind { K_TCP, K_RDMA };

struct tnode;

struct tchan {
	struct tnode *node;
	struct qt_channel *ch;
	uint32_t id;
	bool incoming;
	bool open_done, rst, fin, eof, fin_sent, closed;
	int open_err, rst_err;
	int writable;
	bool stop_reading;
	uint16_t dst_port;
	uint64_t tx_total, tx_sent, rx_bytes;
	uint64_t tx_seed, rx_seed;
	bool fin_after_tx;
	bool bad_data;
};

enum policy { ACCEPT, REFUSE, DEFER };

struct tnode {
	struct qt_node *n;
	uint64_t id;
	struct qt_listener *l;
	int port;
	struct qt_conn *conns[MAXCONN];
	unsigned ev[MAXCONN];
	int nconns;
	int ups, downs, last_down_err;
	char last_down_why[QERR_MSG_MAX];
	enum policy policy;
	int refuse_err;
	struct tchan *ch[MAXCH];
	int nch;
	int open_reqs;
	/* What an accepted channel sends back: reply_max == 0 none, else a
	 * random size in [0, reply_max] from rng. */
	uint64_t reply_max;
	uint32_t rng;
	bool fin_after_tx;
};

/* ---- data pattern ------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint8_t pattern(uint64_t pos, uint64_t seed)
{
	return (uint8_t)(mix((pos >> 3) ^ seed) >> ((pos & 7) * 8));
}

static uint64_t dir_seed(uint64_t sender, uint32_t chan)
{
	return mix(sender << 32 ^ chan);
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* ---- the application side of a node ---------------------------------- */

static void tx_pump(struct tchan *t)
{
	uint8_t buf[24 * 1024];
	while (t->ch && !t->closed && t->tx_sent < t->tx_total) {
		size_t n = sizeof(buf);
		if (n > t->tx_total - t->tx_sent)
			n = (size_t)(t->tx_total - t->tx_sent);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(t->tx_sent + i, t->tx_seed);
		ssize_t r = qt_channel_send(t->ch, buf, n);
		if (r == -EAGAIN)
			return;
		if (r < 0)
			return;
		t->tx_sent += (uint64_t)r;
	}
	if (t->ch && !t->closed && t->fin_after_tx && !t->fin_sent && t->tx_sent == t->tx_total) {
		if (qt_channel_shutdown(t->ch) == 0)
			t->fin_sent = true;
	}
}

static void rx_drain(struct tchan *t)
{
	uint8_t buf[16 * 1024];
	while (t->ch && !t->closed && !t->stop_reading) {
		ssize_t r = qt_channel_recv(t->ch, buf, sizeof(buf));
		if (r == -EAGAIN)
			return;
		if (r == 0) {
			t->eof = true;
			return;
		}
		if (r < 0)
			return;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(t->rx_bytes + (uint64_t)i, t->rx_seed))
				t->bad_data = true;
		t->rx_bytes += (uint64_t)r;
	}
}

static struct tchan *tchan_new(struct tnode *tn, struct qt_channel *ch, bool incoming)
{
	struct tchan *t = calloc(1, sizeof(*t));
	if (!t || tn->nch >= MAXCH)
		abort();
	t->node = tn;
	t->ch = ch;
	t->incoming = incoming;
	tn->ch[tn->nch++] = t;
	if (ch) {
		t->id = qt_channel_id(ch);
		qt_channel_set_user(ch, t);
		uint64_t peer = qt_channel_peer(ch);
		t->tx_seed = dir_seed(tn->id, t->id);
		t->rx_seed = dir_seed(peer, t->id);
	}
	return t;
}

static void tchan_close(struct tchan *t)
{
	if (t->ch && !t->closed) {
		qt_channel_close(t->ch);
		t->closed = true;
		t->ch = NULL;
	}
}

static void cb_poll_update(struct qt_conn *c, unsigned events, void *ctx)
{
	struct tnode *tn = ctx;
	for (int i = 0; i < tn->nconns; i++)
		if (tn->conns[i] == c) {
			tn->ev[i] = events;
			return;
		}
	if (tn->nconns >= MAXCONN)
		abort();
	tn->conns[tn->nconns] = c;
	tn->ev[tn->nconns++] = events;
}

static void cb_conn_up(struct qt_conn *c, uint64_t peer, void *ctx)
{
	(void)c;
	(void)peer;
	((struct tnode *)ctx)->ups++;
}

static void cb_conn_down(struct qt_conn *c, uint64_t peer, int err, const char *why, void *ctx)
{
	struct tnode *tn = ctx;
	(void)peer;
	for (int i = 0; i < tn->nconns; i++)
		if (tn->conns[i] == c) {
			tn->conns[i] = tn->conns[tn->nconns - 1];
			tn->ev[i] = tn->ev[tn->nconns - 1];
			tn->nconns--;
			break;
		}
	tn->downs++;
	tn->last_down_err = err;
	snprintf(tn->last_down_why, sizeof(tn->last_down_why), "%s", why);
}

static void cb_open_request(struct qt_channel *ch, const struct qt_open_req *req, void *ctx)
{
	struct tnode *tn = ctx;
	tn->open_reqs++;
	if (tn->policy == REFUSE) {
		qt_channel_refuse(ch, tn->refuse_err);
		return;
	}
	struct tchan *t = tchan_new(tn, ch, true);
	t->dst_port = ntohs(((const struct sockaddr_in *)&req->dst)->sin_port);
	if (tn->policy == DEFER)
		return;
	assert_int_equal(qt_channel_accept(ch), 0);
	t->open_done = true;
	if (tn->reply_max)
		t->tx_total = rnd(&tn->rng) % (tn->reply_max + 1);
	t->fin_after_tx = tn->fin_after_tx;
	tx_pump(t);
}

static void cb_open_result(struct qt_channel *ch, int err, void *ctx)
{
	struct tchan *t = qt_channel_user(ch);
	(void)ctx;
	t->open_done = true;
	t->open_err = err;
	if (!err)
		tx_pump(t);
}

static void cb_readable(struct qt_channel *ch, void *ctx)
{
	(void)ctx;
	rx_drain(qt_channel_user(ch));
}

static void cb_fin(struct qt_channel *ch, void *ctx)
{
	struct tchan *t = qt_channel_user(ch);
	(void)ctx;
	t->fin = true;
	rx_drain(t);
}

static void cb_rst(struct qt_channel *ch, int err, void *ctx)
{
	struct tchan *t = qt_channel_user(ch);
	(void)ctx;
	t->rst = true;
	t->rst_err = err;
}

static void cb_writable(struct qt_channel *ch, void *ctx)
{
	struct tchan *t = qt_channel_user(ch);
	(void)ctx;
	t->writable++;
	tx_pump(t);
}

static const struct qt_callbacks callbacks = {
    .poll_update = cb_poll_update,
    .conn_up = cb_conn_up,
    .conn_down = cb_conn_down,
    .open_request = cb_open_request,
    .open_result = cb_open_result,
    .readable = cb_readable,
    .fin = cb_fin,
    .rst = cb_rst,
    .writable = cb_writable,
};

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

/* Corked nodes (as netd runs them): pump_once flushes each node at the
 * end of its turn, as netd's loop does before it waits. */
static bool g_cork;

static void tnode_init_at(struct tnode *tn, uint64_t id, const struct qt_config *base,
			  const struct sockaddr_in *listen_at)
{
	struct qerr err = {0};
	memset(tn, 0, sizeof(*tn));
	struct qt_config cfg = {0};
	if (base)
		cfg = *base;
	cfg.node_id = id;
	tn->id = id;
	tn->rng = (uint32_t)(id * 2654435761u) | 1;
	tn->n = qt_node_new(&cfg, &callbacks, tn, &err);
	if (!tn->n)
		fail_msg("qt_node_new: %s", err.msg);
	qt_node_set_cork(tn->n, g_cork);
	if (listen_at) {
		tn->l = qt_tcp_listen((const struct sockaddr *)listen_at, sizeof(*listen_at), &err);
		if (!tn->l)
			fail_msg("listen: %s", err.msg);
		tn->port = qt_tcp_listener_port(tn->l);
	}
}

static void tnode_init(struct tnode *tn, uint64_t id, const struct qt_config *base)
{
	struct sockaddr_in any = loopback(0);
	tnode_init_at(tn, id, base, &any);
}

static void tnode_free(struct tnode *tn)
{
	qt_node_free(tn->n);
	qt_listener_free(tn->l);
	for (int i = 0; i < tn->nch; i++)
		free(tn->ch[i]);
	memset(tn, 0, sizeof(*tn));
}

static struct tchan *find_chan(struct tnode *tn, uint32_t id)
{
	for (int i = 0; i < tn->nch; i++)
		if (tn->ch[i]->id == id)
			return tn->ch[i];
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool conn_alive(struct tnode *tn, struct qt_conn *c)
{
	for (int i = 0; i < tn->nconns; i++)
		if (tn->conns[i] == c)
			return true;
	return false;
}

/* One round of the loop over every node: poll, dispatch, tick.  shuffle
 * != 0 randomises the order the fds are served in. */
static void pump_once(struct tnode **nodes, int k, int timeout_ms, uint32_t *shuffle)
{
	struct pollfd pfd[64];
	struct {
		struct tnode *tn;
		struct qt_conn *c;
	} who[64];
	int np = 0;
	for (int i = 0; i < k; i++) {
		struct tnode *tn = nodes[i];
		if (tn->l) {
			pfd[np] = (struct pollfd){.fd = qt_listener_fd(tn->l), .events = POLLIN};
			who[np].tn = tn;
			who[np++].c = NULL;
		}
		for (int j = 0; j < tn->nconns && np < 64; j++) {
			pfd[np] = (struct pollfd){.fd = qt_conn_fd(tn->conns[j]),
						  .events = (short)tn->ev[j]};
			who[np].tn = tn;
			who[np++].c = tn->conns[j];
		}
	}
	if (shuffle)
		for (int i = np - 1; i > 0; i--) {
			int j = (int)(rnd(shuffle) % (uint32_t)(i + 1));
			struct pollfd tp = pfd[i];
			pfd[i] = pfd[j];
			pfd[j] = tp;
			__typeof__(who[0]) tw = who[i];
			who[i] = who[j];
			who[j] = tw;
		}
	int r = poll(pfd, (nfds_t)np, timeout_ms);
	if (r > 0)
		for (int i = 0; i < np; i++) {
			if (!pfd[i].revents)
				continue;
			struct tnode *tn = who[i].tn;
			if (!who[i].c) {
				struct qerr err = {0};
				if (qt_node_accept(tn->n, tn->l, &err) < 0)
					fail_msg("accept: %s", err.msg);
				continue;
			}
			if (!conn_alive(tn, who[i].c))
				continue;
			if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
				qt_conn_on_readable(who[i].c);
			if (conn_alive(tn, who[i].c) && (pfd[i].revents & POLLOUT))
				qt_conn_on_writable(who[i].c);
		}
	for (int i = 0; i < k; i++)
		qt_node_tick(nodes[i]->n);
	for (int i = 0; g_cork && i < k; i++)
		qt_node_flush(nodes[i]->n);
}

typedef bool (*done_fn)(void *arg);

static bool pump(struct tnode **nodes, int k, int ms, done_fn done, void *arg, uint32_t *shuffle)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	for (;;) {
		if (done && done(arg))
			return true;
		if (now_ms() > deadline)
			return false;
		pump_once(nodes, k, 5, shuffle);
	}
}

/* a dials b, the way `kind` does it. */
static struct qt_conn *connect_nodes(struct tnode *a, struct tnode *b, enum kind kind)
{
	struct qerr err = {0};
	if (kind == K_TCP) {
		struct sockaddr_in sin = loopback(b->port);
		struct qt_backend *be = qt_tcp_dial((struct sockaddr *)&sin, sizeof(sin), &err);
		if (!be)
			fail_msg("dial: %s", err.msg);
		struct qt_conn *c = qt_node_attach(a->n, be, b->id, &err);
		if (!c)
			fail_msg("attach: %s", err.msg);
		return c;
	}
	struct qt_backend *ba, *bb;
	fake_backends(65536, 64, &ba, &bb);
	struct qt_conn *c = qt_node_attach(a->n, ba, b->id, &err);
	if (!c || !qt_node_attach(b->n, bb, 0, &err))
		fail_msg("attach: %s", err.msg);
	return c;
}

struct pair {
	struct tnode *a, *b;
};

static bool both_up(void *arg)
{
	struct pair *p = arg;
	return qt_node_connected(p->a->n, p->b->id) && qt_node_connected(p->b->n, p->a->id);
}

static void up_pair(struct tnode *a, struct tnode *b, enum kind kind)
{
	struct tnode *nodes[] = {a, b};
	struct pair p = {a, b};
	connect_nodes(a, b, kind);
	if (!pump(nodes, 2, 5000, both_up, &p, NULL))
		fail_msg("connection did not come up (%s / %s)", a->last_down_why,
			 b->last_down_why);
}

static struct tchan *open_chan(struct tnode *from, struct tnode *to, uint16_t port, uint64_t bytes,
			       bool fin)
{
	struct qerr err = {0};
	struct sockaddr_in dst = loopback(port);
	struct sockaddr_in src = loopback(40000);
	struct tchan *t = tchan_new(from, NULL, false);
	t->ch = qt_channel_open(from->n, to->id, (struct sockaddr *)&dst, sizeof(dst),
				(struct sockaddr *)&src, sizeof(src), t, &err);
	if (!t->ch)
		fail_msg("open: %s", err.msg);
	t->id = qt_channel_id(t->ch);
	t->dst_port = port;
	t->tx_seed = dir_seed(from->id, t->id);
	t->rx_seed = dir_seed(to->id, t->id);
	t->tx_total = bytes;
	t->fin_after_tx = fin;
	return t;
}

static bool g_dump;

/* Every channel of every node finished both ways with the right bytes. */
static bool all_done(void *arg)
{
	struct pair *p = arg;
	struct tnode *ns[2] = {p->a, p->b};
	bool ok = true;
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < ns[k]->nch; i++) {
			struct tchan *t = ns[k]->ch[i];
			if (!t->open_done || t->tx_sent < t->tx_total || !t->eof) {
				if (g_dump)
					print_message("node %" PRIu64 " chan %x: open %d err %d tx "
						      "%" PRIu64 "/%" PRIu64 " rx %" PRIu64
						      " fin %d eof %d rst %d stop %d\n",
						      ns[k]->id, t->id, t->open_done, t->open_err,
						      t->tx_sent, t->tx_total, t->rx_bytes, t->fin,
						      t->eof, t->rst, t->stop_reading);
				ok = false;
			}
		}
	return ok;
}

static void check_integrity(struct tnode *a, struct tnode *b)
{
	struct tnode *ns[2] = {a, b};
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < ns[k]->nch; i++) {
			struct tchan *t = ns[k]->ch[i];
			struct tchan *o = find_chan(ns[1 - k], t->id);
			assert_non_null(o);
			assert_false(t->bad_data);
			assert_false(t->rst);
			assert_int_equal(t->open_err, 0);
			assert_int_equal(t->rx_bytes, o->tx_total);
			assert_true(t->eof);
		}
}

static struct qt_conn *only_conn(struct tnode *tn)
{
	assert_int_equal(tn->nconns, 1);
	return tn->conns[0];
}

/* ---- frames ----------------------------------------------------------- */

static int decode(const uint8_t *b, size_t len, struct qerr *err)
{
	struct qt_frame_hdr h;
	qerr_clear(err);
	return qt_frame_decode_hdr(b, len, &h, err);
}

static void bad_hdr(unsigned version, unsigned type, unsigned flags, uint32_t chan, uint32_t len,
		    uint32_t credit, const char *needle)
{
	uint8_t b[QT_HDR_SIZE];
	struct qerr err;
	qt_frame_put_hdr(b, type, chan, len, credit);
	b[0] = (uint8_t)version;
	b[2] = (uint8_t)(flags >> 8);
	b[3] = (uint8_t)flags;
	assert_int_equal(decode(b, sizeof(b), &err), -EPROTO);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' does not say '%s'", err.msg, needle);
}

static void test_frames(void **state)
{
	(void)state;
	uint8_t b[QT_FRAME_MAX];
	struct qerr err;
	struct qt_frame_hdr h;

	struct qt_hello hello = {.node_id = 0x0102030405060708ULL,
				 .proto_version = QT_PROTO_VERSION,
				 .flags = QT_HELLO_DIALER,
				 .window = 65536};
	size_t n = qt_frame_put_hello(b, &hello);
	assert_int_equal(n, QT_HDR_SIZE + QT_HELLO_LEN);
	assert_int_equal(decode(b, 5, &err), 0); /* need more */
	assert_int_equal(qt_frame_decode_hdr(b, QT_HDR_SIZE, &h, &err), (int)n);
	assert_int_equal(h.type, QT_HELLO);
	struct qt_hello back;
	assert_int_equal(qt_frame_parse_hello(b + QT_HDR_SIZE, h.len, &back, &err), 0);
	assert_true(back.node_id == hello.node_id && back.window == 65536 &&
		    back.flags == QT_HELLO_DIALER);
	/* Big-endian on the wire. */
	assert_int_equal(b[QT_HDR_SIZE], 0x01);

	struct qt_open o = {0}, o2;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	s6.sin6_addr.s6_addr[15] = 1;
	struct sockaddr_in s4 = loopback(5555);
	assert_int_equal(qt_endpoint_from_sockaddr(&o.dst, (struct sockaddr *)&s6, sizeof(s6)), 0);
	assert_int_equal(qt_endpoint_from_sockaddr(&o.src, (struct sockaddr *)&s4, sizeof(s4)), 0);
	n = qt_frame_put_open(b, 7, &o);
	assert_int_equal(qt_frame_decode_hdr(b, n, &h, &err), (int)n);
	assert_int_equal(qt_frame_parse_open(b + QT_HDR_SIZE, h.len, &o2, &err), 0);
	assert_int_equal(o2.dst.family, AF_INET6);
	assert_int_equal(o2.dst.port, 443);
	assert_int_equal(o2.src.family, AF_INET);
	assert_int_equal(o2.src.port, 5555);
	assert_memory_equal(o2.src.addr, &s4.sin_addr, 4);

	/* Hostile OPEN payloads. */
	b[QT_HDR_SIZE] = 5;
	assert_int_equal(qt_frame_parse_open(b + QT_HDR_SIZE, QT_OPEN_LEN, &o2, &err), -EPROTO);
	n = qt_frame_put_open(b, 7, &o);
	b[QT_HDR_SIZE + QT_ENDPOINT_LEN + 12] = 1; /* IPv4 with trailing bytes */
	assert_int_equal(qt_frame_parse_open(b + QT_HDR_SIZE, QT_OPEN_LEN, &o2, &err), -EPROTO);
	o.dst.port = 0;
	n = qt_frame_put_open(b, 7, &o);
	assert_int_equal(qt_frame_parse_open(b + QT_HDR_SIZE, QT_OPEN_LEN, &o2, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "port 0"));

	/* errno: only the network ones travel. */
	int e;
	n = qt_frame_put_errno(b, QT_RST, 3, ECONNREFUSED);
	assert_int_equal(qt_frame_parse_errno(b + QT_HDR_SIZE, 4, &e, &err), 0);
	assert_int_equal(e, ECONNREFUSED);
	qt_frame_put_errno(b, QT_RST, 3, EINTR);
	assert_int_equal(qt_frame_parse_errno(b + QT_HDR_SIZE, 4, &e, &err), -EPROTO);
	qt_frame_put_errno(b, QT_RST, 3, 70000);
	assert_int_equal(qt_frame_parse_errno(b + QT_HDR_SIZE, 4, &e, &err), -EPROTO);

	/* HELLO payloads. */
	hello.node_id = 0;
	qt_frame_put_hello(b, &hello);
	assert_int_equal(qt_frame_parse_hello(b + QT_HDR_SIZE, QT_HELLO_LEN, &back, &err), -EPROTO);
	hello.node_id = 1;
	hello.flags = 0x8000;
	qt_frame_put_hello(b, &hello);
	assert_int_equal(qt_frame_parse_hello(b + QT_HDR_SIZE, QT_HELLO_LEN, &back, &err), -EPROTO);

	/* Headers no honest peer sends. */
	bad_hdr(2, QT_PING, 0, 0, 8, 0, "frame version 2");
	bad_hdr(1, 0, 0, 0, 0, 0, "unknown frame type 0");
	bad_hdr(1, 99, 0, 0, 0, 0, "unknown frame type 99");
	bad_hdr(1, QT_TYPE_MAX + 1, 0, 0, 0, 0, "unknown frame type");
	bad_hdr(1, QT_DATA, 1, 5, 10, 0, "reserved flags");
	bad_hdr(1, QT_DATA, 0, 0, 10, 0, "DATA on channel 0");
	bad_hdr(1, QT_PING, 0, 5, 8, 0, "PING on channel 5");
	bad_hdr(1, QT_DATA, 0, 5, 0, 0, "DATA with a payload of 0 bytes");
	bad_hdr(1, QT_DATA, 0, 5, QT_DATA_MAX + 1, 0, "payload of 65537");
	bad_hdr(1, QT_DATA, 0, 5, 0xffffffffu, 0, "payload of 4294967295");
	bad_hdr(1, QT_OPEN, 0, 5, 39, 0, "OPEN with a payload of 39");
	bad_hdr(1, QT_HELLO, 0, 0, 15, 0, "HELLO with a payload of 15");
	bad_hdr(1, QT_FIN, 0, 5, 0, 1, "FIN with a credit of 1");
	bad_hdr(1, QT_CREDIT, 0, 5, 0, 0, "CREDIT with a credit of 0");
	bad_hdr(1, QT_CREDIT, 0, 5, 0, QT_WINDOW_MAX + 1, "CREDIT with a credit");
	/* A DATA frame's size comes back whole even before its payload. */
	qt_frame_put_hdr(b, QT_DATA, 5, 1000, 4096);
	assert_int_equal(qt_frame_decode_hdr(b, QT_HDR_SIZE, &h, &err), (int)QT_HDR_SIZE + 1000);
	assert_int_equal(h.credit, 4096);
	assert_string_equal(qt_frame_type_name(200), "unknown");
}

/* ---- connections ------------------------------------------------------ */

static void hello(enum kind kind)
{
	struct tnode a, b;
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, NULL);
	up_pair(&a, &b, kind);
	assert_int_equal(a.ups, 1);
	assert_int_equal(b.ups, 1);
	assert_int_equal(a.downs + b.downs, 0);
	struct qt_conn *ca = only_conn(&a), *cb = only_conn(&b);
	assert_int_equal(qt_conn_peer(ca), 2);
	assert_int_equal(qt_conn_peer(cb), 1);
	assert_true(qt_conn_dialed(ca));
	assert_false(qt_conn_dialed(cb));
	assert_string_equal(qt_conn_backend(ca), kind == K_TCP ? "tcp" : "rdma");
	/* A second dial to a connected peer is refused. */
	if (kind == K_TCP) {
		struct qerr err = {0};
		struct sockaddr_in sin = loopback(b.port);
		struct qt_backend *be = qt_tcp_dial((struct sockaddr *)&sin, sizeof(sin), &err);
		assert_non_null(be);
		assert_null(qt_node_attach(a.n, be, 2, &err));
		assert_int_equal(err.code, EISCONN);
	}
	tnode_free(&a);
	tnode_free(&b);
}

static void test_hello_tcp(void **state)
{
	(void)state;
	hello(K_TCP);
}

static void test_hello_rdma(void **state)
{
	(void)state;
	hello(K_RDMA);
}

struct downs {
	struct tnode *a, *b;
	int n;
};

static bool both_down(void *arg)
{
	struct downs *d = arg;
	return d->a->downs >= d->n && d->b->downs >= d->n;
}

static void test_version_mismatch(void **state)
{
	(void)state;
	struct tnode a, b;
	struct qt_config v2 = {.proto_version = 2};
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, &v2);
	struct tnode *nodes[] = {&a, &b};
	struct downs d = {&a, &b, 1};
	connect_nodes(&a, &b, K_TCP);
	assert_true(pump(nodes, 2, 5000, both_down, &d, NULL));
	assert_int_equal(a.ups + b.ups, 0);
	assert_int_equal(a.last_down_err, EPROTONOSUPPORT);
	assert_int_equal(b.last_down_err, EPROTONOSUPPORT);
	/* Each refuses the other, or hears the other's refusal: either way
	 * the message says which versions. */
	assert_true(strstr(a.last_down_why, "speaks protocol version 2, we speak 1") ||
		    strstr(a.last_down_why, "GOAWAY"));
	assert_true(strstr(b.last_down_why, "speaks protocol version 1, we speak 2") ||
		    strstr(b.last_down_why, "GOAWAY"));
	assert_false(qt_node_connected(a.n, 2));
	tnode_free(&a);
	tnode_free(&b);
}

/* Both sides open channels on one connection at the same moment: ids carry
 * the side, so none collide. */
static void test_open_both_sides(void **state)
{
	(void)state;
	struct tnode a, b;
	tnode_init(&a, 7, NULL);
	tnode_init(&b, 3, NULL);
	up_pair(&a, &b, K_TCP);
	a.reply_max = b.reply_max = 20000;
	a.fin_after_tx = b.fin_after_tx = true;
	for (int i = 0; i < 50; i++) {
		open_chan(&a, &b, 80, 10000 + (uint64_t)i, true);
		open_chan(&b, &a, 80, 5000 + (uint64_t)i, true);
	}
	struct tnode *nodes[] = {&a, &b};
	struct pair p = {&a, &b};
	if (!pump(nodes, 2, 10000, all_done, &p, NULL)) {
		g_dump = true;
		all_done(&p);
		fail();
	}
	check_integrity(&a, &b);
	assert_int_equal(a.nch, 100);
	assert_int_equal(a.open_reqs, 50);
	assert_int_equal(b.open_reqs, 50);
	for (int i = 0; i < a.nch; i++) {
		struct tchan *t = a.ch[i];
		/* 7 > 3: a's ids have the side bit, b's not. */
		assert_true(!!(t->id & QT_CHAN_SIDE_BIT) == !t->incoming);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(a.ch[j]->id, t->id);
	}
	tnode_free(&a);
	tnode_free(&b);
}

static void many_channels(enum kind kind)
{
	struct tnode a, b;
	struct qt_config cfg = {.window = 64 * 1024};
	tnode_init(&a, 11, &cfg);
	tnode_init(&b, 12, &cfg);
	up_pair(&a, &b, kind);
	a.reply_max = 100 * 1024;
	b.reply_max = 200 * 1024;
	a.fin_after_tx = b.fin_after_tx = true;
	uint32_t rng = 12345;
	uint64_t total = 0;
	for (int i = 0; i < 128; i++) {
		uint64_t n = rnd(&rng) % (256 * 1024);
		total += n;
		open_chan(&a, &b, (uint16_t)(1000 + i), n, true);
	}
	for (int i = 0; i < 32; i++)
		open_chan(&b, &a, 2000, rnd(&rng) % (128 * 1024), true);
	struct tnode *nodes[] = {&a, &b};
	struct pair p = {&a, &b};
	if (!pump(nodes, 2, 30000, all_done, &p, NULL))
		fail_msg("transfer did not finish");
	check_integrity(&a, &b);
	print_message("  %s: 160 channels, %" PRIu64 " KiB from a's openers, all checked\n",
		      kind == K_TCP ? "tcp" : "rdma", total / 1024);
	/* Clean close both ways: nobody is reset. */
	for (int i = 0; i < a.nch; i++)
		tchan_close(a.ch[i]);
	for (int i = 0; i < b.nch; i++)
		tchan_close(b.ch[i]);
	pump(nodes, 2, 100, NULL, NULL, NULL);
	struct qt_conn_stats st;
	qt_conn_stats(only_conn(&a), &st);
	assert_int_equal(st.channels, 0);
	assert_int_equal(a.downs + b.downs, 0);
	tnode_free(&a);
	tnode_free(&b);
}

static void test_many_channels_tcp(void **state)
{
	(void)state;
	many_channels(K_TCP);
}

static void test_many_channels_rdma(void **state)
{
	(void)state;
	many_channels(K_RDMA);
}

struct stall {
	struct tchan *fast_rx, *slow_tx;
	uint64_t fast_total;
	uint32_t window;
};

static bool fast_done(void *arg)
{
	struct stall *s = arg;
	return s->fast_rx && s->fast_rx->eof && s->slow_tx->tx_sent >= s->window;
}

/* A reader that stops reading holds its channel at exactly its window;
 * the other channel on the same connection keeps flowing. */
static void slow_reader(enum kind kind)
{
	struct tnode a, b;
	const uint32_t window = 64 * 1024;
	struct qt_config cfg = {.window = window};
	tnode_init(&a, 1, &cfg);
	tnode_init(&b, 2, &cfg);
	up_pair(&a, &b, kind);
	b.fin_after_tx = true;
	struct tchan *slow = open_chan(&a, &b, 1, 10u << 20, true);
	open_chan(&a, &b, 2, 8u << 20, true);
	struct tnode *nodes[] = {&a, &b};
	/* b stops reading channel 1 as soon as it is accepted. */
	struct stall s = {.slow_tx = slow, .window = window};
	for (int round = 0; round < 20000 && !fast_done(&s); round++) {
		pump_once(nodes, 2, 5, NULL);
		for (int i = 0; i < b.nch; i++) {
			if (b.ch[i]->dst_port == 1)
				b.ch[i]->stop_reading = true;
			if (b.ch[i]->dst_port == 2)
				s.fast_rx = b.ch[i];
		}
	}
	assert_true(fast_done(&s));
	struct tchan *slow_rx = NULL;
	for (int i = 0; i < b.nch; i++)
		if (b.ch[i]->dst_port == 1)
			slow_rx = b.ch[i];
	assert_non_null(slow_rx);
	/* Some more rounds: nothing moves on the stalled channel. */
	pump(nodes, 2, 200, NULL, NULL, NULL);
	assert_int_equal(s.fast_rx->rx_bytes, 8u << 20);
	assert_false(s.fast_rx->bad_data);
	assert_int_equal(slow->tx_sent, window);
	assert_int_equal(qt_channel_credit(slow->ch), 0);
	assert_int_equal(qt_channel_pending(slow_rx->ch), window);
	assert_int_equal(slow_rx->rx_bytes, 0);
	assert_true(slow->writable == 0);
	print_message("  %s: stalled channel at %" PRIu64 " bytes (window %u) while the other "
		      "moved %u MiB\n",
		      kind == K_TCP ? "tcp" : "rdma", slow->tx_sent, window, 8);
	/* Reading again lets it finish. */
	slow_rx->stop_reading = false;
	rx_drain(slow_rx);
	struct pair p = {&a, &b};
	assert_true(pump(nodes, 2, 20000, all_done, &p, NULL));
	assert_int_equal(slow_rx->rx_bytes, 10u << 20);
	assert_false(slow_rx->bad_data);
	assert_true(slow->writable > 0);
	tnode_free(&a);
	tnode_free(&b);
}

static void test_slow_reader_tcp(void **state)
{
	(void)state;
	slow_reader(K_TCP);
}

/* The same two, corked: every byte still arrives, a stalled channel still
 * stalls alone and is woken when its reader drains. */
static void test_corked_many_channels_and_slow_reader(void **state)
{
	(void)state;
	g_cork = true;
	many_channels(K_TCP);
	many_channels(K_RDMA);
	slow_reader(K_TCP);
	slow_reader(K_RDMA);
	g_cork = false;
}

/* Fifty channels each send a small message in one turn: uncorked, fifty
 * sends; corked, one, at qt_node_flush. */
static bool fifty_open(void *arg)
{
	struct pair *p = arg;
	int n = 0;
	for (int i = 0; i < p->a->nch; i++)
		n += p->a->ch[i]->open_done;
	return n == 50 && p->b->nch == 50;
}

static bool fifty_received(void *arg)
{
	struct pair *p = arg;
	for (int i = 0; i < p->b->nch; i++)
		if (p->b->ch[i]->rx_bytes < 40)
			return false;
	return true;
}

static void batch_of_fifty(bool cork, uint64_t *sends, uint64_t *frames)
{
	struct tnode a, b;
	struct qt_conn_stats st0, st1;
	struct tchan *t[50];

	g_cork = cork;
	tnode_init(&a, 31, NULL);
	tnode_init(&b, 32, NULL);
	up_pair(&a, &b, K_TCP);
	for (int i = 0; i < 50; i++)
		t[i] = open_chan(&a, &b, (uint16_t)(3000 + i), 0, false);
	struct tnode *nodes[] = {&a, &b};
	struct pair p = {&a, &b};
	assert_true(pump(nodes, 2, 5000, fifty_open, &p, NULL));
	qt_conn_stats(only_conn(&a), &st0);
	for (int i = 0; i < 50; i++) {
		uint8_t msg[40];
		for (size_t j = 0; j < sizeof(msg); j++)
			msg[j] = pattern(t[i]->tx_sent + j, t[i]->tx_seed);
		assert_int_equal(qt_channel_send(t[i]->ch, msg, sizeof(msg)), sizeof(msg));
		t[i]->tx_sent += sizeof(msg);
		t[i]->tx_total = t[i]->tx_sent;
	}
	if (cork) {
		qt_conn_stats(only_conn(&a), &st1);
		assert_int_equal(st1.sends, st0.sends); /* nothing went before the flush */
		assert_false(qt_node_flush(a.n));
	}
	qt_conn_stats(only_conn(&a), &st1);
	*sends = st1.sends - st0.sends;
	*frames = st1.frames_out - st0.frames_out;
	assert_true(pump(nodes, 2, 5000, fifty_received, &p, NULL));
	for (int i = 0; i < b.nch; i++) {
		assert_int_equal(b.ch[i]->rx_bytes, 40);
		assert_false(b.ch[i]->bad_data);
	}
	tnode_free(&a);
	tnode_free(&b);
	g_cork = false;
}

static void test_cork_batches_frames(void **state)
{
	uint64_t sends, frames;

	(void)state;
	batch_of_fifty(false, &sends, &frames);
	assert_int_equal(frames, 50);
	assert_int_equal(sends, 50);
	batch_of_fifty(true, &sends, &frames);
	assert_int_equal(frames, 50);
	assert_int_equal(sends, 1);
	print_message("  50 small frames: 50 sends uncorked, %" PRIu64 " corked\n", sends);
}

static void test_slow_reader_rdma(void **state)
{
	(void)state;
	slow_reader(K_RDMA);
}

static bool flag_true(void *arg)
{
	return *(bool *)arg;
}

/* Half-close each way: after FIN the other side still sends. */
static void test_half_close(void **state)
{
	(void)state;
	struct tnode a, b;
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, NULL);
	up_pair(&a, &b, K_TCP);
	struct tnode *nodes[] = {&a, &b};

	for (int first = 0; first < 2; first++) {
		struct tchan *ta = open_chan(&a, &b, 9, first == 0 ? 1000 : 0, first == 0);
		struct tchan *tb = NULL;
		for (int round = 0; round < 1000 && !tb; round++) {
			pump_once(nodes, 2, 5, NULL);
			tb = find_chan(&b, ta->id);
		}
		assert_non_null(tb);
		assert_true(pump(nodes, 2, 2000, flag_true, &ta->open_done, NULL));
		struct tchan *closer = first == 0 ? ta : tb, *other = first == 0 ? tb : ta;
		if (first == 1) {
			tb->tx_total = 1000;
			tb->fin_after_tx = true;
			tx_pump(tb);
		}
		assert_true(pump(nodes, 2, 2000, flag_true, &other->eof, NULL));
		assert_true(other->fin);
		assert_int_equal(other->rx_bytes, 1000);
		/* The closer can no longer send, and still receives. */
		assert_int_equal(qt_channel_send(closer->ch, "x", 1), -EPIPE);
		other->tx_total = 3000;
		tx_pump(other);
		assert_int_equal(other->tx_sent, 3000);
		for (int i = 0; i < 1000 && closer->rx_bytes < 3000; i++)
			pump_once(nodes, 2, 5, NULL);
		assert_int_equal(closer->rx_bytes, 3000);
		assert_false(closer->eof);
		assert_int_equal(qt_channel_recv(closer->ch, (char[4]){0}, 4), -EAGAIN);
		assert_int_equal(qt_channel_shutdown(other->ch), 0);
		assert_true(pump(nodes, 2, 2000, flag_true, &closer->eof, NULL));
		assert_false(closer->bad_data || other->bad_data);
		/* Finished both ways: closing resets nothing. */
		tchan_close(ta);
		tchan_close(tb);
		pump(nodes, 2, 50, NULL, NULL, NULL);
		assert_false(ta->rst || tb->rst);
	}
	struct qt_conn_stats st;
	qt_conn_stats(only_conn(&a), &st);
	assert_int_equal(st.late_frames, 0);
	assert_int_equal(st.channels, 0);
	tnode_free(&a);
	tnode_free(&b);
}

static void test_rst_and_refuse(void **state)
{
	(void)state;
	struct tnode a, b;
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, NULL);
	up_pair(&a, &b, K_TCP);
	struct tnode *nodes[] = {&a, &b};

	/* b resets with an errno: a's channel is dead with it. */
	struct tchan *ta = open_chan(&a, &b, 9, 0, false);
	assert_true(pump(nodes, 2, 2000, flag_true, &ta->open_done, NULL));
	struct tchan *tb = find_chan(&b, ta->id);
	assert_non_null(tb);
	qt_channel_abort(tb->ch, EPIPE);
	tb->closed = true;
	tb->ch = NULL;
	assert_true(pump(nodes, 2, 2000, flag_true, &ta->rst, NULL));
	assert_int_equal(ta->rst_err, EPIPE);
	assert_int_equal(qt_channel_send(ta->ch, "x", 1), -EPIPE);
	assert_int_equal(qt_channel_recv(ta->ch, (char[4]){0}, 4), -EPIPE);
	assert_int_equal(qt_channel_shutdown(ta->ch), -EPIPE);
	tchan_close(ta);

	/* Closing a channel not finished resets it at the peer. */
	ta = open_chan(&a, &b, 9, 100, false);
	assert_true(pump(nodes, 2, 2000, flag_true, &ta->open_done, NULL));
	tb = find_chan(&b, ta->id);
	tchan_close(ta);
	assert_true(pump(nodes, 2, 2000, flag_true, &tb->rst, NULL));
	assert_int_equal(tb->rst_err, ECONNRESET);
	tchan_close(tb);

	/* Closing while the open is unanswered cancels it at the peer. */
	b.policy = DEFER;
	ta = open_chan(&a, &b, 9, 0, false);
	int reqs = b.open_reqs;
	for (int i = 0; i < 1000 && b.open_reqs == reqs; i++)
		pump_once(nodes, 2, 5, NULL);
	tb = find_chan(&b, ta->id);
	assert_non_null(tb);
	tchan_close(ta);
	assert_true(pump(nodes, 2, 2000, flag_true, &tb->rst, NULL));
	assert_int_equal(qt_channel_accept(tb->ch), -ECONNRESET);
	tchan_close(tb);

	/* Refused: the errno comes back in open_result. */
	b.policy = REFUSE;
	b.refuse_err = ENETUNREACH;
	ta = open_chan(&a, &b, 9, 0, false);
	assert_true(pump(nodes, 2, 2000, flag_true, &ta->open_done, NULL));
	assert_int_equal(ta->open_err, ENETUNREACH);
	assert_int_equal(qt_channel_send(ta->ch, "x", 1), -ENETUNREACH);
	tchan_close(ta);
	pump(nodes, 2, 50, NULL, NULL, NULL);
	assert_int_equal(a.downs + b.downs, 0);
	struct qt_conn_stats st;
	qt_conn_stats(only_conn(&a), &st);
	assert_int_equal(st.channels, 0);
	tnode_free(&a);
	tnode_free(&b);
}

static bool all_reset(void *arg)
{
	struct tnode *tn = arg;
	for (int i = 0; i < tn->nch; i++)
		if (!tn->ch[i]->rst)
			return false;
	return tn->downs > 0;
}

static void conn_loss(enum kind kind)
{
	struct tnode a, b;
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, NULL);
	up_pair(&a, &b, kind);
	struct tnode *nodes[] = {&a, &b};
	for (int i = 0; i < 20; i++)
		open_chan(&a, &b, 9, 1u << 20, false);
	struct pair p = {&a, &b};
	(void)p;
	for (int i = 0; i < 50; i++)
		pump_once(nodes, 2, 5, NULL);
	for (int i = 0; i < a.nch; i++)
		assert_true(a.ch[i]->open_done && !a.ch[i]->open_err);
	/* b's node goes away with its sockets: no GOAWAY, no FIN per channel. */
	qt_node_free(b.n);
	b.n = NULL;
	struct tnode *only_a[] = {&a};
	assert_true(pump(only_a, 1, 5000, all_reset, &a, NULL));
	for (int i = 0; i < a.nch; i++) {
		assert_int_equal(a.ch[i]->rst_err, ECONNRESET);
		assert_int_equal(qt_channel_send(a.ch[i]->ch, "x", 1), -ECONNRESET);
	}
	assert_int_equal(a.last_down_err, ECONNRESET);
	assert_false(qt_node_connected(a.n, 2));
	/* A channel opened now waits for a connection, and times out. */
	tnode_free(&a);
	b.n = NULL;
	tnode_free(&b);
}

static void test_conn_loss_tcp(void **state)
{
	(void)state;
	conn_loss(K_TCP);
}

static void test_conn_loss_rdma(void **state)
{
	(void)state;
	conn_loss(K_RDMA);
}

static void test_open_timeout(void **state)
{
	(void)state;
	struct tnode a;
	struct qt_config cfg = {.open_timeout_ms = 100};
	tnode_init(&a, 1, &cfg);
	struct qerr err = {0};
	struct sockaddr_in sin = loopback(9);
	assert_null(qt_channel_open(a.n, 1, (struct sockaddr *)&sin, sizeof(sin),
				    (struct sockaddr *)&sin, sizeof(sin), NULL, &err));
	assert_int_equal(err.code, EINVAL);
	/* Nobody dials node 2: the open waits, then times out. */
	struct tnode b = {.id = 2};
	struct tchan *t = open_chan(&a, &b, 9, 0, false);
	struct tnode *nodes[] = {&a};
	assert_true(pump(nodes, 1, 2000, flag_true, &t->open_done, NULL));
	assert_int_equal(t->open_err, ETIMEDOUT);
	tnode_free(&a);
}

/* A dial to a port nobody listens on: the connection goes down with
 * ECONNREFUSED (or attach says so at once); a channel waiting for it keeps
 * waiting for another connection. */
static void test_dial_refused(void **state)
{
	(void)state;
	struct tnode a;
	tnode_init(&a, 1, NULL);
	struct tnode b = {.id = 2};
	struct tchan *t = open_chan(&a, &b, 9, 0, false);
	/* A port just freed: nothing listens there. */
	struct qt_listener *l = NULL;
	struct qerr err = {0};
	struct sockaddr_in sin = loopback(0);
	l = qt_tcp_listen((struct sockaddr *)&sin, sizeof(sin), &err);
	assert_non_null(l);
	sin = loopback(qt_tcp_listener_port(l));
	qt_listener_free(l);
	struct qt_backend *be = qt_tcp_dial((struct sockaddr *)&sin, sizeof(sin), &err);
	if (be && qt_node_attach(a.n, be, 2, &err)) {
		struct tnode *nodes[] = {&a};
		for (int i = 0; i < 400 && a.downs == 0; i++)
			pump_once(nodes, 1, 5, NULL);
		assert_int_equal(a.downs, 1);
		assert_int_equal(a.last_down_err, ECONNREFUSED);
		assert_non_null(strstr(a.last_down_why, "connect"));
	} else {
		assert_int_equal(err.code, ECONNREFUSED);
	}
	assert_false(t->open_done);
	assert_false(qt_node_connected(a.n, 2));
	tnode_free(&a);
}

/* ---- two-way open of the pair ------------------------------------------ */

struct sim {
	struct tnode *a, *b;
};

static bool sim_done(void *arg)
{
	struct sim *s = arg;
	struct pair p = {s->a, s->b};
	return all_done(&p) && s->a->nconns == 1 && s->b->nconns == 1 &&
	       qt_node_connected(s->a->n, s->b->id) && qt_node_connected(s->b->n, s->a->id);
}

/* The surviving connection is one TCP connection seen from both ends. */
static void check_same_socket(struct tnode *a, struct tnode *b)
{
	struct sockaddr_storage la, pa, lb, pb;
	socklen_t len = sizeof(la);
	int fa = qt_conn_fd(only_conn(a)), fb = qt_conn_fd(only_conn(b));
	assert_int_equal(getsockname(fa, (struct sockaddr *)&la, &len), 0);
	len = sizeof(pa);
	assert_int_equal(getpeername(fa, (struct sockaddr *)&pa, &len), 0);
	len = sizeof(lb);
	assert_int_equal(getsockname(fb, (struct sockaddr *)&lb, &len), 0);
	len = sizeof(pb);
	assert_int_equal(getpeername(fb, (struct sockaddr *)&pb, &len), 0);
	assert_memory_equal(&la, &pb, sizeof(struct sockaddr_in));
	assert_memory_equal(&lb, &pa, sizeof(struct sockaddr_in));
}

/* Both nodes dial each other at once, and open channels before either
 * connection is up: one connection survives, the one the lower node id
 * dialed, and every channel opens exactly once. */
static void test_simultaneous_dial(void **state)
{
	(void)state;
	uint32_t shuffle = 99;
	for (int iter = 0; iter < 24; iter++) {
		struct tnode a, b;
		uint64_t ida = iter % 2 ? 5 : 1, idb = 3;
		tnode_init(&a, ida, NULL);
		tnode_init(&b, idb, NULL);
		a.reply_max = b.reply_max = 4096;
		a.fin_after_tx = b.fin_after_tx = true;
		if (iter % 3 == 0) {
			connect_nodes(&a, &b, K_TCP);
			connect_nodes(&b, &a, K_TCP);
		} else {
			connect_nodes(&b, &a, K_TCP);
			connect_nodes(&a, &b, K_TCP);
		}
		for (int i = 0; i < 10; i++) {
			open_chan(&a, &b, 80, 3000 + (uint64_t)i * 100, true);
			open_chan(&b, &a, 80, 2000 + (uint64_t)i * 100, true);
		}
		struct tnode *nodes[] = {&a, &b};
		struct sim s = {&a, &b};
		if (!pump(nodes, 2, 10000, sim_done, &s, iter % 4 ? &shuffle : NULL))
			fail_msg("iteration %d: a %d conns (%s), b %d conns (%s)", iter, a.nconns,
				 a.last_down_why, b.nconns, b.last_down_why);
		check_integrity(&a, &b);
		assert_int_equal(a.open_reqs, 10);
		assert_int_equal(b.open_reqs, 10);
		/* Two connections each side, one alive, the other gone with
		 * EEXIST (the higher node may have been up on its own dial
		 * first: then it saw two ups). */
		if (a.downs != 1 || b.downs != 1 || a.ups < 1 || b.ups < 1 || a.ups > 2 ||
		    b.ups > 2)
			fail_msg("iteration %d: ups/downs %d/%d (%s), %d/%d (%s)", iter, a.ups,
				 a.downs, a.last_down_why, b.ups, b.downs, b.last_down_why);
		assert_int_equal(a.last_down_err, EEXIST);
		assert_int_equal(b.last_down_err, EEXIST);
		check_same_socket(&a, &b);
		assert_true(qt_conn_dialed(only_conn(&a)) == (ida < idb));
		tnode_free(&a);
		tnode_free(&b);
	}
}

static struct qt_conn *attach_fd(struct tnode *tn, int fd, uint64_t dialed)
{
	struct qerr err = {0};
	struct qt_backend *be = qt_tcp_from_fd(fd, false, &err);
	assert_non_null(be);
	struct qt_conn *c = qt_node_attach(tn->n, be, dialed, &err);
	assert_non_null(c);
	return c;
}

/* The worst order, step by step over socketpairs: the higher node's
 * connection is up at the higher node and carries its opens before the
 * lower node's own dial wins; those opens move to the winner. */
static void test_two_way_open_ordering(void **state)
{
	(void)state;
	struct tnode a, b; /* a = 1 (lower), b = 2 */
	tnode_init(&a, 1, NULL);
	tnode_init(&b, 2, NULL);
	a.fin_after_tx = b.fin_after_tx = true;
	a.reply_max = b.reply_max = 1000;
	int sp1[2], sp2[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp1), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp2), 0);
	struct qt_conn *a1 = attach_fd(&a, sp1[0], 2); /* a dialed b */
	struct qt_conn *b1 = attach_fd(&b, sp1[1], 0);
	struct qt_conn *b2 = attach_fd(&b, sp2[0], 1); /* b dialed a */
	struct qt_conn *a2 = attach_fd(&a, sp2[1], 0);
	for (int i = 0; i < 5; i++) {
		open_chan(&a, &b, 80, 500, true);
		open_chan(&b, &a, 80, 700, true);
	}
	qt_conn_on_readable(b2); /* b: a's HELLO on b's dial: up, opens go out on it */
	assert_true(qt_node_connected(b.n, 1));
	qt_conn_on_readable(a2); /* a: b's dial while a's own is in flight: held */
	assert_false(qt_node_connected(a.n, 2));
	assert_int_equal(a.open_reqs, 0);
	qt_conn_on_readable(a1); /* a: its own dial answered: it wins */
	assert_true(qt_node_connected(a.n, 2));
	assert_int_equal(a.downs, 0); /* the held one lingers for its GOAWAY */
	qt_conn_on_readable(b1);      /* b: a connection dialed by the lower id wins */
	assert_true(qt_node_connected(b.n, 1));
	struct tnode *nodes[] = {&a, &b};
	struct sim s = {&a, &b};
	assert_true(pump(nodes, 2, 5000, sim_done, &s, NULL));
	check_integrity(&a, &b);
	assert_int_equal(a.open_reqs, 5);
	assert_int_equal(b.open_reqs, 5);
	assert_ptr_equal(only_conn(&a), a1);
	assert_ptr_equal(only_conn(&b), b1);
	tnode_free(&a);
	tnode_free(&b);
}

/* ---- a hostile peer ----------------------------------------------------- */

struct evil {
	int fd;
	uint8_t in[1 << 16];
	size_t in_len;
};

static void evil_send(struct evil *e, const void *p, size_t n)
{
	assert_int_equal(send(e->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void evil_hello(struct evil *e, uint64_t id, uint32_t window, uint16_t version)
{
	uint8_t b[64];
	struct qt_hello h = {
	    .node_id = id, .proto_version = version, .flags = QT_HELLO_DIALER, .window = window};
	evil_send(e, b, qt_frame_put_hello(b, &h));
}

static void evil_read(struct evil *e)
{
	ssize_t n = recv(e->fd, e->in + e->in_len, sizeof(e->in) - e->in_len, MSG_DONTWAIT);
	if (n > 0)
		e->in_len += (size_t)n;
}

/* Whether the evil peer received a frame of this type (and errno). */
static bool evil_got(struct evil *e, unsigned type, int err_expected)
{
	size_t off = 0;
	while (e->in_len - off >= QT_HDR_SIZE) {
		struct qt_frame_hdr h;
		struct qerr err;
		int r = qt_frame_decode_hdr(e->in + off, e->in_len - off, &h, &err);
		if (r <= 0 || (size_t)r > e->in_len - off)
			return false;
		if (h.type == type) {
			if (err_expected < 0)
				return true;
			int got;
			if (qt_frame_parse_errno(e->in + off + QT_HDR_SIZE, h.len, &got, &err) ==
				0 &&
			    got == err_expected)
				return true;
		}
		off += (size_t)r;
	}
	return false;
}

static void evil_connect(struct evil *e, struct tnode *tn)
{
	memset(e, 0, sizeof(*e));
	e->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = loopback(tn->port);
	assert_int_equal(connect(e->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
}

static void pump_evil(struct tnode *tn, struct evil *e, int rounds)
{
	struct tnode *nodes[] = {tn};
	for (int i = 0; i < rounds; i++) {
		pump_once(nodes, 1, 2, NULL);
		evil_read(e);
	}
}

enum evil_prep { PREP_NONE, PREP_HELLO, PREP_OPEN };

/* The node must tear the connection down with EPROTO and a message naming
 * the problem, tell the peer GOAWAY(EPROTO), and close. */
static void malformed(enum evil_prep prep, const void *bytes, size_t n, const char *needle)
{
	struct tnode tn;
	struct qt_config cfg = {.window = QT_WINDOW_MIN};
	tnode_init(&tn, 1, &cfg);
	struct evil e;
	evil_connect(&e, &tn);
	if (prep >= PREP_HELLO) {
		evil_hello(&e, 99, 65536, QT_PROTO_VERSION);
		pump_evil(&tn, &e, 20);
		assert_int_equal(tn.ups, 1);
		assert_true(evil_got(&e, QT_HELLO, -1));
	}
	if (prep >= PREP_OPEN) {
		/* 99 > 1: the evil node's ids carry the side bit. */
		uint8_t b[64];
		struct qt_open o = {.dst = {.family = AF_INET, .port = 80},
				    .src = {.family = AF_INET, .port = 1}};
		evil_send(&e, b, qt_frame_put_open(b, QT_CHAN_SIDE_BIT | 1, &o));
		pump_evil(&tn, &e, 20);
		assert_true(evil_got(&e, QT_OPEN_OK, -1));
	}
	evil_send(&e, bytes, n);
	struct tnode *nodes[] = {&tn};
	for (int i = 0; i < 400 && tn.downs == 0; i++) {
		pump_once(nodes, 1, 5, NULL);
		evil_read(&e);
		if (evil_got(&e, QT_GOAWAY, EPROTO))
			shutdown(e.fd, SHUT_WR); /* as an honest peer would, after GOAWAY */
	}
	assert_int_equal(tn.downs, 1);
	assert_int_equal(tn.last_down_err, EPROTO);
	if (!strstr(tn.last_down_why, needle))
		fail_msg("'%s' does not say '%s'", tn.last_down_why, needle);
	assert_true(evil_got(&e, QT_GOAWAY, EPROTO));
	/* Every channel went with it. */
	for (int i = 0; i < tn.nch; i++)
		assert_true(tn.ch[i]->rst && tn.ch[i]->rst_err == ECONNRESET);
	close(e.fd);
	tnode_free(&tn);
}

static size_t hdr(uint8_t *b, unsigned type, uint32_t chan, uint32_t len, uint32_t credit)
{
	memset(b + QT_HDR_SIZE, 0xab, len < 70000 ? len : 0);
	return qt_frame_put_hdr(b, type, chan, len, credit);
}

static void test_malformed_frames(void **state)
{
	(void)state;
	static uint8_t b[3 * QT_FRAME_MAX];
	const uint32_t ch = QT_CHAN_SIDE_BIT | 1;
	size_t n;

	/* Header-level garbage, before and after HELLO. */
	n = hdr(b, QT_PING, 0, 8, 0);
	malformed(PREP_NONE, b, n, "PING before HELLO");
	n = hdr(b, QT_PING, 0, 8, 0);
	b[0] = 7;
	malformed(PREP_HELLO, b, n, "frame version 7");
	n = hdr(b, QT_PING, 0, 0, 0);
	b[1] = 99;
	malformed(PREP_HELLO, b, QT_HDR_SIZE, "unknown frame type 99");
	hdr(b, QT_DATA, ch, 0, 0);
	malformed(PREP_OPEN, b, QT_HDR_SIZE, "DATA with a payload of 0 bytes");
	hdr(b, QT_OPEN, ch + 1, 3, 0);
	malformed(PREP_HELLO, b, QT_HDR_SIZE + 3, "OPEN with a payload of 3");
	hdr(b, QT_DATA, ch, 0x7fffffff, 0);
	malformed(PREP_OPEN, b, QT_HDR_SIZE, "payload of 2147483647");
	malformed(PREP_HELLO, b, qt_frame_put_hello(b, &(struct qt_hello){99, 1, 1, 65536}),
		  "a second HELLO");

	/* Credit: the node's window is 4096; the 4097th byte is one too many. */
	n = hdr(b, QT_DATA, ch, 4096, 0);
	n += hdr(b + n, QT_DATA, ch, 1, 0);
	malformed(PREP_OPEN, b, n, "DATA of 1 bytes on channel 2147483649 beyond its credit of 0");
	n = hdr(b, QT_DATA, ch, 5000, 0);
	malformed(PREP_OPEN, b, n, "beyond its credit of 4096");
	/* Credit the node never earned: it sent nothing. */
	n = hdr(b, QT_CREDIT, ch, 0, 100);
	malformed(PREP_OPEN, b, n, "credit of 100 beyond what was sent");

	/* Frames for channels in the wrong state. */
	n = hdr(b, QT_FIN, ch, 0, 0);
	n += hdr(b + n, QT_DATA, ch, 10, 0);
	malformed(PREP_OPEN, b, n, "DATA on channel 2147483649, which is closed by the peer's FIN");
	n = hdr(b, QT_DATA, QT_CHAN_SIDE_BIT | 5, 10, 0);
	malformed(PREP_OPEN, b, n, "which was never opened");
	n = hdr(b, QT_OPEN_OK, 3, 0, 0);
	malformed(PREP_OPEN, b, n, "OPEN_OK for channel 3, which was never opened");
	n = hdr(b, QT_OPEN_OK, ch, 0, 0);
	malformed(PREP_OPEN, b, n, "OPEN_OK for channel 2147483649, which is not opening");
	struct qt_open o = {.dst = {.family = AF_INET, .port = 80}};
	n = qt_frame_put_open(b, 1, &o);
	malformed(PREP_HELLO, b, n, "OPEN for channel 1, an id of our side");
	n = qt_frame_put_open(b, ch, &o);
	malformed(PREP_OPEN, b, n, "OPEN for channel 2147483649, which is open");
	n = qt_frame_put_errno(b, QT_RST, ch, EINTR);
	malformed(PREP_OPEN, b, n, "errno 4 is not one the transport carries");
	/* A HELLO with a window out of bounds, or our own id. */
	malformed(PREP_NONE, b, qt_frame_put_hello(b, &(struct qt_hello){99, 1, 1, 100}),
		  "window 100 out of");
	malformed(PREP_NONE, b, qt_frame_put_hello(b, &(struct qt_hello){1, 1, 1, 65536}),
		  "our own node id");
	malformed(PREP_NONE, b, qt_frame_put_hello(b, &(struct qt_hello){99, 1, 0, 65536}),
		  "both or neither end dialed");
}

/* Late frames for a channel the node already let go of are dropped, not
 * fatal: the peer could not know. */
static void test_late_frames_dropped(void **state)
{
	(void)state;
	struct tnode tn;
	tnode_init(&tn, 1, NULL);
	struct evil e;
	evil_connect(&e, &tn);
	evil_hello(&e, 99, 65536, QT_PROTO_VERSION);
	pump_evil(&tn, &e, 10);
	uint8_t b[256];
	struct qt_open o = {.dst = {.family = AF_INET, .port = 80}};
	evil_send(&e, b, qt_frame_put_open(b, QT_CHAN_SIDE_BIT | 1, &o));
	pump_evil(&tn, &e, 10);
	assert_int_equal(tn.nch, 1);
	tchan_close(tn.ch[0]); /* the node resets it */
	pump_evil(&tn, &e, 10);
	assert_true(evil_got(&e, QT_RST, ECONNRESET));
	size_t n = hdr(b, QT_DATA, QT_CHAN_SIDE_BIT | 1, 10, 0);
	n += hdr(b + n, QT_CREDIT, QT_CHAN_SIDE_BIT | 1, 0, 10);
	evil_send(&e, b, n);
	pump_evil(&tn, &e, 10);
	assert_int_equal(tn.downs, 0);
	struct qt_conn_stats st;
	qt_conn_stats(only_conn(&tn), &st);
	assert_int_equal(st.late_frames, 2);
	close(e.fd);
	tnode_free(&tn);
}

/* A peer that goes silent is pinged, then given up on. */
static void test_keepalive_timeout(void **state)
{
	(void)state;
	struct tnode tn;
	struct qt_config cfg = {.keepalive_ms = 50, .timeout_ms = 300};
	tnode_init(&tn, 1, &cfg);
	struct evil e;
	evil_connect(&e, &tn);
	evil_hello(&e, 99, 65536, QT_PROTO_VERSION);
	struct tnode *nodes[] = {&tn};
	for (int i = 0; i < 400 && tn.downs == 0; i++) {
		pump_once(nodes, 1, 5, NULL);
		evil_read(&e);
	}
	assert_int_equal(tn.ups, 1);
	assert_int_equal(tn.downs, 1);
	assert_int_equal(tn.last_down_err, ETIMEDOUT);
	assert_true(evil_got(&e, QT_PING, -1));
	close(e.fd);
	tnode_free(&tn);

	/* Answering the PINGs keeps it up, and measures a round trip. */
	tnode_init(&tn, 1, &cfg);
	evil_connect(&e, &tn);
	evil_hello(&e, 99, 65536, QT_PROTO_VERSION);
	uint64_t end = now_ms() + 500;
	size_t seen = 0;
	while (now_ms() < end) {
		pump_once(nodes, 1, 5, NULL);
		evil_read(&e);
		/* Echo every PING (frames after our HELLO). */
		while (e.in_len - seen >= QT_HDR_SIZE) {
			struct qt_frame_hdr h;
			struct qerr err;
			int r = qt_frame_decode_hdr(e.in + seen, e.in_len - seen, &h, &err);
			assert_true(r > 0);
			if ((size_t)r > e.in_len - seen)
				break;
			if (h.type == QT_PING) {
				uint8_t pong[32];
				memcpy(pong, e.in + seen, (size_t)r);
				pong[1] = QT_PONG;
				evil_send(&e, pong, (size_t)r);
			}
			seen += (size_t)r;
		}
	}
	assert_int_equal(tn.downs, 0);
	struct qt_conn_stats st;
	qt_conn_stats(only_conn(&tn), &st);
	assert_true(st.rtt_us > 0);
	close(e.fd);
	tnode_free(&tn);
}

/* A peer that sends PINGs and never reads: the node stops reading once it
 * owes more than its send queue and slack, so its memory stays bounded. */
static void test_pong_flood_bounded(void **state)
{
	(void)state;
	struct tnode tn;
	struct qt_config cfg = {.send_queue = 64 * 1024};
	tnode_init(&tn, 1, &cfg);
	struct evil e;
	evil_connect(&e, &tn);
	int small = 4096;
	setsockopt(e.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	evil_hello(&e, 99, 65536, QT_PROTO_VERSION);
	static uint8_t pings[24 * 4096];
	size_t n = 0;
	while (n + 24 <= sizeof(pings))
		n += qt_frame_put_ping(pings + n, QT_PING, n);
	struct tnode *nodes[] = {&tn};
	int fl = 0;
	(void)fl;
	size_t sent_total = 0;
	for (int i = 0; i < 300; i++) {
		ssize_t r = send(e.fd, pings, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0)
			sent_total += (size_t)r;
		pump_once(nodes, 1, 1, NULL);
	}
	/* The node is alive, and it stopped reading: the evil peer could not
	 * push everything it wanted. */
	assert_int_equal(tn.downs, 0);
	assert_true(sent_total < 300 * n);
	print_message("  evil peer got %zu KiB of PINGs in before the node stopped reading\n",
		      sent_total / 1024);
	close(e.fd);
	tnode_free(&tn);
}

/* ---- two nodes, two network namespaces ------------------------------ */

#define NS_ADDR_A "10.213.77.1"
#define NS_ADDR_B "10.213.77.2"
#define NS_PORT	  7070

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static struct sockaddr_in ns_addr(const char *ip)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(NS_PORT)};
	inet_pton(AF_INET, ip, &sin.sin_addr);
	return sin;
}

/* One node in its own namespace: listen, wait for go, dial the other at
 * the same moment it dials us, open 16 channels, check everything.  Plain
 * checks and an exit code: cmocka's asserts do not cross fork(). */
static int ns_node(uint64_t id, uint64_t peer_id, const char *me, const char *peer, int go_fd,
		   int ready_fd)
{
	struct tnode tn, other = {.id = peer_id};
	struct sockaddr_in la = ns_addr(me), pa = ns_addr(peer);
	struct qerr err = {0};
	tnode_init_at(&tn, id, NULL, &la);
	tn.reply_max = 512 * 1024;
	tn.fin_after_tx = true;
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
		return 10;
	struct qt_backend *be = qt_tcp_dial((struct sockaddr *)&pa, sizeof(pa), &err);
	if (!be || !qt_node_attach(tn.n, be, peer_id, &err)) {
		fprintf(stderr, "node %" PRIu64 ": dial: %s\n", id, err.msg);
		return 11;
	}
	uint32_t rng = (uint32_t)id * 7919u;
	for (int i = 0; i < 16; i++)
		open_chan(&tn, &other, 80, rnd(&rng) % (1024 * 1024), true);
	struct tnode *nodes[] = {&tn};
	/* Done when our 16 and the peer's 16 finished both ways, on one
	 * connection. */
	uint64_t end = now_ms() + 20000;
	for (;;) {
		int done = 0;
		for (int i = 0; i < tn.nch; i++) {
			struct tchan *t = tn.ch[i];
			if (t->open_done && t->tx_sent == t->tx_total && t->eof)
				done++;
		}
		if (done == 32 && tn.nconns == 1 && qt_node_connected(tn.n, peer_id))
			break;
		if (now_ms() > end) {
			fprintf(stderr, "node %" PRIu64 ": %d/32 channels done, %d conns (%s)\n",
				id, done, tn.nconns, tn.last_down_why);
			return 12;
		}
		pump_once(nodes, 1, 5, NULL);
	}
	for (int i = 0; i < tn.nch; i++)
		if (tn.ch[i]->bad_data || tn.ch[i]->rst || tn.ch[i]->open_err)
			return 13;
	/* The lower node's dial is the survivor. */
	if (qt_conn_dialed(tn.conns[0]) != (id < peer_id))
		return 14;
	int n = tn.nch;
	/* Let the peer finish too before we go. */
	pump(nodes, 1, 300, NULL, NULL, NULL);
	tnode_free(&tn);
	return n == 32 ? 0 : 15;
}

static void test_two_namespaces(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	int up[2], go[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(go), 0);
	fflush(NULL);
	pid_t pa = fork();
	assert_true(pa >= 0);
	if (pa == 0) {
		/* Node A: its own namespace, and B's made from here. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (unshare(CLONE_NEWNET) < 0)
			_exit(77);
		int ab[2], ba[2];
		if (pipe(ab) || pipe(ba))
			_exit(20);
		pid_t pb = fork();
		if (pb == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (unshare(CLONE_NEWNET) < 0)
				_exit(77);
			char c = 'u';
			if (write(ba[1], &c, 1) != 1 || read(ab[0], &c, 1) != 1)
				_exit(21);
			if (run("ip addr add " NS_ADDR_B "/24 dev qtvb && ip link set qtvb up && "
				"ip link set lo up"))
				_exit(22);
			_exit(ns_node(2, 1, NS_ADDR_B, NS_ADDR_A, go[0], up[1]));
		}
		char c;
		if (pb < 0 || read(ba[0], &c, 1) != 1)
			_exit(23);
		if (run("ip link add name qtva type veth peer name qtvb netns %d", (int)pb) ||
		    run("ip addr add " NS_ADDR_A "/24 dev qtva && ip link set qtva up && "
			"ip link set lo up")) {
			kill(pb, SIGKILL);
			_exit(24);
		}
		if (write(ab[1], &c, 1) != 1)
			_exit(25);
		int code = ns_node(1, 2, NS_ADDR_A, NS_ADDR_B, go[0], up[1]);
		int st;
		waitpid(pb, &st, 0);
		if (code)
			_exit(code);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) + 100 * !!WEXITSTATUS(st) : 99);
	}
	close(up[1]);
	/* Both nodes listening: let them dial each other at once. */
	char c;
	int ready = 0;
	while (ready < 2 && read(up[0], &c, 1) == 1)
		ready++;
	if (ready == 2) {
		char go2[2] = {'g', 'g'};
		assert_int_equal(write(go[1], go2, 2), 2);
	}
	int st;
	assert_int_equal(waitpid(pa, &st, 0), pa);
	close(up[0]);
	close(go[0]);
	close(go[1]);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77)
		skip();
	if (WEXITSTATUS(st) != 0)
		fail_msg("namespace nodes exited with %d (see stderr)", WEXITSTATUS(st));
	print_message("  two nodes in two network namespaces over a veth pair: 32 channels, "
		      "one connection\n");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frames),
	    cmocka_unit_test(test_hello_tcp),
	    cmocka_unit_test(test_hello_rdma),
	    cmocka_unit_test(test_version_mismatch),
	    cmocka_unit_test(test_open_both_sides),
	    cmocka_unit_test(test_many_channels_tcp),
	    cmocka_unit_test(test_many_channels_rdma),
	    cmocka_unit_test(test_slow_reader_tcp),
	    cmocka_unit_test(test_corked_many_channels_and_slow_reader),
	    cmocka_unit_test(test_cork_batches_frames),
	    cmocka_unit_test(test_slow_reader_rdma),
	    cmocka_unit_test(test_half_close),
	    cmocka_unit_test(test_rst_and_refuse),
	    cmocka_unit_test(test_conn_loss_tcp),
	    cmocka_unit_test(test_conn_loss_rdma),
	    cmocka_unit_test(test_open_timeout),
	    cmocka_unit_test(test_dial_refused),
	    cmocka_unit_test(test_simultaneous_dial),
	    cmocka_unit_test(test_two_way_open_ordering),
	    cmocka_unit_test(test_malformed_frames),
	    cmocka_unit_test(test_late_frames_dropped),
	    cmocka_unit_test(test_keepalive_timeout),
	    cmocka_unit_test(test_pong_flood_bounded),
	    cmocka_unit_test(test_two_namespaces),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
