/* Writable rootfs layers for sandboxes, made ahead of time (issue 3).
 *
 * The store is <state>/layers: an XFS filesystem (reflink on) in the sparse
 * image <state>/layers.img, attached to a loop device that frees itself when
 * the filesystem is unmounted.  Where XFS or loop devices are not to be had,
 * the store is a size-limited tmpfs instead (layer_pool_backend() says which).
 *
 * Names in the store:
 *   @template      what every new upper layer starts as (cloned, not copied)
 *   @tmp-<token>   a layer or template being built; never complete
 *   @pool-<token>  a complete, unused layer: <name>/upper and <name>/work
 *   <sandbox id>   a taken layer (ids never start with '@')
 *
 * The store outlives poold: a restarted poold reopens it (no mkfs), lists
 * what is there and destroys every entry it does not know, which is how
 * layers orphaned by a kill -9 are reclaimed.  It does so before it makes
 * layers, since an @tmp- entry may be a make in progress.  Layers are never
 * reused.
 *
 * Functions other than open/close/close_store may be called from several
 * threads at once, on different layers. */
#ifndef QUIVER_POOLD_LAYER_POOL_H
#define QUIVER_POOLD_LAYER_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"

#define LAYER_POOL_NAME_MAX	 32 /* "@pool-" + 16 hex digits + NUL, rounded up */
#define LAYER_POOL_IMAGE_DEFAULT (1ull << 30)

struct layer_pool;

struct layer_pool_config {
	const char *state_dir;	  /* created if missing */
	uint64_t image_bytes;	  /* XFS image or tmpfs size; 0: LAYER_POOL_IMAGE_DEFAULT */
	bool force_tmpfs;	  /* do not try XFS */
	const char *template_src; /* host directory copied into a new template; may be NULL */
	const char *mkfs_xfs;	  /* NULL: mkfs.xfs from PATH, else /usr/sbin or /sbin */
};

struct layer_pool_stats {
	uint64_t made;	    /* layers made by this process */
	uint64_t cloned;    /* template files shared with FICLONE */
	uint64_t copied;    /* template files copied because cloning was refused */
	uint64_t destroyed; /* layers removed */
};

/* Open the store under c->state_dir, reusing one already mounted there,
 * reattaching an existing image, or making a new one. */
int layer_pool_open(const struct layer_pool_config *c, struct layer_pool **out, struct qerr *err);
/* Free the memory only; the store and its layers stay (a normal stop). */
void layer_pool_close(struct layer_pool *p);
/* Unmount the store, which frees its loop device.  Layers in an XFS image
 * survive in the image; a tmpfs store's are gone.  Only layer_pool_close may
 * follow. */
int layer_pool_close_store(struct layer_pool *p, struct qerr *err);

const char *layer_pool_backend(const struct layer_pool *p); /* "xfs-reflink" or "tmpfs" */
const char *layer_pool_root(const struct layer_pool *p);    /* <state>/layers */
void layer_pool_get_stats(const struct layer_pool *p, struct layer_pool_stats *out);

/* Make a new layer from the template; its name ("@pool-...") goes to name,
 * which needs LAYER_POOL_NAME_MAX bytes. */
int layer_pool_make(struct layer_pool *p, char *name, size_t len, struct qerr *err);
/* Hand the unused layer name to sandbox id: renamed to <root>/<id>, and the
 * overlay upper and work directories written to upper and work. */
int layer_pool_take(struct layer_pool *p, const char *name, const char *id, char *upper, char *work,
		    size_t len, struct qerr *err);
/* Remove a layer, unused or taken, whatever a sandbox left in it.  A layer
 * that is not there is not an error. */
int layer_pool_destroy(struct layer_pool *p, const char *name_or_id, struct qerr *err);
/* Every layer in the store, complete or not (everything but @template). */
int layer_pool_list(struct layer_pool *p, char ***names, size_t *n, struct qerr *err);
void layer_pool_list_free(char **names, size_t n);

/* Mount an overlay of upper (with work) over lower at target.  Paths with
 * ',', ':' or '\' are refused rather than escaped. */
int layer_overlay_mount(const char *lower, const char *upper, const char *work, const char *target,
			unsigned long flags, struct qerr *err);

#endif
