/* A PUB socket served on a libuv loop: the publishing side of nng's pub0
 * protocol over its IPC transport, spoken without nng (pub.c says why).
 * Subscribers are unchanged: an nng SUB socket (`qnng_sub_dial`), qctl's
 * wire client, or anything that speaks the same framing. */
#ifndef QUIVER_LIBCOMMON_PUB_H
#define QUIVER_LIBCOMMON_PUB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "libcommon/err.h"

struct qpub;

struct qpub_opts {
	/* Messages a subscriber may have waiting; beyond, it loses the new
	 * ones (a slow subscriber never stalls the publisher). */
	unsigned queue_max;
	/* A peer that has not sent its SP greeting by then is closed. */
	unsigned hello_ms;
};

/* Listen on the unix socket path (mode 0600; peers of another uid are
 * closed).  The path must not exist.  The process must ignore SIGPIPE:
 * libuv's writes to a subscriber that has gone would raise it. */
int qpub_listen(uv_loop_t *loop, const char *path, const struct qpub_opts *opts, struct qpub **out,
		struct qerr *err);
/* Send one message, whole, to every subscriber that has finished its
 * greeting and has room in its queue. */
void qpub_send(struct qpub *pub, const void *data, size_t len);
/* Subscribers connected (greeted or not), and messages not queued for a
 * subscriber whose queue was full. */
size_t qpub_peers(const struct qpub *pub);
uint64_t qpub_dropped(const struct qpub *pub);
/* Close the listener and every subscriber; memory goes when the loop has
 * run the handles' close callbacks. */
void qpub_close(struct qpub *pub);

#endif
