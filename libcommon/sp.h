/* The daemons' listening sockets, served on a libuv loop: the listening
 * side of nng's SP protocols over its IPC transport, spoken without nng
 * (sp.c says why).  A PUB socket (vmmd's events) and a REP socket (vmmd's
 * and poold's control).  Their peers are unchanged: nng's SUB and REQ
 * sockets, qctl's wire client, or anything that speaks the same framing. */
#ifndef QUIVER_LIBCOMMON_SP_H
#define QUIVER_LIBCOMMON_SP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "libcommon/err.h"
#include "libcommon/msg.h"

struct qsp;

enum qsp_role { QSP_PUB, QSP_REP };

/* A request's body (the REQ header taken off); the reply built in *reply
 * goes back to that peer with the header. */
typedef void (*qsp_request_fn)(void *arg, const void *body, size_t len, struct qmsg_out *reply);

struct qsp_opts {
	enum qsp_role role;
	/* PUB: messages a subscriber may have waiting; beyond, it loses the
	 * new ones (a slow subscriber never stalls the publisher).
	 * REP: replies a client may leave unread; beyond, it is dropped. */
	unsigned queue_max;
	/* A peer that has not sent its SP greeting by then is closed. */
	unsigned hello_ms;
	/* REP: the largest request (a larger one closes its peer), and who
	 * answers them. */
	size_t max_request;
	qsp_request_fn on_request;
	void *arg;
};

/* Listen on the unix socket path (mode 0600; peers of another uid are
 * closed).  The path must not exist.  The process must ignore SIGPIPE:
 * libuv's writes to a peer that has gone would raise it. */
int qsp_listen(uv_loop_t *loop, const char *path, const struct qsp_opts *opts, struct qsp **out,
	       struct qerr *err);
/* PUB: send one message, whole, to every subscriber that has finished its
 * greeting and has room in its queue. */
void qsp_publish(struct qsp *sp, const void *data, size_t len);
/* REP: a peer has bytes waiting that the loop has not read (a request,
 * likely): lets long work on the loop give way. */
bool qsp_request_waiting(const struct qsp *sp);
/* Peers connected (greeted or not); PUB: messages not queued for a
 * subscriber whose queue was full. */
size_t qsp_peers(const struct qsp *sp);
uint64_t qsp_dropped(const struct qsp *sp);
/* REP: bytes of input buffer the peers hold (each at most 64 KiB between
 * requests, however big its last request was). */
size_t qsp_buffered(const struct qsp *sp);
/* REP, for the loop and its fuzz target: the first frame of buf[0..len)
 * as a request.  1 when it is whole: *frame_len bytes in all, of them the
 * frame's 9-byte head, then the backtrace (*hlen bytes), then the body.
 * 0 when more must come (*frame_len: what the frame needs, once its head
 * is in).  -EPROTO (not a message frame), -EMSGSIZE (over max_request),
 * -EBADMSG (no request id in the first 8 words): the peer broke the
 * protocol. */
int qsp_scan_request(const unsigned char *buf, size_t len, size_t max_request, size_t *frame_len,
		     size_t *hlen);
/* Close the listener and every peer; memory goes when the loop has run
 * the handles' close callbacks. */
void qsp_close(struct qsp *sp);

#endif
