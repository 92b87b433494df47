/* loadgen: drives vmmd's API `create` (docs/api.md) from one process, the
 * way a platform would, for bench/api.py.
 *
 *   loadgen latency --root R --bundle B [-n 50] [--timeout S] [--id-prefix P] [--json]
 *   loadgen burst   --root R --bundle B [-n 200] [--conns 4] [--timeout S] [--id-prefix P]
 *                   [--json]
 *   loadgen hold    --root R --bundle B [-n 2000] [--conns 4] [--signal 10] [--expect 7]
 *                   [--signal-conns 1] [--timeout S] [--id-prefix P] [--pause] [--json]
 *
 * latency: N times, one after the other, create {start: true} of a bundle
 *   that runs /bin/true and wait for its "exited" event; the time from
 *   sending create to receiving "exited" is recorded.  Each sandbox is then
 *   deleted (untimed), so it is created transient (docs/api.md).  Prints
 *   min/median/p90/max and the warm/cold counts.
 * burst: N creates {start: true} of a bundle that runs something long
 *   (sleep 1000), sent as fast as K REQ sockets go (an nng REQ socket has
 *   one request in flight), and the time from the first send to the last
 *   "started" event.  Then every sandbox is deleted (force) and `list` must
 *   show none of them.
 * hold: as burst (but a failed create does not stop the others), for a
 *   bundle whose workload waits for a signal and then exits with a known
 *   code.  Once all are started (and, with --pause, once
 *   the caller has measured memory and written a line to our stdin), every
 *   one is sent `kill {signal}`, by K senders that each wait for their
 *   sandbox's "exited" before signalling the next (K = 1: one at a time, so
 *   a latency is one idle sandbox's answer, not a queue behind the others).
 *   Counts the sandboxes that exited with the expected code and the time
 *   from sending kill to "exited"; then deletes all and times that.
 *
 * Events are read by a thread of their own and timestamped on arrival, so
 * our own reply handling is not in the times.  A "failed" event, an error
 * reply, an unexpected exit or a missing event is reported and makes the
 * exit status 1; whatever was accepted is deleted in every case.  Sandbox
 * ids are PREFIX plus a 5-digit index (default prefix "lg<pid>-l" or
 * "lg<pid>-b"), so a caller can look for leftovers by prefix. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "libcommon/cleanup.h"
#include "libcommon/msg.h"

#define REQ_TIMEOUT_MS 30000 /* delete --force alone may wait 10 s for the kill */
#define CONNS_MAX      64
#define N_MAX	       100000
#define STALL_NS       5000000000LL /* hold: no event for this long, ask vmmd */

enum ev { EV_CREATED, EV_STARTED, EV_EXITED, EV_DELETED, EV_FAILED, EV_N };
static const char *const ev_names[EV_N] = {"created", "started", "exited", "deleted", "failed"};

struct sb {
	int64_t sent, accepted; /* CLOCK_MONOTONIC ns, set by the sender */
	int64_t killed;		/* hold: when kill was sent */
	int64_t t[EV_N];	/* 0 until the event arrived */
	int exit_code;
	unsigned lost; /* 1 << e: vmmd says e happened, its event never came */
	bool warm, ok, deleted;
};

struct stats {
	double min, median, p90, p99, max;
	size_t count;
};

static struct {
	const char *root, *bundle;
	unsigned n, conns, sig_conns;
	int signal, expect;
	double timeout;
	bool json, pause;
	bool keep_going; /* hold: a failed create does not stop the others */
	bool transient;	 /* latency: each sandbox is deleted once it exited */
	char prefix[32];
	struct sb *sbs;
	nng_socket sub;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned next;	   /* the next index a sender takes */
	bool stop;	   /* stop sending: something failed */
	char problem[512]; /* the first failure, reported at the end */
	unsigned n_problems;
	unsigned n_lost[EV_N];
} lg = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Keeps the first failure's text for the summary, logs every one. */
static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "loadgen: %s\n", msg);
	pthread_mutex_lock(&lg.mu);
	if (lg.n_problems++ == 0)
		snprintf(lg.problem, sizeof(lg.problem), "%s", msg);
	lg.stop = true;
	pthread_cond_broadcast(&lg.cv);
	pthread_mutex_unlock(&lg.mu);
}

static void sb_id(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "%s%05u", lg.prefix, i);
}

/* Our index for an event's id, or -1 for someone else's sandbox. */
static long sb_index(const char *id)
{
	size_t pl = strlen(lg.prefix);
	char *end;
	if (strncmp(id, lg.prefix, pl) != 0)
		return -1;
	unsigned long i = strtoul(id + pl, &end, 10);
	if (*end || end == id + pl || i >= lg.n)
		return -1;
	return (long)i;
}

/* ---- events ---- */

static void on_event(const struct qmsg_in *in, int64_t t)
{
	char type[16], id[80];
	struct qerr err = {0};
	int64_t code = -1;
	if (strcmp(in->op, "event") != 0 ||
	    qmsg_get_str(in->root, "type", type, sizeof(type), &err) < 0 ||
	    qmsg_get_str(in->root, "id", id, sizeof(id), &err) < 0)
		return;
	long i = sb_index(id);
	if (i < 0)
		return;
	qmsg_get_int(in->root, "exit_code", INT32_MIN, INT32_MAX, &code, &err);
	struct sb *s = &lg.sbs[i];
	pthread_mutex_lock(&lg.mu);
	for (int e = 0; e < EV_N; e++)
		if (strcmp(type, ev_names[e]) == 0 && !s->t[e])
			s->t[e] = t;
	if (strcmp(type, "exited") == 0)
		s->exit_code = (int)code;
	bool failed = strcmp(type, "failed") == 0;
	pthread_cond_broadcast(&lg.cv);
	pthread_mutex_unlock(&lg.mu);
	if (failed)
		problem("%s: \"failed\" event (see %s/vmmd.log)", id, lg.root);
}

static void *event_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct qmsg_in in;
		struct qerr err = {0};
		int r = qnng_recv(lg.sub, &in, &err);
		int64_t t = now_ns();
		if (r == -EBADF) /* closed by main: we are done */
			return NULL;
		if (r < 0) {
			problem("events: %s", err.msg);
			if (r != -EINVAL && r != -EPROTO)
				return NULL;
			continue;
		}
		on_event(&in, t);
		qmsg_in_free(&in);
	}
}

/* SUB with a deep queue: a burst publishes two events per sandbox within a
 * second, and a full SUB queue drops them (PUB never waits). */
static int events_dial(struct qerr *err)
{
	char url[PATH_MAX + 32];
	int rv;
	snprintf(url, sizeof(url), "ipc://%s/events.sock", lg.root);
	if ((rv = nng_sub0_open(&lg.sub)) != 0)
		return qerr_set(err, qnng_errno(rv), "open SUB: %s", nng_strerror(rv));
	if ((rv = nng_socket_set_int(lg.sub, NNG_OPT_RECVBUF, 8192)) != 0 ||
	    (rv = nng_socket_set_size(lg.sub, NNG_OPT_RECVMAXSZ, QMSG_MAX_BYTES)) != 0 ||
	    (rv = nng_socket_set(lg.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_dial(lg.sub, url, NULL, 0)) != 0) {
		nng_close(lg.sub);
		return qerr_set(err, qnng_errno(rv), "%s: %s", url, nng_strerror(rv));
	}
	/* The publisher adds our pipe once it has read our SP header, a
	 * moment after our dial returns; an event published before then is
	 * not sent to us. */
	usleep(20000);
	return 0;
}

/* Waits until every accepted sandbox in [lo, hi) has event e (or failed),
 * something failed (unless !give_up), or the deadline passed; returns how
 * many still lack it. */
static unsigned wait_until(unsigned lo, unsigned hi, enum ev e, int64_t deadline, bool give_up)
{
	struct timespec ts;
	unsigned missing;
	clock_gettime(CLOCK_REALTIME, &ts); /* pthread_cond_timedwait's clock */
	int64_t left = deadline - now_ns();
	int64_t abs = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (left > 0 ? left : 0);
	ts = (struct timespec){.tv_sec = abs / 1000000000, .tv_nsec = abs % 1000000000};
	pthread_mutex_lock(&lg.mu);
	for (;;) {
		missing = 0;
		for (unsigned i = lo; i < hi; i++)
			missing += lg.sbs[i].ok && !lg.sbs[i].t[e] && !lg.sbs[i].t[EV_FAILED];
		if (!missing || (give_up && lg.stop))
			break;
		if (pthread_cond_timedwait(&lg.cv, &lg.mu, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&lg.mu);
	return missing;
}

static unsigned wait_event(unsigned lo, unsigned hi, enum ev e, int64_t deadline)
{
	return wait_until(lo, hi, e, deadline, true);
}

/* ---- requests ---- */

static int req_dial(nng_socket *s, struct qerr *err)
{
	char url[PATH_MAX + 32];
	snprintf(url, sizeof(url), "ipc://%s/vmmd.sock", lg.root);
	return qnng_req_dial(s, url, REQ_TIMEOUT_MS, err);
}

static int create_one(nng_socket req, unsigned i, struct qerr *err)
{
	struct sb *s = &lg.sbs[i];
	char id[64], path[16] = "";
	struct qmsg_out m;
	struct qmsg_in reply;
	sb_id(i, id, sizeof(id));
	qmsg_out_init(&m);
	qmsg_begin(&m, "create", lg.transient ? 4 : 3);
	qmsg_put_str(&m, "id", id);
	qmsg_put_str(&m, "bundle", lg.bundle);
	qmsg_put_bool(&m, "start", true);
	if (lg.transient)
		qmsg_put_bool(&m, "transient", true);
	s->sent = now_ns();
	int r = qnng_call(req, &m, &reply, err);
	s->accepted = now_ns();
	qmsg_out_free(&m);
	if (r < 0)
		return qerr_prefix(err, "create %s", id);
	if (strcmp(reply.op, "accepted") != 0)
		r = qerr_set(err, EPROTO, "create %s: reply \"%s\", not \"accepted\"", id,
			     reply.op);
	else
		qmsg_get_str(reply.root, "path", path, sizeof(path), err);
	qmsg_in_free(&reply);
	if (r < 0)
		return r;
	s->warm = strcmp(path, "warm") == 0;
	s->ok = true;
	return 0;
}

static int simple_call(nng_socket req, const char *op, const char *id, bool force,
		       struct qmsg_in *reply, struct qerr *err)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, op, (id ? 1 : 0) + (force ? 1 : 0));
	if (id)
		qmsg_put_str(&m, "id", id);
	if (force)
		qmsg_put_bool(&m, "force", true);
	int r = qnng_call(req, &m, reply, err);
	qmsg_out_free(&m);
	return r;
}

/* A sandbox whose create failed is already gone: ENOENT is success here. */
static int delete_one(nng_socket req, unsigned i, struct qerr *err)
{
	struct qmsg_in reply;
	char id[64];
	sb_id(i, id, sizeof(id));
	int r = simple_call(req, "delete", id, true, &reply, err);
	if (r == 0)
		qmsg_in_free(&reply);
	if (r == -ENOENT)
		r = 0;
	if (r == 0)
		lg.sbs[i].deleted = true;
	return r < 0 ? qerr_prefix(err, "delete %s", id) : 0;
}

static int kill_one(nng_socket req, unsigned i, struct qerr *err)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	char id[64];
	sb_id(i, id, sizeof(id));
	qmsg_out_init(&m);
	qmsg_begin(&m, "kill", 2);
	qmsg_put_str(&m, "id", id);
	qmsg_put_int(&m, "signal", lg.signal);
	lg.sbs[i].killed = now_ns();
	int r = qnng_call(req, &m, &reply, err);
	qmsg_out_free(&m);
	if (r == 0)
		qmsg_in_free(&reply);
	return r < 0 ? qerr_prefix(err, "kill %s", id) : 0;
}

/* Why a sandbox lacks an event: its status per vmmd, into buf. */
static void describe(nng_socket req, unsigned i, char *buf, size_t len)
{
	struct qmsg_in reply;
	struct qerr err = {0};
	char id[64], status[32] = "?";
	sb_id(i, id, sizeof(id));
	if (simple_call(req, "state", id, false, &reply, &err) < 0) {
		snprintf(buf, len, "%s: %s", id, err.msg);
		return;
	}
	qmsg_get_str(reply.root, "status", status, sizeof(status), &err);
	qmsg_in_free(&reply);
	snprintf(buf, len, "%s: status %s", id, status);
}

/* vmmd's view of sandbox i: its status and, once stopped, its exit code. */
static int inspect_one(nng_socket req, unsigned i, char *status, size_t len, int *code,
		       struct qerr *err)
{
	struct qmsg_in reply;
	char id[64];
	int64_t c = -1;
	sb_id(i, id, sizeof(id));
	int r = simple_call(req, "inspect", id, false, &reply, err);
	if (r < 0)
		return r;
	r = qmsg_get_str(reply.root, "status", status, len, err);
	const msgpack_object *ex = qmsg_find(reply.root, "exit");
	if (r == 0 && ex && ex->type == MSGPACK_OBJECT_MAP)
		qmsg_get_int(ex, "exit_code", 0, 255, &c, err);
	*code = (int)c;
	qmsg_in_free(&reply);
	return r;
}

static void mark_lost(struct sb *s, enum ev e)
{
	if (s->t[e])
		return;
	s->t[e] = now_ns();
	s->lost |= 1u << e;
	lg.n_lost[e]++;
}

/* vmmd's PUB drops a subscriber's oldest event when that subscriber's
 * queue (nng's default: 16) is full, which a burst of creates can do.  So
 * a sandbox that stays silent is asked about: an event that vmmd says
 * happened is marked lost (counted, kept out of the times).  Returns
 * whether sandbox i now has event e. */
static bool recover_event(nng_socket req, unsigned i, enum ev e)
{
	char status[32];
	int code;
	struct qerr err = {0};
	if (inspect_one(req, i, status, sizeof(status), &code, &err) < 0)
		return false;
	bool stopped = strcmp(status, "stopped") == 0;
	bool started = stopped || strcmp(status, "running") == 0;
	struct sb *s = &lg.sbs[i];
	pthread_mutex_lock(&lg.mu);
	if (started)
		mark_lost(s, EV_STARTED);
	if (stopped && !s->t[EV_EXITED]) {
		mark_lost(s, EV_EXITED);
		s->exit_code = code;
	}
	bool have = s->t[e] != 0;
	pthread_mutex_unlock(&lg.mu);
	return have;
}

/* How many of our sandboxes vmmd still lists. */
static int count_listed(nng_socket req, struct qerr *err)
{
	struct qmsg_in reply;
	const msgpack_object *arr;
	int r = simple_call(req, "list", NULL, false, &reply, err);
	if (r < 0)
		return r;
	int n = 0;
	if ((r = qmsg_get_array(reply.root, "sandboxes", QMSG_MAX_ENTRIES, &arr, err)) == 0) {
		for (uint32_t k = 0; k < arr->via.array.size; k++) {
			char id[80];
			struct qerr e;
			const msgpack_object *o = &arr->via.array.ptr[k];
			if (o->type == MSGPACK_OBJECT_MAP &&
			    qmsg_get_str(o, "id", id, sizeof(id), &e) == 0 && sb_index(id) >= 0)
				n++;
		}
	}
	qmsg_in_free(&reply);
	return r < 0 ? r : n;
}

/* ---- senders: K sockets, each taking the next index ---- */

enum phase { PH_CREATE, PH_DELETE, PH_SIGNAL };

struct sender {
	pthread_t th;
	nng_socket req;
	enum phase phase;
	int64_t deadline; /* PH_SIGNAL: for the "exited" events */
};

/* Creating stops at the first failure; deleting is the clean-up and goes
 * on whatever happens, and so does signalling, which counts the answers. */
static bool take_index(unsigned *i, enum phase ph)
{
	pthread_mutex_lock(&lg.mu);
	bool go = (ph != PH_CREATE || lg.keep_going || !lg.stop) && lg.next < lg.n;
	if (go)
		*i = lg.next++;
	pthread_mutex_unlock(&lg.mu);
	return go;
}

/* Only a sandbox that is running is signalled: one that exited early is
 * counted as such, and waiting for its exit again would measure nothing. */
static int signal_one(struct sender *w, unsigned i, struct qerr *err)
{
	const struct sb *s = &lg.sbs[i];
	pthread_mutex_lock(&lg.mu);
	bool running = s->ok && s->t[EV_STARTED] && !s->t[EV_EXITED];
	pthread_mutex_unlock(&lg.mu);
	if (!running)
		return 0;
	int r = kill_one(w->req, i, err);
	while (r == 0 && now_ns() < w->deadline) {
		int64_t until = now_ns() + STALL_NS;
		if (!wait_until(i, i + 1, EV_EXITED, until < w->deadline ? until : w->deadline,
				false) ||
		    recover_event(w->req, i, EV_EXITED))
			break;
	}
	return r;
}

static void *sender_thread(void *arg)
{
	struct sender *w = arg;
	struct qerr err = {0};
	unsigned i;
	while (take_index(&i, w->phase)) {
		int r = 0;
		if (w->phase == PH_CREATE)
			r = create_one(w->req, i, &err);
		else if (w->phase == PH_SIGNAL)
			r = signal_one(w, i, &err);
		else if (lg.sbs[i].ok && !lg.sbs[i].deleted)
			r = delete_one(w->req, i, &err);
		if (r < 0)
			problem("%s", err.msg);
	}
	return NULL;
}

/* Runs k senders over every index, in one phase. */
static void run_phase(struct sender *ws, unsigned k, enum phase ph, int64_t deadline)
{
	lg.next = 0;
	for (unsigned j = 0; j < k; j++) {
		ws[j].phase = ph;
		ws[j].deadline = deadline;
		pthread_create(&ws[j].th, NULL, sender_thread, &ws[j]);
	}
	for (unsigned j = 0; j < k; j++)
		pthread_join(ws[j].th, NULL);
}

/* Runs the senders over every index, creating or deleting. */
static void run_senders(struct sender *ws, bool deleting)
{
	run_phase(ws, lg.conns, deleting ? PH_DELETE : PH_CREATE, 0);
}

/* ---- statistics and output ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Sorts buf[0..n) and summarises it. */
static struct stats stats_from(double *buf, size_t n)
{
	struct stats st = {0};
	if (!n)
		return st;
	qsort(buf, n, sizeof(*buf), cmp_double);
	st.count = n;
	st.min = buf[0];
	st.max = buf[n - 1];
	st.median = n % 2 ? buf[n / 2] : (buf[n / 2 - 1] + buf[n / 2]) / 2;
	st.p90 = buf[(size_t)((double)n * 0.9 + 0.999999) - 1]; /* nearest rank */
	st.p99 = buf[(size_t)((double)n * 0.99 + 0.999999) - 1];
	return st;
}

/* Milliseconds from `sent` to event e (or to the reply, e < 0). */
static struct stats stats_of(int e, double *buf)
{
	size_t n = 0;
	for (unsigned i = 0; i < lg.n; i++) {
		const struct sb *s = &lg.sbs[i];
		int64_t t = e < 0 ? s->accepted : s->t[e];
		if (s->ok && t && !(e >= 0 && (s->lost & (1u << e))))
			buf[n++] = (double)(t - s->sent) / 1e6;
	}
	return stats_from(buf, n);
}

static void path_counts(unsigned *warm, unsigned *cold)
{
	*warm = *cold = 0;
	for (unsigned i = 0; i < lg.n; i++) {
		if (lg.sbs[i].ok && lg.sbs[i].warm)
			(*warm)++;
		else if (lg.sbs[i].ok)
			(*cold)++;
	}
}

static void json_stats(const char *key, struct stats st, bool comma)
{
	printf("\"%s\":{\"count\":%zu,\"min\":%.3f,\"median\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
	       "\"max\":%.3f}%s",
	       key, st.count, st.min, st.median, st.p90, st.p99, st.max, comma ? "," : "");
}

static void text_stats(const char *what, struct stats st)
{
	printf("  %-26s %5zu %9.3f %9.3f %9.3f %9.3f\n", what, st.count, st.min, st.median, st.p90,
	       st.max);
}

static void print_latency(void)
{
	cleanup_free double *buf = calloc(lg.n, sizeof(double));
	cleanup_free double *samples = calloc(lg.n, sizeof(double));
	struct stats ex = stats_of(EV_EXITED, buf), st = stats_of(EV_STARTED, buf);
	struct stats acc = stats_of(-1, buf), cr = stats_of(EV_CREATED, buf);
	unsigned warm, cold, ns = 0;
	path_counts(&warm, &cold);
	for (unsigned i = 0; i < lg.n; i++)
		if (lg.sbs[i].ok && lg.sbs[i].t[EV_EXITED])
			samples[ns++] = (double)(lg.sbs[i].t[EV_EXITED] - lg.sbs[i].sent) / 1e6;
	if (lg.json) {
		printf("{\"mode\":\"latency\",\"n\":%u,", lg.n);
		json_stats("exited_ms", ex, true);
		json_stats("accepted_ms", acc, true);
		json_stats("created_ms", cr, true);
		json_stats("started_ms", st, true);
		printf("\"paths\":{\"warm\":%u,\"cold\":%u},\"samples_ms\":[", warm, cold);
		for (unsigned k = 0; k < ns; k++)
			printf("%s%.3f", k ? "," : "", samples[k]);
		printf("]}\n");
		return;
	}
	printf("loadgen latency: %u x create {start} of %s, one at a time (%s)\n", lg.n, lg.bundle,
	       lg.root);
	printf("  %-26s %5s %9s %9s %9s %9s\n", "ms from sending create to", "n", "min", "median",
	       "p90", "max");
	text_stats("\"accepted\" reply", acc);
	text_stats("\"created\" event", cr);
	text_stats("\"started\" event", st);
	text_stats("\"exited\" event", ex);
	printf("  path: warm %u, cold %u\n", warm, cold);
}

static double span_s(int64_t from, int e)
{
	int64_t last = 0;
	for (unsigned i = 0; i < lg.n; i++) {
		int64_t t = e < 0 ? lg.sbs[i].accepted : lg.sbs[i].t[e];
		if (lg.sbs[i].ok && t > last && !(e >= 0 && (lg.sbs[i].lost & (1u << e))))
			last = t;
	}
	return last ? (double)(last - from) / 1e9 : 0;
}

static void print_burst(int64_t t0, double delete_s)
{
	cleanup_free double *buf = calloc(lg.n, sizeof(double));
	struct stats st = stats_of(EV_STARTED, buf);
	unsigned warm, cold;
	path_counts(&warm, &cold);
	double all = span_s(t0, EV_STARTED), acc = span_s(t0, -1), cr = span_s(t0, EV_CREATED);
	if (lg.json) {
		printf(
		    "{\"mode\":\"burst\",\"n\":%u,\"conns\":%u,\"seconds\":%.4f,"
		    "\"accepted_seconds\":%.4f,\"created_seconds\":%.4f,\"delete_seconds\":%.4f,",
		    lg.n, lg.conns, all, acc, cr, delete_s);
		json_stats("started_ms", st, true);
		printf("\"paths\":{\"warm\":%u,\"cold\":%u}}\n", warm, cold);
		return;
	}
	printf("loadgen burst: %u x create {start} of %s from %u sockets (%s)\n", lg.n, lg.bundle,
	       lg.conns, lg.root);
	printf("  all %zu \"started\" after %.3f s (all accepted after %.3f s, all created after "
	       "%.3f s)\n",
	       st.count, all, acc, cr);
	printf("  per sandbox, ms to \"started\": min %.1f, median %.1f, p90 %.1f, max %.1f\n",
	       st.min, st.median, st.p90, st.max);
	printf("  path: warm %u, cold %u; delete (force) of all: %.3f s\n", warm, cold, delete_s);
}

/* hold's results, besides the burst's */
struct hold {
	int64_t t0, k0;	      /* first create, first kill */
	int64_t mem_kib[3];   /* MemAvailable: before, all started, after delete */
	unsigned failed;      /* "failed" events: never started */
	unsigned early;	      /* exited before the signal */
	unsigned answered;    /* exited with the expected code */
	unsigned wrong, none; /* exited otherwise; no "exited" at all */
	int wrong_code;	      /* one of the wrong codes */
	double delete_s;
};

/* MemAvailable in KiB, or -1; as read, without sync (the caller of --pause
 * does the careful reading). */
static int64_t mem_available(void)
{
	cleanup_fclose FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	long long kib;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1)
			return kib;
	return -1;
}

/* Sorts out every signalled sandbox's answer into h. */
static void count_answers(struct hold *h, double *lat, size_t *nlat)
{
	*nlat = 0;
	pthread_mutex_lock(&lg.mu);
	for (unsigned i = 0; i < lg.n; i++) {
		const struct sb *s = &lg.sbs[i];
		if (!s->killed)
			continue;
		if (!s->t[EV_EXITED]) {
			h->none++;
			continue;
		}
		if (!(s->lost & (1u << EV_EXITED)))
			lat[(*nlat)++] = (double)(s->t[EV_EXITED] - s->killed) / 1e6;
		if (s->exit_code == lg.expect) {
			h->answered++;
		} else {
			h->wrong++;
			h->wrong_code = s->exit_code;
		}
	}
	pthread_mutex_unlock(&lg.mu);
}

static double mib_per_sandbox(int64_t before, int64_t after, size_t n)
{
	return before < 0 || after < 0 || !n ? 0 : (double)(before - after) / 1024.0 / (double)n;
}

static void print_hold(const struct hold *h, const struct stats *sig)
{
	cleanup_free double *buf = calloc(lg.n, sizeof(double));
	struct stats st = stats_of(EV_STARTED, buf);
	unsigned warm, cold;
	path_counts(&warm, &cold);
	double all = span_s(h->t0, EV_STARTED), acc = span_s(h->t0, -1);
	double sig_s = sig->count ? span_s(h->k0, EV_EXITED) : 0;
	double per = mib_per_sandbox(h->mem_kib[0], h->mem_kib[1], st.count);
	if (lg.json) {
		printf("{\"mode\":\"hold\",\"n\":%u,\"conns\":%u,\"signal\":%d,\"expect\":%d,"
		       "\"signal_conns\":%u,\"seconds\":%.4f,\"accepted_seconds\":%.4f,"
		       "\"signal_seconds\":%.4f,\"delete_seconds\":%.4f,",
		       lg.n, lg.conns, lg.signal, lg.expect, lg.sig_conns, all, acc, sig_s,
		       h->delete_s);
		json_stats("started_ms", st, true);
		json_stats("signal_exit_ms", *sig, true);
		printf("\"paths\":{\"warm\":%u,\"cold\":%u},\"failed\":%u,\"early_exits\":%u,"
		       "\"answered\":%u,"
		       "\"wrong_code\":%u,\"no_exit\":%u,\"lost_events\":{\"started\":%u,"
		       "\"exited\":%u},\"mem_available_kib\":[%lld,%lld,%lld]}\n",
		       warm, cold, h->failed, h->early, h->answered, h->wrong, h->none,
		       lg.n_lost[EV_STARTED], lg.n_lost[EV_EXITED], (long long)h->mem_kib[0],
		       (long long)h->mem_kib[1], (long long)h->mem_kib[2]);
		return;
	}
	printf("loadgen hold: %u x create {start} of %s from %u sockets (%s)\n", lg.n, lg.bundle,
	       lg.conns, lg.root);
	printf("  all %zu \"started\" after %.3f s (all accepted after %.3f s); path: warm %u, "
	       "cold %u; %u \"failed\"\n",
	       st.count, all, acc, warm, cold, h->failed);
	printf("  MemAvailable (raw, no sync): %.3f MiB less per sandbox once all started\n", per);
	printf("  signal %d from %u sender(s): %u answered with %d, %u with another code, %u not "
	       "at all; %u exited before the signal\n",
	       lg.signal, lg.sig_conns, h->answered, lg.expect, h->wrong, h->none, h->early);
	printf("  ms from kill to \"exited\": min %.2f, median %.2f, p99 %.2f, max %.2f; all "
	       "exited %.3f s after the first kill\n",
	       sig->min, sig->median, sig->p99, sig->max, sig_s);
	printf("  delete (force) of all: %.3f s; events lost by vmmd: %u \"started\", %u "
	       "\"exited\"\n",
	       h->delete_s, lg.n_lost[EV_STARTED], lg.n_lost[EV_EXITED]);
}

/* ---- modes ---- */

static void report_missing(nng_socket req, enum ev e, unsigned lo, unsigned hi)
{
	unsigned shown = 0, missing = 0;
	for (unsigned i = lo; i < hi; i++) {
		if (!lg.sbs[i].ok || lg.sbs[i].t[e] || lg.sbs[i].t[EV_FAILED])
			continue;
		char why[QERR_MSG_MAX + 128];
		missing++;
		if (shown++ < 5) {
			describe(req, i, why, sizeof(why));
			fprintf(stderr, "loadgen:   no \"%s\" event for %s\n", ev_names[e], why);
		}
	}
	problem("%u sandbox(es) without a \"%s\" event within %.0f s", missing, ev_names[e],
		lg.timeout);
}

static void latency_one(nng_socket req, unsigned i)
{
	struct qerr err = {0};
	if (create_one(req, i, &err) < 0) {
		problem("%s", err.msg);
		return;
	}
	int64_t deadline = lg.sbs[i].sent + (int64_t)(lg.timeout * 1e9);
	if (wait_event(i, i + 1, EV_EXITED, deadline) && !lg.stop)
		report_missing(req, EV_EXITED, i, i + 1);
	else if (lg.sbs[i].t[EV_EXITED] && lg.sbs[i].exit_code != 0)
		problem("sandbox %u exited with %d, not 0 (is the bundle /bin/true?)", i,
			lg.sbs[i].exit_code);
	if (delete_one(req, i, &err) < 0)
		problem("%s", err.msg);
}

static int mode_latency(struct sender *ws)
{
	for (unsigned i = 0; i < lg.n && !lg.stop; i++)
		latency_one(ws[0].req, i);
	if (lg.stop)
		run_senders(ws, true);
	print_latency();
	return 0;
}

/* A long-running workload that exited on its own; returns how many. */
static unsigned report_exits(const char *when)
{
	unsigned n = 0, first = 0;
	int code = 0;
	pthread_mutex_lock(&lg.mu);
	for (unsigned i = lg.n; i-- > 0;) {
		if (lg.sbs[i].t[EV_EXITED]) {
			n++;
			first = i;
			code = lg.sbs[i].exit_code;
		}
	}
	pthread_mutex_unlock(&lg.mu);
	if (n)
		problem("%u sandbox(es) exited %s, e.g. %u with code %d", n, when, first, code);
	return n;
}

static int mode_burst(struct sender *ws)
{
	int64_t t0 = now_ns();
	run_senders(ws, false);
	int64_t deadline = t0 + (int64_t)(lg.timeout * 1e9);
	if (!lg.stop && wait_event(0, lg.n, EV_STARTED, deadline) && !lg.stop)
		report_missing(ws[0].req, EV_STARTED, 0, lg.n);
	report_exits("during the burst");
	int64_t d0 = now_ns();
	run_senders(ws, true);
	double delete_s = (double)(now_ns() - d0) / 1e9;
	print_burst(t0, delete_s);
	return 0;
}

/* --pause: the caller measures the running sandboxes, then writes a line. */
static void pause_for_caller(const struct hold *h)
{
	char line[64];
	unsigned started = 0;
	pthread_mutex_lock(&lg.mu);
	for (unsigned i = 0; i < lg.n; i++)
		started += lg.sbs[i].ok && lg.sbs[i].t[EV_STARTED];
	pthread_mutex_unlock(&lg.mu);
	if (lg.json)
		printf("{\"phase\":\"running\",\"started\":%u,\"seconds\":%.4f}\n", started,
		       span_s(h->t0, EV_STARTED));
	else
		printf("loadgen hold: %u started; a line on stdin goes on\n", started);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		fprintf(stderr, "loadgen: stdin closed; going on\n");
}

static void report_answers(struct hold *h, double *lat, struct stats *sig)
{
	size_t nlat;
	count_answers(h, lat, &nlat);
	*sig = stats_from(lat, nlat);
	if (h->none)
		problem("%u sandbox(es) did not exit within %.0f s of the signal", h->none,
			lg.timeout);
	if (h->wrong)
		problem("%u sandbox(es) exited with another code than %d, e.g. %d", h->wrong,
			lg.expect, h->wrong_code);
}

/* Waits for every "started", asking vmmd about the silent ones whenever
 * STALL_NS passes without one. */
static void wait_started(nng_socket req, int64_t deadline)
{
	unsigned missing = lg.n + 1, before;
	while (now_ns() < deadline) {
		int64_t until = now_ns() + STALL_NS;
		before = missing;
		missing =
		    wait_until(0, lg.n, EV_STARTED, until < deadline ? until : deadline, false);
		if (!missing)
			break;
		if (missing < before)
			continue;
		for (unsigned i = 0; i < lg.n; i++)
			if (lg.sbs[i].ok && !lg.sbs[i].t[EV_STARTED] && !lg.sbs[i].t[EV_FAILED])
				recover_event(req, i, EV_STARTED);
		missing = lg.n + 1; /* a full window again before the next round of asking */
	}
	if (wait_until(0, lg.n, EV_STARTED, 0, false))
		report_missing(req, EV_STARTED, 0, lg.n);
}

static int mode_hold(struct sender *ws)
{
	struct hold h = {.mem_kib = {mem_available(), -1, -1}};
	cleanup_free double *lat = calloc(lg.n, sizeof(double));
	struct stats sig = {0};
	h.t0 = now_ns();
	run_senders(ws, false);
	wait_started(ws[0].req, h.t0 + (int64_t)(lg.timeout * 1e9));
	h.mem_kib[1] = mem_available();
	for (unsigned i = 0; i < lg.n; i++)
		h.failed += lg.sbs[i].t[EV_FAILED] != 0;
	if (lg.pause)
		pause_for_caller(&h);
	h.early = report_exits("before the signal");
	/* even after a failure: the ones that run are counted */
	h.k0 = now_ns();
	run_phase(ws, lg.sig_conns, PH_SIGNAL, h.k0 + (int64_t)(lg.timeout * 1e9));
	report_answers(&h, lat, &sig);
	int64_t d0 = now_ns();
	run_senders(ws, true);
	h.delete_s = (double)(now_ns() - d0) / 1e9;
	h.mem_kib[2] = mem_available();
	print_hold(&h, &sig);
	if (lg.n_lost[EV_STARTED] || lg.n_lost[EV_EXITED])
		problem(
		    "vmmd's events lost: %u \"started\", %u \"exited\" (vmmd said they happened)",
		    lg.n_lost[EV_STARTED], lg.n_lost[EV_EXITED]);
	return 0;
}

/* ---- main ---- */

static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: loadgen latency|burst|hold --root DIR --bundle DIR [-n N] [--conns K] "
		"[--timeout SECONDS] [--id-prefix P] [--json]\n"
		"       hold: [--signal N] [--expect CODE] [--signal-conns K] [--pause]\n");
	exit(2);
}

static void parse_opt(int c, const char **prefix)
{
	switch (c) {
	case 'r':
		lg.root = optarg;
		break;
	case 'b':
		lg.bundle = optarg;
		break;
	case 'n':
		lg.n = (unsigned)strtoul(optarg, NULL, 10);
		break;
	case 'c':
		lg.conns = (unsigned)strtoul(optarg, NULL, 10);
		break;
	case 't':
		lg.timeout = strtod(optarg, NULL);
		break;
	case 'p':
		*prefix = optarg;
		break;
	case 'j':
		lg.json = true;
		break;
	case 's':
		lg.signal = (int)strtol(optarg, NULL, 10);
		break;
	case 'e':
		lg.expect = (int)strtol(optarg, NULL, 10);
		break;
	case 'k':
		lg.sig_conns = (unsigned)strtoul(optarg, NULL, 10);
		break;
	case 'P':
		lg.pause = true;
		break;
	default:
		usage();
	}
}

static void parse_args(int argc, char **argv, const char *mode)
{
	static const struct option opts[] = {{"root", required_argument, NULL, 'r'},
					     {"bundle", required_argument, NULL, 'b'},
					     {"conns", required_argument, NULL, 'c'},
					     {"timeout", required_argument, NULL, 't'},
					     {"id-prefix", required_argument, NULL, 'p'},
					     {"json", no_argument, NULL, 'j'},
					     {"signal", required_argument, NULL, 's'},
					     {"expect", required_argument, NULL, 'e'},
					     {"signal-conns", required_argument, NULL, 'k'},
					     {"pause", no_argument, NULL, 'P'},
					     {NULL, 0, NULL, 0}};
	bool burst = strcmp(mode, "burst") == 0, hold = strcmp(mode, "hold") == 0;
	const char *prefix = NULL;
	int c;
	lg.n = hold ? 2000 : burst ? 200 : 50;
	lg.conns = burst || hold ? 4 : 1;
	lg.timeout = hold ? 300 : 60;
	lg.signal = 10; /* SIGUSR1 */
	lg.expect = 7;
	lg.sig_conns = 1;
	lg.keep_going = hold;
	lg.transient = !burst && !hold;
	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1)
		parse_opt(c, &prefix);
	if (optind != argc || !lg.root || !lg.bundle || lg.bundle[0] != '/' || lg.n < 1 ||
	    lg.n > N_MAX || lg.conns < 1 || lg.conns > CONNS_MAX || lg.timeout <= 0 ||
	    lg.signal < 1 || lg.signal > 64 || lg.expect < 0 || lg.expect > 255 ||
	    lg.sig_conns < 1 || lg.sig_conns > CONNS_MAX ||
	    (prefix && strlen(prefix) + 6 > sizeof(lg.prefix)))
		usage();
	if (!burst && !hold)
		lg.conns = 1;
	if (prefix)
		snprintf(lg.prefix, sizeof(lg.prefix), "%s", prefix);
	else
		snprintf(lg.prefix, sizeof(lg.prefix), "lg%d-%c", (int)getpid(), mode[0]);
}

int main(int argc, char **argv)
{
	struct sender ws[CONNS_MAX];
	struct qerr err = {0};
	pthread_t evt;
	if (argc < 2 || (strcmp(argv[1], "latency") != 0 && strcmp(argv[1], "burst") != 0 &&
			 strcmp(argv[1], "hold") != 0))
		usage();
	parse_args(argc - 1, argv + 1, argv[1]);
	lg.sbs = calloc(lg.n, sizeof(*lg.sbs));
	if (!lg.sbs)
		return fprintf(stderr, "loadgen: out of memory\n"), 1;
	if (events_dial(&err) < 0)
		return fprintf(stderr, "loadgen: events: %s\n", err.msg), 1;
	unsigned nsock = lg.conns > lg.sig_conns ? lg.conns : lg.sig_conns;
	for (unsigned k = 0; k < nsock; k++)
		if (req_dial(&ws[k].req, &err) < 0)
			return fprintf(stderr, "loadgen: %s\n", err.msg), 1;
	pthread_create(&evt, NULL, event_thread, NULL);

	if (argv[1][0] == 'l')
		mode_latency(ws);
	else if (argv[1][0] == 'b')
		mode_burst(ws);
	else
		mode_hold(ws);

	int left = count_listed(ws[0].req, &err);
	if (left < 0)
		problem("list: %s", err.msg);
	else if (left > 0)
		problem("%d of our sandboxes still listed after delete", left);
	nng_close(lg.sub);
	pthread_join(evt, NULL);
	for (unsigned k = 0; k < nsock; k++)
		nng_close(ws[k].req);
	free(lg.sbs);
	if (lg.n_problems) {
		fprintf(stderr, "loadgen: FAILED (%u problem(s)); first: %s\n", lg.n_problems,
			lg.problem);
		return 1;
	}
	return 0;
}
