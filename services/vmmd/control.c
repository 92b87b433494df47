/* The control socket ROOT/vmmd.sock: an nng REP socket whose receive
 * descriptor joins the loop.  Every request is parsed and bounded by
 * qmsg_parse before dispatch sees it; a malformed one gets an error reply. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

/* A reply waits this long for the client's previous reply to leave its
 * pipe (a client may pipeline requests); one that does not read its replies
 * is dropped rather than stalling the loop again. */
#define REPLY_SEND_TIMEOUT_MS 1000

static bool control_open;

static void reply_send(nng_pipe pipe, const struct qmsg_out *reply)
{
	int rv = nng_send(vmmd.rep, (void *)qmsg_data(reply), qmsg_size(reply), 0);

	if (rv == 0)
		return;
	qlog_warn("control: reply not sent: %s%s", nng_strerror(rv),
		  rv == NNG_ETIMEDOUT ? "; dropping the client" : "");
	if (rv == NNG_ETIMEDOUT)
		nng_pipe_close(pipe);
}

static void control_one(nng_msg *msg)
{
	struct qmsg_in req;
	struct qmsg_out reply;
	struct qerr err;

	qmsg_out_init(&reply);
	if (qmsg_parse(&req, nng_msg_body(msg), nng_msg_len(msg), &err) < 0) {
		qlog_warn("control: malformed request: %s", err.msg);
		vmmd_metrics_request("malformed", true);
		qmsg_error_reply(&reply, &err);
	} else {
		dispatch(&req, &reply);
		qmsg_in_free(&req);
	}
	reply_send(nng_msg_get_pipe(msg), &reply);
	qmsg_out_free(&reply);
}

static void control_readable(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)status;
	(void)events;
	/* Bounded per wake-up so pidfd events are not starved. */
	for (int i = 0; i < 64 && !vmmd.stopping; i++) {
		nng_msg *msg = NULL;
		int rv = nng_recvmsg(vmmd.rep, &msg, NNG_FLAG_NONBLOCK);

		if (rv == NNG_EAGAIN)
			break;
		if (rv != 0) {
			qlog_warn("control: receive: %s", nng_strerror(rv));
			break;
		}
		control_one(msg);
		nng_msg_free(msg);
	}
	if (vmmd.stopping)
		uv_stop(vmmd.loop);
}

int control_listen(struct qerr *err)
{
	char url[PATH_MAX + 32];
	int fd, rv, r;

	snprintf(url, sizeof(url), "ipc://%s/vmmd.sock", vmmd.root);
	/* We hold ROOT/vmmd.lock: a socket file left here is a dead vmmd's. */
	unlinkat(vmmd.rootfd, "vmmd.sock", 0);
	r = qnng_rep_listen(&vmmd.rep, url, err);
	if (r < 0)
		return r;
	rv = nng_socket_set_ms(vmmd.rep, NNG_OPT_SENDTIMEO, REPLY_SEND_TIMEOUT_MS);
	if (rv == 0)
		rv = nng_socket_get_int(vmmd.rep, NNG_OPT_RECVFD, &fd);
	if (rv != 0)
		return qerr_set(err, qnng_errno(rv), "control socket: %s", nng_strerror(rv));
	uv_poll_init(vmmd.loop, &vmmd.rep_poll, fd);
	uv_poll_start(&vmmd.rep_poll, UV_READABLE, control_readable);
	control_open = true;
	return 0;
}

void control_close(void)
{
	if (!control_open)
		return;
	uv_poll_stop(&vmmd.rep_poll);
	nng_close(vmmd.rep);
	control_open = false;
}
