/* Private to transport*.c: the structures behind transport.h's handles and
 * the byte buffer they share. */
#ifndef QUIVER_NETD_TRANSPORT_INT_H
#define QUIVER_NETD_TRANSPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "services/netd/transport.h"

/* A byte queue: bytes live in [head, tail) of data; appends compact or
 * grow it.  Growth is bounded by the callers (a channel's window, the send
 * queue), never by the peer. */
struct qt_buf {
	uint8_t *data;
	size_t head, tail, cap;
};

static inline size_t qt_buf_len(const struct qt_buf *b)
{
	return b->tail - b->head;
}

/* Room for n more bytes at data + tail; -ENOMEM. */
int qt_buf_reserve(struct qt_buf *b, size_t n);
int qt_buf_append(struct qt_buf *b, const void *p, size_t n);
void qt_buf_consume(struct qt_buf *b, size_t n);
void qt_buf_free(struct qt_buf *b);

enum qt_ch_state {
	QT_CH_QUEUED,  /* ours: waiting for a connection to the peer */
	QT_CH_OPENING, /* ours: OPEN sent on conn, no answer yet */
	QT_CH_PENDING, /* theirs: open_request not answered yet */
	QT_CH_OPEN,
	QT_CH_DEAD, /* refused, reset or lost: only qt_channel_close is left */
};

/* Events a channel has for the application, delivered at the end of the
 * event entry point that produced them. */
#define QT_EV_OPEN_REQ	  0x01u
#define QT_EV_OPEN_RESULT 0x02u
#define QT_EV_READABLE	  0x04u
#define QT_EV_FIN	  0x08u
#define QT_EV_WRITABLE	  0x10u
#define QT_EV_RST	  0x20u

struct qt_peer;

struct qt_channel {
	struct qt_peer *peer;
	struct qt_conn *conn; /* bound connection; NULL when queued or dead */
	uint32_t id;
	enum qt_ch_state state;
	int err;      /* DEAD: why */
	int open_err; /* for open_result */
	bool ours;    /* we opened it */
	bool fin_sent, fin_rcvd;
	bool released; /* the application let go of the handle */
	bool exposed;  /* the application has seen the handle */
	bool want_write;
	bool on_blocked;
	void *user;
	struct qt_open open;
	uint64_t queued_ms; /* QUEUED: since when */

	/* Sending: credit is what we may still send; the peer may never have
	 * granted more than it could have received plus its window. */
	uint64_t credit, sent_total, granted_total;
	/* Receiving: rx_allowed is what the peer may still send; owed what
	 * the application consumed and we have not granted back yet.
	 * qt_buf_len(rx) + rx_allowed + owed == window, always. */
	struct qt_buf rx;
	uint64_t rx_allowed, owed;

	unsigned ev;
	struct qt_channel *ev_next;
	bool on_ev;
	struct qt_channel *blocked_next;
	struct qt_channel *hnext;	  /* peer's hash chain */
	struct qt_channel *lprev, *lnext; /* peer's list */
};

struct qt_peer {
	struct qt_node *node;
	uint64_t id;
	struct qt_conn *active;
	uint32_t side;	  /* our side bit in channel ids: QT_CHAN_SIDE_BIT or 0 */
	uint32_t next_id; /* next id we allocate, without the side bit */
	uint32_t nchan;	  /* channels in the table */
	uint32_t nbuckets;
	struct qt_channel **buckets;
	struct qt_channel *list;
	unsigned nconns; /* connections that said HELLO as this peer */
	struct qt_peer *next;
};

enum qt_conn_state {
	QT_C_CONNECTING,  /* backend set-up */
	QT_C_HELLO,	  /* our HELLO sent, waiting for theirs */
	QT_C_PROVISIONAL, /* HELLO done; held while our own dial to the peer may win */
	QT_C_ACTIVE,
	QT_C_CLOSING, /* GOAWAY queued: flushing, discarding input until EOF */
	QT_C_DEAD,    /* to be freed at the end of the entry point */
};

struct qt_conn {
	struct qt_node *node;
	struct qt_backend *be;
	enum qt_conn_state state;
	bool dialed;
	uint64_t dialed_peer;
	struct qt_peer *peer; /* after HELLO */
	uint64_t peer_id;
	uint32_t peer_window;
	struct qt_buf in, out;
	bool paused;		/* not reading until out drains */
	bool kick;		/* read input already buffered (after promotion) */
	bool up_event;		/* conn_up to deliver */
	bool shut;		/* CLOSING: write side shut down */
	uint32_t max_peer_open; /* highest peer-side id an OPEN named */
	int err;
	char why[QERR_MSG_MAX];
	uint64_t created_ms, last_rx_ms, closing_ms, ping_ms;
	uint64_t ping_opaque;
	bool ping_out;
	struct qt_conn_stats stats;
	unsigned polled; /* events last given to poll_update */
	bool dirty;	 /* corked: output queued since the last qt_node_flush */
	struct qt_channel *blocked;
	void *user;
	struct qt_conn *next;
};

struct qt_node {
	struct qt_config cfg;
	struct qt_callbacks cb;
	void *ctx;
	struct qt_conn *conns;
	struct qt_peer *peers;
	struct qt_channel *ev_head, *ev_tail;
	struct qt_channel *reap;
	int depth;
	uint64_t ping_seq;
	bool corked; /* qt_node_set_cork: frames wait for qt_node_flush */
};

uint64_t qt_now_ms(void);

#endif
