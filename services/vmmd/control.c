/* The control socket ROOT/vmmd.sock: an SP REP socket on the loop
 * (libcommon/sp.c; nng's REQ sockets and libcommon/sp_client.c talk to it).
 * Every request is parsed and bounded by qmsg_parse before dispatch sees
 * it; a malformed one gets an error reply. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/sp.h"
#include "services/vmmd/vmmd.h"

/* Replies a client may leave unread (a client may pipeline requests); one
 * that leaves more is dropped rather than held in vmmd's memory. */
#define REPLIES_UNREAD_MAX 64
#define HELLO_MS	   10000

static struct qsp *control;

static void control_one(void *arg, const void *body, size_t len, struct qmsg_out *reply)
{
	struct qmsg_in req;
	struct qerr err;

	(void)arg;
	if (qmsg_parse(&req, body, len, &err) < 0) {
		qlog_warn("control: malformed request: %s", err.msg);
		vmmd_metrics_request("malformed", true);
		qmsg_error_reply(reply, &err);
	} else {
		dispatch(&req, reply);
		qmsg_in_free(&req);
	}
	if (vmmd.stopping)
		uv_stop(vmmd.loop);
}

int control_listen(struct qerr *err)
{
	static const struct qsp_opts opts = {
	    .role = QSP_REP,
	    .queue_max = REPLIES_UNREAD_MAX,
	    .hello_ms = HELLO_MS,
	    .max_request = QMSG_MAX_BYTES,
	    .on_request = control_one,
	};
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/vmmd.sock", vmmd.root);
	/* We hold ROOT/vmmd.lock: a socket file left here is a dead vmmd's. */
	unlinkat(vmmd.rootfd, "vmmd.sock", 0);
	return qsp_listen(vmmd.loop, path, &opts, &control, err);
}

void control_close(void)
{
	qsp_close(control);
	control = NULL;
}
