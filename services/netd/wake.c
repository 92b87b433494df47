/* Waking a hibernated sandbox for a connection (netd.h; docs/netd.md,
 * docs/hibernate.md).
 *
 * A hibernated sandbox's supervisor is frozen with it: an incoming channel
 * waits in its socket unanswered.  When one has waited WAKE_AFTER_MS, netd
 * asks vmmd (ROOT/vmmd.sock) to wake the sandbox ("wake", why
 * "connection"); thawed, the supervisor takes the channel and the connect
 * completes.  A sandbox that is merely busy is asked too, and vmmd answers
 * that it is not hibernated: harmless, and at most once a second per
 * sandbox.  The request is made from a short-lived thread (the round trip
 * blocks: libcommon/sp_client.h); it touches nothing of netd's but the
 * log. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/sp_client.h"
#include "services/netd/netd.h"

#define WAKE_TIMEOUT_MS 10000

struct wake_job {
	char path[4200];
	char id[SANDBOX_ID_MAX + 1];
};

static void *wake_thread(void *arg)
{
	struct wake_job *j = arg;
	struct qerr err = {0};
	struct qmsg_out m;
	struct qmsg_in reply;
	struct qspc sock = QSPC_INIT("quiver-vmmd");

	if (qspc_dial(&sock, j->path, &err) == 0) {
		qmsg_out_init(&m);
		qmsg_begin(&m, "wake", 2);
		qmsg_put_str(&m, "id", j->id);
		qmsg_put_str(&m, "why", "connection");
		if (qspc_call(&sock, &m, &reply, WAKE_TIMEOUT_MS, &err) == 0) {
			qlog_info("%s: woken for a connection", j->id);
			qmsg_in_free(&reply);
		} else if (err.code == EPERM) {
			/* hibernated with auto_wake off: the connection waits */
			qlog_debug("%s: wake for a connection: %s", j->id, err.msg);
		} else if (err.code != EINVAL) {
			qlog_warn("%s: wake for a connection: %s", j->id, err.msg);
		}
		qmsg_out_free(&m);
		qspc_close(&sock);
	} else {
		qlog_warn("%s: wake for a connection: vmmd: %s", j->id, err.msg);
	}
	free(j);
	return NULL;
}

void wake_for_connection(struct nsbx *s)
{
	struct timespec ts;
	pthread_attr_t attr;
	pthread_t t;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	if (s->wake_ns && now - s->wake_ns < 1000000000LL)
		return;
	s->wake_ns = now;
	struct wake_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	snprintf(j->path, sizeof(j->path), "%s/vmmd.sock", netd.root);
	snprintf(j->id, sizeof(j->id), "%s", s->id);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, wake_thread, j) != 0) {
		qlog_warn("%s: wake for a connection: no thread", s->id);
		free(j);
	}
	pthread_attr_destroy(&attr);
}
