/* poold's configuration: one JSON file (default /etc/quiver/poold.json).
 *
 *	{
 *	  "refill_per_second": 100,
 *	  "release_after_ms": 0,
 *	  "cgroup_parent": "quiver",
 *	  "pools": {
 *	    "cgroup": {"low": 8, "high": 32},
 *	    "netns":  {"low": 4, "high": 16},
 *	    "layer":  {"low": 2, "high": 8, "backend": "auto", "image_mib": 1024,
 *	               "template": "/path/to/dir"},
 *	    "warm":   {"low": 4, "high": 16}
 *	  },
 *	  "swap": {"mib": 1024}
 *	}
 *
 * Every key is optional; unknown keys, wrong types and out-of-range values
 * are errors that name the key.  A pool with high 0 is off.
 * "release_after_ms": how long a deleted sandbox's resources are kept
 * before the first pause in the takes may release them (claims.c).  "swap" makes
 * the swap area hibernated sandboxes go to (swap_area.c); none by default. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "services/poold/poold.h"

void poold_config_defaults(struct poold_config *c)
{
	*c = (struct poold_config){
	    .pool = {[POOL_CGROUP] = {8, 32},
		     [POOL_NETNS] = {4, 16},
		     [POOL_LAYER] = {2, 8},
		     [POOL_WARM] = {4, 16}},
	    .refill_per_second = 100,
	    .layer_image_mib = 1024,
	};
	snprintf(c->cgroup_parent, sizeof(c->cgroup_parent), "quiver");
	snprintf(c->layer_backend, sizeof(c->layer_backend), "auto");
}

static int check_keys(json_t *obj, const char *where, const char *const *allowed, struct qerr *err)
{
	const char *key;
	json_t *v;
	json_object_foreach (obj, key, v) {
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (!ok)
			return qerr_set(err, EINVAL, "%s%s: unknown key", where, key);
	}
	return 0;
}

static int get_uint(json_t *obj, const char *where, const char *key, uint64_t max, uint64_t *out,
		    struct qerr *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return qerr_set(err, EINVAL, "%s%s: must be an integer from 0 to %llu", where, key,
				(unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_str(json_t *obj, const char *where, const char *key, char *dst, size_t len,
		   struct qerr *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= len)
		return qerr_set(err, EINVAL, "%s%s: must be a non-empty string shorter than %zu",
				where, key, len);
	snprintf(dst, len, "%s", json_string_value(v));
	return 0;
}

static int load_pool(json_t *pools, enum pool_kind k, struct poold_config *c, struct qerr *err)
{
	static const char *const plain[] = {"low", "high", NULL};
	static const char *const layer[] = {"low",	 "high",     "backend",
					    "image_mib", "template", NULL};
	char where[64];
	json_t *o = json_object_get(pools, pool_kind_name(k));
	if (!o)
		return 0;
	snprintf(where, sizeof(where), "pools.%s.", pool_kind_name(k));
	if (!json_is_object(o))
		return qerr_set(err, EINVAL, "pools.%s: must be an object", pool_kind_name(k));
	int r = check_keys(o, where, k == POOL_LAYER ? layer : plain, err);
	uint64_t low = c->pool[k].low, high = c->pool[k].high;
	if (r < 0 || (r = get_uint(o, where, "low", POOL_HIGH_MAX, &low, err)) < 0 ||
	    (r = get_uint(o, where, "high", POOL_HIGH_MAX, &high, err)) < 0)
		return r;
	if (low > high)
		return qerr_set(err, EINVAL, "%slow: %llu is above high (%llu)", where,
				(unsigned long long)low, (unsigned long long)high);
	c->pool[k] = (struct pool_config){(unsigned)low, (unsigned)high};
	if (k != POOL_LAYER)
		return 0;
	if ((r = get_str(o, where, "backend", c->layer_backend, sizeof(c->layer_backend), err)) <
		0 ||
	    (r = get_uint(o, where, "image_mib", 1u << 20, &c->layer_image_mib, err)) < 0 ||
	    (r = get_str(o, where, "template", c->layer_template, sizeof(c->layer_template), err)) <
		0)
		return r;
	if (strcmp(c->layer_backend, "auto") != 0 && strcmp(c->layer_backend, "xfs") != 0 &&
	    strcmp(c->layer_backend, "tmpfs") != 0)
		return qerr_set(err, EINVAL, "%sbackend: must be auto, xfs or tmpfs", where);
	if (c->layer_image_mib < 300)
		return qerr_set(err, EINVAL, "%simage_mib: XFS needs at least 300", where);
	if (c->layer_template[0] && c->layer_template[0] != '/')
		return qerr_set(err, EINVAL, "%stemplate: must be an absolute path", where);
	return 0;
}

static int config_apply(json_t *root, struct poold_config *c, struct qerr *err)
{
	static const char *const top[] = {
	    "refill_per_second", "release_after_ms", "cgroup_parent", "pools", "swap", NULL};
	static const char *const swap_keys[] = {"mib", NULL};
	static const char *const kinds[] = {"cgroup", "netns", "layer", "warm", NULL};
	if (!json_is_object(root))
		return qerr_set(err, EINVAL, "must be a JSON object");
	int r = check_keys(root, "", top, err);
	uint64_t rate = c->refill_per_second;
	if (r < 0 || (r = get_uint(root, "", "refill_per_second", 100000, &rate, err)) < 0 ||
	    (r = get_uint(root, "", "release_after_ms", 3600000, &c->release_after_ms, err)) < 0 ||
	    (r = get_str(root, "", "cgroup_parent", c->cgroup_parent, sizeof(c->cgroup_parent),
			 err)) < 0)
		return r;
	if (rate == 0)
		return qerr_set(err, EINVAL, "refill_per_second: must be at least 1");
	c->refill_per_second = (unsigned)rate;
	if (strstr(c->cgroup_parent, "..") || strchr(c->cgroup_parent, '@'))
		return qerr_set(err, EINVAL, "cgroup_parent: no \"..\" and no '@'");
	json_t *swap = json_object_get(root, "swap");
	if (swap) {
		if (!json_is_object(swap))
			return qerr_set(err, EINVAL, "swap: must be an object");
		if ((r = check_keys(swap, "swap.", swap_keys, err)) < 0 ||
		    (r = get_uint(swap, "swap.", "mib", 1u << 20, &c->swap_mib, err)) < 0)
			return r;
		if (c->swap_mib && c->swap_mib < 16)
			return qerr_set(err, EINVAL, "swap.mib: at least 16 (or 0: no swap area)");
	}
	json_t *pools = json_object_get(root, "pools");
	if (!pools)
		return 0;
	if (!json_is_object(pools))
		return qerr_set(err, EINVAL, "pools: must be an object");
	if ((r = check_keys(pools, "pools.", kinds, err)) < 0)
		return r;
	for (int k = 0; k < POOL_NKINDS; k++)
		if ((r = load_pool(pools, (enum pool_kind)k, c, err)) < 0)
			return r;
	/* Each warm supervisor holds one pooled cgroup. */
	if (c->pool[POOL_WARM].high && !c->pool[POOL_CGROUP].high)
		return qerr_set(err, EINVAL, "pools.warm: needs the cgroup pool (its high is 0)");
	return 0;
}

int poold_config_load(const char *path, bool must_exist, struct poold_config *c, struct qerr *err)
{
	poold_config_defaults(c);
	json_error_t je;
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return qerr_sys(err, errno, "%s", path);
	}
	json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!root)
		return qerr_set(err, EINVAL, "%s: line %d: %s", path, je.line, je.text);
	int r = config_apply(root, c, err);
	json_decref(root);
	if (r < 0)
		return qerr_prefix(err, "%s", path);
	return 0;
}
