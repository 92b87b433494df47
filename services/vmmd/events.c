/* Lifecycle events on ROOT/events.sock: one msgpack map per event,
 * {v, op:"event", type, id, time, exit_code?}, sent by vmmd's loop as an
 * SP PUB socket (libcommon/sp.c: nng's framing, without Debian 12's nng,
 * whose PUB listener a hung-up subscriber could break).  PUB never blocks:
 * a slow subscriber loses events rather than stalling the daemon. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/sp.h"
#include "services/vmmd/vmmd.h"

/* A burst of creates publishes three events each; nng's default was 16
 * per subscriber, its maximum (and ours) 8192. */
#define EVENTS_QUEUE	8192
#define EVENTS_HELLO_MS 10000

static struct qsp *events;

int events_listen(struct qerr *err)
{
	static const struct qsp_opts opts = {
	    .role = QSP_PUB, .queue_max = EVENTS_QUEUE, .hello_ms = EVENTS_HELLO_MS};
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/events.sock", vmmd.root);
	unlinkat(vmmd.rootfd, "events.sock", 0);
	return qsp_listen(vmmd.loop, path, &opts, &events, err);
}

void events_publish(const char *type, const struct sandbox *sb)
{
	struct qmsg_out m;
	char when[64];
	bool has_code = sb->status == SB_STOPPED && sb->has_exit && strcmp(type, "exited") == 0;

	if (!events)
		return;
	format_rfc3339(now_ns(), when, sizeof(when));
	qmsg_out_init(&m);
	qmsg_begin(&m, "event", has_code ? 4 : 3);
	qmsg_put_str(&m, "type", type);
	qmsg_put_str(&m, "id", sb->id);
	qmsg_put_str(&m, "time", when);
	if (has_code)
		qmsg_put_int(&m, "exit_code", sb->exit_code);
	qsp_publish(events, qmsg_data(&m), qmsg_size(&m));
	qmsg_out_free(&m);
}

void events_close(void)
{
	qsp_close(events);
	events = NULL;
}
