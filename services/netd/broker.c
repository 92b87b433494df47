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
#include "services/netd/netd.h"

/* A listener's supervisor answers an incoming at once (no I/O): this only
 * bounds a stuck one. */
#define PENDING_TIMEOUT_NS (2 * 1000000000LL)
#define MAX_PENDING	   1024
#define EPHEMERAL_LO	   32768
#define EPHEMERAL_HI	   60999

struct pending {
	uint64_t seq; /* netd's, in the incoming; 0: free */
	struct nsbx *from, *to;
	uint32_t from_seq;
	int fd; /* the connecting side's end */
	struct in_addr ip;
	uint16_t port, lport;
	int64_t since_ns;
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

static void refuse(struct nsbx *s, uint32_t seq, int code)
{
	struct qmsg_out m;

	qmsg_out_init(&m);
	qmsg_begin(&m, "refused", 2);
	qmsg_put_uint(&m, "seq", seq);
	qmsg_put_int(&m, "code", code);
	nsbx_send(s, &m, -1);
	qmsg_out_free(&m);
}

void broker_connect(struct nsbx *s, const struct qmsg_in *in)
{
	struct qerr err = {0};
	struct in_addr ip;
	uint16_t port;
	int64_t seq;
	struct pending *p = NULL;
	int sv[2];

	if (qmsg_get_int(in->root, "seq", 1, UINT32_MAX, &seq, &err) < 0 ||
	    get_addr_port(in, &ip, &port, &err) < 0) {
		qlog_warn("%s: connect: %s", s->id, err.msg);
		qmetric_inc(netd.m_errors);
		return;
	}
	struct nsbx *to = listener_of(ip, port);
	for (int i = 0; i < MAX_PENDING && !p; i++)
		if (!pending[i].seq)
			p = &pending[i];
	if (!to || !p) {
		qmetric_inc(netd.m_kernel);
		refuse(s, (uint32_t)seq, ECONNREFUSED);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		qlog_warn("%s: connect: socketpair: %s", s->id, strerror(errno));
		qmetric_inc(netd.m_errors);
		refuse(s, (uint32_t)seq, ECONNREFUSED);
		return;
	}
	if (s->next_port < EPHEMERAL_LO || s->next_port >= EPHEMERAL_HI)
		s->next_port = EPHEMERAL_LO;
	*p = (struct pending){.seq = ++next_seq,
			      .from = s,
			      .to = to,
			      .from_seq = (uint32_t)seq,
			      .fd = sv[0],
			      .ip = ip,
			      .port = port,
			      .lport = s->next_port++,
			      .since_ns = now_ns()};
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "incoming", 5);
	qmsg_put_uint(&m, "seq", p->seq);
	netp_put_addr(&m, "ip", ip);
	qmsg_put_int(&m, "port", port);
	netp_put_addr(&m, "pip", s->ip);
	qmsg_put_int(&m, "pport", p->lport);
	int r = nsbx_send(to, &m, sv[1]);
	qmsg_out_free(&m);
	close(sv[1]);
	if (r < 0) {
		close(p->fd);
		p->seq = 0;
		qmetric_inc(netd.m_kernel);
		refuse(s, (uint32_t)seq, ECONNREFUSED);
	}
}

static void finish(struct pending *p, int code)
{
	if (code == 0) {
		struct qmsg_out m;
		qmsg_out_init(&m);
		qmsg_begin(&m, "connected", 4);
		qmsg_put_uint(&m, "seq", p->from_seq);
		qmsg_put_int(&m, "lport", p->lport);
		netp_put_addr(&m, "pip", p->ip);
		qmsg_put_int(&m, "pport", p->port);
		if (nsbx_send(p->from, &m, p->fd) == 0)
			qmetric_inc(netd.m_direct);
		qmsg_out_free(&m);
	} else if (p->from) {
		qmetric_inc(netd.m_refused);
		refuse(p->from, p->from_seq, code);
	}
	close(p->fd);
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
			if (!pending[i].from) {
				close(pending[i].fd);
				pending[i].seq = 0;
				return;
			}
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
		if (p->from == s) {
			/* the listener's side still has its end: it reads EOF */
			p->from = NULL;
			if (p->to == s) {
				close(p->fd);
				p->seq = 0;
			}
		} else if (p->to == s) {
			finish(p, ECONNREFUSED);
		}
	}
}

void broker_sweep(void)
{
	int64_t now = now_ns();
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &pending[i];
		if (p->seq && now - p->since_ns > PENDING_TIMEOUT_NS) {
			qlog_warn("%s: no answer to an incoming connection for 2 s",
				  p->to ? p->to->id : "?");
			if (p->from)
				finish(p, ECONNREFUSED);
			else {
				close(p->fd);
				p->seq = 0;
			}
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
