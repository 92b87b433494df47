/* netd's node-to-node transport, in the mould of TSoR (docs/netd-transport.md).
 *
 * One connection per pair of nodes, multiplexed into channels (one per
 * sandbox TCP stream), with per-channel credit-based flow control, so one
 * slow reader stalls only its own channel.  Two backends move the bytes
 * behind one interface (struct qt_backend): TCP, and RDMA verbs when a
 * device exists (transport_rdma.h).
 *
 * The library owns no event loop.  For each connection the daemon polls
 * qt_conn_fd() for qt_conn_events() and calls qt_conn_on_readable() /
 * qt_conn_on_writable(); the same for a listener with qt_listener_fd() and
 * qt_node_accept(); and it calls qt_node_tick() from a timer.  Everything
 * the library has to say comes back through struct qt_callbacks.
 *
 * Callbacks run only from the event entry points (qt_conn_on_readable,
 * qt_conn_on_writable, qt_node_tick, qt_node_accept, qt_node_attach,
 * qt_node_disconnect, qt_node_flush, qt_conn_abort), after the work of the
 * call is done;
 * qt_node_free calls none.  The qt_channel_* calls, qt_channel_open among
 * them, never call back (only poll_update, which must do nothing but change
 * the poll registration), so a callback may call any qt_channel_* function
 * on any channel.  A channel handle stays valid until the application calls
 * qt_channel_close() or qt_channel_abort() (or qt_channel_refuse() on an
 * incoming open), whatever happened to the channel meanwhile; a connection
 * handle until its conn_down has returned.
 *
 * Single-threaded: one node and everything under it belong to one thread.
 */
#ifndef QUIVER_NETD_TRANSPORT_H
#define QUIVER_NETD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "libcommon/err.h"
#include "services/netd/transport_frame.h"

struct qt_node;
struct qt_conn;
struct qt_channel;

/* ---- Backends: how a connection's bytes move ---------------------------- */

struct qt_backend;

/* A backend is a reliable, ordered byte stream to one peer node.  Every
 * function is non-blocking. */
struct qt_backend_ops {
	const char *name; /* "tcp", "rdma" */
	/* Advance connection set-up after the fd was ready: 1 once bytes can
	 * move, 0 while still connecting, a negative errno if set-up failed. */
	int (*connect_step)(struct qt_backend *b, struct qerr *err);
	/* Accept up to len bytes for the peer: the count taken (> 0), -EAGAIN
	 * when none fit now, another negative errno when the link is broken. */
	ssize_t (*send)(struct qt_backend *b, const void *buf, size_t len, struct qerr *err);
	/* Up to len bytes from the peer: > 0, 0 at end of stream, -EAGAIN, or
	 * another negative errno. */
	ssize_t (*recv)(struct qt_backend *b, void *buf, size_t len, struct qerr *err);
	/* The one fd the loop polls, and for what (POLLIN/POLLOUT) given
	 * whether we want to read and have bytes waiting to be sent. */
	int (*fd)(const struct qt_backend *b);
	unsigned (*events)(const struct qt_backend *b, bool want_read, bool want_send);
	/* Work the fd's readiness asks for before send/recv (RDMA: connection
	 * manager events and completions).  Negative errno when broken. */
	int (*process)(struct qt_backend *b, struct qerr *err);
	/* Half-close our sending side once everything queued has gone (after
	 * a GOAWAY): the peer sees the end of the stream after the GOAWAY.
	 * NULL when the backend has no such thing. */
	int (*shutdown)(struct qt_backend *b);
	/* "tcp 10.0.0.2:7070" for messages. */
	void (*describe)(const struct qt_backend *b, char *buf, size_t len);
	void (*destroy)(struct qt_backend *b);
};

struct qt_backend {
	const struct qt_backend_ops *ops;
};

struct qt_listener;
struct qt_listener_ops {
	const char *name;
	int (*fd)(const struct qt_listener *l);
	/* A new incoming backend, or NULL with err->code EAGAIN when none. */
	struct qt_backend *(*accept)(struct qt_listener *l, struct qerr *err);
	void (*destroy)(struct qt_listener *l);
};
struct qt_listener {
	const struct qt_listener_ops *ops;
};

static inline int qt_listener_fd(const struct qt_listener *l)
{
	return l->ops->fd(l);
}

static inline void qt_listener_free(struct qt_listener *l)
{
	if (l)
		l->ops->destroy(l);
}

/* TCP (transport_tcp.c): non-blocking sockets with TCP_NODELAY. */
struct qt_listener *qt_tcp_listen(const struct sockaddr *addr, socklen_t len, struct qerr *err);
/* The port a listener is bound to (for port 0 in tests). */
int qt_tcp_listener_port(const struct qt_listener *l);
struct qt_backend *qt_tcp_dial(const struct sockaddr *addr, socklen_t len, struct qerr *err);
/* Wrap an fd that is already a connected (or connecting) stream socket;
 * the backend owns it from here on, even on failure. */
struct qt_backend *qt_tcp_from_fd(int fd, bool connecting, struct qerr *err);

/* ---- Which backend ------------------------------------------------------ */

enum qt_backend_kind { QT_BACKEND_AUTO, QT_BACKEND_TCP, QT_BACKEND_RDMA };

/* Pick the backend for this node: RDMA when asked for (or AUTO) and a
 * device exists, TCP otherwise.  msg gets the line netd logs at start-up,
 * e.g. "no RDMA device (/sys/class/infiniband does not exist): using the
 * TCP transport".  Returns the kind chosen; -ENODEV when RDMA was demanded
 * and there is none. */
int qt_backend_select(enum qt_backend_kind want, char *msg, size_t len);

/* ---- A node: its connections to peer nodes, and the channels ----------- */

struct qt_config {
	uint64_t node_id; /* non-zero, unique among the nodes */
	/* Receive window of each channel, announced in HELLO: the bytes a
	 * peer may send on a channel before we grant more.  0: 256 KiB. */
	uint32_t window;
	/* Channels per peer (both directions together).  0: 1024.  With the
	 * window this bounds what a peer can make us buffer: max_channels x
	 * window (256 MiB with the defaults). */
	uint32_t max_channels;
	/* DATA bytes a connection queues for its backend before senders get
	 * -EAGAIN; also where a connection stops reading while control frames
	 * it owes the peer are not flushed.  0: 1 MiB. */
	size_t send_queue;
	/* PING after this long without a frame from the peer; give up on the
	 * connection (ETIMEDOUT) after timeout_ms.  0: 5 s and 15 s. */
	uint32_t keepalive_ms, timeout_ms;
	/* Fail queued channel opens (no connection to their peer) and
	 * connections still in set-up or HELLO after this long.  0: 10 s. */
	uint32_t open_timeout_ms;
	/* Tests only: announce this protocol version instead of ours. */
	uint16_t proto_version;
};

/* Where an incoming channel wants to go (its OPEN frame). */
struct qt_open_req {
	uint64_t peer; /* the node that asked */
	struct sockaddr_storage dst, src;
	socklen_t dst_len, src_len;
};

struct qt_callbacks {
	/* Change the poll registration of c's fd to events (POLLIN|POLLOUT).
	 * May be called from any qt_ function; must do nothing else. */
	void (*poll_update)(struct qt_conn *c, unsigned events, void *ctx);
	/* c is now the one connection to peer: channel traffic flows. */
	void (*conn_up)(struct qt_conn *c, uint64_t peer, void *ctx);
	/* c is gone (peer 0 if it never said HELLO); err and why say why:
	 * EEXIST when it lost the tie-break to another connection.  Stop
	 * polling its fd; c is freed when this returns. */
	void (*conn_down)(struct qt_conn *c, uint64_t peer, int err, const char *why, void *ctx);
	/* A peer opens a channel: answer with qt_channel_accept() or
	 * qt_channel_refuse(), now or later. */
	void (*open_request)(struct qt_channel *ch, const struct qt_open_req *req, void *ctx);
	/* Our qt_channel_open was answered: 0 (open) or the errno (the peer's
	 * refusal, ECONNRESET, ETIMEDOUT); after an error only
	 * qt_channel_close() is left to do. */
	void (*open_result)(struct qt_channel *ch, int err, void *ctx);
	/* Bytes are waiting: qt_channel_recv() until -EAGAIN. */
	void (*readable)(struct qt_channel *ch, void *ctx);
	/* The peer sent FIN: once the waiting bytes are read, recv returns 0. */
	void (*fin)(struct qt_channel *ch, void *ctx);
	/* The channel is dead: the peer's RST (its errno), ECONNRESET when the
	 * connection was lost.  Only qt_channel_close() is left to do. */
	void (*rst)(struct qt_channel *ch, int err, void *ctx);
	/* A qt_channel_send() that took less than asked can take more now. */
	void (*writable)(struct qt_channel *ch, void *ctx);
};

struct qt_node *qt_node_new(const struct qt_config *cfg, const struct qt_callbacks *cb, void *ctx,
			    struct qerr *err);
/* Frees every connection and channel without calling back. */
void qt_node_free(struct qt_node *n);
uint64_t qt_node_id(const struct qt_node *n);

/* Hand the node a backend: one we dialed to node `dialed` (the id we
 * expect in its HELLO), or one we accepted (dialed = 0).  The node owns be
 * from here on, even on failure.  -EISCONN when we already have a working
 * connection to `dialed` (do not dial a connected peer). */
struct qt_conn *qt_node_attach(struct qt_node *n, struct qt_backend *be, uint64_t dialed,
			       struct qerr *err);
/* Accept every waiting connection of a listener and attach each; returns
 * how many, or a negative errno (err) if accept failed. */
int qt_node_accept(struct qt_node *n, struct qt_listener *l, struct qerr *err);
/* Keepalives and timeouts; returns the ms until it wants to be called
 * again. */
uint32_t qt_node_tick(struct qt_node *n);
/* Whether the node has a working connection to peer. */
bool qt_node_connected(const struct qt_node *n, uint64_t peer);
/* Close the connection to peer (GOAWAY(ESHUTDOWN)): its channels get
 * ECONNRESET. */
void qt_node_disconnect(struct qt_node *n, uint64_t peer);
/* Corked, a frame the qt_channel_* calls queue is not handed to the
 * backend at once: the application calls qt_node_flush() once per turn of
 * its loop, before it waits (the frames of every channel then go out in
 * one send).  Off by default.  qt_node_flush is an entry point (it wakes
 * channels that were waiting for room in the queue); it returns true when
 * output is still queued that the next turn must flush without waiting. */
void qt_node_set_cork(struct qt_node *n, bool on);
bool qt_node_flush(struct qt_node *n);

/* ---- A connection --------------------------------------------------------- */

int qt_conn_fd(const struct qt_conn *c);
unsigned qt_conn_events(const struct qt_conn *c);
void qt_conn_on_readable(struct qt_conn *c);
void qt_conn_on_writable(struct qt_conn *c);
uint64_t qt_conn_peer(const struct qt_conn *c); /* 0 before HELLO */
bool qt_conn_dialed(const struct qt_conn *c);
const char *qt_conn_backend(const struct qt_conn *c); /* "tcp", "rdma" */
void qt_conn_set_user(struct qt_conn *c, void *user);
void *qt_conn_user(const struct qt_conn *c);
/* Abort with a protocol error, as if the peer had sent something bad
 * (tests, and netd's own sanity checks). */
void qt_conn_abort(struct qt_conn *c, int err, const char *why);

struct qt_conn_stats {
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t sends; /* backend sends that took bytes: frames_out / sends is the batching */
	uint64_t late_frames; /* for channels we had already closed: dropped */
	uint32_t channels;
	uint64_t rtt_us; /* of the last PING, 0 before one */
};
void qt_conn_stats(const struct qt_conn *c, struct qt_conn_stats *out);

/* ---- Channels --------------------------------------------------------------- */

/* Open a channel to peer for a stream from src to dst.  If there is no
 * connection to peer yet the open waits for one (the daemon dials).  The
 * answer comes in open_result.  NULL with err on bad arguments or
 * too many channels. */
struct qt_channel *qt_channel_open(struct qt_node *n, uint64_t peer, const struct sockaddr *dst,
				   socklen_t dst_len, const struct sockaddr *src, socklen_t src_len,
				   void *user, struct qerr *err);
/* Answer an open_request. */
int qt_channel_accept(struct qt_channel *ch);
/* Refuse with an errno qt_errno_ok() allows (ECONNREFUSED, ENETUNREACH,
 * ...); releases ch. */
void qt_channel_refuse(struct qt_channel *ch, int err);

/* Bytes taken (<= len, as far as the channel's credit and the
 * connection's send queue allow), -EAGAIN when none could be (writable
 * follows), -EPIPE after qt_channel_shutdown, -ENOTCONN before the channel
 * is open, -ECONNRESET (or the RST's errno) when it is dead. */
ssize_t qt_channel_send(struct qt_channel *ch, const void *buf, size_t len);
/* Bytes read, 0 at end of stream (the peer's FIN, all read), -EAGAIN when
 * none are waiting, the RST's errno when dead.  Reading is what grants
 * the peer more credit. */
ssize_t qt_channel_recv(struct qt_channel *ch, void *buf, size_t len);
/* Half-close: FIN after the bytes already sent. */
int qt_channel_shutdown(struct qt_channel *ch);
/* Release the handle.  A channel not finished both ways (FIN sent and
 * received, every byte read) is reset (RST(ECONNRESET)). */
void qt_channel_close(struct qt_channel *ch);
/* Release the handle, resetting the channel with err (qt_errno_ok). */
void qt_channel_abort(struct qt_channel *ch, int err);

uint32_t qt_channel_id(const struct qt_channel *ch);
uint64_t qt_channel_peer(const struct qt_channel *ch);
void *qt_channel_user(const struct qt_channel *ch);
void qt_channel_set_user(struct qt_channel *ch, void *user);
size_t qt_channel_pending(const struct qt_channel *ch);	 /* bytes waiting to be read */
uint64_t qt_channel_credit(const struct qt_channel *ch); /* bytes we may send now */

#endif
