/* What a warm start needs to know of a bundle, and whether it has
 * poststart or poststop hooks, parsed once per version of its config.json:
 * a platform starts the same function's bundle over and over, and parsing
 * it was the largest part of vmmd's work per create.  An
 * entry holds while config.json's and the rootfs's identity and times are
 * unchanged (a rewrite, even of the same size, changes the mtime). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest/guest.h"
#include "guest/hooks.h"
#include "services/vmmd/vmmd.h"

#define BUNDLE_CACHE_SIZE 32
#define LAYER_ANNOTATION  "io.quiver.rootfs.overlay"

struct entry {
	char bundle[PATH_MAX];
	char rootfs[PATH_MAX];
	struct stat config_st, rootfs_st;
	struct bundle_info info;
	bool used;
};

static struct entry cache[BUNDLE_CACHE_SIZE];
static size_t next_victim;

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void entry_clear(struct entry *e)
{
	json_decref(e->info.annotations);
	memset(e, 0, sizeof(*e));
}

static int fill(struct entry *e, const char *bundle, const struct stat *config_st, struct qerr *err)
{
	struct guest_config *cfg = NULL;
	int r = guest_config_load(bundle, &cfg, err);
	if (r < 0)
		return r;
	entry_clear(e);
	snprintf(e->bundle, sizeof(e->bundle), "%s", bundle);
	snprintf(e->rootfs, sizeof(e->rootfs), "%s", cfg->root_path);
	e->config_st = *config_st;
	e->info.annotations = json_object();
	struct qerr why = {0};
	e->info.eligible = warm_check(cfg, &why) == 0 && stat(e->rootfs, &e->rootfs_st) == 0;
	snprintf(e->info.reason, sizeof(e->info.reason), "%.200s",
		 why.msg[0] ? why.msg : "rootfs not found");
	for (size_t i = 0; i < cfg->n_annotations; i++) {
		json_object_set_new(e->info.annotations, cfg->annotations[i].key,
				    json_string(cfg->annotations[i].value));
		e->info.layer |= strcmp(cfg->annotations[i].key, LAYER_ANNOTATION) == 0 &&
				 strcmp(cfg->annotations[i].value, "true") == 0;
	}
	e->info.poststart = hooks_any(&cfg->hooks.poststart);
	e->info.poststop = hooks_any(&cfg->hooks.poststop);
	e->info.rootfs_dev = (int64_t)e->rootfs_st.st_dev;
	e->info.rootfs_ino = (int64_t)e->rootfs_st.st_ino;
	guest_config_free(cfg);
	e->used = true;
	return 0;
}

const struct bundle_info *bundle_info_get(const char *bundle, struct qerr *err)
{
	char path[PATH_MAX + 16];
	struct stat st, rst;
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	if (stat(path, &st) < 0) {
		qerr_sys(err, errno, "%s", path);
		return NULL;
	}
	for (size_t i = 0; i < BUNDLE_CACHE_SIZE; i++) {
		struct entry *e = &cache[i];
		if (!e->used || strcmp(e->bundle, bundle) != 0)
			continue;
		if (same_file(&e->config_st, &st) &&
		    (!e->info.eligible ||
		     (stat(e->rootfs, &rst) == 0 && rst.st_dev == e->rootfs_st.st_dev &&
		      rst.st_ino == e->rootfs_st.st_ino)))
			return &e->info;
		return fill(e, bundle, &st, err) < 0 ? (entry_clear(e), NULL) : &e->info;
	}
	struct entry *e = &cache[next_victim];
	next_victim = (next_victim + 1) % BUNDLE_CACHE_SIZE;
	return fill(e, bundle, &st, err) < 0 ? (entry_clear(e), NULL) : &e->info;
}
