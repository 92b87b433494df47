/* The dialing side of the daemons' SP sockets (libcommon/sp.c), spoken
 * without nng: a REQ client of a control socket (vmmd.sock, poold.sock)
 * and a SUB client of vmmd's events.sock.  Blocking calls with a
 * deadline, on one stream socket; no threads. */
#ifndef QUIVER_LIBCOMMON_SP_CLIENT_H
#define QUIVER_LIBCOMMON_SP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/msg.h"

struct qspc {
	int fd; /* -1: not connected */
	uint32_t next_id;
	const char *peer; /* for errors: "quiver-vmmd", "quiver-poold" */
};

#define QSPC_INIT(name)                                                                            \
	{                                                                                          \
		.fd = -1, .peer = (name)                                                           \
	}

int qspc_dial(struct qspc *c, const char *path, struct qerr *err);
/* An "error" reply comes back as its negative code, err holding its text,
 * and leaves the connection open.  Any other failure (no reply within
 * timeout_ms, the peer gone, a malformed reply) closes it: c->fd is then
 * -1, and the caller dials again if it wants more. */
int qspc_call(struct qspc *c, const struct qmsg_out *req, struct qmsg_in *reply, int timeout_ms,
	      struct qerr *err);
/* The peer has closed the connection (or sent what nobody asked for)
 * since the last call: a daemon that restarted.  Dial afresh then rather
 * than fail the next call. */
bool qspc_peer_closed(const struct qspc *c);
/* A SUB connection to ROOT/events.sock, and its next message (the fd is
 * non-blocking: poll it for POLLIN first; the frame must then arrive
 * within timeout_ms).  -ECONNRESET when the daemon closed it. */
int qspc_dial_sub(struct qspc *c, const char *path, struct qerr *err);
int qspc_recv(struct qspc *c, struct qmsg_in *msg, int timeout_ms, struct qerr *err);
void qspc_close(struct qspc *c);

#endif
