/* The part every pool shares: ready lists, counters, the refill. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "guest/cgroups.h"
#include "services/poold/cgroup_pool.h"
#include "services/poold/layer_pool.h"
#include "services/poold/netns_pool.h"
#include "services/poold/poold.h"

#define RATE_WINDOW_NS	(5LL * 1000000000LL)
#define REFILL_SLICE_NS (2LL * 1000000LL)
/* While sandboxes are being created, making more competes with them for
 * the CPUs and the kernel's locks (a warm supervisor's fork, mounts,
 * cgroups): a create with a refill running behind it took 5-7 ms longer
 * on two cores.  So a pool that still has something waits for a pause
 * this long in the takes before it refills. */
#define REFILL_QUIET_NS (50LL * 1000000LL)

/* The same holds after the takes: the supervisors just taken are still
 * setting their sandboxes up.  So a pool that still has something also
 * waits while other tasks want every CPU (the runnable tasks of
 * /proc/loadavg, a count at this instant; poold and the `own` supervisors
 * it is starting are not counted). */
static bool cpus_busy(long own)
{
	static long ncpu;
	char buf[128];
	long running = 0;

	if (!ncpu)
		ncpu = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
	cleanup_close int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return sscanf(buf, "%*s %*s %*s %ld/", &running) == 1 && running - 1 - own >= ncpu;
}

/* While sandboxes are being created or want every CPU, only a pool that
 * is empty refills.  Asked once a tick (*cache), and only by a pool that
 * is not empty and wants more. */
static bool refill_deferred(int *cache, int64_t now)
{
	if (*cache < 0)
		*cache = (poold.last_take_ns && now - poold.last_take_ns < REFILL_QUIET_NS) ||
			 cpus_busy((long)poold.pools[POOL_WARM].n_starting);
	return *cache;
}

static const char *const kind_names[POOL_NKINDS] = {"cgroup", "netns", "layer", "warm"};

const char *pool_kind_name(enum pool_kind k)
{
	return kind_names[k];
}

int pool_kind_parse(const char *s, enum pool_kind *out)
{
	for (int k = 0; k < POOL_NKINDS; k++) {
		if (strcmp(s, kind_names[k]) == 0) {
			*out = (enum pool_kind)k;
			return 0;
		}
	}
	return -EINVAL;
}

int64_t poold_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void pool_push(struct pool *p, struct pool_item *it)
{
	it->ready = true;
	it->next = p->items;
	p->items = it;
	p->n_ready++;
}

/* The newest ready item (warm supervisors still starting are skipped). */
struct pool_item *pool_pop(struct pool *p)
{
	for (struct pool_item **pp = &p->items; *pp; pp = &(*pp)->next) {
		struct pool_item *it = *pp;
		if (!it->ready)
			continue;
		*pp = it->next;
		it->next = NULL;
		p->n_ready--;
		return it;
	}
	return NULL;
}

void pool_count_made(struct pool *p)
{
	int64_t now = poold_now_ns();
	p->made++;
	if (!p->window_start_ns)
		p->window_start_ns = now;
	p->window_made++;
	if (now - p->window_start_ns >= RATE_WINDOW_NS) {
		p->rate = (double)p->window_made * 1e9 / (double)(now - p->window_start_ns);
		p->window_made = 0;
		p->window_start_ns = now;
	}
}

void pool_item_destroy(enum pool_kind k, struct pool_item *it)
{
	struct qerr err = {0};
	int r = 0;
	switch (k) {
	case POOL_CGROUP: {
		struct cgroups *cg = NULL;
		r = cgroup_pool_dirs(poold.cg, it->name, &cg, &err);
		if (r == 0)
			r = cgroups_remove(cg->dirs, cg->n, &err);
		if (cg)
			cgroups_free(cg);
		break;
	}
	case POOL_NETNS:
		r = netns_pool_destroy(poold.ns, it->name, &err);
		break;
	case POOL_LAYER:
		r = poold.layers ? layer_pool_destroy(poold.layers, it->name, &err) : 0;
		break;
	case POOL_WARM:
		warm_destroy(it);
		return;
	case POOL_NKINDS:
		break;
	}
	if (r < 0)
		qlog_warn("%s %s: %s", pool_kind_name(k), it->name, err.msg);
	free(it);
}

int pool_make_one(enum pool_kind k, struct qerr *err)
{
	if (k == POOL_WARM)
		return warm_spawn(err);
	struct pool_item *it = calloc(1, sizeof(*it));
	if (!it)
		return qerr_set(err, ENOMEM, "out of memory");
	it->link = -1;
	int r = -EINVAL;
	switch (k) {
	case POOL_CGROUP:
		r = cgroup_pool_make(poold.cg, it->name, sizeof(it->name), err);
		break;
	case POOL_NETNS:
		r = netns_pool_make(poold.ns, it->name, sizeof(it->name), it->path,
				    sizeof(it->path), err);
		break;
	case POOL_LAYER:
		r = poold.layers ? layer_pool_make(poold.layers, it->name, sizeof(it->name), err)
				 : qerr_set(err, ENODEV, "no layer store: %s", poold.layer_error);
		break;
	default:
		break;
	}
	if (r < 0) {
		free(it);
		return r;
	}
	pool_push(&poold.pools[k], it);
	pool_count_made(&poold.pools[k]);
	return 0;
}

/* Cheapest first: a warm supervisor takes a ready cgroup and netns. */
static const enum pool_kind refill_order[] = {POOL_CGROUP, POOL_NETNS, POOL_LAYER, POOL_WARM};

void pools_refill(void)
{
	int64_t now = poold_now_ns();
	double rate = poold.cfg.refill_per_second;
	if (poold.last_tick_ns)
		poold.tokens += rate * (double)(now - poold.last_tick_ns) / 1e9;
	poold.last_tick_ns = now;
	/* no bursts above a tenth of a second's worth */
	double cap = rate / 10 < 1 ? 1 : rate / 10;
	if (poold.tokens > cap)
		poold.tokens = cap;
	int defer = -1; /* refill_deferred's answer, once asked */
	for (size_t i = 0; i < sizeof(refill_order) / sizeof(refill_order[0]); i++) {
		enum pool_kind k = refill_order[i];
		struct pool *p = &poold.pools[k];
		const struct pool_config *c = &poold.cfg.pool[k];
		size_t have = p->n_ready + p->n_starting;
		if (c->high == 0 || (k == POOL_LAYER && !poold.layers))
			continue;
		if (have < c->low || have == 0)
			p->refilling = true;
		/* a slice at a time: takes wait behind whatever is being made */
		while (p->refilling && have < c->high &&
		       (have == 0 || !refill_deferred(&defer, now)) && poold.tokens >= 1 &&
		       poold_now_ns() - now < REFILL_SLICE_NS) {
			struct qerr err = {0};
			poold.tokens -= 1;
			if (pool_make_one(k, &err) < 0) {
				p->failed++;
				qlog_warn("refill %s: %s", pool_kind_name(k), err.msg);
				break;
			}
			have++;
		}
		if (have >= c->high)
			p->refilling = false;
	}
}

void pools_drain(void)
{
	for (int k = POOL_NKINDS - 1; k >= 0; k--) {
		struct pool *p = &poold.pools[k];
		while (p->items) {
			struct pool_item *it = p->items;
			p->items = it->next;
			pool_item_destroy((enum pool_kind)k, it);
		}
		p->n_ready = p->n_starting = 0;
	}
}
