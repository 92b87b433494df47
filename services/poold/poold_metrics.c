/* poold's /metrics: per pool, what is ready, hits, misses (cold
 * fallbacks), items made and failed, and the refill rate.  The loop copies
 * the numbers into a snapshot (poold_metrics_update, every refill tick);
 * the scrape, on nng's HTTP thread, reads the snapshot under its lock. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "libcommon/log.h"
#include "libcommon/metrics.h"
#include "libcommon/statefile.h"
#include "services/poold/poold.h"

static struct {
	struct qmetrics *reg;
	struct qmetrics_http *http;
	pthread_mutex_t lock;
	struct pool snap[POOL_NKINDS];
	struct pool_config cfg[POOL_NKINDS];
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

void poold_metrics_update(void)
{
	pthread_mutex_lock(&m.lock);
	memcpy(m.snap, poold.pools, sizeof(m.snap));
	memcpy(m.cfg, poold.cfg.pool, sizeof(m.cfg));
	pthread_mutex_unlock(&m.lock);
}

static void family(struct qmetrics_writer *w, const char *name, const char *help,
		   enum qmetric_type type,
		   double (*get)(const struct pool *, const struct pool_config *))
{
	static const char *const lbl[] = {"pool", NULL};
	qmetrics_write_family(w, name, help, type);
	for (int k = 0; k < POOL_NKINDS; k++) {
		const char *val[] = {pool_kind_name((enum pool_kind)k), NULL};
		qmetrics_write_sample(w, name, lbl, val, get(&m.snap[k], &m.cfg[k]));
	}
}

static double get_ready(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->n_ready;
}
static double get_starting(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->n_starting;
}
static double get_low(const struct pool *p, const struct pool_config *c)
{
	(void)p;
	return c->low;
}
static double get_high(const struct pool *p, const struct pool_config *c)
{
	(void)p;
	return c->high;
}
static double get_hits(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->hits;
}
static double get_misses(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->misses;
}
static double get_made(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->made;
}
static double get_failed(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return (double)p->failed;
}
static double get_rate(const struct pool *p, const struct pool_config *c)
{
	(void)c;
	return p->rate;
}

static void collect(struct qmetrics_writer *w, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m.lock);
	family(w, "quiver_pool_ready", "Ready items, by pool.", QMETRIC_GAUGE, get_ready);
	family(w, "quiver_pool_starting", "Items being made (warm supervisors starting).",
	       QMETRIC_GAUGE, get_starting);
	family(w, "quiver_pool_low", "Low watermark: below it the pool refills.", QMETRIC_GAUGE,
	       get_low);
	family(w, "quiver_pool_high", "High watermark: the refill stops there.", QMETRIC_GAUGE,
	       get_high);
	family(w, "quiver_pool_hits_total", "Takes served from the pool.", QMETRIC_COUNTER,
	       get_hits);
	family(w, "quiver_pool_misses_total",
	       "Takes that found the pool empty (the caller fell back to the cold path).",
	       QMETRIC_COUNTER, get_misses);
	family(w, "quiver_pool_made_total", "Items made by the refill.", QMETRIC_COUNTER, get_made);
	family(w, "quiver_pool_failed_total", "Items the refill failed to make.", QMETRIC_COUNTER,
	       get_failed);
	family(w, "quiver_pool_refill_rate", "Items made per second over the last window.",
	       QMETRIC_GAUGE, get_rate);
	pthread_mutex_unlock(&m.lock);
}

int poold_metrics_start(const char *addr, struct qerr *err)
{
	char bound[128], url[160];
	int r;
	m.reg = qmetrics_new(err);
	if (!m.reg)
		return -err->code;
	if ((r = qmetrics_add_collector(m.reg, collect, NULL, err)) < 0)
		goto fail;
	poold_metrics_update();
	if ((r = qmetrics_http_start(m.reg, addr, &m.http, err)) < 0 ||
	    (r = qmetrics_http_addr(m.http, bound, sizeof(bound), err)) < 0)
		goto fail;
	snprintf(url, sizeof(url), "http://%s/metrics\n", bound);
	if ((r = statefile_write_mode(poold.rootfd, "poold.metrics", url, strlen(url), 0644, err)) <
	    0)
		goto fail;
	qlog_info("metrics on %s", bound);
	return 0;
fail:
	poold_metrics_stop();
	return r;
}

void poold_metrics_stop(void)
{
	qmetrics_http_stop(m.http);
	m.http = NULL;
	if (m.reg)
		qmetrics_free(m.reg);
	m.reg = NULL;
}
