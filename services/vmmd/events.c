/* Lifecycle events on ROOT/events.sock (nng PUB): one msgpack map per event,
 * {v, op:"event", type, id, time, exit_code?}.  PUB never blocks: a slow
 * subscriber loses events rather than stalling the daemon. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

#define EVENTS_QUEUE 8192 /* nng's maximum */

static bool events_open;

int events_listen(struct qerr *err)
{
	char url[PATH_MAX + 32];
	int r;

	snprintf(url, sizeof(url), "ipc://%s/events.sock", vmmd.root);
	unlinkat(vmmd.rootfd, "events.sock", 0);
	r = qnng_pub_listen(&vmmd.pub, url, err);
	if (r < 0)
		return r;
	/* nng keeps 16 messages per subscriber by default and drops the
	 * oldest: a burst of creates publishes three events each. */
	int rv = nng_socket_set_int(vmmd.pub, NNG_OPT_SENDBUF, EVENTS_QUEUE);
	if (rv != 0)
		qlog_warn("events: queue of %d: %s", EVENTS_QUEUE, nng_strerror(rv));
	events_open = true;
	return 0;
}

void events_publish(const char *type, const struct sandbox *sb)
{
	struct qmsg_out m;
	char when[64];
	bool has_code = sb->status == SB_STOPPED && sb->has_exit && strcmp(type, "exited") == 0;
	int rv;

	if (!events_open)
		return;
	format_rfc3339(now_ns(), when, sizeof(when));
	qmsg_out_init(&m);
	qmsg_begin(&m, "event", has_code ? 4 : 3);
	qmsg_put_str(&m, "type", type);
	qmsg_put_str(&m, "id", sb->id);
	qmsg_put_str(&m, "time", when);
	if (has_code)
		qmsg_put_int(&m, "exit_code", sb->exit_code);
	rv = nng_send(vmmd.pub, (void *)qmsg_data(&m), qmsg_size(&m), NNG_FLAG_NONBLOCK);
	if (rv != 0 && rv != NNG_EAGAIN)
		qlog_warn("events: %s", nng_strerror(rv));
	qmsg_out_free(&m);
}

void events_close(void)
{
	if (events_open)
		nng_close(vmmd.pub);
	events_open = false;
}
