/* netd's node-to-node transport: connections, the pair-level tie-break,
 * channels and credits (transport.h, docs/netd-transport.md). */
#include "services/netd/transport.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/netd/transport_int.h"
#include "services/netd/transport_rdma.h"

#define DEFAULT_WINDOW	     (256u << 10)
#define DEFAULT_MAX_CHANNELS 1024u
#define DEFAULT_SEND_QUEUE   (1u << 20)
#define DEFAULT_KEEPALIVE_MS 5000u
#define DEFAULT_TIMEOUT_MS   15000u
#define DEFAULT_OPEN_TIMEOUT 10000u
#define IN_BUF_SIZE	     (256u << 10)
/* Control frames a connection may owe the peer beyond its send queue before
 * it stops reading: what the peer's PINGs and refused OPENs can make us
 * queue while it does not read. */
#define CTRL_SLACK	  (64u << 10)
#define CLOSING_LINGER_MS 2000u

uint64_t qt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- qt_buf ---------------------------------------------------------------- */

int qt_buf_reserve(struct qt_buf *b, size_t n)
{
	size_t len = qt_buf_len(b);
	if (b->cap - b->tail >= n)
		return 0;
	if (b->head && b->cap - len >= n) {
		memmove(b->data, b->data + b->head, len);
		b->head = 0;
		b->tail = len;
		return 0;
	}
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - len < n)
		cap *= 2;
	uint8_t *p = malloc(cap);
	if (!p)
		return -ENOMEM;
	if (len)
		memcpy(p, b->data + b->head, len);
	free(b->data);
	b->data = p;
	b->cap = cap;
	b->head = 0;
	b->tail = len;
	return 0;
}

int qt_buf_append(struct qt_buf *b, const void *p, size_t n)
{
	int r = qt_buf_reserve(b, n);
	if (r < 0)
		return r;
	memcpy(b->data + b->tail, p, n);
	b->tail += n;
	return 0;
}

void qt_buf_consume(struct qt_buf *b, size_t n)
{
	b->head += n;
	if (b->head == b->tail)
		b->head = b->tail = 0;
}

void qt_buf_free(struct qt_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- small helpers ------------------------------------------------------- */

static void enter(struct qt_node *n)
{
	n->depth++;
}

static void settle(struct qt_node *n);

static void leave(struct qt_node *n)
{
	if (n->depth == 1)
		settle(n);
	n->depth--;
}

static uint64_t dialer_of(const struct qt_conn *c)
{
	return c->dialed ? c->node->cfg.node_id : c->peer_id;
}

static void conn_poll_update(struct qt_conn *c)
{
	if (c->state == QT_C_DEAD)
		return;
	unsigned ev = qt_conn_events(c);
	if (ev != c->polled) {
		c->polled = ev;
		if (c->node->cb.poll_update)
			c->node->cb.poll_update(c, ev, c->node->ctx);
	}
}

static void chan_event(struct qt_channel *ch, unsigned ev)
{
	struct qt_node *n = ch->peer->node;
	ch->ev |= ev;
	if (ch->on_ev)
		return;
	ch->on_ev = true;
	ch->ev_next = NULL;
	if (n->ev_tail)
		n->ev_tail->ev_next = ch;
	else
		n->ev_head = ch;
	n->ev_tail = ch;
}

/* ---- peers and their channel tables ------------------------------------- */

static uint32_t hash_id(uint32_t id, uint32_t nbuckets)
{
	return (id * 2654435761u) & (nbuckets - 1);
}

static struct qt_channel *chan_lookup(struct qt_peer *p, uint32_t id)
{
	if (!p->nbuckets)
		return NULL;
	for (struct qt_channel *ch = p->buckets[hash_id(id, p->nbuckets)]; ch; ch = ch->hnext)
		if (ch->id == id)
			return ch;
	return NULL;
}

static int table_grow(struct qt_peer *p)
{
	uint32_t nb = p->nbuckets ? p->nbuckets * 2 : 64;
	struct qt_channel **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < p->nbuckets; i++) {
		struct qt_channel *ch = p->buckets[i], *next;
		for (; ch; ch = next) {
			next = ch->hnext;
			uint32_t h = hash_id(ch->id, nb);
			ch->hnext = b[h];
			b[h] = ch;
		}
	}
	free(p->buckets);
	p->buckets = b;
	p->nbuckets = nb;
	return 0;
}

static int chan_insert(struct qt_peer *p, struct qt_channel *ch)
{
	if (p->nchan >= p->nbuckets) {
		int r = table_grow(p);
		if (r < 0)
			return r;
	}
	uint32_t h = hash_id(ch->id, p->nbuckets);
	ch->hnext = p->buckets[h];
	p->buckets[h] = ch;
	ch->lprev = NULL;
	ch->lnext = p->list;
	if (p->list)
		p->list->lprev = ch;
	p->list = ch;
	p->nchan++;
	return 0;
}

static void chan_remove(struct qt_peer *p, struct qt_channel *ch)
{
	struct qt_channel **pp = &p->buckets[hash_id(ch->id, p->nbuckets)];
	while (*pp && *pp != ch)
		pp = &(*pp)->hnext;
	if (!*pp)
		return;
	*pp = ch->hnext;
	if (ch->lprev)
		ch->lprev->lnext = ch->lnext;
	else
		p->list = ch->lnext;
	if (ch->lnext)
		ch->lnext->lprev = ch->lprev;
	ch->hnext = ch->lprev = ch->lnext = NULL;
	p->nchan--;
}

static struct qt_peer *peer_find(struct qt_node *n, uint64_t id)
{
	for (struct qt_peer *p = n->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static struct qt_peer *peer_get(struct qt_node *n, uint64_t id)
{
	struct qt_peer *p = peer_find(n, id);
	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->node = n;
	p->id = id;
	/* The higher node id sets the side bit: both ends agree without
	 * talking, whichever connection the channel ends up on. */
	p->side = n->cfg.node_id > id ? QT_CHAN_SIDE_BIT : 0;
	p->next_id = 1;
	p->next = n->peers;
	n->peers = p;
	return p;
}

static void peer_free(struct qt_peer *p)
{
	free(p->buckets);
	free(p);
}

/* ---- output -------------------------------------------------------------- */

static void conn_close(struct qt_conn *c, int err, int goaway, bool requeue, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Flush queued output to the backend as far as it takes it. */
static void conn_flush(struct qt_conn *c)
{
	struct qerr err = {0};
	if (c->state == QT_C_CONNECTING || c->state == QT_C_DEAD)
		return;
	while (qt_buf_len(&c->out)) {
		ssize_t r =
		    c->be->ops->send(c->be, c->out.data + c->out.head, qt_buf_len(&c->out), &err);
		if (r == -EAGAIN)
			break;
		if (r <= 0) {
			conn_close(c, r < 0 ? (int)-r : EIO, 0, false, "send: %s",
				   err.msg[0] ? err.msg : "backend failed");
			return;
		}
		qt_buf_consume(&c->out, (size_t)r);
		c->stats.bytes_out += (uint64_t)r;
		c->stats.sends++;
	}
	if (c->state == QT_C_CLOSING && !qt_buf_len(&c->out) && !c->shut) {
		c->shut = true;
		/* Half-close and wait for the peer's end of stream: closing
		 * with its bytes unread would reset the connection, and the
		 * reset could overtake our GOAWAY.  A backend without a
		 * half-close just goes. */
		if (!c->be->ops->shutdown || c->be->ops->shutdown(c->be) < 0)
			conn_close(c, c->err, 0, false, "%s", c->why);
	}
}

/* Flush, then poll for what is left to send (or for nothing).  Corked:
 * only note that there is output, for qt_node_flush. */
static void conn_send_now(struct qt_conn *c)
{
	if (c->node->corked && c->state != QT_C_DEAD && qt_buf_len(&c->out)) {
		c->dirty = true;
		return;
	}
	conn_flush(c);
	conn_poll_update(c);
}

/* Append a frame built by put into out; control frames always fit (the
 * queue grows), so only allocation can fail. */
static uint8_t *out_reserve(struct qt_conn *c, size_t n)
{
	if (qt_buf_reserve(&c->out, n) < 0) {
		conn_close(c, ENOMEM, 0, false, "out of memory for the send queue");
		return NULL;
	}
	return c->out.data + c->out.tail;
}

static void out_commit(struct qt_conn *c, size_t n)
{
	c->out.tail += n;
	c->stats.frames_out++;
}

static void send_ctrl(struct qt_conn *c, unsigned type, uint32_t chan, uint32_t credit)
{
	uint8_t *p = out_reserve(c, QT_HDR_SIZE);
	if (p)
		out_commit(c, qt_frame_put_hdr(p, type, chan, 0, credit));
}

static void send_errno(struct qt_conn *c, unsigned type, uint32_t chan, int e)
{
	uint8_t *p = out_reserve(c, QT_HDR_SIZE + QT_ERRNO_LEN);
	if (p)
		out_commit(c, qt_frame_put_errno(p, type, chan, e));
}

static void send_hello(struct qt_conn *c)
{
	struct qt_node *n = c->node;
	struct qt_hello h = {
	    .node_id = n->cfg.node_id,
	    .proto_version = n->cfg.proto_version,
	    .flags = c->dialed ? QT_HELLO_DIALER : 0,
	    .window = n->cfg.window,
	};
	uint8_t *p = out_reserve(c, QT_HDR_SIZE + QT_HELLO_LEN);
	if (p)
		out_commit(c, qt_frame_put_hello(p, &h));
}

static void send_open(struct qt_conn *c, struct qt_channel *ch)
{
	uint8_t *p = out_reserve(c, QT_HDR_SIZE + QT_OPEN_LEN);
	if (p)
		out_commit(c, qt_frame_put_open(p, ch->id, &ch->open));
}

static size_t send_room(const struct qt_conn *c)
{
	size_t q = c->node->cfg.send_queue, len = qt_buf_len(&c->out);
	return len < q ? q - len : 0;
}

/* ---- channels: state changes ---------------------------------------------- */

static void blocked_add(struct qt_conn *c, struct qt_channel *ch)
{
	ch->want_write = true;
	if (ch->on_blocked)
		return;
	ch->on_blocked = true;
	ch->blocked_next = c->blocked;
	c->blocked = ch;
}

static void blocked_remove(struct qt_conn *c, struct qt_channel *ch)
{
	if (!ch->on_blocked)
		return;
	for (struct qt_channel **pp = &c->blocked; *pp; pp = &(*pp)->blocked_next)
		if (*pp == ch) {
			*pp = ch->blocked_next;
			break;
		}
	ch->on_blocked = false;
	ch->blocked_next = NULL;
}

/* Writable events for blocked channels that can send again. */
static void wake_writers(struct qt_conn *c)
{
	if (c->state != QT_C_ACTIVE || !send_room(c))
		return;
	struct qt_channel **pp = &c->blocked;
	while (*pp) {
		struct qt_channel *ch = *pp;
		if (ch->credit > 0 || ch->state != QT_CH_OPEN) {
			*pp = ch->blocked_next;
			ch->on_blocked = false;
			ch->blocked_next = NULL;
			if (ch->state == QT_CH_OPEN && !ch->fin_sent && ch->want_write) {
				ch->want_write = false;
				chan_event(ch, QT_EV_WRITABLE);
			}
		} else {
			pp = &ch->blocked_next;
		}
	}
}

static void chan_unbind(struct qt_channel *ch)
{
	if (ch->conn)
		blocked_remove(ch->conn, ch);
	ch->conn = NULL;
}

/* The channel is dead for the protocol; the application still holds it. */
static void chan_kill(struct qt_channel *ch, int err)
{
	if (ch->state == QT_CH_DEAD)
		return;
	enum qt_ch_state was = ch->state;
	chan_unbind(ch);
	ch->state = QT_CH_DEAD;
	ch->err = err;
	qt_buf_free(&ch->rx);
	if (was == QT_CH_OPENING || was == QT_CH_QUEUED) {
		ch->open_err = err;
		chan_event(ch, QT_EV_OPEN_RESULT);
	} else {
		chan_event(ch, QT_EV_RST);
	}
}

/* Bind a channel to the peer's working connection and say OPEN. */
static void chan_send_open(struct qt_conn *c, struct qt_channel *ch)
{
	ch->conn = c;
	ch->state = QT_CH_OPENING;
	send_open(c, ch);
}

static void chan_free(struct qt_channel *ch)
{
	qt_buf_free(&ch->rx);
	free(ch);
}

/* The application let go: the peer hears RST (or OPEN_FAIL) unless the
 * channel finished cleanly.  Freed now, or at the end of the entry point
 * when events may still point at it. */
static void chan_release(struct qt_channel *ch, int rst_err)
{
	struct qt_peer *p = ch->peer;
	struct qt_node *n = p->node;
	struct qt_conn *c = ch->conn;

	if (ch->released)
		return;
	ch->released = true;
	if (c && c->state == QT_C_ACTIVE) {
		switch (ch->state) {
		case QT_CH_PENDING:
			send_errno(c, QT_OPEN_FAIL, ch->id, rst_err);
			break;
		case QT_CH_OPENING:
			send_errno(c, QT_RST, ch->id, rst_err);
			break;
		case QT_CH_OPEN:
			if (!(ch->fin_sent && ch->fin_rcvd && !qt_buf_len(&ch->rx)))
				send_errno(c, QT_RST, ch->id, rst_err);
			break;
		default:
			break;
		}
		conn_send_now(c);
	}
	chan_unbind(ch);
	chan_remove(p, ch);
	if (n->depth == 0 && !ch->on_ev) {
		chan_free(ch);
	} else {
		ch->lnext = n->reap;
		n->reap = ch;
	}
}

/* Grant the peer what the application consumed, once it is worth a frame:
 * a quarter of the window, so a sender that keeps its window full never
 * waits for a round trip. */
static void chan_maybe_grant(struct qt_channel *ch, bool force)
{
	struct qt_conn *c = ch->conn;
	if (!c || c->state != QT_C_ACTIVE || ch->state != QT_CH_OPEN || ch->fin_rcvd)
		return;
	uint32_t threshold = ch->peer->node->cfg.window / 4;
	if (ch->owed == 0 || (!force && ch->owed < threshold))
		return;
	send_ctrl(c, QT_CREDIT, ch->id, (uint32_t)ch->owed);
	ch->rx_allowed += ch->owed;
	ch->owed = 0;
}

/* ---- connections: life and death ------------------------------------------ */

/* Channels bound to c when it goes away: our unanswered opens go back to
 * the queue when the peer told us it never processed them (a lost
 * tie-break), everything else is reset. */
static void conn_fail_channels(struct qt_conn *c, bool requeue)
{
	struct qt_peer *p = c->peer;
	if (!p)
		return;
	for (struct qt_channel *ch = p->list; ch; ch = ch->lnext) {
		if (ch->conn != c)
			continue;
		if (requeue && ch->state == QT_CH_OPENING) {
			chan_unbind(ch);
			ch->state = QT_CH_QUEUED;
			ch->queued_ms = qt_now_ms();
		} else {
			chan_kill(ch, ECONNRESET);
		}
	}
}

static bool dial_in_flight(struct qt_node *n, uint64_t peer, const struct qt_conn *except)
{
	for (struct qt_conn *c = n->conns; c; c = c->next)
		if (c != except && c->dialed && c->dialed_peer == peer &&
		    (c->state == QT_C_CONNECTING || c->state == QT_C_HELLO))
			return true;
	return false;
}

static void conn_activate(struct qt_conn *c);

/* A dial of ours to peer ended without winning: a connection the peer
 * dialed that we held back may go ahead now. */
static void maybe_promote(struct qt_node *n, uint64_t peer_id)
{
	struct qt_peer *p = peer_find(n, peer_id);
	if (!p || p->active || dial_in_flight(n, peer_id, NULL))
		return;
	for (struct qt_conn *c = n->conns; c; c = c->next)
		if (c->peer == p && c->state == QT_C_PROVISIONAL) {
			conn_activate(c);
			c->kick = true;
			return;
		}
}

/* Take c out of service.  goaway != 0: tell the peer (GOAWAY(goaway)) and
 * linger until it closes its end, so the GOAWAY is not lost to a reset;
 * else it is dead now.  The first reason sticks. */
static void conn_close(struct qt_conn *c, int err, int goaway, bool requeue, const char *fmt, ...)
{
	if (c->state == QT_C_DEAD)
		return;
	if (c->state != QT_C_CLOSING) {
		c->err = err > 0 ? err : EIO;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->why, sizeof(c->why), fmt, ap);
		va_end(ap);
	}
	enum qt_conn_state was = c->state;
	bool linger = goaway && was != QT_C_CONNECTING && was != QT_C_CLOSING;
	c->state = linger ? QT_C_CLOSING : QT_C_DEAD;
	if (was == QT_C_ACTIVE)
		conn_fail_channels(c, requeue);
	c->blocked = NULL;
	struct qt_peer *p = c->peer;
	if (p && p->active == c)
		p->active = NULL;
	if (linger) {
		c->closing_ms = qt_now_ms();
		qt_buf_consume(&c->in, qt_buf_len(&c->in));
		send_errno(c, QT_GOAWAY, 0, goaway);
		conn_flush(c);
	}
	if (was == QT_C_CONNECTING || was == QT_C_HELLO) {
		if (c->dialed)
			maybe_promote(c->node, c->dialed_peer);
	}
	conn_poll_update(c);
}

/* c won: the one connection to its peer from now on. */
static void conn_activate(struct qt_conn *c)
{
	struct qt_peer *p = c->peer;
	struct qt_node *n = c->node;

	c->state = QT_C_ACTIVE;
	c->last_rx_ms = qt_now_ms();
	p->active = c;
	c->up_event = true;
	for (struct qt_conn *o = n->conns; o; o = o->next)
		if (o != c && o->peer == p && o->state == QT_C_PROVISIONAL)
			conn_close(o, EEXIST, EEXIST, false,
				   "duplicate connection to node %" PRIu64 ": lost the tie-break",
				   p->id);
	/* Channels opened while there was no connection go out now, oldest
	 * id first (the list is newest first). */
	struct qt_channel *last = NULL;
	for (struct qt_channel *ch = p->list; ch; ch = ch->lnext)
		last = ch;
	for (struct qt_channel *ch = last; ch; ch = ch->lprev)
		if (ch->state == QT_CH_QUEUED)
			chan_send_open(c, ch);
	conn_flush(c);
}

/* The peer said HELLO on c.  Decide which connection to the peer carries
 * the channels: see "Two-way open" in docs/netd-transport.md. */
static void conn_hello(struct qt_conn *c, const struct qt_hello *h)
{
	struct qt_node *n = c->node;
	uint16_t ours = n->cfg.proto_version;

	if (h->proto_version != ours) {
		conn_close(c, EPROTONOSUPPORT, EPROTONOSUPPORT, false,
			   "peer node %" PRIu64 " speaks protocol version %u, we speak %u",
			   h->node_id, h->proto_version, ours);
		return;
	}
	if (h->node_id == n->cfg.node_id) {
		conn_close(c, EPROTO, EPROTO, false, "peer claims our own node id %" PRIu64,
			   h->node_id);
		return;
	}
	if (c->dialed && h->node_id != c->dialed_peer) {
		conn_close(c, EPROTO, EPROTO, false,
			   "dialed node %" PRIu64 " but node %" PRIu64 " answered", c->dialed_peer,
			   h->node_id);
		return;
	}
	if (!(h->flags & QT_HELLO_DIALER) != c->dialed) {
		conn_close(c, EPROTO, EPROTO, false, "HELLO: both or neither end dialed");
		return;
	}
	if (h->window < QT_WINDOW_MIN || h->window > QT_WINDOW_MAX) {
		conn_close(c, EPROTO, EPROTO, false, "HELLO: window %u out of [%u, %u]", h->window,
			   QT_WINDOW_MIN, QT_WINDOW_MAX);
		return;
	}
	struct qt_peer *p = peer_get(n, h->node_id);
	if (!p) {
		conn_close(c, ENOMEM, 0, false, "out of memory");
		return;
	}
	c->peer = p;
	c->peer_id = h->node_id;
	c->peer_window = h->window;
	p->nconns++;

	struct qt_conn *a = p->active;
	if (a) {
		/* The connection dialed by the lower node id wins; between two
		 * dialed by the same node the newer wins (its dialer gave up
		 * on the older). */
		uint64_t dc = dialer_of(c), da = dialer_of(a);
		if (dc <= da) {
			conn_close(a, EEXIST, EEXIST, dc < da,
				   "replaced by a connection dialed by node %" PRIu64, dc);
			conn_activate(c);
		} else {
			conn_close(c, EEXIST, EEXIST, false,
				   "duplicate connection to node %" PRIu64 ": lost the tie-break",
				   p->id);
		}
		return;
	}
	/* The lower node holds a connection the higher one dialed while its
	 * own dial may still win: it neither opens nor answers on it, so the
	 * higher node can move its opens to the winner. */
	if (!c->dialed && n->cfg.node_id < p->id && dial_in_flight(n, p->id, c)) {
		for (struct qt_conn *o = n->conns; o; o = o->next)
			if (o != c && o->peer == p && o->state == QT_C_PROVISIONAL)
				conn_close(o, EEXIST, EEXIST, false,
					   "replaced by a newer connection from node %" PRIu64,
					   p->id);
		c->state = QT_C_PROVISIONAL;
		return;
	}
	conn_activate(c);
}

/* ---- input ------------------------------------------------------------------ */

#define PROTO_ERR(c, ...) conn_close((c), EPROTO, EPROTO, false, __VA_ARGS__)

/* A channel frame's channel, or NULL after tearing the connection down or
 * for a late frame (a channel we already let go of), *late says which. */
static struct qt_channel *frame_chan(struct qt_conn *c, const struct qt_frame_hdr *h, bool *late)
{
	struct qt_peer *p = c->peer;
	const char *name = qt_frame_type_name(h->type);
	struct qt_channel *ch = chan_lookup(p, h->chan);

	*late = false;
	if (ch) {
		if (ch->conn != c && ch->state != QT_CH_DEAD) {
			PROTO_ERR(c, "%s for channel %u, which is not on this connection", name,
				  h->chan);
			return NULL;
		}
		if (ch->state == QT_CH_DEAD) {
			*late = true;
			return NULL;
		}
		return ch;
	}
	uint32_t idx = h->chan & ~QT_CHAN_SIDE_BIT;
	bool ours = (h->chan & QT_CHAN_SIDE_BIT) == p->side;
	if (ours ? idx >= p->next_id : idx > c->max_peer_open) {
		PROTO_ERR(c, "%s for channel %u, which was never opened", name, h->chan);
		return NULL;
	}
	*late = true;
	return NULL;
}

static void on_open(struct qt_conn *c, const struct qt_frame_hdr *h, const uint8_t *pl)
{
	struct qt_peer *p = c->peer;
	struct qt_node *n = c->node;
	struct qerr err = {0};
	struct qt_open o;

	if ((h->chan & QT_CHAN_SIDE_BIT) == p->side) {
		PROTO_ERR(c, "OPEN for channel %u, an id of our side", h->chan);
		return;
	}
	if (chan_lookup(p, h->chan)) {
		PROTO_ERR(c, "OPEN for channel %u, which is open", h->chan);
		return;
	}
	if (qt_frame_parse_open(pl, h->len, &o, &err) < 0) {
		PROTO_ERR(c, "channel %u: %s", h->chan, err.msg);
		return;
	}
	uint32_t idx = h->chan & ~QT_CHAN_SIDE_BIT;
	if (idx > c->max_peer_open)
		c->max_peer_open = idx;
	if (p->nchan >= n->cfg.max_channels) {
		send_errno(c, QT_OPEN_FAIL, h->chan, EMFILE);
		return;
	}
	struct qt_channel *ch = calloc(1, sizeof(*ch));
	if (ch) {
		ch->peer = p;
		ch->conn = c;
		ch->id = h->chan;
		ch->state = QT_CH_PENDING;
		ch->open = o;
	}
	if (!ch || chan_insert(p, ch) < 0) {
		free(ch);
		send_errno(c, QT_OPEN_FAIL, h->chan, ENOBUFS);
		return;
	}
	chan_event(ch, QT_EV_OPEN_REQ);
}

/* A credit update from the peer, on DATA or CREDIT. */
static bool take_credit(struct qt_conn *c, struct qt_channel *ch, uint32_t credit)
{
	if (!credit)
		return true;
	/* It can only grant back what it received: anything beyond is a lie
	 * that would let our counters run away. */
	if (ch->granted_total + credit > ch->sent_total + c->peer_window) {
		PROTO_ERR(c, "channel %u: credit of %u beyond what was sent", ch->id, credit);
		return false;
	}
	ch->granted_total += credit;
	ch->credit += credit;
	if (ch->want_write && ch->on_blocked)
		wake_writers(c);
	return true;
}

static void on_chan_frame(struct qt_conn *c, const struct qt_frame_hdr *h, const uint8_t *pl)
{
	struct qerr err = {0};
	bool late;
	int e;
	const char *name = qt_frame_type_name(h->type);

	if (h->type == QT_OPEN) {
		on_open(c, h, pl);
		return;
	}
	struct qt_channel *ch = frame_chan(c, h, &late);
	if (!ch) {
		if (late)
			c->stats.late_frames++;
		return;
	}
	switch (h->type) {
	case QT_OPEN_OK:
	case QT_OPEN_FAIL:
		if (!ch->ours || ch->state != QT_CH_OPENING) {
			PROTO_ERR(c, "%s for channel %u, which is not opening", name, ch->id);
			return;
		}
		if (h->type == QT_OPEN_FAIL) {
			if (qt_frame_parse_errno(pl, h->len, &e, &err) < 0) {
				PROTO_ERR(c, "OPEN_FAIL on channel %u: %s", ch->id, err.msg);
				return;
			}
			chan_kill(ch, e);
			return;
		}
		ch->state = QT_CH_OPEN;
		ch->credit = c->peer_window;
		ch->granted_total = c->peer_window;
		ch->open_err = 0;
		chan_event(ch, QT_EV_OPEN_RESULT);
		return;
	case QT_DATA:
		if (ch->state != QT_CH_OPEN || ch->fin_rcvd) {
			PROTO_ERR(c, "DATA on channel %u, which is %s", ch->id,
				  ch->fin_rcvd ? "closed by the peer's FIN" : "not open");
			return;
		}
		if (h->len > ch->rx_allowed) {
			PROTO_ERR(c, "DATA of %u bytes on channel %u beyond its credit of %" PRIu64,
				  h->len, ch->id, ch->rx_allowed);
			return;
		}
		if (!take_credit(c, ch, h->credit))
			return;
		if (qt_buf_append(&ch->rx, pl, h->len) < 0) {
			conn_close(c, ENOMEM, 0, false, "out of memory for channel %u", ch->id);
			return;
		}
		ch->rx_allowed -= h->len;
		chan_event(ch, QT_EV_READABLE);
		return;
	case QT_CREDIT:
		if (ch->state != QT_CH_OPEN) {
			PROTO_ERR(c, "CREDIT on channel %u, which is not open", ch->id);
			return;
		}
		take_credit(c, ch, h->credit);
		return;
	case QT_FIN:
		if (ch->state != QT_CH_OPEN || ch->fin_rcvd) {
			PROTO_ERR(c, "FIN on channel %u, which is %s", ch->id,
				  ch->fin_rcvd ? "already finished" : "not open");
			return;
		}
		ch->fin_rcvd = true;
		chan_event(ch, QT_EV_FIN);
		return;
	case QT_RST:
		if (qt_frame_parse_errno(pl, h->len, &e, &err) < 0) {
			PROTO_ERR(c, "RST on channel %u: %s", ch->id, err.msg);
			return;
		}
		chan_kill(ch, e);
		return;
	}
}

static void on_frame(struct qt_conn *c, const struct qt_frame_hdr *h, const uint8_t *pl)
{
	struct qerr err = {0};
	int e;

	c->stats.frames_in++;
	if (c->state == QT_C_HELLO) {
		struct qt_hello hello;
		if (h->type != QT_HELLO) {
			PROTO_ERR(c, "%s before HELLO", qt_frame_type_name(h->type));
			return;
		}
		if (qt_frame_parse_hello(pl, h->len, &hello, &err) < 0) {
			PROTO_ERR(c, "%s", err.msg);
			return;
		}
		conn_hello(c, &hello);
		return;
	}
	switch (h->type) {
	case QT_HELLO:
		PROTO_ERR(c, "a second HELLO");
		return;
	case QT_PING: {
		uint8_t *p = out_reserve(c, QT_HDR_SIZE + QT_PING_LEN);
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = v << 8 | pl[i];
		if (p)
			out_commit(c, qt_frame_put_ping(p, QT_PONG, v));
		return;
	}
	case QT_PONG: {
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = v << 8 | pl[i];
		if (c->ping_out && v == c->ping_opaque) {
			c->ping_out = false;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t now_us =
			    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
			c->stats.rtt_us = now_us - c->ping_ms;
		}
		return;
	}
	case QT_GOAWAY:
		if (qt_frame_parse_errno(pl, h->len, &e, &err) < 0) {
			PROTO_ERR(c, "GOAWAY: %s", err.msg);
			return;
		}
		/* EEXIST: the peer closes a duplicate and never processed our
		 * opens on it: they go to the connection that won. */
		conn_close(c, e, 0, e == EEXIST, "peer node %" PRIu64 " sent GOAWAY (%s)",
			   c->peer_id, strerror(e));
		return;
	}
	on_chan_frame(c, h, pl);
}

/* Read what the backend has and act on every whole frame. */
static void conn_read(struct qt_conn *c)
{
	struct qerr err = {0};
	struct qt_node *n = c->node;

	for (;;) {
		if (c->state == QT_C_ACTIVE || c->state == QT_C_HELLO) {
			/* Act on buffered frames first (a promoted connection
			 * has some from before it was held). */
			while (c->state == QT_C_ACTIVE || c->state == QT_C_HELLO) {
				struct qt_frame_hdr h;
				size_t avail = qt_buf_len(&c->in);
				if (avail < QT_HDR_SIZE)
					break;
				qerr_clear(&err);
				int r =
				    qt_frame_decode_hdr(c->in.data + c->in.head, avail, &h, &err);
				if (r < 0) {
					PROTO_ERR(c, "%s", err.msg);
					return;
				}
				if (r == 0 || (size_t)r > avail)
					break;
				on_frame(c, &h, c->in.data + c->in.head + QT_HDR_SIZE);
				qt_buf_consume(&c->in, (size_t)r);
			}
			if (c->state != QT_C_ACTIVE && c->state != QT_C_HELLO &&
			    c->state != QT_C_CLOSING)
				return;
		} else if (c->state != QT_C_CLOSING) {
			return;
		}
		if (c->state == QT_C_CLOSING)
			qt_buf_consume(&c->in, qt_buf_len(&c->in));
		/* Stop reading while we owe the peer more than the queue and
		 * its slack: a peer that never reads cannot make us queue
		 * without bound by sending PINGs. */
		if (qt_buf_len(&c->out) > n->cfg.send_queue + CTRL_SLACK) {
			c->paused = true;
			return;
		}
		c->paused = false;
		if (qt_buf_reserve(&c->in, IN_BUF_SIZE - qt_buf_len(&c->in)) < 0) {
			conn_close(c, ENOMEM, 0, false, "out of memory for input");
			return;
		}
		size_t room = IN_BUF_SIZE - qt_buf_len(&c->in);
		ssize_t got = c->be->ops->recv(c->be, c->in.data + c->in.tail, room, &err);
		if (got == -EAGAIN)
			return;
		if (got < 0) {
			conn_close(c, (int)-got, 0, false, "receive: %s",
				   err.msg[0] ? err.msg : strerror((int)-got));
			return;
		}
		if (got == 0) {
			if (c->state == QT_C_CLOSING)
				conn_close(c, c->err, 0, false, "%s", c->why);
			else
				conn_close(c, ECONNRESET, 0, false,
					   "peer node %" PRIu64 " closed the connection",
					   c->peer_id);
			return;
		}
		c->in.tail += (size_t)got;
		c->stats.bytes_in += (uint64_t)got;
		c->last_rx_ms = qt_now_ms();
	}
}

static void conn_connected(struct qt_conn *c)
{
	c->state = QT_C_HELLO;
	c->last_rx_ms = qt_now_ms();
	send_hello(c);
}

static void conn_service(struct qt_conn *c, bool readable)
{
	struct qerr err = {0};
	struct qt_node *n = c->node;

	enter(n);
	if (c->state == QT_C_DEAD)
		goto out; /* killed by a send outside an entry point: settle frees it */
	int r = c->be->ops->process(c->be, &err);
	if (r < 0) {
		conn_close(c, -r, 0, false, "%s", err.msg[0] ? err.msg : strerror(-r));
		goto out;
	}
	if (c->state == QT_C_CONNECTING) {
		qerr_clear(&err);
		r = c->be->ops->connect_step(c->be, &err);
		if (r < 0) {
			conn_close(c, -r, 0, false, "connect: %s",
				   err.msg[0] ? err.msg : strerror(-r));
			goto out;
		}
		if (r == 0)
			goto out;
		conn_connected(c);
		readable = true;
	}
	bool was_paused = c->paused;
	conn_flush(c);
	if (readable || was_paused || c->kick) {
		c->kick = false;
		conn_read(c);
	}
	conn_flush(c);
	wake_writers(c);
out:
	conn_poll_update(c);
	leave(n);
}

/* ---- settling: deliver events, free the dead ---------------------------- */

static void deliver(struct qt_node *n, struct qt_channel *ch)
{
	unsigned ev = ch->ev;
	const struct qt_callbacks *cb = &n->cb;
	ch->ev = 0;

	if (ch->released)
		return;
	if (ev & QT_EV_OPEN_REQ) {
		if (ch->state == QT_CH_DEAD) {
			/* Cancelled before the application heard of it. */
			chan_release(ch, ECONNRESET);
			return;
		}
		ch->exposed = true;
		struct qt_open_req req = {.peer = ch->peer->id};
		req.dst_len = qt_endpoint_to_sockaddr(&ch->open.dst, &req.dst);
		req.src_len = qt_endpoint_to_sockaddr(&ch->open.src, &req.src);
		if (cb->open_request)
			cb->open_request(ch, &req, n->ctx);
		else
			qt_channel_refuse(ch, ECONNREFUSED);
	}
	if (ch->released)
		return;
	if ((ev & QT_EV_OPEN_RESULT) && cb->open_result)
		cb->open_result(ch, ch->open_err, n->ctx);
	if (ch->released)
		return;
	if ((ev & QT_EV_READABLE) && qt_buf_len(&ch->rx) && cb->readable)
		cb->readable(ch, n->ctx);
	if (ch->released)
		return;
	if ((ev & QT_EV_FIN) && ch->state == QT_CH_OPEN && cb->fin)
		cb->fin(ch, n->ctx);
	if (ch->released)
		return;
	if ((ev & QT_EV_WRITABLE) && ch->state == QT_CH_OPEN && !ch->fin_sent && cb->writable)
		cb->writable(ch, n->ctx);
	if (ch->released)
		return;
	if ((ev & QT_EV_RST) && ch->state == QT_CH_DEAD && cb->rst)
		cb->rst(ch, ch->err, n->ctx);
}

static void conn_free(struct qt_conn *c)
{
	if (c->peer && c->peer->nconns)
		c->peer->nconns--;
	c->be->ops->destroy(c->be);
	qt_buf_free(&c->in);
	qt_buf_free(&c->out);
	free(c);
}

static void settle(struct qt_node *n)
{
	bool again = true;
	while (again) {
		again = false;
		for (struct qt_conn *c = n->conns; c; c = c->next) {
			if (c->kick && c->state == QT_C_ACTIVE) {
				c->kick = false;
				conn_read(c);
				conn_send_now(c);
				again = true;
			}
			if (c->up_event && c->state == QT_C_ACTIVE) {
				c->up_event = false;
				if (n->cb.conn_up)
					n->cb.conn_up(c, c->peer_id, n->ctx);
				again = true;
			}
		}
		while (n->ev_head) {
			struct qt_channel *ch = n->ev_head;
			n->ev_head = ch->ev_next;
			if (!n->ev_head)
				n->ev_tail = NULL;
			ch->on_ev = false;
			ch->ev_next = NULL;
			deliver(n, ch);
			again = true;
		}
		for (struct qt_conn **pp = &n->conns; *pp;) {
			struct qt_conn *c = *pp;
			if (c->state != QT_C_DEAD) {
				pp = &c->next;
				continue;
			}
			*pp = c->next;
			if (n->cb.conn_down)
				n->cb.conn_down(c, c->peer_id, c->err, c->why, n->ctx);
			conn_free(c);
			again = true;
		}
	}
	while (n->reap) {
		struct qt_channel *ch = n->reap;
		n->reap = ch->lnext;
		chan_free(ch);
	}
	/* Forget peers nothing refers to any more: a hostile peer's invented
	 * node ids must not pile up. */
	for (struct qt_peer **pp = &n->peers; *pp;) {
		struct qt_peer *p = *pp;
		if (p->nchan || p->nconns || p->active) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		peer_free(p);
	}
	for (struct qt_conn *c = n->conns; c; c = c->next)
		conn_poll_update(c);
}

/* ---- backend choice ------------------------------------------------------ */

int qt_backend_select(enum qt_backend_kind want, char *msg, size_t len)
{
	char why[256];
	if (want == QT_BACKEND_TCP) {
		snprintf(msg, len, "using the TCP transport (as configured)");
		return QT_BACKEND_TCP;
	}
	if (qt_rdma_probe(why, sizeof(why)) > 0) {
		snprintf(msg, len, "%s: using the RDMA transport", why);
		return QT_BACKEND_RDMA;
	}
	if (want == QT_BACKEND_RDMA) {
		snprintf(msg, len, "%s: the RDMA transport was asked for", why);
		return -ENODEV;
	}
	snprintf(msg, len, "%s: using the TCP transport", why);
	return QT_BACKEND_TCP;
}

/* ---- node API ------------------------------------------------------------- */

struct qt_node *qt_node_new(const struct qt_config *cfg, const struct qt_callbacks *cb, void *ctx,
			    struct qerr *err)
{
	if (!cfg || cfg->node_id == 0) {
		qerr_set(err, EINVAL, "transport: node id must be non-zero");
		return NULL;
	}
	struct qt_node *n = calloc(1, sizeof(*n));
	if (!n) {
		qerr_set(err, ENOMEM, "transport: out of memory");
		return NULL;
	}
	n->cfg = *cfg;
	if (!n->cfg.window)
		n->cfg.window = DEFAULT_WINDOW;
	if (!n->cfg.max_channels)
		n->cfg.max_channels = DEFAULT_MAX_CHANNELS;
	if (!n->cfg.send_queue)
		n->cfg.send_queue = DEFAULT_SEND_QUEUE;
	if (!n->cfg.keepalive_ms)
		n->cfg.keepalive_ms = DEFAULT_KEEPALIVE_MS;
	if (!n->cfg.timeout_ms)
		n->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!n->cfg.open_timeout_ms)
		n->cfg.open_timeout_ms = DEFAULT_OPEN_TIMEOUT;
	if (!n->cfg.proto_version)
		n->cfg.proto_version = QT_PROTO_VERSION;
	if (n->cfg.window < QT_WINDOW_MIN || n->cfg.window > QT_WINDOW_MAX) {
		qerr_set(err, EINVAL, "transport: window %u out of [%u, %u]", n->cfg.window,
			 QT_WINDOW_MIN, QT_WINDOW_MAX);
		free(n);
		return NULL;
	}
	if (cb)
		n->cb = *cb;
	n->ctx = ctx;
	return n;
}

void qt_node_free(struct qt_node *n)
{
	if (!n)
		return;
	while (n->conns) {
		struct qt_conn *c = n->conns;
		n->conns = c->next;
		c->peer = NULL;
		conn_free(c);
	}
	while (n->peers) {
		struct qt_peer *p = n->peers;
		n->peers = p->next;
		while (p->list) {
			struct qt_channel *ch = p->list;
			p->list = ch->lnext;
			chan_free(ch);
		}
		peer_free(p);
	}
	while (n->reap) {
		struct qt_channel *ch = n->reap;
		n->reap = ch->lnext;
		chan_free(ch);
	}
	free(n);
}

uint64_t qt_node_id(const struct qt_node *n)
{
	return n->cfg.node_id;
}

struct qt_conn *qt_node_attach(struct qt_node *n, struct qt_backend *be, uint64_t dialed,
			       struct qerr *err)
{
	if (!be) {
		qerr_set(err, EINVAL, "transport: no backend");
		return NULL;
	}
	if (dialed == n->cfg.node_id) {
		be->ops->destroy(be);
		qerr_set(err, EINVAL, "transport: dialing our own node id %" PRIu64, dialed);
		return NULL;
	}
	if (dialed && qt_node_connected(n, dialed)) {
		be->ops->destroy(be);
		qerr_set(err, EISCONN, "transport: already connected to node %" PRIu64, dialed);
		return NULL;
	}
	struct qt_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		be->ops->destroy(be);
		qerr_set(err, ENOMEM, "transport: out of memory");
		return NULL;
	}
	c->node = n;
	c->be = be;
	c->dialed = dialed != 0;
	c->dialed_peer = dialed;
	c->created_ms = qt_now_ms();
	c->state = QT_C_CONNECTING;
	c->next = n->conns;
	n->conns = c;
	struct qerr e2 = {0};
	int r = be->ops->connect_step(be, &e2);
	if (r < 0) {
		/* The caller never had the handle: no conn_down, just the error. */
		n->conns = c->next;
		conn_free(c);
		qerr_set(err, -r, "transport: connect: %s", e2.msg[0] ? e2.msg : strerror(-r));
		return NULL;
	}
	enter(n);
	if (r > 0) {
		/* HELLO now: an RDMA backend has no writable event to wait for. */
		conn_connected(c);
		conn_flush(c);
	}
	if (c->state == QT_C_DEAD) {
		/* Still ours alone: take it back out before anyone hears of it. */
		for (struct qt_conn **pp = &n->conns; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		qerr_set(err, c->err, "transport: %s", c->why);
		conn_free(c);
		leave(n);
		return NULL;
	}
	conn_poll_update(c);
	leave(n);
	return c;
}

int qt_node_accept(struct qt_node *n, struct qt_listener *l, struct qerr *err)
{
	int count = 0;
	for (;;) {
		struct qerr e = {0};
		struct qt_backend *be = l->ops->accept(l, &e);
		if (!be) {
			if (e.code == EAGAIN)
				return count;
			if (err)
				*err = e;
			return -(e.code ? e.code : EIO);
		}
		if (qt_node_attach(n, be, 0, err))
			count++;
	}
}

uint32_t qt_node_tick(struct qt_node *n)
{
	uint64_t now = qt_now_ms();
	const struct qt_config *cfg = &n->cfg;
	uint32_t next = cfg->keepalive_ms;

	enter(n);
	for (struct qt_conn *c = n->conns; c; c = c->next) {
		switch (c->state) {
		case QT_C_CONNECTING:
		case QT_C_HELLO:
			if (now - c->created_ms >= cfg->open_timeout_ms)
				conn_close(c, ETIMEDOUT, 0, false,
					   "connection set-up timed out after %u ms",
					   cfg->open_timeout_ms);
			break;
		case QT_C_ACTIVE:
			if (now - c->last_rx_ms >= cfg->timeout_ms) {
				conn_close(c, ETIMEDOUT, 0, false,
					   "nothing from node %" PRIu64 " for %u ms", c->peer_id,
					   cfg->timeout_ms);
				break;
			}
			if (now - c->last_rx_ms >= cfg->keepalive_ms && !c->ping_out) {
				uint8_t *p = out_reserve(c, QT_HDR_SIZE + QT_PING_LEN);
				if (!p)
					break;
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				c->ping_ms =
				    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
				c->ping_opaque = ++n->ping_seq;
				c->ping_out = true;
				out_commit(c, qt_frame_put_ping(p, QT_PING, c->ping_opaque));
				conn_flush(c);
			}
			break;
		case QT_C_CLOSING:
			if (now - c->closing_ms >= CLOSING_LINGER_MS)
				conn_close(c, c->err, 0, false, "%s", c->why);
			break;
		default:
			break;
		}
		conn_poll_update(c);
	}
	for (struct qt_peer *p = n->peers; p; p = p->next)
		for (struct qt_channel *ch = p->list; ch; ch = ch->lnext)
			if (ch->state == QT_CH_QUEUED &&
			    now - ch->queued_ms >= cfg->open_timeout_ms)
				chan_kill(ch, ETIMEDOUT);
	leave(n);
	if (cfg->open_timeout_ms < next)
		next = cfg->open_timeout_ms;
	return next / 4 ? next / 4 : 1;
}

bool qt_node_connected(const struct qt_node *n, uint64_t peer)
{
	for (const struct qt_peer *p = n->peers; p; p = p->next)
		if (p->id == peer)
			return p->active != NULL;
	return false;
}

void qt_node_set_cork(struct qt_node *n, bool on)
{
	n->corked = on;
	if (!on)
		qt_node_flush(n);
}

/* Rounds of flush and wake-up per call: a channel woken for room sends
 * again, and what it sends waits for the next round. */
#define FLUSH_ROUNDS 8

bool qt_node_flush(struct qt_node *n)
{
	bool dirty = true;

	for (int round = 0; dirty && round < FLUSH_ROUNDS; round++) {
		dirty = false;
		enter(n);
		for (struct qt_conn *c = n->conns; c; c = c->next) {
			if (!c->dirty)
				continue;
			c->dirty = false;
			conn_flush(c);
			wake_writers(c);
			conn_poll_update(c);
		}
		leave(n);
		for (struct qt_conn *c = n->conns; c; c = c->next)
			dirty |= c->dirty;
	}
	return dirty;
}

void qt_node_disconnect(struct qt_node *n, uint64_t peer)
{
	struct qt_peer *p = peer_find(n, peer);
	if (!p || !p->active)
		return;
	enter(n);
	conn_close(p->active, ESHUTDOWN, ESHUTDOWN, false, "disconnected from node %" PRIu64, peer);
	leave(n);
}

/* ---- connection API ----------------------------------------------------- */

int qt_conn_fd(const struct qt_conn *c)
{
	return c->be->ops->fd(c->be);
}

unsigned qt_conn_events(const struct qt_conn *c)
{
	bool want_send = qt_buf_len(&c->out) > 0;
	switch (c->state) {
	case QT_C_CONNECTING:
		return c->be->ops->events(c->be, false, true);
	case QT_C_HELLO:
	case QT_C_ACTIVE:
		return c->be->ops->events(c->be, !c->paused, want_send);
	case QT_C_PROVISIONAL:
		return c->be->ops->events(c->be, false, want_send);
	case QT_C_CLOSING:
		return c->be->ops->events(c->be, true, want_send);
	case QT_C_DEAD:
		break;
	}
	return 0;
}

void qt_conn_on_readable(struct qt_conn *c)
{
	conn_service(c, true);
}

void qt_conn_on_writable(struct qt_conn *c)
{
	conn_service(c, false);
}

uint64_t qt_conn_peer(const struct qt_conn *c)
{
	return c->peer_id;
}

bool qt_conn_dialed(const struct qt_conn *c)
{
	return c->dialed;
}

const char *qt_conn_backend(const struct qt_conn *c)
{
	return c->be->ops->name;
}

void qt_conn_set_user(struct qt_conn *c, void *user)
{
	c->user = user;
}

void *qt_conn_user(const struct qt_conn *c)
{
	return c->user;
}

void qt_conn_abort(struct qt_conn *c, int err, const char *why)
{
	struct qt_node *n = c->node;
	enter(n);
	conn_close(c, err, qt_errno_ok(err) ? err : EPROTO, false, "%s", why);
	leave(n);
}

void qt_conn_stats(const struct qt_conn *c, struct qt_conn_stats *out)
{
	*out = c->stats;
	out->channels = 0;
	if (c->peer)
		for (const struct qt_channel *ch = c->peer->list; ch; ch = ch->lnext)
			if (ch->conn == c)
				out->channels++;
}

/* ---- channel API ------------------------------------------------------------ */

struct qt_channel *qt_channel_open(struct qt_node *n, uint64_t peer, const struct sockaddr *dst,
				   socklen_t dst_len, const struct sockaddr *src, socklen_t src_len,
				   void *user, struct qerr *err)
{
	struct qt_open o;
	if (peer == 0 || peer == n->cfg.node_id) {
		qerr_set(err, EINVAL, "channel: bad peer node id %" PRIu64, peer);
		return NULL;
	}
	int r = qt_endpoint_from_sockaddr(&o.dst, dst, dst_len);
	if (r == 0 && o.dst.port == 0)
		r = -EINVAL;
	if (r < 0) {
		qerr_set(err, -r, "channel: destination must be an IPv4 or IPv6 address and port");
		return NULL;
	}
	r = qt_endpoint_from_sockaddr(&o.src, src, src_len);
	if (r < 0) {
		qerr_set(err, -r, "channel: source must be an IPv4 or IPv6 address");
		return NULL;
	}
	struct qt_peer *p = peer_get(n, peer);
	if (!p) {
		qerr_set(err, ENOMEM, "channel: out of memory");
		return NULL;
	}
	if (p->nchan >= n->cfg.max_channels) {
		qerr_set(err, EMFILE, "channel: %u channels to node %" PRIu64 " already", p->nchan,
			 peer);
		return NULL;
	}
	if (p->next_id >= QT_CHAN_SIDE_BIT) {
		/* 2^31 opens to one peer: ids are never reused, so that a
		 * late frame can never be taken for a new channel's. */
		qerr_set(err, ENOSPC, "channel: ids to node %" PRIu64 " exhausted", peer);
		return NULL;
	}
	struct qt_channel *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		qerr_set(err, ENOMEM, "channel: out of memory");
		return NULL;
	}
	ch->peer = p;
	ch->id = p->side | p->next_id;
	ch->ours = true;
	ch->exposed = true;
	ch->user = user;
	ch->open = o;
	ch->state = QT_CH_QUEUED;
	ch->queued_ms = qt_now_ms();
	if (chan_insert(p, ch) < 0) {
		free(ch);
		qerr_set(err, ENOMEM, "channel: out of memory");
		return NULL;
	}
	p->next_id++;
	/* Our receive window is granted at open, like the peer's is to us
	 * at OPEN_OK. */
	ch->rx_allowed = n->cfg.window;
	if (p->active) {
		chan_send_open(p->active, ch);
		conn_send_now(p->active);
	}
	return ch;
}

int qt_channel_accept(struct qt_channel *ch)
{
	struct qt_conn *c = ch->conn;
	if (ch->released)
		return -EBADF;
	if (ch->state == QT_CH_DEAD)
		return -ch->err;
	if (ch->state != QT_CH_PENDING || !c)
		return -EINVAL;
	ch->state = QT_CH_OPEN;
	ch->credit = c->peer_window;
	ch->granted_total = c->peer_window;
	ch->rx_allowed = ch->peer->node->cfg.window;
	send_ctrl(c, QT_OPEN_OK, ch->id, 0);
	conn_send_now(c);
	return 0;
}

void qt_channel_refuse(struct qt_channel *ch, int err)
{
	chan_release(ch, qt_errno_ok(err) ? err : ECONNREFUSED);
}

ssize_t qt_channel_send(struct qt_channel *ch, const void *buf, size_t len)
{
	struct qt_conn *c = ch->conn;
	if (ch->released)
		return -EBADF;
	if (ch->state == QT_CH_DEAD)
		return -ch->err;
	if (ch->state != QT_CH_OPEN || !c)
		return -ENOTCONN;
	if (ch->fin_sent)
		return -EPIPE;
	if (len == 0)
		return 0;
	size_t n = len;
	if (n > ch->credit)
		n = (size_t)ch->credit;
	size_t room = send_room(c);
	if (n > room)
		n = room;
	if (n == 0) {
		blocked_add(c, ch);
		return -EAGAIN;
	}
	const uint8_t *src = buf;
	size_t done = 0;
	while (done < n) {
		uint32_t chunk = (uint32_t)(n - done > QT_DATA_MAX ? QT_DATA_MAX : n - done);
		uint8_t *p = out_reserve(c, QT_HDR_SIZE + chunk);
		if (!p)
			return done ? (ssize_t)done : -ENOMEM;
		/* Piggyback what we owe the peer on its own channel. */
		uint32_t credit = 0;
		if (ch->owed && !ch->fin_rcvd) {
			credit = (uint32_t)ch->owed;
			ch->rx_allowed += ch->owed;
			ch->owed = 0;
		}
		memcpy(p + QT_HDR_SIZE, src + done, chunk);
		out_commit(c, qt_frame_put_hdr(p, QT_DATA, ch->id, chunk, credit));
		done += chunk;
	}
	ch->credit -= n;
	ch->sent_total += n;
	if (n < len)
		blocked_add(c, ch);
	conn_send_now(c);
	return (ssize_t)n;
}

ssize_t qt_channel_recv(struct qt_channel *ch, void *buf, size_t len)
{
	if (ch->released)
		return -EBADF;
	size_t have = qt_buf_len(&ch->rx);
	if (have) {
		size_t n = len < have ? len : have;
		memcpy(buf, ch->rx.data + ch->rx.head, n);
		qt_buf_consume(&ch->rx, n);
		ch->owed += n;
		chan_maybe_grant(ch, false);
		if (ch->conn) {
			conn_send_now(ch->conn);
		}
		return (ssize_t)n;
	}
	if (ch->state == QT_CH_DEAD)
		return -ch->err;
	if (ch->fin_rcvd)
		return 0;
	if (ch->state != QT_CH_OPEN)
		return -ENOTCONN;
	return -EAGAIN;
}

int qt_channel_shutdown(struct qt_channel *ch)
{
	struct qt_conn *c = ch->conn;
	if (ch->released)
		return -EBADF;
	if (ch->state == QT_CH_DEAD)
		return -ch->err;
	if (ch->state != QT_CH_OPEN || !c)
		return -ENOTCONN;
	if (ch->fin_sent)
		return 0;
	ch->fin_sent = true;
	blocked_remove(c, ch);
	send_ctrl(c, QT_FIN, ch->id, 0);
	conn_send_now(c);
	return 0;
}

void qt_channel_close(struct qt_channel *ch)
{
	chan_release(ch, ECONNRESET);
}

void qt_channel_abort(struct qt_channel *ch, int err)
{
	chan_release(ch, qt_errno_ok(err) ? err : ECONNRESET);
}

uint32_t qt_channel_id(const struct qt_channel *ch)
{
	return ch->id;
}

uint64_t qt_channel_peer(const struct qt_channel *ch)
{
	return ch->peer->id;
}

void *qt_channel_user(const struct qt_channel *ch)
{
	return ch->user;
}

void qt_channel_set_user(struct qt_channel *ch, void *user)
{
	ch->user = user;
}

size_t qt_channel_pending(const struct qt_channel *ch)
{
	return qt_buf_len(&ch->rx);
}

uint64_t qt_channel_credit(const struct qt_channel *ch)
{
	return ch->state == QT_CH_OPEN ? ch->credit : 0;
}
