/* The socket service's node-local side (netd.h; docs/netd.md): which
 * sandbox listens where, and the stream pairs that join a connecting
 * sandbox to a listening one.
 *
 * A connect from sandbox A to ip:port where sandbox B listens:
 *   A -> netd   connect {seq, ip, port}
 *   netd -> B   incoming {seq', ip, port, pip, pport} + one end of a new
 *               AF_UNIX stream pair (pip:pport: A's address and a port
 *               netd picks for it)
 *   B -> netd   accepted {seq', code}: B queued it on its listener (0), or
 *               not (its listener is gone: ECONNREFUSED)
 *   netd -> A   connected {seq, lport, pip, pport} + the other end, or
 *               refused {seq, code}: A's kernel makes the connection.
 * netd keeps nothing once the pair is handed over: the data never passes
 * through it, and a netd that restarts leaves established channels alone.
 * An address no sandbox of this node listens on is refused at once, so
 * the kernel (the bridge, NAT, the host) takes it. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/net_proto.h"
#include "services/netd/grants.h"
#include "services/netd/netd.h"

/* A listener's supervisor answers an incoming at once (no I/O): this only
 * bounds a stuck one. */
#define PENDING_TIMEOUT_NS (2 * 1000000000LL)
/* An incoming not taken after this long: its sandbox may be hibernated
 * (wake.c).  A running supervisor answers in well under a millisecond. */
#define WAKE_AFTER_MS 20
#define MAX_PENDING   1024
#define EPHEMERAL_LO  32768
#define EPHEMERAL_HI  60999

/* An incoming offered to a listener's supervisor, waiting for its
 * "accepted".  For a sandbox of this node (from) or for a channel of the
 * node transport (relay). */
struct pending {
	uint64_t seq; /* netd's, in the incoming; 0: free */
	struct nsbx *to;
	int64_t since_ns;
	int fd; /* netd's end of the pair: the connecting side's, or the relay's */
	struct nsbx *from;
	uint32_t from_seq;
	struct in_addr ip;
	uint16_t port, lport;
	struct relay *relay;
	bool wake_asked;
};

static struct pending pending[MAX_PENDING];
static uint64_t next_seq;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int get_addr_port(const struct qmsg_in *in, struct in_addr *ip, uint16_t *port,
			 struct qerr *err)
{
	int r = netp_get_addr(in->root, "ip", ip, err);
	return r < 0 ? r : netp_get_port(in->root, "port", port, err);
}

void broker_listen(struct nsbx *s, const struct qmsg_in *in, bool on)
{
	struct qerr err = {0};
	struct nlisten l;

	if (get_addr_port(in, &l.ip, &l.port, &err) < 0) {
		qlog_warn("%s: %s: %s", s->id, in->op, err.msg);
		qmetric_inc(netd.m_errors);
		return;
	}
	for (unsigned i = 0; i < s->nlistens; i++) {
		if (s->listens[i].ip.s_addr == l.ip.s_addr && s->listens[i].port == l.port) {
			if (!on)
				s->listens[i] = s->listens[--s->nlistens];
			return;
		}
	}
	if (!on)
		return;
	if (s->nlistens == NETD_MAX_LISTENS) {
		qlog_warn("%s: more than %d listeners: port %u only over TCP", s->id,
			  NETD_MAX_LISTENS, l.port);
		return;
	}
	s->listens[s->nlistens++] = l;
	qlog_debug("%s: listens on port %u", s->id, l.port);
}

/* The sandbox of this node that listens on ip:port, if any. */
static struct nsbx *listener_of(struct in_addr ip, uint16_t port)
{
	for (struct nsbx *s = netd.sandboxes; s; s = s->next) {
		if (s->mode != NSBX_QUIVER || s->closing || s->ip.s_addr != ip.s_addr)
			continue;
		for (unsigned i = 0; i < s->nlistens; i++)
			if (s->listens[i].port == port && (s->listens[i].ip.s_addr == INADDR_ANY ||
							   s->listens[i].ip.s_addr == ip.s_addr))
				return s;
	}
	return NULL;
}

void broker_refuse(struct nsbx *s, uint32_t seq, int code)
{
	struct qmsg_out m;

	qmsg_out_init(&m);
	qmsg_begin(&m, "refused", 2);
	qmsg_put_uint(&m, "seq", seq);
	qmsg_put_int(&m, "code", code);
	nsbx_send(s, &m, -1);
	qmsg_out_free(&m);
}

/* Allowed, and no sandbox's listener to join: the supervisor makes the
 * kernel's connection. */
static void kernel(struct nsbx *s, uint32_t seq)
{
	struct qmsg_out m;

	qmetric_inc(netd.m_kernel);
	qmsg_out_init(&m);
	qmsg_begin(&m, "kernel", 1);
	qmsg_put_uint(&m, "seq", seq);
	nsbx_send(s, &m, -1);
	qmsg_out_free(&m);
}

void broker_connected(struct nsbx *s, uint32_t seq, uint16_t lport, struct in_addr pip,
		      uint16_t pport, int fd)
{
	struct qmsg_out m;

	qmsg_out_init(&m);
	qmsg_begin(&m, "connected", 4);
	qmsg_put_uint(&m, "seq", seq);
	qmsg_put_int(&m, "lport", lport);
	netp_put_addr(&m, "pip", pip);
	qmsg_put_int(&m, "pport", pport);
	nsbx_send(s, &m, fd);
	qmsg_out_free(&m);
}

uint16_t broker_lport(struct nsbx *s)
{
	if (s->next_port < EPHEMERAL_LO || s->next_port >= EPHEMERAL_HI)
		s->next_port = EPHEMERAL_LO;
	return s->next_port++;
}

/* Offer a new stream pair to the supervisor of `to`, which listens on
 * ip:port, for a connection from pip:pport: the pending entry keeps our
 * end.  NULL when it cannot be offered. */
static struct pending *offer(struct nsbx *to, struct in_addr ip, uint16_t port, struct in_addr pip,
			     uint16_t pport)
{
	struct pending *p = NULL;
	int sv[2];

	for (int i = 0; i < MAX_PENDING && !p; i++)
		if (!pending[i].seq)
			p = &pending[i];
	if (!p)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		qlog_warn("%s: socketpair: %s", to->id, strerror(errno));
		qmetric_inc(netd.m_errors);
		return NULL;
	}
	*p = (struct pending){
	    .seq = ++next_seq, .to = to, .since_ns = now_ns(), .fd = sv[0], .ip = ip, .port = port};
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "incoming", 5);
	qmsg_put_uint(&m, "seq", p->seq);
	netp_put_addr(&m, "ip", ip);
	qmsg_put_int(&m, "port", port);
	netp_put_addr(&m, "pip", pip);
	qmsg_put_int(&m, "pport", pport);
	int r = nsbx_send(to, &m, sv[1]);
	qmsg_out_free(&m);
	close(sv[1]);
	if (r == 0 && !uv_is_active((uv_handle_t *)&netd.wake_timer))
		uv_timer_start(&netd.wake_timer, broker_wake_check, WAKE_AFTER_MS, 0);
	if (r < 0) {
		/* the failed send closed `to`, which finished p already */
		if (p->seq) {
			close(p->fd);
			p->seq = 0;
		}
		return NULL;
	}
	return p;
}

int broker_offer_remote(struct in_addr ip, uint16_t port, struct in_addr pip, uint16_t pport,
			struct relay *r)
{
	struct nsbx *to = listener_of(ip, port);
	struct pending *p = to ? offer(to, ip, port, pip, pport) : NULL;

	if (!p)
		return -ECONNREFUSED;
	p->relay = r;
	return 0;
}

/* The sandbox of this node at ip (bridge or quiver mode), if any. */
static struct nsbx *sandbox_at(struct in_addr ip)
{
	for (struct nsbx *s = netd.sandboxes; s; s = s->next)
		if ((s->mode == NSBX_BRIDGE || s->mode == NSBX_QUIVER) && !s->closing &&
		    s->ip.s_addr == ip.s_addr)
			return s;
	return NULL;
}

void broker_connect(struct nsbx *s, const struct qmsg_in *in)
{
	struct qerr err = {0};
	struct in_addr ip;
	uint16_t port;
	int64_t seq;

	if (qmsg_get_int(in->root, "seq", 1, UINT32_MAX, &seq, &err) < 0 ||
	    get_addr_port(in, &ip, &port, &err) < 0) {
		qlog_warn("%s: connect: %s", s->id, err.msg);
		qmetric_inc(netd.m_errors);
		return;
	}
	/* the policy first: itself, and what io.quiver.net.peers grants */
	struct nsbx *owner = sandbox_at(ip);
	if (ip.s_addr != s->ip.s_addr &&
	    !grants_allow(&s->grants, ip, port, owner ? owner->id : NULL)) {
		bool sandboxes =
		    owner || ipam_subnet_contains(&netd.subnet, ip) || nodes_peer_subnet(ip);
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &ip, a, sizeof(a));
		qlog_info("%s: connect to %s:%u refused: not in its %s", s->id, a, port,
			  NET_PEERS_ANNOTATION);
		qmetric_inc(netd.m_denied);
		broker_refuse(s, (uint32_t)seq, sandboxes ? ECONNREFUSED : ENETUNREACH);
		return;
	}
	struct nsbx *to = listener_of(ip, port);
	if (!to) {
		/* another node's sandbox, over the transport; else the kernel's */
		if (relay_connect(s, (uint32_t)seq, ip, port) < 0)
			kernel(s, (uint32_t)seq);
		return;
	}
	uint16_t lport = broker_lport(s);
	struct pending *p = offer(to, ip, port, s->ip, lport);
	if (!p) {
		kernel(s, (uint32_t)seq);
		return;
	}
	p->from = s;
	p->from_seq = (uint32_t)seq;
	p->lport = lport;
}

static void finish(struct pending *p, int code)
{
	if (p->relay) {
		relay_offered(p->relay, code, code == 0 ? p->fd : -1);
		if (code == 0)
			p->fd = -1;
	} else if (code == 0 && p->from) {
		broker_connected(p->from, p->from_seq, p->lport, p->ip, p->port, p->fd);
		qmetric_inc(netd.m_direct);
	} else if (p->from) {
		/* the listener went away before it took the channel: the kernel
		 * says what there is at that address now */
		qmetric_inc(netd.m_refused);
		kernel(p->from, p->from_seq);
	}
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->seq = 0;
}

void broker_accepted(struct nsbx *s, const struct qmsg_in *in)
{
	struct qerr err = {0};
	int64_t seq, code = ECONNREFUSED;

	if (qmsg_get_int(in->root, "seq", 1, INT64_MAX, &seq, &err) < 0 ||
	    qmsg_get_int(in->root, "code", 0, 4095, &code, &err) < 0) {
		qlog_warn("%s: accepted: %s", s->id, err.msg);
		qmetric_inc(netd.m_errors);
		return;
	}
	for (int i = 0; i < MAX_PENDING; i++) {
		/* only the sandbox it was sent to may answer it */
		if (pending[i].seq == (uint64_t)seq && pending[i].to == s) {
			finish(&pending[i], (int)code);
			return;
		}
	}
}

void broker_forget(struct nsbx *s)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &pending[i];
		if (!p->seq)
			continue;
		if (p->to == s)
			finish(p, ECONNREFUSED);
		else if (p->from == s)
			p->from = NULL; /* the listener's side reads EOF */
	}
}

void broker_forget_relay(struct relay *r)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].seq && pending[i].relay == r) {
			pending[i].relay = NULL;
			pending[i].from = NULL;
		}
}

/* Incomings left unanswered for WAKE_AFTER_MS: wake their sandboxes. */
void broker_wake_check(uv_timer_t *t)
{
	int64_t now = now_ns(), next = -1;

	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &pending[i];
		if (!p->seq || p->wake_asked)
			continue;
		int64_t age_ms = (now - p->since_ns) / 1000000;
		if (age_ms >= WAKE_AFTER_MS) {
			p->wake_asked = true;
			wake_for_connection(p->to);
		} else if (next < 0 || WAKE_AFTER_MS - age_ms < next) {
			next = WAKE_AFTER_MS - age_ms;
		}
	}
	if (next >= 0)
		uv_timer_start(t, broker_wake_check, (uint64_t)next + 1, 0);
}

void broker_sweep(void)
{
	int64_t now = now_ns();
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &pending[i];
		if (p->seq && now - p->since_ns > PENDING_TIMEOUT_NS) {
			qlog_warn("%s: no answer to an incoming connection for 2 s", p->to->id);
			finish(p, ECONNREFUSED);
		}
	}
}

size_t broker_pending(void)
{
	size_t n = 0;
	for (int i = 0; i < MAX_PENDING; i++)
		n += pending[i].seq != 0;
	return n;
}
