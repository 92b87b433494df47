/* iod's /metrics: requests by op, errors by op, batch sizes, steps done
 * in iod's thread rather than io-wq, lookups walked twice, guests woken,
 * latency from taking a request to pushing its completion, the sandboxes
 * attached and each one's requests in flight.  Counters are atomics updated
 * by the loop; the per-sandbox gauge is written at scrape time under
 * iod.lock. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "libcommon/log.h"
#include "libcommon/metrics.h"
#include "libcommon/statefile.h"
#include "services/iod/iod.h"

static struct {
	struct qmetrics *reg;
	struct qmetrics_http *http;
	struct qmetric_series *ops[IOD_OP_MAX_], *errors[IOD_OP_MAX_];
	struct qmetric_series *batch, *latency, *here, *xdev, *wakeups;
} m;

void iod_metrics_op(unsigned op, int64_t res, double seconds)
{
	if (!m.reg || op >= IOD_OP_MAX_)
		return;
	qmetric_inc(m.ops[op]);
	if (res < 0)
		qmetric_inc(m.errors[op]);
	qmetric_observe(m.latency, seconds);
}

void iod_metrics_inline(void)
{
	if (m.reg)
		qmetric_inc(m.here);
}

void iod_metrics_xdev_walk(void)
{
	if (m.reg)
		qmetric_inc(m.xdev);
}

void iod_metrics_wakeup(void)
{
	if (m.reg)
		qmetric_inc(m.wakeups);
}

void iod_metrics_batch(unsigned n)
{
	if (m.reg)
		qmetric_observe(m.batch, (double)n);
}

static void collect(struct qmetrics_writer *w, void *arg)
{
	static const char *const lbl[] = {"sandbox", NULL};
	(void)arg;

	pthread_mutex_lock(&iod.lock);
	qmetrics_write_family(w, "quiver_iod_sandboxes", "Sandboxes attached.", QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_iod_sandboxes", NULL, NULL, (double)iod.n_sandboxes);
	qmetrics_write_family(w, "quiver_iod_queue_depth",
			      "Requests taken from the sandbox's ring and not yet completed.",
			      QMETRIC_GAUGE);
	for (struct sbx *sb = iod.sandboxes; sb; sb = sb->next) {
		const char *val[] = {sb->id, NULL};
		qmetrics_write_sample(w, "quiver_iod_queue_depth", lbl, val, (double)sb->inflight);
	}
	pthread_mutex_unlock(&iod.lock);
}

int iod_metrics_start(const char *addr, struct qerr *err)
{
	static const char *const op_lbl[] = {"op", NULL};
	static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
	static const double lat_bounds[] = {2e-6,   4e-6,   8e-6, 16e-6, 32e-6, 64e-6,
					    128e-6, 256e-6, 1e-3, 4e-3,	 16e-3, 64e-3};
	struct qmetric *ops, *errs, *batch, *lat, *here, *xdev, *wakeups;
	char bound[128], url[160];
	int r;

	m.reg = qmetrics_new(err);
	if (!m.reg)
		return -err->code;
	ops = qmetrics_counter(m.reg, "quiver_iod_ops_total", "Requests served, by operation.",
			       op_lbl, err);
	errs = qmetrics_counter(m.reg, "quiver_iod_errors_total",
				"Requests answered with an errno, by operation.", op_lbl, err);
	batch = qmetrics_histogram(m.reg, "quiver_iod_batch_size",
				   "io_uring submissions per io_uring_enter.", NULL, batch_bounds,
				   sizeof(batch_bounds) / sizeof(batch_bounds[0]), err);
	lat = qmetrics_histogram(m.reg, "quiver_iod_latency_seconds",
				 "From taking a request off the ring to its completion.", NULL,
				 lat_bounds, sizeof(lat_bounds) / sizeof(lat_bounds[0]), err);
	here = qmetrics_counter(m.reg, "quiver_iod_inline_steps_total",
				"Steps io_uring would hand to an io-wq worker (the open of a file "
				"found, a stat) done in iod's thread: a local filesystem.",
				NULL, err);
	xdev = qmetrics_counter(m.reg, "quiver_iod_xdev_walks_total",
				"Lookups walked twice: tried for the guest's cache "
				"(RESOLVE_NO_XDEV), they met a mount.",
				NULL, err);
	wakeups = qmetrics_counter(m.reg, "quiver_iod_guest_wakeups_total",
				   "Completions after which a guest had to be woken (its eventfd "
				   "written): it was not polling for the answer.",
				   NULL, err);
	if (!ops || !errs || !batch || !lat || !here || !xdev || !wakeups) {
		r = -err->code;
		goto fail;
	}
	for (unsigned op = 1; op < IOD_OP_MAX_; op++) {
		const char *v[] = {iod_op_name(op), NULL};
		m.ops[op] = qmetric_series(ops, v, err);
		m.errors[op] = qmetric_series(errs, v, err);
	}
	m.batch = qmetric_series(batch, NULL, err);
	m.latency = qmetric_series(lat, NULL, err);
	m.here = qmetric_series(here, NULL, err);
	m.xdev = qmetric_series(xdev, NULL, err);
	m.wakeups = qmetric_series(wakeups, NULL, err);
	if ((r = qmetrics_add_collector(m.reg, collect, NULL, err)) < 0)
		goto fail;
	if ((r = qmetrics_http_start(m.reg, addr, &m.http, err)) < 0 ||
	    (r = qmetrics_http_addr(m.http, bound, sizeof(bound), err)) < 0)
		goto fail;
	snprintf(url, sizeof(url), "http://%s/metrics\n", bound);
	if ((r = statefile_write_mode(iod.rootfd, "iod.metrics", url, strlen(url), 0644, err)) < 0)
		goto fail;
	qlog_info("metrics on %s", bound);
	return 0;
fail:
	iod_metrics_stop();
	return r;
}

void iod_metrics_stop(void)
{
	qmetrics_http_stop(m.http);
	m.http = NULL;
	if (m.reg)
		qmetrics_free(m.reg);
	m.reg = NULL;
}
