/* quiver-poold: pools of ready resources, so they leave the start path.
 *
 * Four pools, each with a low and a high watermark: cgroups (cgroup_pool.c),
 * network namespaces (netns_pool.c), writable rootfs layers (layer_pool.c)
 * and warm guest kernels (warm_pool.c; each holds a pooled cgroup and,
 * when one is ready, a pooled netns).  When a pool falls below its low
 * watermark, the refill timer makes items until it reaches the high one, at
 * most refill_per_second items a second over all pools, so refilling never
 * takes the machine from running sandboxes.
 *
 * One libuv loop serves ROOT/poold.sock (SP REP, msgpack: docs/api.md,
 * "poold").  What is handed out is recorded in ROOT/poold/claims/ID until
 * vmmd releases it; at start-up everything else found under poold's names
 * (cgroups, netns mounts, layers, warm supervisors) is reclaimed, so a
 * `kill -9` at any moment leaks nothing (claims.c). */
#ifndef QUIVER_POOLD_H
#define QUIVER_POOLD_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>
#include <uv.h>

#include "libcommon/err.h"
#include "libcommon/msg.h"
#include "libcommon/sandbox_id.h"
#include "libcommon/sp.h"
#include "services/poold/swap_area.h"

#define POOLD_VERSION  "0.1.0"
#define POOL_NAME_MAX  64
#define POOL_HIGH_MAX  4096
#define POOLD_DIRS_MAX 16

enum pool_kind { POOL_CGROUP, POOL_NETNS, POOL_LAYER, POOL_WARM, POOL_NKINDS };

/* One ready (or, for warm, starting) item. */
struct pool_item {
	struct pool_item *next;
	char name[POOL_NAME_MAX];
	char path[PATH_MAX]; /* netns: the file to setns by; warm: its socket */
	/* warm only */
	char cgroup[POOL_NAME_MAX]; /* the pooled cgroup it lives in */
	char netns[POOL_NAME_MAX];  /* its pooled netns, or "" (its own) */
	pid_t pid;		    /* the warm S */
	uint64_t pid_start;
	int link;	 /* our end of its sync socket */
	uv_poll_t *poll; /* on link; heap, freed in its close callback */
	bool ready;	 /* S reported itself listening */
};

struct pool_config {
	unsigned low, high;
};

struct poold_config {
	struct pool_config pool[POOL_NKINDS];
	unsigned refill_per_second;
	uint64_t release_after_ms; /* a release waits at least this long */
	char cgroup_parent[PATH_MAX];
	char layer_backend[16]; /* auto, xfs, tmpfs */
	uint64_t layer_image_mib;
	char layer_template[PATH_MAX]; /* "" = none */
	uint64_t swap_mib;	       /* 0: no swap area */
};

struct pool {
	enum pool_kind kind;
	struct pool_item *items; /* ready ones first made last (LIFO is fine) */
	size_t n_ready, n_starting;
	bool refilling; /* fell below low: fill up to high */
	uint64_t hits, misses, made, failed;
	/* made per second, over the last window */
	uint64_t window_made;
	int64_t window_start_ns;
	double rate;
};

struct cgroup_pool;
struct netns_pool;
struct layer_pool;

struct poold {
	char root[PATH_MAX];  /* vmmd's root: sandboxes' state dirs live here */
	char state[PATH_MAX]; /* ROOT/poold */
	int rootfd, statefd;
	char guest_bin[PATH_MAX];
	struct poold_config cfg;
	struct pool pools[POOL_NKINDS];
	struct cgroup_pool *cg;
	struct netns_pool *ns;
	struct layer_pool *layers; /* NULL when the layer pool is off or failed */
	char layer_error[QERR_MSG_MAX];
	struct swap_area swap;
	char swap_error[QERR_MSG_MAX];
	uv_loop_t *loop;
	uv_timer_t refill_timer;
	uv_timer_t watchdog_timer; /* WATCHDOG=1 to systemd (notify.h) */
	uv_signal_t sigterm, sigint, sigchld;
	struct qsp *control; /* ROOT/poold.sock (libcommon/sp.c); NULL before and after */
	double tokens;	     /* refill budget */
	int64_t last_tick_ns;
	int64_t last_take_ns; /* refills wait for a pause in the takes */
	bool stopping;
};

extern struct poold poold;

const char *pool_kind_name(enum pool_kind k);
int pool_kind_parse(const char *s, enum pool_kind *out);
int64_t poold_now_ns(void);

/* config.c: JSON; a missing default file means the defaults. */
void poold_config_defaults(struct poold_config *c);
int poold_config_load(const char *path, bool must_exist, struct poold_config *c, struct qerr *err);

/* pools.c: the generic part (ready lists, counters, refill) */
void pool_push(struct pool *p, struct pool_item *it);
struct pool_item *pool_pop(struct pool *p);
void pool_count_made(struct pool *p);
/* Make items while budget lasts; called from the refill timer. */
void pools_refill(void);
/* Destroy every ready item (stop). */
void pools_drain(void);
/* Destroy one item of a kind (not in any list). */
void pool_item_destroy(enum pool_kind k, struct pool_item *it);
int pool_make_one(enum pool_kind k, struct qerr *err);

/* warm_pool.c */
int warm_spawn(struct qerr *err);
void warm_destroy(struct pool_item *it);
void warm_remove_premade(const char *sock);
/* Tell a ready warm S it is taken (and stop watching it); bundle (or
 * NULL): the bundle it will be assigned, for S to read its config now. */
int warm_mark_taken(struct pool_item *it, const char *bundle, struct qerr *err);
void warm_reap_children(void);

/* claims.c: ROOT/poold/claims/ID */
struct claim {
	char id[SANDBOX_ID_MAX + 1];
	char cgroup[POOL_NAME_MAX]; /* pool name it had ("" none) */
	char *cgroup_dirs[POOLD_DIRS_MAX];
	size_t n_cgroup_dirs;
	char netns[POOL_NAME_MAX];
	char layer[POOL_NAME_MAX + SANDBOX_ID_MAX]; /* the layer's name once taken (the id) */
};
void claim_free(struct claim *c);
int claim_save(const struct claim *c, struct qerr *err);
int claim_load(const char *id, struct claim *c, struct qerr *err);
/* Release what a claim holds and remove it.  give_back: cgroups may go
 * back to the pool (else they are removed). */
int claim_release(const char *id, struct qerr *err);
/* The same, later (claims_release_pending): 0, or claim_release's answer
 * when it could not be queued. */
int claim_release_later(const char *id, struct qerr *err);
/* A queued release of id, done now (a take reuses the id): 0 when none. */
int claim_release_if_pending(const char *id, struct qerr *err);
/* Queued releases, done if the takes have paused (or all of them). */
void claims_release_pending(bool all);
size_t claims_pending(void);
/* Start-up: release claims whose sandbox is gone, destroy every pooled
 * thing no claim names. */
int claims_reclaim(struct qerr *err);
bool claims_name_in_use(enum pool_kind k, const char *name);

/* dispatch.c */
void dispatch(const struct qmsg_in *req, struct qmsg_out *reply);

/* poold_metrics.c */
int poold_metrics_start(const char *addr, struct qerr *err);
void poold_metrics_update(void);
void poold_metrics_stop(void);

#endif
