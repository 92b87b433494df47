/* qctl's REQ client for vmmd.sock without nng's threads (vmmd_wire.c). */
#ifndef QUIVER_QCTL_VMMD_WIRE_H
#define QUIVER_QCTL_VMMD_WIRE_H

#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/msg.h"

struct wire {
	int fd;
	uint32_t next_id;
};

int wire_dial(struct wire *w, const char *path, struct qerr *err);
/* An "error" reply comes back as its negative code, err holding its text. */
int wire_call(struct wire *w, const struct qmsg_out *req, struct qmsg_in *reply, int timeout_ms,
	      struct qerr *err);
/* A SUB connection to ROOT/events.sock, and its next message (the fd is
 * non-blocking: poll it for POLLIN first; the frame must then arrive
 * within timeout_ms).  -ECONNRESET when the daemon closed it. */
int wire_dial_sub(struct wire *w, const char *path, struct qerr *err);
int wire_recv(struct wire *w, struct qmsg_in *msg, int timeout_ms, struct qerr *err);
void wire_close(struct wire *w);

#endif
