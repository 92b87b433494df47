/* poold's requests, one function each (docs/api.md, "poold").
 *
 *	ping                         pong {pid, version}
 *	take {id, kinds: [..],       taken {id, warm, cgroups, netns, layer, misses}
 *	      bundle?}
 *	release {id}                 ok
 *	status                       status {pools: [...], layer_backend, layer_error,
 *	                                     refill_per_second, swap: {active, path,
 *	                                     size_bytes, used_bytes, error}}
 *	shutdown                     ok
 *
 * take never fails for an empty pool: what is not ready is listed in
 * misses, and the caller makes it itself (the cold path). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "guest/cgroups.h"
#include "services/poold/cgroup_pool.h"
#include "services/poold/layer_pool.h"
#include "services/poold/netns_pool.h"
#include "services/poold/poold.h"

static int op_ping(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	(void)req;
	(void)err;
	qmsg_begin(reply, "pong", 2);
	qmsg_put_int(reply, "pid", getpid());
	qmsg_put_str(reply, "version", POOLD_VERSION);
	return 0;
}

static int op_shutdown(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	(void)req;
	(void)err;
	poold.stopping = true;
	qmsg_begin(reply, "ok", 0);
	return 0;
}

/* What a take hands out, gathered before the reply is packed. */
struct taken {
	struct claim claim;
	char bundle[PATH_MAX]; /* "" when the taker did not say */
	struct pool_item *warm;
	char netns_path[PATH_MAX];
	char upper[PATH_MAX], work[PATH_MAX];
	bool miss[POOL_NKINDS];
};

static int take_cgroup(struct taken *t, const char *pool_name, struct qerr *err)
{
	struct cgroups *cg = NULL;
	int r = cgroup_pool_take(poold.cg, pool_name, t->claim.id, &cg, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < cg->n && i < POOLD_DIRS_MAX; i++)
		t->claim.cgroup_dirs[t->claim.n_cgroup_dirs++] = strdup(cg->dirs[i]);
	cgroups_free(cg);
	return 0;
}

/* The claim goes to disk before anything takes the sandbox's name. */
static int take_items(struct taken *t, bool want[POOL_NKINDS], struct qerr *err)
{
	struct pool_item *cgi = NULL, *nsi = NULL, *lyi = NULL;
	int r;
	if (want[POOL_WARM] && !(t->warm = pool_pop(&poold.pools[POOL_WARM]))) {
		t->miss[POOL_WARM] = true;
		/* A writable layer serves a warm start only (a cold one has
		 * no use for it): asked with a warm supervisor and there is
		 * none, it is not taken, nor counted. */
		want[POOL_LAYER] = false;
	}
	if (t->warm) {
		snprintf(t->claim.cgroup, sizeof(t->claim.cgroup), "%s", t->warm->cgroup);
		snprintf(t->claim.netns, sizeof(t->claim.netns), "%s", t->warm->netns);
	} else {
		if (want[POOL_CGROUP] && !(cgi = pool_pop(&poold.pools[POOL_CGROUP])))
			t->miss[POOL_CGROUP] = true;
		if (want[POOL_NETNS] && !(nsi = pool_pop(&poold.pools[POOL_NETNS])))
			t->miss[POOL_NETNS] = true;
		if (cgi)
			snprintf(t->claim.cgroup, sizeof(t->claim.cgroup), "%s", cgi->name);
		if (nsi) {
			snprintf(t->claim.netns, sizeof(t->claim.netns), "%s", nsi->name);
			snprintf(t->netns_path, sizeof(t->netns_path), "%s", nsi->path);
		}
	}
	if (want[POOL_LAYER] && !(lyi = pool_pop(&poold.pools[POOL_LAYER])))
		t->miss[POOL_LAYER] = true;
	if (lyi)
		snprintf(t->claim.layer, sizeof(t->claim.layer), "%s", t->claim.id);
	/* A take that found nothing holds nothing: no claim to release. */
	if (!t->warm && !cgi && !nsi && !lyi)
		return 0;
	if ((r = claim_save(&t->claim, err)) < 0)
		goto undo;
	if (t->warm) {
		/* the supervisor stops waiting for our end to close */
		if ((r = warm_mark_taken(t->warm, t->bundle[0] ? t->bundle : NULL, err)) < 0)
			goto undo;
	}
	/* The claim on disk names the pool's group, not its directories:
	 * they follow from that name and the id, and release finds which
	 * of the two each hierarchy holds (guess_dirs), as after a poold
	 * that died mid-rename.  Saving it again with them cost a file
	 * create and a rename on every take (~0.2 ms here). */
	if (t->claim.cgroup[0] && (r = take_cgroup(t, t->claim.cgroup, err)) < 0)
		goto undo;
	if (lyi && (r = layer_pool_take(poold.layers, lyi->name, t->claim.id, t->upper, t->work,
					sizeof(t->upper), err)) < 0)
		goto undo;
	free(cgi);
	free(nsi);
	free(lyi);
	return 0;
undo:
	/* Whatever was popped is destroyed, not returned: it may be half
	 * renamed.  The claim (if written) is released with it. */
	if (cgi)
		pool_item_destroy(POOL_CGROUP, cgi);
	if (nsi)
		pool_item_destroy(POOL_NETNS, nsi);
	if (lyi)
		pool_item_destroy(POOL_LAYER, lyi);
	if (t->warm)
		pool_item_destroy(POOL_WARM, t->warm);
	t->warm = NULL;
	struct qerr e = {0};
	claim_release(t->claim.id, &e);
	return r;
}

static void pack_taken(struct qmsg_out *reply, const struct taken *t)
{
	msgpack_packer *pk = &reply->pk;
	size_t nmiss = 0;
	for (int k = 0; k < POOL_NKINDS; k++)
		nmiss += t->miss[k];
	qmsg_begin(reply, "taken", 6);
	qmsg_put_str(reply, "id", t->claim.id);
	qmsg_put_key(reply, "warm");
	if (t->warm) {
		msgpack_pack_map(pk, 3);
		qmsg_pack_cstr(pk, "sock");
		qmsg_pack_cstr(pk, t->warm->path);
		qmsg_pack_cstr(pk, "pid");
		msgpack_pack_int64(pk, t->warm->pid);
		qmsg_pack_cstr(pk, "pid_start");
		msgpack_pack_uint64(pk, t->warm->pid_start);
	} else {
		msgpack_pack_nil(pk);
	}
	qmsg_put_key(reply, "cgroups");
	if (t->claim.n_cgroup_dirs) {
		msgpack_pack_array(pk, t->claim.n_cgroup_dirs);
		for (size_t i = 0; i < t->claim.n_cgroup_dirs; i++)
			qmsg_pack_cstr(pk, t->claim.cgroup_dirs[i]);
	} else {
		msgpack_pack_nil(pk);
	}
	qmsg_put_str(reply, "netns", t->netns_path[0] ? t->netns_path : NULL);
	qmsg_put_key(reply, "layer");
	if (t->upper[0]) {
		msgpack_pack_map(pk, 2);
		qmsg_pack_cstr(pk, "upper");
		qmsg_pack_cstr(pk, t->upper);
		qmsg_pack_cstr(pk, "work");
		qmsg_pack_cstr(pk, t->work);
	} else {
		msgpack_pack_nil(pk);
	}
	qmsg_put_key(reply, "misses");
	msgpack_pack_array(pk, nmiss);
	for (int k = 0; k < POOL_NKINDS; k++)
		if (t->miss[k])
			qmsg_pack_cstr(pk, pool_kind_name((enum pool_kind)k));
}

static int op_take(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct taken t = {0};
	bool want[POOL_NKINDS] = {0};
	const msgpack_object *kinds = NULL;
	int r = qmsg_get_str(req->root, "id", t.claim.id, sizeof(t.claim.id), err);
	if (r < 0 || (r = sandbox_id_check(t.claim.id, err)) < 0 ||
	    (r = qmsg_get_array(req->root, "kinds", POOL_NKINDS, &kinds, err)) < 0)
		return r;
	/* optional: the bundle a warm supervisor will be assigned */
	r = qmsg_get_str(req->root, "bundle", t.bundle, sizeof(t.bundle), err);
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0 && t.bundle[0] != '/')
		return qerr_set(err, EINVAL, "field bundle: must be an absolute path");
	for (uint32_t i = 0; i < kinds->via.array.size; i++) {
		char name[16];
		enum pool_kind k;
		if ((r = qmsg_obj_str(&kinds->via.array.ptr[i], name, sizeof(name), err)) < 0)
			return qerr_prefix(err, "field kinds");
		if (pool_kind_parse(name, &k) < 0)
			return qerr_set(err, EINVAL, "field kinds: unknown pool %s", name);
		want[k] = true;
	}
	poold.last_take_ns = poold_now_ns();
	/* the id's last sandbox is still being released: finish that first */
	if ((r = claim_release_if_pending(t.claim.id, err)) < 0)
		return r;
	struct claim old;
	if (claim_load(t.claim.id, &old, NULL) == 0) {
		claim_free(&old);
		return qerr_set(err, EEXIST, "sandbox %s already holds pooled resources",
				t.claim.id);
	}
	if ((r = take_items(&t, want, err)) < 0) {
		claim_free(&t.claim);
		return r;
	}
	for (int k = 0; k < POOL_NKINDS; k++) {
		if (!want[k] || (k != POOL_WARM && t.warm && (k == POOL_CGROUP || k == POOL_NETNS)))
			continue;
		if (t.miss[k])
			poold.pools[k].misses++;
		else
			poold.pools[k].hits++;
	}
	pack_taken(reply, &t);
	if (t.warm)
		free(t.warm);
	claim_free(&t.claim);
	return 0;
}

static int op_release(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	char id[SANDBOX_ID_MAX + 1];
	int r = qmsg_get_str(req->root, "id", id, sizeof(id), err);
	if (r < 0 || (r = sandbox_id_check(id, err)) < 0 || (r = claim_release_later(id, err)) < 0)
		return r;
	qmsg_begin(reply, "ok", 0);
	return 0;
}

static int op_status(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	(void)req;
	(void)err;
	msgpack_packer *pk = &reply->pk;
	qmsg_begin(reply, "status", 6);
	qmsg_put_key(reply, "pools");
	msgpack_pack_array(pk, POOL_NKINDS);
	for (int k = 0; k < POOL_NKINDS; k++) {
		const struct pool *p = &poold.pools[k];
		const struct pool_config *c = &poold.cfg.pool[k];
		msgpack_pack_map(pk, 9);
		qmsg_pack_cstr(pk, "kind");
		qmsg_pack_cstr(pk, pool_kind_name((enum pool_kind)k));
		qmsg_pack_cstr(pk, "ready");
		msgpack_pack_uint64(pk, p->n_ready);
		qmsg_pack_cstr(pk, "starting");
		msgpack_pack_uint64(pk, p->n_starting);
		qmsg_pack_cstr(pk, "low");
		msgpack_pack_uint64(pk, c->low);
		qmsg_pack_cstr(pk, "high");
		msgpack_pack_uint64(pk, c->high);
		qmsg_pack_cstr(pk, "hits");
		msgpack_pack_uint64(pk, p->hits);
		qmsg_pack_cstr(pk, "misses");
		msgpack_pack_uint64(pk, p->misses);
		qmsg_pack_cstr(pk, "made");
		msgpack_pack_uint64(pk, p->made);
		qmsg_pack_cstr(pk, "refill_rate");
		msgpack_pack_double(pk, p->rate);
	}
	qmsg_put_str(reply, "layer_backend",
		     poold.layers ? layer_pool_backend(poold.layers) : "off");
	qmsg_put_str(reply, "layer_error", poold.layer_error[0] ? poold.layer_error : NULL);
	qmsg_put_uint(reply, "refill_per_second", poold.cfg.refill_per_second);
	qmsg_put_uint(reply, "releasing", claims_pending()); /* answered, not yet done */
	uint64_t size_kib = 0, used_kib = 0;
	bool active =
	    poold.swap.active && swap_area_usage(poold.swap.path, &size_kib, &used_kib) == 0;
	qmsg_put_key(reply, "swap");
	msgpack_pack_map(pk, 5);
	qmsg_pack_cstr(pk, "active");
	if (active)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	qmsg_pack_cstr(pk, "path");
	if (poold.swap.path[0])
		qmsg_pack_cstr(pk, poold.swap.path);
	else
		msgpack_pack_nil(pk);
	qmsg_pack_cstr(pk, "size_bytes");
	msgpack_pack_uint64(pk, size_kib << 10);
	qmsg_pack_cstr(pk, "used_bytes");
	msgpack_pack_uint64(pk, used_kib << 10);
	qmsg_pack_cstr(pk, "error");
	if (poold.swap_error[0])
		qmsg_pack_cstr(pk, poold.swap_error);
	else
		msgpack_pack_nil(pk);
	return 0;
}

struct op {
	const char *name;
	int (*fn)(const struct qmsg_in *, struct qmsg_out *, struct qerr *);
};

static const struct op ops[] = {
    {"ping", op_ping},	   {"take", op_take},	      {"release", op_release},
    {"status", op_status}, {"shutdown", op_shutdown},
};

void dispatch(const struct qmsg_in *req, struct qmsg_out *reply)
{
	struct qerr err = {0};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(req->op, ops[i].name) != 0)
			continue;
		if (ops[i].fn(req, reply, &err) < 0) {
			qmsg_out_free(reply);
			qmsg_out_init(reply);
			qmsg_error_reply(reply, &err);
		}
		return;
	}
	qerr_set(&err, EINVAL, "unknown op %s", req->op);
	qmsg_error_reply(reply, &err);
}
