/* What poold handed out, per sandbox: ROOT/poold/claims/ID (JSON).
 *
 * A claim is written before anything is renamed to the sandbox's id, so
 * that whatever poold gave away is always named by a claim or by a pool
 * name ("@pool-*", "@warm-*").  At start-up (claims_reclaim) claims whose
 * sandbox directory ROOT/ID is gone are released, and every pool-named
 * thing no claim mentions is destroyed: a `kill -9` at any point leaves
 * nothing behind.  The files are written atomically but not fsynced: all
 * they describe but layers is kernel state that a machine crash removes
 * anyway, and a layer without a claim is removed at the next start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/statefile.h"
#include "guest/cgroups.h"
#include "services/poold/cgroup_pool.h"
#include "services/poold/layer_pool.h"
#include "services/poold/netns_pool.h"
#include "services/poold/poold.h"

#define CLAIM_MAX 65536

void claim_free(struct claim *c)
{
	for (size_t i = 0; i < c->n_cgroup_dirs; i++)
		free(c->cgroup_dirs[i]);
	c->n_cgroup_dirs = 0;
}

static int claims_dirfd(struct qerr *err)
{
	int fd = openat(poold.statefd, "claims", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "%s/claims", poold.state);
	return fd;
}

int claim_save(const struct claim *c, struct qerr *err)
{
	json_t *dirs = json_array();
	for (size_t i = 0; i < c->n_cgroup_dirs; i++)
		json_array_append_new(dirs, json_string(c->cgroup_dirs[i]));
	json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:s}", "id", c->id, "cgroup", c->cgroup,
			      "cgroup_dirs", dirs, "netns", c->netns, "layer", c->layer);
	cleanup_free char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return qerr_set(err, ENOMEM, "claim %s: out of memory", c->id);
	cleanup_close int dfd = claims_dirfd(err);
	if (dfd < 0)
		return dfd;
	return statefile_write_atomic(dfd, c->id, text, strlen(text), 0600, err);
}

static int copy_str(json_t *o, const char *key, char *dst, size_t len)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v) || json_string_length(v) >= len)
		return -EINVAL;
	snprintf(dst, len, "%s", json_string_value(v));
	return 0;
}

int claim_load(const char *id, struct claim *c, struct qerr *err)
{
	*c = (struct claim){0};
	cleanup_close int dfd = claims_dirfd(err);
	if (dfd < 0)
		return dfd;
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r = statefile_read(dfd, id, CLAIM_MAX, &text, &len, err);
	if (r < 0)
		return r;
	json_error_t je;
	json_t *o = json_loadb(text, len, 0, &je);
	json_t *dirs = o ? json_object_get(o, "cgroup_dirs") : NULL;
	if (!o || copy_str(o, "id", c->id, sizeof(c->id)) < 0 ||
	    copy_str(o, "cgroup", c->cgroup, sizeof(c->cgroup)) < 0 ||
	    copy_str(o, "netns", c->netns, sizeof(c->netns)) < 0 ||
	    copy_str(o, "layer", c->layer, sizeof(c->layer)) < 0 || !json_is_array(dirs) ||
	    json_array_size(dirs) > POOLD_DIRS_MAX || strcmp(c->id, id) != 0) {
		json_decref(o);
		return qerr_set(err, EINVAL, "claim %s: malformed", id);
	}
	size_t i;
	json_t *d;
	json_array_foreach (dirs, i, d) {
		if (!json_is_string(d) ||
		    !(c->cgroup_dirs[c->n_cgroup_dirs] = strdup(json_string_value(d)))) {
			claim_free(c);
			json_decref(o);
			return qerr_set(err, EINVAL, "claim %s: malformed cgroup_dirs", id);
		}
		c->n_cgroup_dirs++;
	}
	json_decref(o);
	return 0;
}

/* The sandbox's cgroups go back to the pool when they are empty and the
 * pool wants them; otherwise they are removed (stragglers killed). */
/* A claim names the pool's group, not its directories (op_take saves it
 * once, before the rename): the v1 directories are named by the id, or
 * still by the pool name if poold died before the rename. */
static void guess_dirs(struct claim *c)
{
	struct cgroups *cg = NULL;
	struct qerr err = {0};
	if (cgroup_pool_dirs(poold.cg, c->cgroup, &cg, &err) < 0)
		return;
	for (size_t i = 0; i < cg->n && c->n_cgroup_dirs < POOLD_DIRS_MAX; i++) {
		char dir[PATH_MAX];
		struct stat st;
		snprintf(dir, sizeof(dir), "%s", cg->dirs[i]);
		char *slash = strrchr(dir, '/');
		if (!cg->v2[i] && slash && stat(dir, &st) < 0)
			snprintf(slash + 1, sizeof(dir) - (size_t)(slash + 1 - dir), "%s", c->id);
		if ((c->cgroup_dirs[c->n_cgroup_dirs] = strdup(dir)))
			c->n_cgroup_dirs++;
	}
	cgroups_free(cg);
}

static void release_cgroups(struct claim *c)
{
	struct qerr err = {0};
	struct pool *p = &poold.pools[POOL_CGROUP];
	if (c->n_cgroup_dirs == 0 && c->cgroup[0])
		guess_dirs(c);
	if (c->n_cgroup_dirs == 0)
		return;
	if (p->n_ready < poold.cfg.pool[POOL_CGROUP].high) {
		struct pool_item *it = calloc(1, sizeof(*it));
		if (it && cgroup_pool_give_back(poold.cg, c->cgroup_dirs, c->n_cgroup_dirs,
						it->name, sizeof(it->name), &err) == 0) {
			it->link = -1;
			pool_push(p, it);
			return;
		}
		free(it);
		qlog_debug("claim %s: cgroups not reused: %s", c->id, err.msg);
	}
	if (cgroups_remove(c->cgroup_dirs, c->n_cgroup_dirs, &err) < 0)
		qlog_warn("claim %s: %s", c->id, err.msg);
}

int claim_release(const char *id, struct qerr *err)
{
	struct claim c;
	int r = claim_load(id, &c, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	struct qerr e = {0};
	release_cgroups(&c);
	if (c.netns[0] && netns_pool_destroy(poold.ns, c.netns, &e) < 0)
		qlog_warn("claim %s: netns: %s", id, e.msg);
	if (c.layer[0] && poold.layers && layer_pool_destroy(poold.layers, c.layer, &e) < 0)
		qlog_warn("claim %s: layer: %s", id, e.msg);
	claim_free(&c);
	cleanup_close int dfd = claims_dirfd(err);
	if (dfd < 0)
		return dfd;
	if (unlinkat(dfd, id, 0) < 0 && errno != ENOENT)
		return qerr_sys(err, errno, "remove claim %s", id);
	return 0;
}

/* ---- releases, done when the takes pause ----
 *
 * A release empties and resets a sandbox's cgroups, unmounts its netns and
 * unlinks its claim: ~2 ms here, most of it the unlink (the root
 * filesystem discards freed blocks synchronously).  vmmd waits for the
 * reply on its loop, so a create that arrived meanwhile waited for it too,
 * and the next take in poold after it.  So the release is answered at
 * once and done later: after release_after_ms (config, default 0), at the
 * first tick with no take in the last RELEASE_QUIET_NS, or at any tick
 * once it has waited RELEASE_WAIT_MAX_NS more or RELEASE_BACKLOG_MAX are
 * waiting, one after another until a request comes in.  A take that
 * reuses the id, and poold's stop, do it at once.
 * Nothing is lost if poold dies first: the claim is still on disk, and
 * start-up releases it once the sandbox's directory is gone (vmmd removes
 * it after sending the release). */
#define RELEASE_QUIET_NS    (5LL * 1000000LL)
#define RELEASE_WAIT_MAX_NS (250LL * 1000000LL)
#define RELEASE_BACKLOG_MAX 32

struct pending_release {
	struct pending_release *next;
	int64_t at_ns;
	char id[SANDBOX_ID_MAX + 1];
};

static struct pending_release *pend_head, **pend_tail = &pend_head;
static size_t n_pend;

size_t claims_pending(void)
{
	return n_pend;
}

/* The link that points at id's waiting release, or at the end of the
 * queue (NULL) when it has none. */
static struct pending_release **find_pending(const char *id)
{
	struct pending_release **pp = &pend_head;
	while (*pp && strcmp((*pp)->id, id) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* Take the entry *pp points at off the queue and release its id:
 * claim_release's answer. */
static int release_at(struct pending_release **pp, struct qerr *err)
{
	struct pending_release *r = *pp;
	*pp = r->next;
	if (pend_tail == &r->next)
		pend_tail = pp;
	n_pend--;
	int rc = claim_release(r->id, err);
	free(r);
	return rc;
}

int claim_release_later(const char *id, struct qerr *err)
{
	if (*find_pending(id))
		return 0;
	struct pending_release *r = calloc(1, sizeof(*r));
	if (!r) /* no queue: release now */
		return claim_release(id, err);
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->at_ns = poold_now_ns();
	*pend_tail = r;
	pend_tail = &r->next;
	n_pend++;
	return 0;
}

int claim_release_if_pending(const char *id, struct qerr *err)
{
	struct pending_release **pp = find_pending(id);
	return *pp ? release_at(pp, err) : 0;
}

/* Is the oldest waiting release due now? */
static bool due(int64_t now)
{
	int64_t after = (int64_t)poold.cfg.release_after_ms * 1000000LL;
	int64_t age = now - pend_head->at_ns;
	if (n_pend >= RELEASE_BACKLOG_MAX)
		return true;
	if (age < after)
		return false;
	return age >= after + RELEASE_WAIT_MAX_NS || !poold.last_take_ns ||
	       now - poold.last_take_ns >= RELEASE_QUIET_NS;
}

/* A request is waiting on the control socket. */
static bool request_waiting(void)
{
	return poold.control && qsp_request_waiting(poold.control);
}

void claims_release_pending(bool all)
{
	int64_t now = poold_now_ns();
	while (pend_head && (all || due(now))) {
		struct qerr err = {0};
		char id[SANDBOX_ID_MAX + 1];
		snprintf(id, sizeof(id), "%s", pend_head->id);
		if (release_at(&pend_head, &err) < 0)
			qlog_warn("release %s: %s", id, err.msg);
		/* a take that came meanwhile waits behind one release at most */
		if (!all && request_waiting())
			break;
	}
}

/* ---- start-up ---- */

static struct claim *live;
static size_t n_live;

bool claims_name_in_use(enum pool_kind k, const char *name)
{
	for (size_t i = 0; i < n_live; i++) {
		const struct claim *c = &live[i];
		if ((k == POOL_CGROUP && strcmp(c->cgroup, name) == 0) ||
		    (k == POOL_NETNS && strcmp(c->netns, name) == 0) ||
		    (k == POOL_LAYER && strcmp(c->layer, name) == 0))
			return true;
	}
	return false;
}

static bool sandbox_exists(const char *id)
{
	struct stat st;
	return fstatat(poold.rootfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static int load_live_claims(struct qerr *err)
{
	cleanup_close int dfd = claims_dirfd(err);
	if (dfd < 0)
		return dfd;
	DIR *d = fdopendir(dup(dfd));
	if (!d)
		return qerr_sys(err, errno, "read %s/claims", poold.state);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || sandbox_id_check(de->d_name, NULL) < 0)
			continue;
		struct qerr e = {0};
		if (!sandbox_exists(de->d_name)) {
			qlog_info("reclaim: sandbox %s is gone; releasing its claim", de->d_name);
			if (claim_release(de->d_name, &e) < 0)
				qlog_warn("reclaim %s: %s", de->d_name, e.msg);
			continue;
		}
		struct claim *grown = realloc(live, (n_live + 1) * sizeof(*live));
		if (!grown)
			break;
		live = grown;
		if (claim_load(de->d_name, &live[n_live], &e) == 0)
			n_live++;
		else
			qlog_warn("reclaim: %s", e.msg);
	}
	closedir(d);
	return 0;
}

typedef int (*list_fn)(void *pool, char ***names, size_t *n, struct qerr *err);

static size_t reclaim_kind(enum pool_kind k, char **names, size_t n)
{
	size_t freed = 0;
	for (size_t i = 0; i < n; i++) {
		if (!claims_name_in_use(k, names[i])) {
			struct pool_item *it = calloc(1, sizeof(*it));
			if (it) {
				it->link = -1;
				snprintf(it->name, sizeof(it->name), "%s", names[i]);
				pool_item_destroy(k, it);
				freed++;
			}
		}
		free(names[i]);
	}
	free(names);
	return freed;
}

int claims_reclaim(struct qerr *err)
{
	int r = load_live_claims(err);
	if (r < 0)
		return r;
	char **names = NULL;
	size_t n = 0, cg = 0, ns = 0, ly = 0;
	if (cgroup_pool_list(poold.cg, &names, &n, err) < 0)
		return qerr_prefix(err, "reclaim cgroups");
	cg = reclaim_kind(POOL_CGROUP, names, n);
	if (netns_pool_list(poold.ns, &names, &n, err) < 0)
		return qerr_prefix(err, "reclaim netns");
	ns = reclaim_kind(POOL_NETNS, names, n);
	if (poold.layers) {
		if (layer_pool_list(poold.layers, &names, &n, err) < 0)
			return qerr_prefix(err, "reclaim layers");
		ly = reclaim_kind(POOL_LAYER, names, n);
	}
	/* warm supervisors died with their cgroups; their sockets and premade
	 * state files remain */
	cleanup_close int wfd = openat(poold.statefd, "warm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = wfd >= 0 ? fdopendir(dup(wfd)) : NULL;
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] == '@')
				unlinkat(wfd, de->d_name, 0);
		closedir(d);
	}
	if (cg || ns || ly)
		qlog_info("reclaimed %zu cgroups, %zu netns, %zu layers left by an earlier poold",
			  cg, ns, ly);
	for (size_t i = 0; i < n_live; i++)
		claim_free(&live[i]);
	free(live);
	live = NULL;
	n_live = 0;
	return 0;
}
