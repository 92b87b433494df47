/* A sandbox's cgroups on cgroup v1, v2 and hybrid hosts, through the raw
 * cgroup filesystem (docs/cgroups.md).
 *
 *   host = cgroups_host_detect()            which hierarchies, where we are
 *   cg   = cgroups_resolve(host, path, id)  one directory per hierarchy
 *   cgroups_create(cg)                      mkdir (EEXIST is an error)
 *   cgroups_apply(cg, resources)            limit files
 *   cgroups_join(cg, pid)                   cgroup.procs of every hierarchy
 *   cgroups_remove(dirs)                    kill stragglers, rmdir (vmmd)
 *
 * cgroups_remove and cgroups_list_pids take the list of absolute
 * directories the launcher reported (docs/guest-protocol.md), so vmmd can
 * call them without a parsed config. */
#ifndef QUIVER_GUEST_CGROUPS_H
#define QUIVER_GUEST_CGROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "guest/oci_config.h"
#include "libcommon/err.h"

#define CGROUPS_HIER_MAX 16

enum cgroups_layout {
	CGROUPS_LAYOUT_V1,     /* only v1 hierarchies */
	CGROUPS_LAYOUT_V2,     /* only the unified hierarchy */
	CGROUPS_LAYOUT_HYBRID, /* v1 hierarchies plus a cgroup2 mount (often .../unified) */
};

struct cgroups_hierarchy {
	bool v2;
	char *mountpoint;  /* e.g. /sys/fs/cgroup/memory */
	char *controllers; /* v1: "memory", "cpu,cpuacct", "name=systemd";
			      v2: the root's cgroup.controllers, space-separated */
	char *own;	   /* our cgroup here, relative to mountpoint ("/" or "/a/b") */
};

struct cgroups_host {
	enum cgroups_layout layout;
	struct cgroups_hierarchy h[CGROUPS_HIER_MAX];
	size_t n;
	/* Tests against a fake root (plain directories): create the files
	 * that cgroupfs would provide instead of expecting them. */
	bool fake_files;
};

/* Flags of cgroups_host_parse. */
#define CGROUPS_HOST_FAKE_FILES 1u

/* Read /proc/self/mountinfo and /proc/self/cgroup. */
int cgroups_host_detect(struct cgroups_host **out, struct qerr *err);
/* The same from given files (tests use a fake mountinfo). */
int cgroups_host_parse(const char *mountinfo_path, const char *self_cgroup_path, unsigned int flags,
		       struct cgroups_host **out, struct qerr *err);
void cgroups_host_free(struct cgroups_host *host);
const char *cgroups_layout_name(enum cgroups_layout layout); /* "v1", "v2", "hybrid" */

/* The path rules, without a host: *rel is the sandbox's cgroup path and
 * *absolute says whether it is relative to each hierarchy's root (true) or
 * to our own cgroup in each hierarchy (false).
 *   "/a/b"             → "/a/b", absolute
 *   "a/b"              → "a/b", relative to our own cgroup
 *   NULL or ""         → "quiver/<id>", relative
 *   systemd "s:p:n"    → "/<expanded s>/p-n.scope", absolute ("a-b.slice" expands
 *                        to "a.slice/a-b.slice"; "" slice is "system.slice")
 * No dbus: the scope is created as a plain directory, and systemd is not told. */
int cgroups_path_rel(const char *cgroups_path, const char *id, bool systemd, char **rel,
		     bool *absolute, struct qerr *err);

/* A sandbox's cgroup: one directory per hierarchy it uses. */
struct cgroups {
	size_t n;
	char *dirs[CGROUPS_HIER_MAX]; /* absolute directories, NULL-terminated */
	bool v2[CGROUPS_HIER_MAX];
	char *controllers[CGROUPS_HIER_MAX];
	char *mountpoint[CGROUPS_HIER_MAX];
	bool created[CGROUPS_HIER_MAX]; /* made by cgroups_create (undone on its failure) */
	bool fake_files;
};

/* Compute the directories (creates nothing).  Uses the v1 hierarchies that
 * carry cpu, cpuacct, cpuset, memory, pids, devices, freezer, blkio, hugetlb
 * or name=systemd, and the cgroup2 hierarchy if mounted. */
int cgroups_resolve(const struct cgroups_host *host, const char *cgroups_path, const char *id,
		    bool systemd, struct cgroups **out, struct qerr *err);
/* A cgroup file: read up to size-1 bytes, NUL-terminated, trailing
 * newlines and blanks stripped (the length, or -errno); write one value in
 * one write(), as cgroupfs wants (create: tests on a fake root). */
int cgroups_read_file(const char *path, char *buf, size_t size);
int cgroups_write_file(const char *path, const char *value, bool create);
/* Is token in a list separated by any of seps ("cpu,cpuacct", "a b")? */
bool cgroups_has_token(const char *list, const char *token, const char *seps);

/* The same from directories made elsewhere (poold's pool), each matched
 * to the hierarchy it lies in. */
int cgroups_from_dirs(const struct cgroups_host *host, char *const *dirs, size_t n,
		      struct cgroups **out, struct qerr *err);
/* mkdir every directory (parents as needed); -EEXIST if one already exists.
 * v1 cpusets get cpuset.cpus/mems copied from their parent.  On failure,
 * removes what it made. */
int cgroups_create(struct cgroups *cg, struct qerr *err);

/* One limit file to write, as rendered from linux.resources. */
struct cgroups_write {
	size_t hier; /* index into cg->dirs */
	char file[64];
	char value[1024];
	bool optional; /* skip if the file does not exist (e.g. swap accounting off) */
};

/* Render linux.resources into the list of files to write (pure).  *out is
 * malloc'd; free() it. */
int cgroups_render(const struct cgroups *cg, const struct guest_resources *res,
		   struct cgroups_write **out, size_t *n_out, struct qerr *err);
/* Render and write.  res may be NULL (then only the default device list). */
int cgroups_apply(const struct cgroups *cg, const struct guest_resources *res, struct qerr *err);
/* The same; defaults_applied: the default device list was written
 * earlier (a warm supervisor's cgroup), and is not written again when the
 * config's device rules add nothing to it. */
int cgroups_apply_limits(const struct cgroups *cg, const struct guest_resources *res,
			 bool defaults_applied, struct qerr *err);
/* Write pid into cgroup.procs of every directory. */
int cgroups_join(const struct cgroups *cg, pid_t pid, struct qerr *err);
/* Release the memory (the cgroups stay). */
void cgroups_free(struct cgroups *cg);

/* Remove every directory (and any sub-cgroups the sandbox made), killing
 * processes left in them and retrying while the kernel still reports them
 * busy.  Directories that do not exist are fine (delete is idempotent).
 * Refuses anything that is not a directory on a cgroup filesystem. */
int cgroups_remove(char *const *dirs, size_t n, struct qerr *err);

/* The pids in the sandbox's cgroups (and their sub-cgroups), sorted, without
 * duplicates.  *pids is malloc'd. */
int cgroups_list_pids(char *const *dirs, size_t n, pid_t **pids, size_t *n_pids, struct qerr *err);

#endif
