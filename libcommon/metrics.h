/* Metrics: a registry of counters, gauges and histograms, rendered in the
 * Prometheus text exposition format 0.0.4 and served over HTTP (GET /metrics)
 * by nng's HTTP server.
 *
 * Threads: families and series may be created and updated from any thread.
 * Updates are lock-free (atomics), so the daemon's event loop never waits for
 * a scrape; rendering runs on nng's HTTP threads.  Collector callbacks run on
 * those threads too and must do their own locking of whatever they read.
 *
 * Static metrics (a count of requests, a latency histogram) are families with
 * fixed label sets: take the series once with qmetric_series() and keep the
 * pointer.  Dynamic metrics (one line per live sandbox) come from a collector
 * that writes them at scrape time, so nothing needs removing when a sandbox
 * goes away.
 *
 *	struct qmetrics *reg = qmetrics_new(&err);
 *	const char *const lbl[] = {"op", NULL};
 *	struct qmetric *req = qmetrics_counter(reg, "quiver_vmmd_requests_total",
 *					       "Control requests served.", lbl, &err);
 *	struct qmetric_series *creates = qmetric_series(req, (const char *[]){"create"}, &err);
 *	qmetric_inc(creates);
 *	struct qmetrics_http *http;
 *	qmetrics_http_start(reg, NULL, &http, &err);   // 127.0.0.1, any port
 */
#ifndef QUIVER_METRICS_H
#define QUIVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"

#define QMETRICS_MAX_LABELS  8	 /* label names per family */
#define QMETRICS_MAX_BUCKETS 64	 /* histogram bounds, +Inf excluded */
#define QMETRICS_MAX_NAME    128 /* metric and label names */

enum qmetric_type { QMETRIC_COUNTER, QMETRIC_GAUGE, QMETRIC_HISTOGRAM };

struct qmetrics;	/* a registry */
struct qmetric;		/* a family: one name, one type, one set of label names */
struct qmetric_series;	/* one label-value tuple of a family; holds the value */
struct qmetrics_writer; /* a scrape being rendered, handed to collectors */

struct qmetrics *qmetrics_new(struct qerr *err);
/* Stop any HTTP server first (qmetrics_http_stop); frees every family. */
void qmetrics_free(struct qmetrics *reg);

/* Register a family.  name matches [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* (not "le", not starting "__"); labels is a
 * NULL-terminated array, or NULL for none.  A duplicate name is -EEXIST.
 * Returns NULL and fills err on failure. */
struct qmetric *qmetrics_counter(struct qmetrics *reg, const char *name, const char *help,
				 const char *const *labels, struct qerr *err);
struct qmetric *qmetrics_gauge(struct qmetrics *reg, const char *name, const char *help,
			       const char *const *labels, struct qerr *err);
/* bounds: nbounds strictly increasing finite upper bounds; +Inf is implied.
 * bounds NULL selects Prometheus's defaults (.005 to 10, for seconds). */
struct qmetric *qmetrics_histogram(struct qmetrics *reg, const char *name, const char *help,
				   const char *const *labels, const double *bounds, size_t nbounds,
				   struct qerr *err);

/* The series for these label values (as many as the family has label names;
 * NULL for a family without labels), created on first use.  The pointer
 * stays valid until qmetrics_free(). */
struct qmetric_series *qmetric_series(struct qmetric *m, const char *const *values,
				      struct qerr *err);

/* Updates.  Counters: inc/add with v >= 0 (a negative or NaN v is ignored,
 * counters never go down).  Gauges: inc/dec/add/set.  Histograms: observe
 * (NaN ignored; add and inc observe too).  A call that does not fit the
 * family's type is ignored.  s may be NULL (a failed registration), so a
 * daemon can keep counting without checking. */
void qmetric_inc(struct qmetric_series *s);
void qmetric_dec(struct qmetric_series *s);
void qmetric_add(struct qmetric_series *s, double v);
void qmetric_set(struct qmetric_series *s, double v);
void qmetric_observe(struct qmetric_series *s, double v);
/* Current value of a counter or gauge; a histogram's observation count. */
double qmetric_value(const struct qmetric_series *s);

/* ---- collectors: metrics computed at scrape time ---- */

typedef void (*qmetrics_collect_fn)(struct qmetrics_writer *w, void *arg);
/* fn is called, with arg, on every render after the registered families. */
int qmetrics_add_collector(struct qmetrics *reg, qmetrics_collect_fn fn, void *arg,
			   struct qerr *err);
/* Inside a collector: start a family (HELP and TYPE lines), then write its
 * samples.  sample names are full ("x_bucket", "x_sum" for a histogram);
 * label_names/label_values are NULL-terminated / parallel, or NULL.  Invalid
 * names are dropped and counted, not rendered (the scrape must stay
 * parseable). */
void qmetrics_write_family(struct qmetrics_writer *w, const char *name, const char *help,
			   enum qmetric_type type);
void qmetrics_write_sample(struct qmetrics_writer *w, const char *name,
			   const char *const *label_names, const char *const *label_values,
			   double v);

/* Render the whole registry.  *text is malloc'd, NUL-terminated; the caller
 * frees it. */
int qmetrics_render(struct qmetrics *reg, char **text, size_t *len, struct qerr *err);

/* ---- HTTP endpoint ---- */

struct qmetrics_http;

/* Serve GET /metrics for reg on addr, "host:port" ("127.0.0.1:9464",
 * "[::1]:0").  NULL means "127.0.0.1:0": loopback, with the kernel choosing
 * the port.  reg must outlive the server. */
int qmetrics_http_start(struct qmetrics *reg, const char *addr, struct qmetrics_http **out,
			struct qerr *err);
/* The address actually bound, for port 0: "127.0.0.1:41234" / "[::1]:41234",
 * and the port alone. */
int qmetrics_http_addr(const struct qmetrics_http *h, char *buf, size_t buflen, struct qerr *err);
int qmetrics_http_port(const struct qmetrics_http *h);
/* Stop serving and free h; NULL is a no-op. */
void qmetrics_http_stop(struct qmetrics_http *h);

#endif
