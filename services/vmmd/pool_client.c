/* vmmd's side of poold (ROOT/poold.sock).  poold is optional: when it does
 * not answer, every start is cold and nothing else changes.  Each thread
 * that calls poold (the loop, the background worker) keeps one connection
 * of its own open (libcommon/sp_client.h: a REQ client without nng), one
 * request in flight on it; it is dialled again after it broke, or after a
 * call timed out. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libcommon/log.h"
#include "libcommon/sp_client.h"
#include "guest/cgroups.h"
#include "services/vmmd/vmmd.h"

/* poold answers a take in well under a millisecond (its refill works in 2 ms
 * slices); this is for a poold that is stuck. */
#define POOL_CALL_TIMEOUT_MS 2000

static _Thread_local struct qspc sock = QSPC_INIT("quiver-poold");

/* A poold that let a call time out (stopped, hung, swamped) is not asked
 * for takes until it answers something again: each take would hold up
 * vmmd's loop, and every request behind it, for the call's timeout (or
 * the dial's, 2 s, if poold accepts and says nothing).  Starts
 * go cold meanwhile, as with an empty pool.  The background worker pings
 * it (one ping at a time, queued by a take that found it so) and goes on
 * sending releases: waiting there holds up no request. */
static atomic_bool unresponsive, pinging;

/* poold is optional: without its socket, starts are cold, said once (not
 * once per start) until the socket is there again. */
static atomic_bool absent;

static void wake_release_waiters(void);

static void mark_unresponsive(const struct qerr *err)
{
	if (!atomic_exchange(&unresponsive, true)) {
		qlog_warn("poold did not answer (%s): starts go cold until it answers again",
			  err->msg);
		wake_release_waiters();
	}
}

/* answered: poold did; else it is gone, and a take fails at once */
static void mark_answering(bool answered)
{
	if (atomic_exchange(&unresponsive, false) && answered)
		qlog_info("poold answers again: starts ask it for warm supervisors again");
}

static int pool_call(const struct qmsg_out *req, struct qmsg_in *reply, struct qerr *err)
{
	char path[PATH_MAX + 32];
	/* poold removes its socket when it stops: no socket, no call (and no
	 * wait for a reply that cannot come) */
	if (faccessat(vmmd.rootfd, "poold.sock", F_OK, 0) < 0) {
		qspc_close(&sock);
		mark_answering(false);
		if (!atomic_exchange(&absent, true))
			qlog_info("poold is not running (no %s/poold.sock): starts are cold",
				  vmmd.root);
		return qerr_set(err, ENOENT, "poold is not running");
	}
	if (atomic_exchange(&absent, false))
		qlog_info("poold.sock is back: starts ask poold for warm supervisors again");
	int r = 0;
	if (qspc_peer_closed(&sock))
		qspc_close(&sock); /* poold restarted since the last call */
	if (sock.fd < 0) {
		snprintf(path, sizeof(path), "%s/poold.sock", vmmd.root);
		r = qspc_dial(&sock, path, err);
	}
	if (r == 0)
		r = qspc_call(&sock, req, reply, POOL_CALL_TIMEOUT_MS, err);
	/* An answer, even "error", leaves the connection open; anything else
	 * (a poold gone, restarted or stuck; a broken frame) closed it, and
	 * it is dialled afresh next time. */
	bool answered = sock.fd >= 0;
	if (!answered && r == -ETIMEDOUT)
		mark_unresponsive(err);
	else if (answered || r == -ECONNREFUSED || r == -ENOENT || r == -ECONNRESET)
		mark_answering(answered);
	return r;
}

static void ping(void *unused)
{
	struct qmsg_out m;
	struct qmsg_in in;
	struct qerr err = {0};
	(void)unused;
	qmsg_out_init(&m);
	qmsg_begin(&m, "ping", 0);
	if (pool_call(&m, &in, &err) == 0)
		qmsg_in_free(&in);
	qmsg_out_free(&m);
	atomic_store(&pinging, false);
}

void pool_lease_free(struct pool_lease *l)
{
	for (size_t i = 0; i < l->ncgroups; i++)
		free(l->cgroups[i]);
	l->ncgroups = 0;
}

static int read_lease(const struct qmsg_in *in, struct pool_lease *l, struct qerr *err)
{
	const msgpack_object *w = qmsg_find(in->root, "warm");
	const msgpack_object *cg = qmsg_find(in->root, "cgroups");
	const msgpack_object *ly = qmsg_find(in->root, "layer");
	int64_t pid = 0, start = 0;
	int r;
	if (w && w->type == MSGPACK_OBJECT_MAP) {
		if ((r = qmsg_get_str(w, "sock", l->sock, sizeof(l->sock), err)) < 0 ||
		    (r = qmsg_get_int(w, "pid", 1, INT32_MAX, &pid, err)) < 0 ||
		    (r = qmsg_get_int(w, "pid_start", 0, INT64_MAX, &start, err)) < 0)
			return qerr_prefix(err, "poold: warm");
		l->warm = true;
		l->pid = (pid_t)pid;
		l->pid_start = (uint64_t)start;
	}
	if (cg && cg->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = 0; i < cg->via.array.size && i < SANDBOX_CGROUPS_MAX; i++) {
			char dir[PATH_MAX];
			if ((r = qmsg_obj_str(&cg->via.array.ptr[i], dir, sizeof(dir), err)) < 0)
				return qerr_prefix(err, "poold: cgroups");
			if (!(l->cgroups[l->ncgroups] = strdup(dir)))
				return qerr_set(err, ENOMEM, "out of memory");
			l->ncgroups++;
		}
	}
	if (ly && ly->type == MSGPACK_OBJECT_MAP &&
	    ((r = qmsg_get_str(ly, "upper", l->upper, sizeof(l->upper), err)) < 0 ||
	     (r = qmsg_get_str(ly, "work", l->work, sizeof(l->work), err)) < 0))
		return qerr_prefix(err, "poold: layer");
	l->any = l->warm || l->ncgroups || l->upper[0];
	return 0;
}

static void wait_released(const char *id);

int pool_take(const char *id, const char *bundle, bool layer, struct pool_lease *l,
	      struct qerr *err)
{
	struct qmsg_out m;
	struct qmsg_in in;
	*l = (struct pool_lease){0};
	wait_released(id);
	if (atomic_load(&unresponsive)) {
		if (!atomic_exchange(&pinging, true))
			background(ping, NULL);
		return qerr_set(err, EAGAIN, "poold is not answering");
	}
	qmsg_out_init(&m);
	/* the bundle: a warm supervisor reads its config while we wait */
	qmsg_begin(&m, "take", 3);
	qmsg_put_str(&m, "id", id);
	qmsg_put_str(&m, "bundle", bundle);
	qmsg_put_key(&m, "kinds");
	msgpack_pack_array(&m.pk, layer ? 2 : 1);
	qmsg_pack_cstr(&m.pk, "warm");
	if (layer)
		qmsg_pack_cstr(&m.pk, "layer");
	int r = pool_call(&m, &in, err);
	qmsg_out_free(&m);
	if (r == -ENOENT && atomic_load(&absent))
		return 0; /* no poold: a miss, said once by pool_call */
	if (r == -ETIMEDOUT) {
		/* poold may still carry the take out: whatever it hands over
		 * must come back, so the sandbox counts as pooled (released on
		 * delete) even though the start goes cold. */
		l->any = true;
		return r;
	}
	if (r < 0)
		return r;
	r = read_lease(&in, l, err);
	qmsg_in_free(&in);
	if (r < 0) {
		struct qerr e;
		pool_release(id, &e);
		pool_lease_free(l);
		*l = (struct pool_lease){0};
	}
	return r;
}

int pool_release(const char *id, struct qerr *err)
{
	struct qmsg_out m;
	struct qmsg_in in;
	qmsg_out_init(&m);
	qmsg_begin(&m, "release", 1);
	qmsg_put_str(&m, "id", id);
	int r = pool_call(&m, &in, err);
	qmsg_out_free(&m);
	if (r == 0)
		qmsg_in_free(&in);
	return r;
}

void pool_client_close(void)
{
	qspc_close(&sock);
}

/* A deleted sandbox's release goes to poold from the background worker
 * (background.c): the delete's reply and the next request do not wait
 * for poold.  Without poold, vmmd removes the cgroups itself and poold
 * reclaims the rest when it starts again.
 *
 * Until its release is done the id is "pending": a take for the same id
 * (a sandbox created again under the name just deleted) waits for it, as
 * poold would refuse a take while the old claim exists. */
struct later {
	struct later *next; /* pending, under pending_mu */
	char id[SANDBOX_ID_MAX + 1];
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
};

/* longer than one poold call's timeout, in case poold hangs */
#define RELEASE_WAIT_MS (2 * POOL_CALL_TIMEOUT_MS + 1000)

static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pending_cv = PTHREAD_COND_INITIALIZER;
static struct later *pending;

static bool is_pending(const char *id)
{
	for (struct later *p = pending; p; p = p->next)
		if (strcmp(p->id, id) == 0)
			return true;
	return false;
}

static void wait_released(const char *id)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RELEASE_WAIT_MS / 1000;
	pthread_mutex_lock(&pending_mu);
	/* no wait for a poold that stopped answering: the take is not made */
	while (is_pending(id) && !atomic_load(&unresponsive))
		if (pthread_cond_timedwait(&pending_cv, &pending_mu, &until) == ETIMEDOUT) {
			qlog_warn("%s: the release of its last sandbox is still pending", id);
			break;
		}
	pthread_mutex_unlock(&pending_mu);
}

static void wake_release_waiters(void)
{
	pthread_mutex_lock(&pending_mu);
	pthread_cond_broadcast(&pending_cv);
	pthread_mutex_unlock(&pending_mu);
}

static void release_now(void *arg)
{
	struct later *l = arg;
	struct qerr err = {0};
	if (pool_release(l->id, &err) < 0) {
		qlog_warn("%s: poold release: %s; removing its cgroups", l->id, err.msg);
		if (cgroups_remove(l->cgroups, l->ncgroups, &err) < 0)
			qlog_warn("%s: %s", l->id, err.msg);
	}
	pthread_mutex_lock(&pending_mu);
	for (struct later **pp = &pending; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	pthread_cond_broadcast(&pending_cv);
	pthread_mutex_unlock(&pending_mu);
	for (size_t i = 0; i < l->ncgroups; i++)
		free(l->cgroups[i]);
	free(l);
}

void pool_release_later(const struct sandbox *sb)
{
	struct later *l = calloc(1, sizeof(*l));
	if (!l) {
		struct qerr err;
		pool_release(sb->id, &err);
		return;
	}
	snprintf(l->id, sizeof(l->id), "%s", sb->id);
	for (size_t i = 0; i < sb->ncgroups; i++)
		if ((l->cgroups[l->ncgroups] = strdup(sb->cgroups[i])))
			l->ncgroups++;
	pthread_mutex_lock(&pending_mu);
	l->next = pending;
	pending = l;
	pthread_mutex_unlock(&pending_mu);
	background(release_now, l);
}
