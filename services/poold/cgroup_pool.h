/* poold's pool of ready cgroups (docs/cgroups.md, "Pre-made cgroups").
 *
 * mkdir of a cgroup allocates every controller's state under the kernel's
 * global cgroup_mutex, in every hierarchy; on the start path of many
 * sandboxes at once that serialises them.  A v1 rename holds the same mutex
 * only for a kernfs rename (cgroup1_rename).  So poold makes groups ahead of
 * time and hands one out (bench/cgroup_alloc.py measures the difference):
 *
 *   cgroup_pool_make(p, name)            mkdir "@pool-<token>" in every hierarchy
 *   cgroup_pool_take(p, name, id, &cg)   v1: rename @pool-<token> -> id
 *                                        v2: keep the name (rename is EPERM there);
 *                                        use cgroup_pool_v2_dirfd + clone3
 *   ...the sandbox runs; cgroups_apply/cgroups_join/cgroups_remove on cg...
 *   cgroup_pool_give_back(p, dirs, name) empty?  reset limits, rename back
 *   cgroup_pool_destroy(p, name)         rmdir everywhere
 *
 * Pool groups sit in the same parent as sandboxes' default cgroups
 * (<own cgroup>/quiver in each hierarchy), because a v1 rename only works
 * within one parent (EIO across parents).  Sandbox ids never contain '@'
 * (libcommon/sandbox_id.h), so "@pool-" names cannot clash with them.
 *
 * Raw cgroupfs, not libcgroup (2.0.2 here), as in guest/cgroups.c: libcgroup
 * has no rename of a group and no way to get a directory fd (for
 * CLONE_INTO_CGROUP); cgroup_init() parses the mount table into a cache that
 * can never be refreshed; a group has one name relative to every
 * controller's mount, while on this host our own cgroup differs per
 * hierarchy (memory: /process_api/<hash>, the others: /); its public API has
 * no notion of the unified hierarchy next to v1 ones.  What is needed is
 * mkdir, rename, open, write and rmdir on the hierarchies that
 * guest/cgroups.h already finds.
 *
 * Not thread-safe: poold calls it from its one loop. */
#ifndef QUIVER_POOLD_CGROUP_POOL_H
#define QUIVER_POOLD_CGROUP_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "guest/cgroups.h"
#include "libcommon/err.h"

#define CGROUP_POOL_PREFIX   "@pool-"
#define CGROUP_POOL_NAME_MAX 32 /* "@pool-" + 16 hex digits + NUL fits */

struct cgroup_pool;

/* parent: "quiver" (relative to our own cgroup in each hierarchy) or
 * "/abs/path" (from each hierarchy's root), by cgroups_path_rel's rules;
 * NULL or "" means "quiver".  Detects the host, resolves the parent in every
 * hierarchy cgroups_resolve uses and makes the missing parents (v1 cpusets
 * get their parent's cpus/mems).  "Our own cgroup" is poold's: the groups
 * land where a sandbox's default cgroup would only if the launcher runs in
 * the same cgroups as poold; otherwise give an absolute parent. */
int cgroup_pool_open(const char *parent, struct cgroup_pool **out, struct qerr *err);
/* Memory only; the cgroups stay. */
void cgroup_pool_close(struct cgroup_pool *p);
/* Names made from now on are "@pool-<tag>-<token>" (tag: at most 8
 * characters of [A-Za-z0-9]), and list returns only those: poolds of
 * different runtime roots share a cgroup parent and must not reclaim each
 * other's groups. */
void cgroup_pool_set_tag(struct cgroup_pool *p, const char *tag);
bool cgroup_pool_has_v2(const struct cgroup_pool *p);

/* Make one ready group "@pool-<token>" in every hierarchy (v1 cpusets get
 * the parent's cpus/mems), all or nothing.  name (len >=
 * CGROUP_POOL_NAME_MAX) receives "@pool-<token>". */
int cgroup_pool_make(struct cgroup_pool *p, char *name, size_t len, struct qerr *err);

/* Hand ready group name to sandbox id: in each v1 hierarchy rename
 * name -> id; the v2 directory keeps its pool name.  -EINVAL for a bad
 * name or id (libcommon/sandbox_id.h), -ENOENT if name is missing in a
 * hierarchy, -EEXIST if id exists in any; then nothing has changed (a failed
 * rename undoes the earlier ones).  *out (cgroups_free) has
 * the final directories, for cgroups_apply, cgroups_join, cgroups_remove and
 * for the launcher to report. */
int cgroup_pool_take(struct cgroup_pool *p, const char *name, const char *id, struct cgroups **out,
		     struct qerr *err);

/* The directories of ready group name, without taking it (nothing is
 * checked or changed): to run a process in it (cgroups_join) or remove it
 * with whatever runs there (cgroups_remove).  -EINVAL for a bad name. */
int cgroup_pool_dirs(struct cgroup_pool *p, const char *name, struct cgroups **out,
		     struct qerr *err);

/* The v2 directory of a ready or taken group (taken ones keep the pool name
 * there), O_DIRECTORY|O_CLOEXEC, for clone3(CLONE_INTO_CGROUP).  -ENOENT if
 * the host has no v2 hierarchy or the group is missing. */
int cgroup_pool_v2_dirfd(struct cgroup_pool *p, const char *name, struct qerr *err);

/* Take a sandbox's groups back for reuse.  dirs: what take returned (one per
 * hierarchy, any order).  They must hold no process and no child cgroup
 * (-EBUSY), and the v2 one must still carry its pool name (-EINVAL).  Limits
 * go back to what a new group has:
 *   v1 memory   memsw, limit, soft limit -1
 *   v1 cpu      cfs_quota -1, cfs_period 100000, cfs_burst 0, shares 1024,
 *               rt_runtime 0, idle 0
 *   v1 cpuset   cpus and mems copied from the parent again
 *   v1 devices  the parent's list ("a" into devices.allow when the parent
 *               allows all; else deny all and allow each parent rule)
 *   v1 pids     max;  v1 freezer THAWED;  v1 hugetlb limits -1
 *   v1 blkio    bfq weight 100, per-device weights and throttles removed
 *   v2          memory.{max,high,swap.max} max, memory.{low,min} 0,
 *               cpu.max "max 100000", cpu.weight 100, pids.max max,
 *               cpuset.{cpus,mems} "", hugetlb.*.max max, io.max entries
 *               removed, cgroup.freeze 0, cgroup.subtree_control emptied
 * (files the kernel lacks are skipped).  Then the v1 directories are renamed
 * to the v2 one's pool name (or a fresh one without v2), which name
 * receives.  On failure the renames are undone, dirs still name the groups,
 * and the caller should cgroups_remove them. */
int cgroup_pool_give_back(struct cgroup_pool *p, char *const *dirs, size_t n, char *name,
			  size_t len, struct qerr *err);

/* rmdir a ready group in every hierarchy; absent is fine.  Processes are not
 * killed: a group in use fails with -EBUSY. */
int cgroup_pool_destroy(struct cgroup_pool *p, const char *name, struct qerr *err);

/* Every "@pool-*" name present in any hierarchy under the parent, sorted:
 * ready groups, halves left by a crash, and also the v2 directories of taken
 * groups (they keep their pool name), so reclaim must skip the names that
 * live sandboxes report in their dirs.  Free with cgroup_pool_names_free. */
int cgroup_pool_list(struct cgroup_pool *p, char ***names, size_t *n, struct qerr *err);
void cgroup_pool_names_free(char **names, size_t n);

#endif
