/* The socket service between nodes (netd.h; docs/netd.md, "Between
 * nodes"): netd's side of the node transport (transport.h).
 *
 * Each netd knows its peer nodes: an id, the address their netd's
 * transport listens on, and the subnet their sandboxes get addresses from
 * (--peer ID,IP:PORT,CIDR).  A quiver-mode sandbox's connect to an address
 * of a peer's subnet, where no sandbox of this node listens, becomes a
 * channel of the one connection to that peer:
 *
 *   sandbox A --connect--> netd A --OPEN(dst, src)--> netd B
 *   netd B: a sandbox of B listens on dst: it offers it a stream pair
 *           (broker.c, as for a local connect); B's "accepted" -> OPEN_OK
 *   netd A: a stream pair; one end to A's supervisor ("connected"), the
 *           other relayed to the channel.
 *
 * Unlike a connect inside one node, the bytes pass through both netds
 * (stream pair -> channel -> stream pair): that is TSoR's design, where the
 * node service owns the wire between nodes.  Each relay reads what its
 * sandbox wrote while the channel has credit, and grants credit back only
 * as it writes into the sandbox's socket: a sandbox that stops reading
 * stalls its own channel and no other.
 *
 * Who may connect: only configured peers, and only from the address
 * configured for them (the node id in HELLO is a claim; the transport has
 * no authentication or encryption of its own, docs/netd-transport.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "services/netd/ipam.h"
#include "services/netd/netd.h"
#include "services/netd/transport.h"

#define MAX_PEERS 16
#define RELAY_BUF (64 * 1024)

struct npeer {
	uint64_t id;
	struct sockaddr_in addr;
	struct ipam_subnet subnet;
	struct qt_conn *dialing; /* our dial in flight, or NULL */
};

/* One connection to a peer node, as the loop polls it. */
struct nconn {
	uv_poll_t poll;
	struct qt_conn *c; /* NULL once it is down */
	struct nconn *next;
};

struct relay {
	struct qt_channel *ch;
	int fd; /* our end of the sandbox's stream pair; -1 before there is one */
	uv_poll_t poll;
	bool have_poll;
	int polled; /* the events the poll runs with, 0: stopped */
	/* an outgoing channel not yet open: the sandbox that asked */
	struct nsbx *from;
	uint32_t from_seq;
	uint16_t lport;
	struct in_addr ip;
	uint16_t port;
	/* sandbox -> channel: read, not yet taken by the channel */
	unsigned char up[RELAY_BUF];
	size_t up_len, up_off;
	/* channel -> sandbox: received, not yet written */
	unsigned char down[RELAY_BUF];
	size_t down_len, down_off;
	bool up_eof;   /* the sandbox shut its side: FIN once up[] is empty */
	bool fin_sent; /* qt_channel_shutdown done */
	bool down_eof; /* the peer's FIN, all of it written: fd shut for writing */
	struct relay *next;
};

static struct {
	bool on;
	uint64_t id;
	struct sockaddr_in listen;
	bool have_listen;
	struct npeer peers[MAX_PEERS];
	int npeers;
	struct qt_node *node;
	struct qt_listener *lis;
	uv_poll_t lis_poll;
	uv_timer_t tick;
	/* The transport is corked: every channel's frames of a loop turn go
	 * out together, flushed just before the loop waits (flush); idle
	 * keeps that wait from blocking while output is left over. */
	uv_prepare_t flush;
	uv_idle_t idle;
	struct nconn *conns;
	struct relay *relays;
	uint64_t gone_in, gone_out; /* bytes of connections that closed */
	uint64_t gone_frames, gone_sends;
} nodes;

/* ---- configuration ---- */

static int parse_addr_port(const char *s, struct sockaddr_in *out, struct qerr *err)
{
	char ip[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	char *end;

	if (!colon || (size_t)(colon - s) >= sizeof(ip))
		return qerr_set(err, EINVAL, "\"%s\" is not IPv4:PORT", s);
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	long port = strtol(colon + 1, &end, 10);
	*out = (struct sockaddr_in){.sin_family = AF_INET};
	if (inet_pton(AF_INET, ip, &out->sin_addr) != 1 || *end || end == colon + 1 || port < 1 ||
	    port > 65535)
		return qerr_set(err, EINVAL, "\"%s\" is not IPv4:PORT", s);
	out->sin_port = htons((uint16_t)port);
	return 0;
}

static int parse_id(const char *s, uint64_t *out, struct qerr *err)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || v == 0 || s[0] == '-')
		return qerr_set(err, EINVAL, "node id \"%s\" is not a number above 0", s);
	*out = v;
	return 0;
}

int nodes_set_id(const char *spec, struct qerr *err)
{
	return parse_id(spec, &nodes.id, err);
}

int nodes_set_listen(const char *spec, struct qerr *err)
{
	nodes.have_listen = true;
	return parse_addr_port(spec, &nodes.listen, err);
}

/* ID,IP:PORT,CIDR */
int nodes_add_peer(const char *spec, struct qerr *err)
{
	char buf[128], *id, *addr, *cidr;
	struct npeer p = {0};
	int r;

	if (nodes.npeers == MAX_PEERS)
		return qerr_set(err, E2BIG, "more than %d peers", MAX_PEERS);
	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		return qerr_set(err, EINVAL, "peer \"%s\": too long", spec);
	id = buf;
	addr = strchr(id, ',');
	cidr = addr ? strchr(addr + 1, ',') : NULL;
	if (!addr || !cidr)
		return qerr_set(err, EINVAL, "peer \"%s\" is not ID,IP:PORT,CIDR", spec);
	*addr++ = '\0';
	*cidr++ = '\0';
	if ((r = parse_id(id, &p.id, err)) < 0 || (r = parse_addr_port(addr, &p.addr, err)) < 0 ||
	    (r = ipam_subnet_parse(cidr, &p.subnet, err)) < 0)
		return qerr_prefix(err, "peer \"%s\"", spec);
	for (int i = 0; i < nodes.npeers; i++)
		if (nodes.peers[i].id == p.id)
			return qerr_set(err, EEXIST, "peer \"%s\": node %llu is named twice", spec,
					(unsigned long long)p.id);
	nodes.peers[nodes.npeers++] = p;
	return 0;
}

static struct npeer *peer_by_id(uint64_t id)
{
	for (int i = 0; i < nodes.npeers; i++)
		if (nodes.peers[i].id == id)
			return &nodes.peers[i];
	return NULL;
}

static struct npeer *peer_for(struct in_addr ip)
{
	for (int i = 0; i < nodes.npeers; i++)
		if (ipam_subnet_contains(&nodes.peers[i].subnet, ip))
			return &nodes.peers[i];
	return NULL;
}

bool nodes_peer_subnet(struct in_addr ip)
{
	return peer_for(ip) != NULL;
}

/* ---- connections ---- */

static void nconn_closed(uv_handle_t *h)
{
	free(h->data);
}

static void conn_polled(uv_poll_t *h, int status, int events)
{
	struct nconn *nc = h->data;

	if (nc->c && (status < 0 || (events & UV_READABLE)))
		qt_conn_on_readable(nc->c);
	if (nc->c && (events & UV_WRITABLE))
		qt_conn_on_writable(nc->c);
}

static void cb_poll_update(struct qt_conn *c, unsigned events, void *ctx)
{
	struct nconn *nc = qt_conn_user(c);
	(void)ctx;

	if (!nc) {
		nc = calloc(1, sizeof(*nc));
		if (!nc) {
			qt_conn_abort(c, ENOMEM, "out of memory");
			return;
		}
		nc->c = c;
		nc->poll.data = nc;
		uv_poll_init(netd.loop, &nc->poll, qt_conn_fd(c));
		qt_conn_set_user(c, nc);
		nc->next = nodes.conns;
		nodes.conns = nc;
	}
	int ev = ((events & POLLIN) ? UV_READABLE : 0) | ((events & POLLOUT) ? UV_WRITABLE : 0);
	if (ev)
		uv_poll_start(&nc->poll, ev, conn_polled);
	else
		uv_poll_stop(&nc->poll);
}

static void cb_conn_up(struct qt_conn *c, uint64_t peer, void *ctx)
{
	struct npeer *p = peer_by_id(peer);
	struct sockaddr_in from;
	socklen_t len = sizeof(from);
	(void)ctx;

	if (!p || getpeername(qt_conn_fd(c), (struct sockaddr *)&from, &len) < 0 ||
	    from.sin_family != AF_INET || from.sin_addr.s_addr != p->addr.sin_addr.s_addr) {
		qlog_warn("transport: refused node %llu: not a configured peer at this address",
			  (unsigned long long)peer);
		qt_conn_abort(c, EPERM, "not a configured peer");
		return;
	}
	p->dialing = NULL;
	qlog_info("transport: node %llu connected (%s)", (unsigned long long)peer,
		  qt_conn_backend(c));
}

static void cb_conn_down(struct qt_conn *c, uint64_t peer, int err, const char *why, void *ctx)
{
	struct nconn *nc = qt_conn_user(c);
	struct npeer *p = peer ? peer_by_id(peer) : NULL;
	(void)ctx;

	for (int i = 0; i < nodes.npeers; i++)
		if (nodes.peers[i].dialing == c)
			nodes.peers[i].dialing = NULL;
	if (err != EEXIST)
		qlog_info("transport: connection to node %llu down: %s (%s)",
			  (unsigned long long)(p ? p->id : peer), why ? why : "", strerror(err));
	if (!nc)
		return;
	struct qt_conn_stats st;
	qt_conn_stats(c, &st);
	nodes.gone_in += st.bytes_in;
	nodes.gone_out += st.bytes_out;
	nodes.gone_frames += st.frames_out;
	nodes.gone_sends += st.sends;
	nc->c = NULL;
	for (struct nconn **pp = &nodes.conns; *pp; pp = &(*pp)->next)
		if (*pp == nc) {
			*pp = nc->next;
			break;
		}
	uv_poll_stop(&nc->poll);
	uv_close((uv_handle_t *)&nc->poll, nconn_closed);
}

static void dial(struct npeer *p)
{
	struct qerr err = {0};

	if (p->dialing || qt_node_connected(nodes.node, p->id))
		return;
	struct qt_backend *be =
	    qt_tcp_dial((const struct sockaddr *)&p->addr, sizeof(p->addr), &err);
	if (!be) {
		qlog_warn("transport: dial node %llu: %s", (unsigned long long)p->id, err.msg);
		return;
	}
	p->dialing = qt_node_attach(nodes.node, be, p->id, &err);
	if (!p->dialing && err.code != EISCONN)
		qlog_warn("transport: node %llu: %s", (unsigned long long)p->id, err.msg);
}

/* ---- relays ---- */

static void relay_closed(uv_handle_t *h)
{
	free(h->data);
}

static void relay_free(struct relay *r)
{
	for (struct relay **pp = &nodes.relays; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	broker_forget_relay(r);
	/* the poll stops before its fd is closed */
	if (r->have_poll)
		uv_poll_stop(&r->poll);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->have_poll) {
		r->poll.data = r;
		uv_close((uv_handle_t *)&r->poll, relay_closed);
	} else {
		free(r);
	}
}

/* Something broke: the channel is reset, the sandbox's socket closed. */
static void relay_kill(struct relay *r, int err)
{
	if (r->ch)
		qt_channel_abort(r->ch, err);
	r->ch = NULL;
	relay_free(r);
}

/* Both ways finished: true when r is gone. */
static bool relay_done_maybe(struct relay *r)
{
	if (!r->fin_sent || !r->down_eof)
		return false;
	qt_channel_close(r->ch);
	r->ch = NULL;
	relay_free(r);
	return true;
}

static void relay_polled(uv_poll_t *h, int status, int events);

/* Only on a change: libuv's uv_poll_start takes the fd out of epoll and
 * puts it back (two epoll_ctl calls) even when the events are the same. */
static void relay_update(struct relay *r)
{
	int ev = 0;
	if (!r->up_eof && r->up_off == r->up_len)
		ev |= UV_READABLE;
	if (r->down_off < r->down_len)
		ev |= UV_WRITABLE;
	if (ev == r->polled)
		return;
	r->polled = ev;
	if (ev)
		uv_poll_start(&r->poll, ev, relay_polled);
	else
		uv_poll_stop(&r->poll);
}

/* sandbox -> channel; false when the relay is gone */
static bool pump_up(struct relay *r)
{
	/* A short read emptied the socket: once it is sent, the next read
	 * (most likely EAGAIN) waits for the next readable event. */
	bool emptied = false;

	for (;;) {
		while (r->up_off < r->up_len) {
			ssize_t n =
			    qt_channel_send(r->ch, r->up + r->up_off, r->up_len - r->up_off);
			if (n == -EAGAIN) {
				qmetric_inc(netd.m_stalls);
				return true; /* writable follows */
			}
			if (n < 0) {
				relay_kill(r, ECONNRESET);
				return false;
			}
			r->up_off += (size_t)n;
		}
		if (r->up_eof) {
			if (!r->fin_sent) {
				r->fin_sent = true;
				qt_channel_shutdown(r->ch);
				return !relay_done_maybe(r);
			}
			return true;
		}
		if (emptied)
			return true;
		ssize_t n = read(r->fd, r->up, sizeof(r->up));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (n < 0 && errno != ECONNRESET) {
			relay_kill(r, ECONNRESET);
			return false;
		}
		r->up_off = 0;
		r->up_len = n > 0 ? (size_t)n : 0;
		if (n <= 0)
			r->up_eof = true;
		emptied = n > 0 && (size_t)n < sizeof(r->up);
	}
}

/* channel -> sandbox; false when the relay is gone */
static bool pump_down(struct relay *r)
{
	for (;;) {
		while (r->down_off < r->down_len) {
			ssize_t n = write(r->fd, r->down + r->down_off, r->down_len - r->down_off);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return true; /* the sandbox reads slowly: no more credit */
			if (n < 0) {
				relay_kill(r, ECONNRESET);
				return false;
			}
			r->down_off += (size_t)n;
		}
		if (r->down_eof)
			return true;
		ssize_t n = qt_channel_recv(r->ch, r->down, sizeof(r->down));
		if (n == -EAGAIN)
			return true;
		if (n < 0) {
			relay_kill(r, ECONNRESET);
			return false;
		}
		r->down_off = 0;
		r->down_len = (size_t)n;
		if (n == 0) {
			r->down_eof = true;
			shutdown(r->fd, SHUT_WR);
			return !relay_done_maybe(r);
		}
	}
}

static void relay_pump(struct relay *r)
{
	if (pump_up(r) && pump_down(r))
		relay_update(r);
}

static void relay_polled(uv_poll_t *h, int status, int events)
{
	struct relay *r = h->data;
	(void)events;
	if (status < 0) {
		relay_kill(r, ECONNRESET);
		return;
	}
	relay_pump(r);
}

static int relay_start(struct relay *r, int fd)
{
	r->fd = fd;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	r->poll.data = r;
	if (uv_poll_init(netd.loop, &r->poll, fd) < 0)
		return -EIO;
	r->have_poll = true;
	relay_pump(r);
	return 0;
}

static struct relay *relay_new(void)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->fd = -1;
	r->next = nodes.relays;
	nodes.relays = r;
	return r;
}

int relay_connect(struct nsbx *s, uint32_t seq, struct in_addr ip, uint16_t port)
{
	struct qerr err = {0};
	struct npeer *p = nodes.on ? peer_for(ip) : NULL;
	struct relay *r;

	if (!p)
		return -ENETUNREACH;
	r = relay_new();
	if (!r)
		return -ENOMEM;
	r->from = s;
	r->from_seq = seq;
	r->ip = ip;
	r->port = port;
	r->lport = broker_lport(s);
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_addr = ip, .sin_port = htons(port)};
	struct sockaddr_in src = {
	    .sin_family = AF_INET, .sin_addr = s->ip, .sin_port = htons(r->lport)};
	r->ch = qt_channel_open(nodes.node, p->id, (struct sockaddr *)&dst, sizeof(dst),
				(struct sockaddr *)&src, sizeof(src), r, &err);
	if (!r->ch) {
		qlog_warn("%s: transport: open to node %llu: %s", s->id, (unsigned long long)p->id,
			  err.msg);
		relay_free(r);
		return -err.code;
	}
	dial(p);
	return 0;
}

static void cb_open_result(struct qt_channel *ch, int err, void *ctx)
{
	struct relay *r = qt_channel_user(ch);
	int sv[2];
	(void)ctx;

	if (!r->from) {
		/* the sandbox went away meanwhile */
		relay_kill(r, ECONNRESET);
		return;
	}
	if (err) {
		qmetric_inc(netd.m_refused);
		/* the peer's answer stands: no kernel path reaches another node's
		 * sandboxes */
		broker_refuse(r->from, r->from_seq, err);
		qt_channel_close(ch);
		r->ch = NULL;
		relay_free(r);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		broker_refuse(r->from, r->from_seq, ECONNREFUSED);
		relay_kill(r, ECONNRESET);
		return;
	}
	broker_connected(r->from, r->from_seq, r->lport, r->ip, r->port, sv[0]);
	close(sv[0]);
	r->from = NULL;
	qmetric_inc(netd.m_transport);
	if (relay_start(r, sv[1]) < 0)
		relay_kill(r, ECONNRESET);
}

static void cb_open_request(struct qt_channel *ch, const struct qt_open_req *req, void *ctx)
{
	const struct sockaddr_in *dst = (const struct sockaddr_in *)&req->dst;
	const struct sockaddr_in *src = (const struct sockaddr_in *)&req->src;
	struct relay *r;
	(void)ctx;

	if (req->dst.ss_family != AF_INET || req->src.ss_family != AF_INET ||
	    !peer_by_id(req->peer)) {
		qt_channel_refuse(ch, ENETUNREACH);
		return;
	}
	r = relay_new();
	if (!r) {
		qt_channel_refuse(ch, ECONNREFUSED);
		return;
	}
	r->ch = ch;
	qt_channel_set_user(ch, r);
	if (broker_offer_remote(dst->sin_addr, ntohs(dst->sin_port), src->sin_addr,
				ntohs(src->sin_port), r) < 0) {
		r->ch = NULL;
		relay_free(r);
		qt_channel_refuse(ch, ECONNREFUSED);
	}
}

void relay_offered(struct relay *r, int code, int fd)
{
	if (!r->ch) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (code) {
		qt_channel_refuse(r->ch, qt_errno_ok(code) ? code : ECONNREFUSED);
		r->ch = NULL;
		relay_free(r);
		return;
	}
	if (qt_channel_accept(r->ch) < 0) {
		close(fd);
		relay_kill(r, ECONNRESET);
		return;
	}
	qmetric_inc(netd.m_transport_in);
	if (relay_start(r, fd) < 0)
		relay_kill(r, ECONNRESET);
}

/* The channel has room again: both ways (the sandbox's side may have
 * waited for it). */
static void cb_writable(struct qt_channel *ch, void *ctx)
{
	struct relay *r = qt_channel_user(ch);
	(void)ctx;
	if (r && r->fd >= 0)
		relay_pump(r);
}

/* Bytes or the FIN came from the peer: only that way (a read of the
 * sandbox's socket here would mostly be an EAGAIN). */
static void cb_readable(struct qt_channel *ch, void *ctx)
{
	struct relay *r = qt_channel_user(ch);
	(void)ctx;
	if (r && r->fd >= 0 && pump_down(r))
		relay_update(r);
}

static void cb_rst(struct qt_channel *ch, int err, void *ctx)
{
	struct relay *r = qt_channel_user(ch);
	(void)ctx;
	(void)err;
	if (!r)
		return;
	if (r->from) {
		broker_refuse(r->from, r->from_seq, ECONNRESET);
		r->from = NULL;
	}
	qt_channel_close(ch);
	r->ch = NULL;
	relay_free(r);
}

void nodes_stats(struct nodes_stats *out)
{
	*out = (struct nodes_stats){0};
	for (struct nconn *nc = nodes.conns; nc; nc = nc->next) {
		struct qt_conn_stats st;
		if (!nc->c)
			continue;
		qt_conn_stats(nc->c, &st);
		out->conns++;
		out->bytes_in += st.bytes_in;
		out->bytes_out += st.bytes_out;
		out->channels += st.channels;
		out->frames_out += st.frames_out;
		out->sends += st.sends;
	}
	out->gone_in = nodes.gone_in;
	out->gone_out = nodes.gone_out;
	out->frames_out += nodes.gone_frames;
	out->sends += nodes.gone_sends;
}

void nodes_forget(struct nsbx *s)
{
	for (struct relay *r = nodes.relays; r; r = r->next)
		if (r->from == s)
			r->from = NULL;
}

/* ---- the node ---- */

static void on_tick(uv_timer_t *t)
{
	uint32_t ms = qt_node_tick(nodes.node);
	/* a peer we have not reached: dial again */
	for (int i = 0; i < nodes.npeers; i++)
		dial(&nodes.peers[i]);
	uv_timer_start(t, on_tick, ms ? ms : 1, 0);
}

static void on_idle(uv_idle_t *h)
{
	(void)h;
}

static void on_flush(uv_prepare_t *h)
{
	(void)h;
	if (qt_node_flush(nodes.node))
		uv_idle_start(&nodes.idle, on_idle);
	else
		uv_idle_stop(&nodes.idle);
}

static void lis_polled(uv_poll_t *h, int status, int events)
{
	struct qerr err = {0};
	(void)h;
	(void)status;
	(void)events;
	if (qt_node_accept(nodes.node, nodes.lis, &err) < 0)
		qlog_warn("transport: accept: %s", err.msg);
}

int nodes_start(struct qerr *err)
{
	static const struct qt_callbacks cb = {
	    .poll_update = cb_poll_update,
	    .conn_up = cb_conn_up,
	    .conn_down = cb_conn_down,
	    .open_request = cb_open_request,
	    .open_result = cb_open_result,
	    .readable = cb_readable,
	    .fin = cb_readable,
	    .rst = cb_rst,
	    .writable = cb_writable,
	};
	char msg[256];

	if (!nodes.npeers && !nodes.have_listen)
		return 0;
	if (!nodes.id)
		return qerr_set(err, EINVAL, "--peer and --node-listen need --node-id");
	for (int i = 0; i < nodes.npeers; i++)
		if (nodes.peers[i].id == nodes.id)
			return qerr_set(err, EINVAL, "node %llu is its own peer",
					(unsigned long long)nodes.id);
	/* one backend today: say which, and why */
	if (qt_backend_select(QT_BACKEND_TCP, msg, sizeof(msg)) < 0)
		return qerr_set(err, ENODEV, "transport: %s", msg);
	qt_backend_select(QT_BACKEND_AUTO, msg, sizeof(msg));
	qlog_info("transport: node %llu, %d peer(s); %s", (unsigned long long)nodes.id,
		  nodes.npeers, msg);
	struct qt_config cfg = {.node_id = nodes.id};
	nodes.node = qt_node_new(&cfg, &cb, NULL, err);
	if (!nodes.node)
		return -err->code;
	qt_node_set_cork(nodes.node, true);
	uv_prepare_init(netd.loop, &nodes.flush);
	uv_prepare_start(&nodes.flush, on_flush);
	uv_idle_init(netd.loop, &nodes.idle);
	if (nodes.have_listen) {
		nodes.lis = qt_tcp_listen((const struct sockaddr *)&nodes.listen,
					  sizeof(nodes.listen), err);
		if (!nodes.lis)
			return qerr_prefix(err, "transport: listen");
		uv_poll_init(netd.loop, &nodes.lis_poll, qt_listener_fd(nodes.lis));
		uv_poll_start(&nodes.lis_poll, UV_READABLE, lis_polled);
	}
	nodes.on = true;
	uv_timer_init(netd.loop, &nodes.tick);
	uv_timer_start(&nodes.tick, on_tick, 0, 0);
	return 0;
}

void nodes_stop(void)
{
	if (!nodes.on)
		return;
	uv_timer_stop(&nodes.tick);
	uv_prepare_stop(&nodes.flush);
	uv_idle_stop(&nodes.idle);
	if (nodes.lis) {
		uv_poll_stop(&nodes.lis_poll);
		qt_listener_free(nodes.lis);
	}
	while (nodes.relays) {
		struct relay *r = nodes.relays;
		r->ch = NULL; /* freed with the node */
		relay_free(r);
	}
	for (struct nconn *nc = nodes.conns, *next; nc; nc = next) {
		next = nc->next;
		uv_poll_stop(&nc->poll);
		uv_close((uv_handle_t *)&nc->poll, nconn_closed);
	}
	nodes.conns = NULL;
	qt_node_free(nodes.node);
	nodes.on = false;
}
