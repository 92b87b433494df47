/* vmmd's /metrics: request counts, create-to-running latency, sandboxes by
 * state, each sandbox's usage (sandbox_stats.c: CPU, memory, pids, trapped
 * syscalls) and the syscall counters summed by syscall.  All but the first
 * two are computed at scrape time by a collector (on an nng HTTP thread,
 * reading the registry under vmmd.lock), so a deleted sandbox simply stops
 * appearing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seccomp.h>

#include "guest/counters.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/metrics.h"
#include "libcommon/statefile.h"
#include "services/vmmd/vmmd.h"

struct vmmd_metrics {
	struct qmetrics *reg;
	struct qmetrics_http *http;
	struct qmetric *requests, *errors, *paths;
	struct qmetric_series *latency;
	struct qmetric_series *hibernate, *wake;
};

static struct vmmd_metrics m;

void vmmd_metrics_start_path(const char *path)
{
	const char *v[] = {path, NULL};
	struct qmetric_series *s;

	if (m.reg && m.paths && (s = qmetric_series(m.paths, v, NULL)))
		qmetric_inc(s);
}

void vmmd_metrics_request(const char *op, bool failed)
{
	const char *v[] = {op, NULL};
	struct qmetric_series *s;

	if (!m.reg)
		return;
	if ((s = qmetric_series(m.requests, v, NULL)))
		qmetric_inc(s);
	if (failed && (s = qmetric_series(m.errors, v, NULL)))
		qmetric_inc(s);
}

void vmmd_metrics_started(const struct sandbox *sb)
{
	if (m.latency && sb->reserved_ns && sb->started_ns > sb->reserved_ns)
		qmetric_observe(m.latency, (double)(sb->started_ns - sb->reserved_ns) / 1e9);
}

void vmmd_metrics_hibernated(const struct sandbox *sb, double seconds)
{
	(void)sb;
	if (m.hibernate)
		qmetric_observe(m.hibernate, seconds);
}

void vmmd_metrics_woken(double seconds)
{
	if (m.wake)
		qmetric_observe(m.wake, seconds);
}

static void write_syscalls(struct qmetrics_writer *w, const char *name, const char *help,
			   const uint64_t *sum)
{
	static const char *const lbl[] = {"syscall", "nr", NULL};

	qmetrics_write_family(w, name, help, QMETRIC_COUNTER);
	for (uint32_t nr = 0; nr < GUEST_NR_MAX; nr++) {
		char nrs[16], *sc;
		if (!sum[nr])
			continue;
		snprintf(nrs, sizeof(nrs), "%u", nr);
		sc = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, (int)nr);
		qmetrics_write_sample(w, name, lbl, (const char *[]){sc ? sc : nrs, nrs, NULL},
				      (double)sum[nr]);
		free(sc);
	}
}

/* One sandbox's line in each per-sandbox family.  Its id and cgroups are
 * copied under vmmd.lock, the files read after it: a scrape of many
 * sandboxes must not hold the loop up. */
struct sb_sample {
	char id[SANDBOX_ID_MAX + 1];
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
	struct sandbox_stats st;
};

static void write_per_sandbox(struct qmetrics_writer *w, const struct sb_sample *s, size_t n,
			      const char *name, const char *help, enum qmetric_type type,
			      bool (*get)(const struct sandbox_stats *, double *))
{
	static const char *const id_lbl[] = {"id", NULL};

	qmetrics_write_family(w, name, help, type);
	for (size_t i = 0; i < n; i++) {
		double v;
		if (get(&s[i].st, &v))
			qmetrics_write_sample(w, name, id_lbl, (const char *[]){s[i].id, NULL}, v);
	}
}

static bool get_trapped(const struct sandbox_stats *st, double *v)
{
	*v = (double)st->syscalls_trapped;
	return st->has_syscalls;
}
static bool get_cpu(const struct sandbox_stats *st, double *v)
{
	*v = (double)st->cpu_ns / 1e9;
	return st->has_cpu;
}
static bool get_memory(const struct sandbox_stats *st, double *v)
{
	*v = (double)st->memory_bytes;
	return st->has_memory;
}
static bool get_pids(const struct sandbox_stats *st, double *v)
{
	*v = (double)st->pids;
	return st->has_pids;
}

static void collect(struct qmetrics_writer *w, void *arg)
{
	static const char *const state_lbl[] = {"state", NULL};
	uint64_t *trapped = calloc(GUEST_NR_MAX, sizeof(uint64_t));
	uint64_t *denied = calloc(GUEST_NR_MAX, sizeof(uint64_t));
	size_t by_state[SB_NSTATUS] = {0}, n = 0, cap = 0, hibernated = 0;
	uint64_t swapped = 0;
	struct sb_sample *samples = NULL;

	(void)arg;
	if (!trapped || !denied)
		goto out;
	pthread_mutex_lock(&vmmd.lock);
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next)
		cap++;
	samples = calloc(cap ? cap : 1, sizeof(*samples));
	for (struct sandbox *sb = vmmd.sandboxes; sb && samples; sb = sb->next) {
		struct sb_sample *x = &samples[n++];
		by_state[sb->status]++;
		if (sb->hib != HIB_NONE) {
			hibernated++;
			swapped += sb->hib_swapped;
		}
		snprintf(x->id, sizeof(x->id), "%s", sb->id);
		for (size_t i = 0; i < sb->ncgroups; i++)
			if ((x->cgroups[x->ncgroups] = strdup(sb->cgroups[i])))
				x->ncgroups++;
	}
	pthread_mutex_unlock(&vmmd.lock);
	if (!samples)
		goto out;
	/* the sums by syscall come from the same reading of the counters */
	for (size_t i = 0; i < n; i++)
		sandbox_stats_read(samples[i].id, samples[i].cgroups, samples[i].ncgroups, trapped,
				   denied, &samples[i].st);

	write_per_sandbox(w, samples, n, "quiver_sandbox_syscalls_trapped_total",
			  "Syscalls trapped by a sandbox's guest kernel.", QMETRIC_COUNTER,
			  get_trapped);
	write_per_sandbox(w, samples, n, "quiver_sandbox_cpu_seconds_total",
			  "CPU time used by a sandbox's processes (cpuacct.usage).",
			  QMETRIC_COUNTER, get_cpu);
	write_per_sandbox(w, samples, n, "quiver_sandbox_memory_working_set_bytes",
			  "A sandbox's memory usage minus its inactive file cache.", QMETRIC_GAUGE,
			  get_memory);
	write_per_sandbox(w, samples, n, "quiver_sandbox_pids",
			  "Processes and threads in a sandbox (pids.current).", QMETRIC_GAUGE,
			  get_pids);
	qmetrics_write_family(w, "quiver_sandboxes", "Sandboxes known to vmmd, by state.",
			      QMETRIC_GAUGE);
	for (int s = 0; s < SB_NSTATUS; s++)
		qmetrics_write_sample(w, "quiver_sandboxes", state_lbl,
				      (const char *[]){sb_status_name(s), NULL},
				      (double)by_state[s]);
	qmetrics_write_family(w, "quiver_sandboxes_hibernated",
			      "Sandboxes hibernated (or being hibernated): frozen, memory in swap.",
			      QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_sandboxes_hibernated", NULL, NULL, (double)hibernated);
	qmetrics_write_family(
	    w, "quiver_hibernated_swap_bytes",
	    "Bytes of hibernated sandboxes' memory in swap, as measured when each "
	    "hibernation finished.",
	    QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_hibernated_swap_bytes", NULL, NULL, (double)swapped);
	write_syscalls(w, "quiver_syscalls_trapped_total",
		       "Syscalls trapped by the guest kernels, summed over live sandboxes.",
		       trapped);
	write_syscalls(w, "quiver_syscalls_denied_total",
		       "Trapped syscalls denied by policy, summed over live sandboxes.", denied);
out:
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < samples[i].ncgroups; j++)
			free(samples[i].cgroups[j]);
	free(samples);
	free(trapped);
	free(denied);
}

int vmmd_metrics_start(const char *addr, struct qerr *err)
{
	static const char *const op_lbl[] = {"op", NULL};
	static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					0.1,   0.25,   0.5,   1,    2.5,   5};
	struct qmetric *h;
	char bound[128], url[160];
	int r;

	m.reg = qmetrics_new(err);
	if (!m.reg)
		return -err->code;
	m.requests = qmetrics_counter(m.reg, "quiver_vmmd_requests_total",
				      "Control requests served, by op.", op_lbl, err);
	m.errors = qmetrics_counter(m.reg, "quiver_vmmd_request_errors_total",
				    "Control requests answered with an error, by op.", op_lbl, err);
	m.paths =
	    qmetrics_counter(m.reg, "quiver_vmmd_start_path_total",
			     "Starts that asked poold for a warm supervisor, by the path taken "
			     "(warm: a pool hit; cold: a miss or no poold).",
			     (const char *const[]){"path", NULL}, err);
	h = qmetrics_histogram(m.reg, "quiver_sandbox_create_to_running_seconds",
			       "Time from reserve to running, per sandbox.", NULL, bounds,
			       ARRAY_SIZE(bounds), err);
	if (!m.requests || !m.errors || !h)
		goto fail;
	m.latency = qmetric_series(h, NULL, err);
	if (!m.latency)
		goto fail;
	h = qmetrics_histogram(m.reg, "quiver_hibernate_seconds",
			       "Time to page a sandbox's memory out, per hibernation.", NULL,
			       bounds, ARRAY_SIZE(bounds), err);
	if (!h || !(m.hibernate = qmetric_series(h, NULL, err)))
		goto fail;
	h = qmetrics_histogram(m.reg, "quiver_wake_seconds",
			       "Time from a wake request to the sandbox thawed and running.", NULL,
			       bounds, ARRAY_SIZE(bounds), err);
	if (!h || !(m.wake = qmetric_series(h, NULL, err)))
		goto fail;
	if (qmetrics_add_collector(m.reg, collect, NULL, err) < 0)
		goto fail;
	if (!addr)
		return 0; /* counted, not served */
	if ((r = qmetrics_http_start(m.reg, addr, &m.http, err)) < 0)
		goto fail;
	if (qmetrics_http_addr(m.http, bound, sizeof(bound), err) < 0)
		goto fail;
	snprintf(url, sizeof(url), "http://%s/metrics\n", bound);
	if (statefile_write_mode(vmmd.rootfd, "vmmd.metrics", url, strlen(url), 0644, err) < 0)
		goto fail;
	qlog_info("metrics on %s", bound);
	return 0;
fail:
	vmmd_metrics_stop();
	return -(err->code ? err->code : EINVAL);
}

void vmmd_metrics_stop(void)
{
	qmetrics_http_stop(m.http);
	m.http = NULL;
	if (m.reg)
		qmetrics_free(m.reg);
	m.reg = NULL;
	m.latency = m.hibernate = m.wake = NULL;
}
