/* The network namespace pool: network namespaces made ahead of time, with
 * "lo" up, so that a sandbox asking for a new netns joins a ready one
 * instead of creating it on its start path.
 *
 *   netns_pool_open(dir)          the directory the namespaces are kept in
 *   netns_pool_make(p)            one more: "@pool-<token>" and its path
 *   netns_pool_destroy(p, name)   release one (idempotent)
 *   netns_pool_list(p)            every "@pool-*" entry, for reclaim
 *   netns_pool_is_live(path)      a live netns mount, or an orphan file?
 *
 * A pooled netns is kept alive by a bind mount of its nsfs file onto an
 * empty file <dir>/@pool-<token>, as `ip netns add` does under /run/netns.
 * The launcher joins it with setns(open(path)) from the host mount
 * namespace.  The '@' keeps pool names apart from sandbox ids, which start
 * with a letter or digit.
 *
 * Claiming is poold's bookkeeping, not a file operation: a mount point
 * cannot be renamed (EBUSY), so a netns keeps its name and path for life
 * and poold's own state records which are handed out.
 *
 * Namespaces are never reused.  A sandbox may have changed routes, sysctls
 * or firewall rules, or created interfaces; undoing all of that is harder to
 * get right than making a fresh one.  A returned netns is destroyed and the
 * pool makes a new one.
 *
 * Needs CAP_SYS_ADMIN.  Not thread-safe: poold calls it from one thread.
 */
#ifndef QUIVER_POOLD_NETNS_POOL_H
#define QUIVER_POOLD_NETNS_POOL_H

#include <stddef.h>

#include "libcommon/err.h"

#define NETNS_POOL_PREFIX "@pool-"
/* Size of a buffer that holds any name netns_pool_make returns, NUL
 * included. */
#define NETNS_POOL_NAME_MAX 32

struct netns_pool;

/* dir is created 0700 if missing (its parent must exist).  An existing dir
 * must be a directory owned by us and writable by nobody else, since
 * whatever sits in it is trusted as a namespace to put sandboxes in. */
int netns_pool_open(const char *dir, struct netns_pool **out, struct qerr *err);
/* Frees memory only: the namespaces stay mounted. */
void netns_pool_close(struct netns_pool *p);
/* The canonical absolute path of the directory. */
const char *netns_pool_dir(const struct netns_pool *p);

/* Make one netns with lo up.  name (nlen >= NETNS_POOL_NAME_MAX) receives
 * "@pool-<token>", path (plen) the absolute path to setns by.  On failure
 * nothing is left behind. */
int netns_pool_make(struct netns_pool *p, char *name, size_t nlen, char *path, size_t plen,
		    struct qerr *err);

/* The path of name, made or listed earlier. */
int netns_pool_path(const struct netns_pool *p, const char *name, char *path, size_t plen,
		    struct qerr *err);

/* Unmount (MNT_DETACH, every stacked mount) and unlink.  Absent is fine.
 * The kernel frees the netns once no process is left in it.  Names that
 * are not "@pool-*" are refused (-EINVAL). */
int netns_pool_destroy(struct netns_pool *p, const char *name, struct qerr *err);

/* Every "@pool-*" entry in the directory, mounted or not, for reclaim after
 * a crash.  *names is a malloc'd array of *n malloc'd strings; free it with
 * netns_pool_names_free. */
int netns_pool_list(struct netns_pool *p, char ***names, size_t *n, struct qerr *err);
void netns_pool_names_free(char **names, size_t n);

/* 1 when path is a mounted network namespace (nsfs), 0 when it is
 * something else (a file a crash left unmounted, a symlink: not followed),
 * -ENOENT when absent, another negative errno on failure. */
int netns_pool_is_live(const char *path, struct qerr *err);

#endif
