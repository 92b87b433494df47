/* The control socket ROOT/vmmd.sock: an nng REP socket whose receive
 * descriptor joins the loop.  Every request is parsed and bounded by
 * qmsg_parse before dispatch sees it; a malformed one gets an error reply. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

static bool control_open;

static void reply_send(const struct qmsg_out *reply)
{
	int rv = nng_send(vmmd.rep, (void *)qmsg_data(reply), qmsg_size(reply), NNG_FLAG_NONBLOCK);

	if (rv != 0)
		qlog_warn("control: reply not sent: %s", nng_strerror(rv));
}

static void control_one(void *buf, size_t len)
{
	struct qmsg_in req;
	struct qmsg_out reply;
	struct qerr err;

	qmsg_out_init(&reply);
	if (qmsg_parse(&req, buf, len, &err) < 0) {
		qlog_warn("control: malformed request: %s", err.msg);
		vmmd_metrics_request("malformed", true);
		qmsg_error_reply(&reply, &err);
	} else {
		dispatch(&req, &reply);
		qmsg_in_free(&req);
	}
	reply_send(&reply);
	qmsg_out_free(&reply);
}

static void control_readable(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)status;
	(void)events;
	/* Bounded per wake-up so pidfd events are not starved. */
	for (int i = 0; i < 64 && !vmmd.stopping; i++) {
		void *buf = NULL;
		size_t len = 0;
		int rv = nng_recv(vmmd.rep, &buf, &len, NNG_FLAG_ALLOC | NNG_FLAG_NONBLOCK);

		if (rv == NNG_EAGAIN)
			break;
		if (rv != 0) {
			qlog_warn("control: receive: %s", nng_strerror(rv));
			break;
		}
		control_one(buf, len);
		nng_free(buf, len);
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
