/* Metrics registry, Prometheus text format 0.0.4, and the /metrics endpoint.
 *
 * Structure (families, series, collectors) is append-only and guarded by the
 * registry lock; values are atomics updated without it, so the event loop
 * that counts never waits behind a scrape.  A histogram's buckets are kept
 * non-cumulative and summed at render time, so _count always equals the
 * +Inf bucket even while observations race with a scrape. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/metrics.h"
#include "libcommon/msg.h"

#define QMETRICS_MAX_HELP 1024

struct qmetric_series {
	struct qmetric_series *next;
	struct qmetric *family;
	char **values;		 /* family->nlabels label values */
	_Atomic uint64_t val;	 /* counter/gauge: the bits of a double */
	_Atomic uint64_t sum;	 /* histogram: the bits of a double */
	_Atomic uint64_t *count; /* histogram: nbounds + 1 buckets, the last +Inf */
};

struct qmetric {
	struct qmetric *next;
	struct qmetrics *reg;
	char *name;
	char *help;
	enum qmetric_type type;
	size_t nlabels;
	char **labels;
	size_t nbounds;
	double *bounds;
	struct qmetric_series *series;
	struct qmetric_series **series_tail;
};

struct collector {
	struct collector *next;
	qmetrics_collect_fn fn;
	void *arg;
};

struct qmetrics {
	pthread_mutex_t lock;
	struct qmetric *families;
	struct qmetric **families_tail;
	struct collector *collectors;
	struct collector **collectors_tail;
	size_t ncollectors;
	_Atomic uint64_t dropped; /* invalid samples written by collectors */
};

struct qmetrics_writer {
	char *buf;
	size_t len;
	size_t cap;
	bool oom;
	struct qmetrics *reg;
};

/* ---- atomics on doubles ---- */

static uint64_t d2u(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static double u2d(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(p, &old, d2u(u2d(old) + v),
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- names ---- */

static bool valid_name(const char *s, bool colon)
{
	size_t n = 0;

	if (!s || !*s)
		return false;
	for (const char *c = s; *c; c++, n++) {
		bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
			     (colon && *c == ':');

		if (!alpha && !(c != s && *c >= '0' && *c <= '9'))
			return false;
	}
	return n <= QMETRICS_MAX_NAME;
}

static bool valid_label_name(const char *s)
{
	/* "le" is the histogram bucket label; "__" names are Prometheus's own. */
	return valid_name(s, false) && strcmp(s, "le") != 0 && strncmp(s, "__", 2) != 0;
}

/* ---- registry ---- */

struct qmetrics *qmetrics_new(struct qerr *err)
{
	struct qmetrics *reg = calloc(1, sizeof(*reg));

	if (!reg) {
		qerr_set(err, ENOMEM, "metrics: out of memory");
		return NULL;
	}
	pthread_mutex_init(&reg->lock, NULL);
	reg->families_tail = &reg->families;
	reg->collectors_tail = &reg->collectors;
	return reg;
}

static void free_strv(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void series_free(struct qmetric_series *s, size_t nlabels)
{
	free_strv(s->values, nlabels);
	free(s->count);
	free(s);
}

static void family_free(struct qmetric *m)
{
	struct qmetric_series *s, *next;

	for (s = m->series; s; s = next) {
		next = s->next;
		series_free(s, m->nlabels);
	}
	free(m->name);
	free(m->help);
	free_strv(m->labels, m->nlabels);
	free(m->bounds);
	free(m);
}

void qmetrics_free(struct qmetrics *reg)
{
	struct qmetric *m, *mnext;
	struct collector *c, *cnext;

	if (!reg)
		return;
	for (m = reg->families; m; m = mnext) {
		mnext = m->next;
		family_free(m);
	}
	for (c = reg->collectors; c; c = cnext) {
		cnext = c->next;
		free(c);
	}
	pthread_mutex_destroy(&reg->lock);
	free(reg);
}

static char **dup_strv(const char *const *v, size_t n)
{
	char **out = calloc(n ? n : 1, sizeof(*out));

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		out[i] = strdup(v[i]);
		if (!out[i]) {
			free_strv(out, i);
			return NULL;
		}
	}
	return out;
}

static struct qmetric_series *series_new(struct qmetric *m, const char *const *values)
{
	struct qmetric_series *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->family = m;
	s->values = dup_strv(values, m->nlabels);
	if (m->type == QMETRIC_HISTOGRAM)
		s->count = calloc(m->nbounds + 1, sizeof(*s->count));
	if (!s->values || (m->type == QMETRIC_HISTOGRAM && !s->count)) {
		series_free(s, s->values ? m->nlabels : 0);
		return NULL;
	}
	return s;
}

static struct qmetric *family_new(struct qmetrics *reg, const char *name, const char *help,
				  enum qmetric_type type, const char *const *labels,
				  const double *bounds, size_t nbounds, struct qerr *err)
{
	struct qmetric *m, *it;
	size_t nlabels = 0;

	if (!reg || !valid_name(name, true)) {
		qerr_set(err, EINVAL, "metric name \"%s\" is not valid", name ? name : "(null)");
		return NULL;
	}
	if (help && strlen(help) > QMETRICS_MAX_HELP) {
		qerr_set(err, EINVAL, "metric %s: help longer than %d bytes", name,
			 QMETRICS_MAX_HELP);
		return NULL;
	}
	for (; labels && labels[nlabels]; nlabels++) {
		if (nlabels == QMETRICS_MAX_LABELS) {
			qerr_set(err, EINVAL, "metric %s: more than %d labels", name,
				 QMETRICS_MAX_LABELS);
			return NULL;
		}
		if (!valid_label_name(labels[nlabels])) {
			qerr_set(err, EINVAL, "metric %s: label name \"%s\" is not valid", name,
				 labels[nlabels]);
			return NULL;
		}
		for (size_t j = 0; j < nlabels; j++)
			if (strcmp(labels[j], labels[nlabels]) == 0) {
				qerr_set(err, EINVAL, "metric %s: label %s given twice", name,
					 labels[j]);
				return NULL;
			}
	}
	if (nbounds > QMETRICS_MAX_BUCKETS) {
		qerr_set(err, EINVAL, "metric %s: more than %d buckets", name,
			 QMETRICS_MAX_BUCKETS);
		return NULL;
	}
	for (size_t i = 0; i < nbounds; i++)
		if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
			qerr_set(err, EINVAL,
				 "metric %s: bucket bounds must be finite and increasing", name);
			return NULL;
		}

	m = calloc(1, sizeof(*m));
	if (!m)
		goto oom;
	m->reg = reg;
	m->type = type;
	m->nlabels = nlabels;
	m->nbounds = nbounds;
	m->series_tail = &m->series;
	m->name = strdup(name);
	m->help = strdup(help ? help : "");
	m->labels = dup_strv(labels, nlabels);
	m->bounds = malloc((nbounds ? nbounds : 1) * sizeof(double));
	if (!m->name || !m->help || !m->labels || !m->bounds)
		goto oom_free;
	if (nbounds)
		memcpy(m->bounds, bounds, nbounds * sizeof(double));
	/* A family without labels has exactly one series; export it from the
	 * start, at 0, so a rate() over it has a beginning. */
	if (nlabels == 0) {
		m->series = series_new(m, NULL);
		if (!m->series)
			goto oom_free;
		m->series_tail = &m->series->next;
	}

	pthread_mutex_lock(&reg->lock);
	for (it = reg->families; it; it = it->next)
		if (strcmp(it->name, name) == 0) {
			pthread_mutex_unlock(&reg->lock);
			family_free(m);
			qerr_set(err, EEXIST, "metric %s registered twice", name);
			return NULL;
		}
	*reg->families_tail = m;
	reg->families_tail = &m->next;
	pthread_mutex_unlock(&reg->lock);
	return m;

oom_free:
	if (!m->labels)
		m->nlabels = 0;
	family_free(m);
oom:
	qerr_set(err, ENOMEM, "metric %s: out of memory", name);
	return NULL;
}

struct qmetric *qmetrics_counter(struct qmetrics *reg, const char *name, const char *help,
				 const char *const *labels, struct qerr *err)
{
	return family_new(reg, name, help, QMETRIC_COUNTER, labels, NULL, 0, err);
}

struct qmetric *qmetrics_gauge(struct qmetrics *reg, const char *name, const char *help,
			       const char *const *labels, struct qerr *err)
{
	return family_new(reg, name, help, QMETRIC_GAUGE, labels, NULL, 0, err);
}

struct qmetric *qmetrics_histogram(struct qmetrics *reg, const char *name, const char *help,
				   const char *const *labels, const double *bounds, size_t nbounds,
				   struct qerr *err)
{
	/* Prometheus's default buckets: request latencies in seconds. */
	static const double defaults[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

	if (!bounds) {
		bounds = defaults;
		nbounds = ARRAY_SIZE(defaults);
	}
	return family_new(reg, name, help, QMETRIC_HISTOGRAM, labels, bounds, nbounds, err);
}

struct qmetric_series *qmetric_series(struct qmetric *m, const char *const *values,
				      struct qerr *err)
{
	struct qmetric_series *s;

	if (!m) {
		qerr_set(err, EINVAL, "metrics: no family");
		return NULL;
	}
	for (size_t i = 0; i < m->nlabels; i++)
		if (!values || !values[i]) {
			qerr_set(err, EINVAL, "metric %s: %zu label values needed", m->name,
				 m->nlabels);
			return NULL;
		}
	pthread_mutex_lock(&m->reg->lock);
	for (s = m->series; s; s = s->next) {
		size_t i = 0;

		while (i < m->nlabels && strcmp(s->values[i], values[i]) == 0)
			i++;
		if (i == m->nlabels)
			break;
	}
	if (!s) {
		s = series_new(m, values);
		if (s) {
			*m->series_tail = s;
			m->series_tail = &s->next;
		}
	}
	pthread_mutex_unlock(&m->reg->lock);
	if (!s)
		qerr_set(err, ENOMEM, "metric %s: out of memory", m->name);
	return s;
}

/* ---- updates ---- */

void qmetric_add(struct qmetric_series *s, double v)
{
	if (!s || isnan(v))
		return;
	switch (s->family->type) {
	case QMETRIC_COUNTER:
		/* Counters only go up: Prometheus reads a decrease as a reset. */
		if (v >= 0)
			atomic_add_double(&s->val, v);
		break;
	case QMETRIC_GAUGE:
		atomic_add_double(&s->val, v);
		break;
	case QMETRIC_HISTOGRAM:
		qmetric_observe(s, v);
		break;
	}
}

void qmetric_inc(struct qmetric_series *s)
{
	qmetric_add(s, 1);
}

void qmetric_dec(struct qmetric_series *s)
{
	if (s && s->family->type == QMETRIC_GAUGE)
		atomic_add_double(&s->val, -1);
}

void qmetric_set(struct qmetric_series *s, double v)
{
	if (s && s->family->type == QMETRIC_GAUGE)
		atomic_store_explicit(&s->val, d2u(v), memory_order_relaxed);
}

void qmetric_observe(struct qmetric_series *s, double v)
{
	size_t i = 0;
	struct qmetric *m;

	/* A NaN would poison _sum for the rest of the process's life. */
	if (!s || s->family->type != QMETRIC_HISTOGRAM || isnan(v))
		return;
	m = s->family;
	while (i < m->nbounds && v > m->bounds[i])
		i++;
	atomic_add_double(&s->sum, v);
	atomic_fetch_add_explicit(&s->count[i], 1, memory_order_relaxed);
}

double qmetric_value(const struct qmetric_series *s)
{
	uint64_t n = 0;

	if (!s)
		return 0;
	if (s->family->type != QMETRIC_HISTOGRAM)
		return u2d(atomic_load_explicit(&s->val, memory_order_relaxed));
	for (size_t i = 0; i <= s->family->nbounds; i++)
		n += atomic_load_explicit(&s->count[i], memory_order_relaxed);
	return (double)n;
}

int qmetrics_add_collector(struct qmetrics *reg, qmetrics_collect_fn fn, void *arg,
			   struct qerr *err)
{
	struct collector *c;

	if (!reg || !fn)
		return qerr_set(err, EINVAL, "metrics: no collector");
	c = calloc(1, sizeof(*c));
	if (!c)
		return qerr_set(err, ENOMEM, "metrics: out of memory");
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_lock(&reg->lock);
	*reg->collectors_tail = c;
	reg->collectors_tail = &c->next;
	reg->ncollectors++;
	pthread_mutex_unlock(&reg->lock);
	return 0;
}

/* ---- rendering ---- */

static void w_put(struct qmetrics_writer *w, const char *s, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *p;

		while (w->len + n + 1 > cap)
			cap *= 2;
		p = realloc(w->buf, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void w_str(struct qmetrics_writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

/* Text-format escaping: HELP escapes \ and newline; label values also ". */
static void w_escaped(struct qmetrics_writer *w, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			w_put(w, "\\\\", 2);
		else if (*s == '\n')
			w_put(w, "\\n", 2);
		else if (quote && *s == '"')
			w_put(w, "\\\"", 2);
		else
			w_put(w, s, 1);
	}
}

/* The shortest decimal that reads back as the same double, and the
 * format's spellings of the non-finite values. */
static void fmt_double(char *buf, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
}

static void w_family(struct qmetrics_writer *w, const char *name, const char *help,
		     enum qmetric_type type)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	w_str(w, "# HELP ");
	w_str(w, name);
	w_str(w, " ");
	w_escaped(w, help ? help : "", false);
	w_str(w, "\n# TYPE ");
	w_str(w, name);
	w_str(w, " ");
	w_str(w, types[type]);
	w_str(w, "\n");
}

/* name{l1="v1",...,le="x"} value */
static void w_sample(struct qmetrics_writer *w, const char *name, const char *suffix,
		     const char *const *names, const char *const *values, size_t n, const char *le,
		     double v)
{
	char num[64];

	w_str(w, name);
	w_str(w, suffix);
	if (n || le) {
		w_str(w, "{");
		for (size_t i = 0; i < n; i++) {
			if (i)
				w_str(w, ",");
			w_str(w, names[i]);
			w_str(w, "=\"");
			w_escaped(w, values[i], true);
			w_str(w, "\"");
		}
		if (le) {
			w_str(w, n ? ",le=\"" : "le=\"");
			w_str(w, le);
			w_str(w, "\"");
		}
		w_str(w, "}");
	}
	fmt_double(num, sizeof(num), v);
	w_str(w, " ");
	w_str(w, num);
	w_str(w, "\n");
}

static void render_family(struct qmetrics_writer *w, const struct qmetric *m)
{
	const char *const *names = (const char *const *)m->labels;

	w_family(w, m->name, m->help, m->type);
	for (const struct qmetric_series *s = m->series; s; s = s->next) {
		const char *const *values = (const char *const *)s->values;
		uint64_t cum = 0;
		char le[64];

		if (m->type != QMETRIC_HISTOGRAM) {
			w_sample(w, m->name, "", names, values, m->nlabels, NULL,
				 u2d(atomic_load_explicit(&s->val, memory_order_relaxed)));
			continue;
		}
		for (size_t i = 0; i <= m->nbounds; i++) {
			cum += atomic_load_explicit(&s->count[i], memory_order_relaxed);
			if (i < m->nbounds)
				fmt_double(le, sizeof(le), m->bounds[i]);
			else
				snprintf(le, sizeof(le), "+Inf");
			w_sample(w, m->name, "_bucket", names, values, m->nlabels, le, (double)cum);
		}
		w_sample(w, m->name, "_sum", names, values, m->nlabels, NULL,
			 u2d(atomic_load_explicit(&s->sum, memory_order_relaxed)));
		w_sample(w, m->name, "_count", names, values, m->nlabels, NULL, (double)cum);
	}
}

void qmetrics_write_family(struct qmetrics_writer *w, const char *name, const char *help,
			   enum qmetric_type type)
{
	if (!valid_name(name, true) || (unsigned)type > QMETRIC_HISTOGRAM ||
	    (help && strlen(help) > QMETRICS_MAX_HELP)) {
		atomic_fetch_add(&w->reg->dropped, 1);
		return;
	}
	w_family(w, name, help, type);
}

void qmetrics_write_sample(struct qmetrics_writer *w, const char *name,
			   const char *const *label_names, const char *const *label_values,
			   double v)
{
	size_t n = 0;

	if (!valid_name(name, true))
		goto drop;
	for (; label_names && label_names[n]; n++)
		/* "le" is legal here: a collector renders its own buckets. */
		if (n == QMETRICS_MAX_LABELS + 1 || !label_values || !label_values[n] ||
		    !valid_name(label_names[n], false) || strncmp(label_names[n], "__", 2) == 0)
			goto drop;
	w_sample(w, name, "", label_names, label_values, n, NULL, v);
	return;
drop:
	atomic_fetch_add(&w->reg->dropped, 1);
}

int qmetrics_render(struct qmetrics *reg, char **text, size_t *len, struct qerr *err)
{
	struct qmetrics_writer w = {.reg = reg};
	cleanup_free struct collector *calls = NULL;
	size_t ncalls = 0;
	uint64_t dropped;

	if (!reg)
		return qerr_set(err, EINVAL, "metrics: no registry");
	pthread_mutex_lock(&reg->lock);
	for (const struct qmetric *m = reg->families; m; m = m->next)
		render_family(&w, m);
	/* Collectors run unlocked, from a copy of the list: one that
	 * registers a series must not deadlock on the registry lock. */
	if (reg->ncollectors) {
		calls = calloc(reg->ncollectors, sizeof(*calls));
		if (!calls)
			w.oom = true;
		for (const struct collector *c = reg->collectors; calls && c; c = c->next)
			calls[ncalls++] = *c;
	}
	pthread_mutex_unlock(&reg->lock);
	for (size_t i = 0; i < ncalls; i++)
		calls[i].fn(&w, calls[i].arg);

	dropped = atomic_load(&reg->dropped);
	if (dropped) {
		w_family(&w, "quiver_metrics_dropped_samples_total",
			 "Samples from collectors dropped for invalid names.", QMETRIC_COUNTER);
		w_sample(&w, "quiver_metrics_dropped_samples_total", "", NULL, NULL, 0, NULL,
			 (double)dropped);
	}
	/* An empty registry still renders: an empty, allocated string. */
	w_put(&w, "", 0);
	if (w.oom || !w.buf) {
		free(w.buf);
		return qerr_set(err, ENOMEM, "metrics: out of memory rendering");
	}
	*text = w.buf;
	if (len)
		*len = w.len;
	return 0;
}

/* ---- HTTP ---- */

/* Shared by the handler (which nng may free late, on its own threads) and
 * qmetrics_http_stop(): stop waits here until no render is running, so the
 * registry can be freed as soon as it returns. */
struct http_ctx {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct qmetrics *reg;
	unsigned active;
	bool stopping;
};

struct qmetrics_http {
	nng_http_server *srv;
	struct http_ctx *ctx;
	nng_sockaddr addr;
};

static void http_ctx_free(void *p)
{
	struct http_ctx *ctx = p;

	pthread_mutex_destroy(&ctx->lock);
	pthread_cond_destroy(&ctx->idle);
	free(ctx);
}

static void handle_metrics(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	struct http_ctx *ctx = nng_http_handler_get_data(h);
	nng_http_res *res = NULL;
	char *text = NULL;
	size_t len = 0;
	int rv;

	pthread_mutex_lock(&ctx->lock);
	if (ctx->stopping) {
		pthread_mutex_unlock(&ctx->lock);
		rv = nng_http_res_alloc_error(&res, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE);
		goto done;
	}
	ctx->active++;
	pthread_mutex_unlock(&ctx->lock);

	rv = qmetrics_render(ctx->reg, &text, &len, NULL);

	pthread_mutex_lock(&ctx->lock);
	if (--ctx->active == 0)
		pthread_cond_broadcast(&ctx->idle);
	pthread_mutex_unlock(&ctx->lock);

	if (rv < 0) {
		rv = nng_http_res_alloc_error(&res, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR);
		goto done;
	}
	if ((rv = nng_http_res_alloc(&res)) != 0)
		goto done;
	if ((rv = nng_http_res_set_header(res, "Content-Type",
					  "text/plain; version=0.0.4; charset=utf-8")) != 0 ||
	    (rv = nng_http_res_copy_data(res, text, len)) != 0) {
		nng_http_res_free(res);
		res = NULL;
	}
done:
	free(text);
	if (rv != 0) {
		/* Completing the aio with an error makes nng drop the
		 * connection after a 500. */
		nng_aio_finish(aio, rv);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static int fmt_addr(const nng_sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (sa->s_family == NNG_AF_INET) {
		if (!inet_ntop(AF_INET, &sa->s_in.sa_addr, host, sizeof(host)))
			return -errno;
		n = snprintf(buf, len, "%s:%u", host, ntohs(sa->s_in.sa_port));
	} else if (sa->s_family == NNG_AF_INET6) {
		if (!inet_ntop(AF_INET6, sa->s_in6.sa_addr, host, sizeof(host)))
			return -errno;
		n = snprintf(buf, len, "[%s]:%u", host, ntohs(sa->s_in6.sa_port));
	} else {
		return -EAFNOSUPPORT;
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int qmetrics_http_start(struct qmetrics *reg, const char *addr, struct qmetrics_http **out,
			struct qerr *err)
{
	char url[300];
	nng_url *u = NULL;
	nng_http_handler *handler = NULL;
	struct qmetrics_http *h;
	struct http_ctx *ctx;
	int rv;

	if (!reg || !out)
		return qerr_set(err, EINVAL, "metrics http: no registry");
	/* Loopback unless told otherwise: metrics name sandboxes and tenants. */
	if (!addr)
		addr = "127.0.0.1:0";
	if (!*addr || strchr(addr, '/') ||
	    (size_t)snprintf(url, sizeof(url), "http://%s/", addr) >= sizeof(url))
		return qerr_set(err, EINVAL, "metrics http: bad address \"%s\"", addr);
	if ((rv = nng_url_parse(&u, url)) != 0)
		return qerr_set(err, EINVAL, "metrics http: bad address \"%s\": %s", addr,
				nng_strerror(rv));

	h = calloc(1, sizeof(*h));
	ctx = calloc(1, sizeof(*ctx));
	if (!h || !ctx) {
		free(h);
		free(ctx);
		nng_url_free(u);
		return qerr_set(err, ENOMEM, "metrics http: out of memory");
	}
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_cond_init(&ctx->idle, NULL);
	ctx->reg = reg;
	h->ctx = ctx;

	rv = nng_http_server_hold(&h->srv, u);
	nng_url_free(u);
	if (rv != 0) {
		http_ctx_free(ctx);
		free(h);
		return qerr_set(err, qnng_errno(rv), "metrics http %s: %s", addr, nng_strerror(rv));
	}
	if ((rv = nng_http_handler_alloc(&handler, "/metrics", handle_metrics)) != 0) {
		http_ctx_free(ctx);
		goto fail;
	}
	/* From here the handler owns ctx and frees it when nng is done. */
	if ((rv = nng_http_handler_set_data(handler, ctx, http_ctx_free)) != 0) {
		http_ctx_free(ctx);
		nng_http_handler_free(handler);
		goto fail;
	}
	/* No request body is wanted; do not let a client make us buffer one. */
	if ((rv = nng_http_handler_collect_body(handler, false, 0)) != 0 ||
	    (rv = nng_http_server_add_handler(h->srv, handler)) != 0) {
		nng_http_handler_free(handler);
		goto fail;
	}
	if ((rv = nng_http_server_start(h->srv)) != 0)
		goto fail;
	/* With port 0 the kernel picked one; only the started server knows. */
	if ((rv = nng_http_server_get_addr(h->srv, &h->addr)) != 0) {
		nng_http_server_stop(h->srv);
		goto fail;
	}
	*out = h;
	return 0;

fail:
	nng_http_server_release(h->srv);
	free(h);
	return qerr_set(err, qnng_errno(rv), "metrics http %s: %s", addr, nng_strerror(rv));
}

int qmetrics_http_addr(const struct qmetrics_http *h, char *buf, size_t buflen, struct qerr *err)
{
	int r;

	if (!h || !buf)
		return qerr_set(err, EINVAL, "metrics http: not started");
	r = fmt_addr(&h->addr, buf, buflen);
	if (r < 0)
		return qerr_set(err, -r, "metrics http: cannot format the bound address");
	return 0;
}

int qmetrics_http_port(const struct qmetrics_http *h)
{
	if (!h)
		return -EINVAL;
	if (h->addr.s_family == NNG_AF_INET)
		return ntohs(h->addr.s_in.sa_port);
	if (h->addr.s_family == NNG_AF_INET6)
		return ntohs(h->addr.s_in6.sa_port);
	return -EAFNOSUPPORT;
}

void qmetrics_http_stop(struct qmetrics_http *h)
{
	struct http_ctx *ctx;

	if (!h)
		return;
	ctx = h->ctx;
	pthread_mutex_lock(&ctx->lock);
	ctx->stopping = true;
	while (ctx->active)
		pthread_cond_wait(&ctx->idle, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);
	/* ctx is not touched after release: nng frees it with the handler. */
	nng_http_server_stop(h->srv);
	nng_http_server_release(h->srv);
	free(h);
}
