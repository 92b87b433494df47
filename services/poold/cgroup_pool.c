/* poold's pool of ready cgroups: mkdir ahead of time, rename on v1 to hand
 * one out (cgroup_pool.h; docs/cgroups.md, "Pre-made cgroups"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/sandbox_id.h"
#include "services/poold/cgroup_pool.h"

#define FILE_MAX 8192 /* cgroup files we read: lists of cpus, devices, rules */

struct pool_hier {
	bool v2;
	char *mountpoint;
	char *controllers;
	char *parent; /* absolute directory of pool and sandbox groups */
};

struct cgroup_pool {
	char prefix[CGROUP_POOL_NAME_MAX - 16]; /* "@pool-" or "@pool-<tag>-" */
	size_t n;
	int v2; /* index of the v2 hierarchy, -1 if none */
	struct pool_hier h[CGROUPS_HIER_MAX];
};

/* ---- small helpers (the same rules as guest/cgroups.c) ---- */

static int path_in(char *buf, size_t size, const char *dir, const char *name, struct qerr *err)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= size)
		return qerr_set(err, ENAMETOOLONG, "cgroup pool: %s/%s: path too long", dir, name);
	return 0;
}

static bool is_v1(const struct pool_hier *h, const char *ctrl)
{
	return !h->v2 && cgroups_has_token(h->controllers, ctrl, ",");
}

/* "@pool-" and 1 or more of [A-Za-z0-9_-], short enough for our buffers. */
static bool is_pool_name(const char *name)
{
	size_t pl = strlen(CGROUP_POOL_PREFIX), n = strlen(name);

	if (n <= pl || n >= CGROUP_POOL_NAME_MAX || strncmp(name, CGROUP_POOL_PREFIX, pl) != 0)
		return false;
	for (const char *c = name + pl; *c; c++)
		if (!(*c >= '0' && *c <= '9') && !(*c >= 'a' && *c <= 'z') &&
		    !(*c >= 'A' && *c <= 'Z') && *c != '_' && *c != '-')
			return false;
	return true;
}

static int check_pool_name(const char *name, struct qerr *err)
{
	if (!name || !is_pool_name(name))
		return qerr_set(err, EINVAL, "cgroup pool: \"%.64s\" is not a pool group name",
				name ? name : "");
	return 0;
}

/* A fresh "<prefix><token>"; buf has CGROUP_POOL_NAME_MAX bytes. */
static int new_name(const struct cgroup_pool *p, char *buf, struct qerr *err)
{
	unsigned long long token;

	if (getrandom(&token, sizeof(token), 0) != sizeof(token))
		return qerr_sys(err, errno, "cgroup pool: getrandom");
	snprintf(buf, CGROUP_POOL_NAME_MAX, "%s%016llx", p->prefix, token);
	return 0;
}

void cgroup_pool_set_tag(struct cgroup_pool *p, const char *tag)
{
	snprintf(p->prefix, sizeof(p->prefix), CGROUP_POOL_PREFIX "%.8s-", tag);
}

/* Does parent/name exist?  1, 0 or -errno. */
static int exists_in(const char *parent, const char *name, struct qerr *err)
{
	char path[PATH_MAX];
	struct stat st;
	int r;

	if ((r = path_in(path, sizeof(path), parent, name, err)) < 0)
		return r;
	if (stat(path, &st) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return qerr_sys(err, errno, "cgroup pool: stat %s", path);
}

/* A v1 cpuset without cpus and mems accepts no task; a new one starts so.
 * only_empty: fill a new group; otherwise undo a sandbox's own values. */
static int cpuset_copy(const char *parent, const char *dir, bool only_empty, struct qerr *err)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};

	for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
		char path[PATH_MAX], from[PATH_MAX], val[FILE_MAX];
		int r;

		if ((r = path_in(path, sizeof(path), dir, files[f], err)) < 0 ||
		    (r = path_in(from, sizeof(from), parent, files[f], err)) < 0)
			return r;
		if (only_empty && cgroups_read_file(path, val, sizeof(val)) > 0)
			continue;
		if ((r = cgroups_read_file(from, val, sizeof(val))) < 0)
			return qerr_sys(err, -r, "cgroup pool: read %s", from);
		if ((r = cgroups_write_file(path, val, false)) < 0)
			return qerr_sys(err, -r, "cgroup pool: write \"%s\" to %s", val, path);
	}
	return 0;
}

/* ---- open ---- */

/* mkdir with mode 0755 whatever our umask (077): a sandbox's root in a
 * user namespace must search the parent to reach its own group, as it can
 * when a cold start made the parent. */
static int mkdir_0755(const char *path, struct qerr *err)
{
	if (mkdir(path, 0755) < 0)
		return qerr_sys(err, errno, "cgroup pool: mkdir %s", path);
	if (chmod(path, 0755) < 0) {
		int e = errno;
		rmdir(path);
		return qerr_sys(err, e, "cgroup pool: chmod %s", path);
	}
	return 0;
}

/* mkdir -p of the parent below the mountpoint (resolved paths are clean). */
static int make_parent(const struct pool_hier *h, struct qerr *err)
{
	char buf[PATH_MAX], up[PATH_MAX];
	const char *p = h->parent + strlen(h->mountpoint);
	int r;

	snprintf(buf, sizeof(buf), "%s", h->mountpoint);
	while (*p == '/') {
		size_t n = strcspn(p + 1, "/");

		snprintf(up, sizeof(up), "%s", buf);
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%.*s", (int)n, p + 1);
		p += 1 + n;
		if (mkdir_0755(buf, err) < 0 && err->code != EEXIST)
			return -err->code;
		if (is_v1(h, "cpuset") && (r = cpuset_copy(up, buf, true, err)) < 0)
			return r;
	}
	return 0;
}

int cgroup_pool_open(const char *parent, struct cgroup_pool **out, struct qerr *err)
{
	struct cgroups_host *host = NULL;
	struct cgroups *cg = NULL;
	struct cgroup_pool *p;
	int r;

	if (!parent || !parent[0])
		parent = "quiver";
	if ((r = cgroups_host_detect(&host, err)) < 0)
		return r;
	/* A non-empty path is used as is; the id is only validated. */
	r = cgroups_resolve(host, parent, "pool", false, &cg, err);
	cgroups_host_free(host);
	if (r < 0)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p) {
		cgroups_free(cg);
		return qerr_set(err, ENOMEM, "cgroup pool: out of memory");
	}
	p->v2 = -1;
	snprintf(p->prefix, sizeof(p->prefix), CGROUP_POOL_PREFIX);
	for (size_t i = 0; i < cg->n; i++) {
		p->h[i].v2 = cg->v2[i];
		p->h[i].parent = steal_ptr(cg->dirs[i]);
		p->h[i].controllers = steal_ptr(cg->controllers[i]);
		p->h[i].mountpoint = steal_ptr(cg->mountpoint[i]);
		if (cg->v2[i])
			p->v2 = (int)i;
	}
	p->n = cg->n;
	cgroups_free(cg);
	for (size_t i = 0; i < p->n; i++)
		if ((r = make_parent(&p->h[i], err)) < 0) {
			cgroup_pool_close(p);
			return r;
		}
	*out = p;
	return 0;
}

void cgroup_pool_close(struct cgroup_pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->h[i].mountpoint);
		free(p->h[i].controllers);
		free(p->h[i].parent);
	}
	free(p);
}

bool cgroup_pool_has_v2(const struct cgroup_pool *p)
{
	return p->v2 >= 0;
}

/* ---- make, take, destroy ---- */

int cgroup_pool_make(struct cgroup_pool *p, char *name, size_t len, struct qerr *err)
{
	char tok[CGROUP_POOL_NAME_MAX], path[PATH_MAX];
	size_t made = 0;
	int r;

	if (len < CGROUP_POOL_NAME_MAX)
		return qerr_set(err, ERANGE, "cgroup pool: name buffer too small");
	if ((r = new_name(p, tok, err)) < 0)
		return r;
	for (; made < p->n; made++) {
		const struct pool_hier *h = &p->h[made];

		if ((r = path_in(path, sizeof(path), h->parent, tok, err)) < 0)
			goto undo;
		if ((r = mkdir_0755(path, err)) < 0)
			goto undo;
		if (is_v1(h, "cpuset") && (r = cpuset_copy(h->parent, path, true, err)) < 0) {
			made++;
			goto undo;
		}
	}
	snprintf(name, len, "%s", tok);
	return 0;
undo:
	while (made-- > 0)
		if (path_in(path, sizeof(path), p->h[made].parent, tok, NULL) == 0)
			(void)rmdir(path);
	return r;
}

static int rename_in(const char *parent, const char *from, const char *to, struct qerr *err)
{
	char a[PATH_MAX], b[PATH_MAX];
	int r;

	if ((r = path_in(a, sizeof(a), parent, from, err)) < 0 ||
	    (r = path_in(b, sizeof(b), parent, to, err)) < 0)
		return r;
	/* kernfs refuses RENAME_NOREPLACE (EINVAL) but fails a plain rename
	 * onto an existing group with EEXIST, so plain rename is safe. */
	if (rename(a, b) == 0)
		return 0;
	if (errno == EEXIST)
		return qerr_set(err, EEXIST, "cgroup pool: %s/%s already exists", parent, to);
	if (errno == ENOENT)
		return qerr_set(err, ENOENT, "cgroup pool: %s: no such group", a);
	return qerr_sys(err, errno, "cgroup pool: rename %s to %s", a, to);
}

/* Rename from -> to in every v1 hierarchy, all or nothing. */
static int rename_v1(struct cgroup_pool *p, const char *from, const char *to, struct qerr *err)
{
	size_t i;
	int r = 0;

	for (i = 0; i < p->n; i++)
		if (!p->h[i].v2 && (r = rename_in(p->h[i].parent, from, to, err)) < 0)
			break;
	if (r == 0)
		return 0;
	while (i-- > 0)
		if (!p->h[i].v2)
			(void)rename_in(p->h[i].parent, to, from, NULL);
	return r;
}

/* The v2 directory is not renamed, so check it here; on v1 the renames
 * themselves fail with ENOENT or EEXIST (and are undone). */
static int check_v2_takeable(struct cgroup_pool *p, const char *name, const char *id,
			     struct qerr *err)
{
	const char *parent;
	int r;

	if (p->v2 < 0)
		return 0;
	parent = p->h[p->v2].parent;
	if ((r = exists_in(parent, name, err)) == 0)
		return qerr_set(err, ENOENT, "cgroup pool: %s/%s: no such group", parent, name);
	if (r < 0 || (r = exists_in(parent, id, err)) < 0)
		return r;
	if (r == 1)
		return qerr_set(err, EEXIST, "cgroup pool: %s/%s already exists", parent, id);
	return 0;
}

/* A group's directories: named v1_name in the v1 hierarchies, v2_name in
 * the v2 one. */
static struct cgroups *group_cgroups(struct cgroup_pool *p, const char *v1_name,
				     const char *v2_name)
{
	struct cgroups *cg = calloc(1, sizeof(*cg));
	char path[PATH_MAX];

	if (!cg)
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		const struct pool_hier *h = &p->h[i];

		if (path_in(path, sizeof(path), h->parent, h->v2 ? v2_name : v1_name, NULL) < 0)
			goto fail;
		cg->dirs[i] = strdup(path);
		cg->controllers[i] = strdup(h->controllers);
		cg->mountpoint[i] = strdup(h->mountpoint);
		cg->v2[i] = h->v2;
		cg->n++;
		if (!cg->dirs[i] || !cg->controllers[i] || !cg->mountpoint[i])
			goto fail;
	}
	return cg;
fail:
	cgroups_free(cg);
	return NULL;
}

int cgroup_pool_take(struct cgroup_pool *p, const char *name, const char *id, struct cgroups **out,
		     struct qerr *err)
{
	struct cgroups *cg;
	int r;

	if ((r = check_pool_name(name, err)) < 0)
		return r;
	if ((r = sandbox_id_check(id, err)) < 0)
		return qerr_prefix(err, "cgroup pool");
	if ((r = check_v2_takeable(p, name, id, err)) < 0)
		return r;
	/* Built first, so that running out of memory needs no undo. */
	cg = group_cgroups(p, id, name);
	if (!cg)
		return qerr_set(err, ENOMEM, "cgroup pool: out of memory");
	if ((r = rename_v1(p, name, id, err)) < 0) {
		cgroups_free(cg);
		return r;
	}
	*out = cg;
	return 0;
}

int cgroup_pool_dirs(struct cgroup_pool *p, const char *name, struct cgroups **out,
		     struct qerr *err)
{
	int r;

	if ((r = check_pool_name(name, err)) < 0)
		return r;
	*out = group_cgroups(p, name, name);
	if (!*out)
		return qerr_set(err, ENOMEM, "cgroup pool: out of memory");
	return 0;
}

int cgroup_pool_v2_dirfd(struct cgroup_pool *p, const char *name, struct qerr *err)
{
	char path[PATH_MAX];
	int fd, r;

	if (p->v2 < 0)
		return qerr_set(err, ENOENT, "cgroup pool: no cgroup v2 hierarchy on this host");
	if ((r = check_pool_name(name, err)) < 0 ||
	    (r = path_in(path, sizeof(path), p->h[p->v2].parent, name, err)) < 0)
		return r;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "cgroup pool: open %s", path);
	return fd;
}

int cgroup_pool_destroy(struct cgroup_pool *p, const char *name, struct qerr *err)
{
	char path[PATH_MAX];
	int r, first = 0;

	if ((r = check_pool_name(name, err)) < 0)
		return r;
	/* Go on past a failure; report the first. */
	for (size_t i = 0; i < p->n; i++) {
		if ((r = path_in(path, sizeof(path), p->h[i].parent, name, first ? NULL : err)) <
		    0) {
			first = first ? first : r;
			continue;
		}
		if (rmdir(path) < 0 && errno != ENOENT && !first)
			first = qerr_sys(err, errno, "cgroup pool: rmdir %s", path);
	}
	return first;
}

/* ---- give back ---- */

/* Which hierarchy each directory belongs to: mine[i] is the one directly
 * below p->h[i].parent.  Exactly one per hierarchy. */
static int match_dirs(struct cgroup_pool *p, char *const *dirs, size_t n, const char **mine,
		      struct qerr *err)
{
	for (size_t k = 0; k < n; k++) {
		size_t i;

		for (i = 0; i < p->n; i++) {
			size_t pl = strlen(p->h[i].parent);
			const char *base = dirs[k] + pl;

			if (strncmp(dirs[k], p->h[i].parent, pl) == 0 && base[0] == '/' &&
			    base[1] && !strchr(base + 1, '/'))
				break;
		}
		if (i == p->n)
			return qerr_set(err, EINVAL, "cgroup pool: %s is not a group of the pool",
					dirs[k]);
		if (mine[i])
			return qerr_set(err, EINVAL, "cgroup pool: %s and %s: the same hierarchy",
					mine[i], dirs[k]);
		mine[i] = dirs[k];
	}
	for (size_t i = 0; i < p->n; i++)
		if (!mine[i])
			return qerr_set(err, EINVAL, "cgroup pool: no directory in %s",
					p->h[i].parent);
	return 0;
}

/* No process, no child cgroup: a reset could not undo what those hold. */
static int check_empty(const char *dir, struct qerr *err)
{
	char path[PATH_MAX], buf[64];
	cleanup_dir DIR *d = NULL;
	struct dirent *de;
	int r;

	if ((r = path_in(path, sizeof(path), dir, "cgroup.procs", err)) < 0)
		return r;
	if ((r = cgroups_read_file(path, buf, sizeof(buf))) < 0)
		return qerr_sys(err, -r, "cgroup pool: read %s", path);
	if (r > 0)
		return qerr_set(err, EBUSY, "cgroup pool: %s still has processes", dir);
	d = opendir(dir);
	if (!d)
		return qerr_sys(err, errno, "cgroup pool: open %s", dir);
	while ((de = readdir(d)))
		if (de->d_type == DT_DIR && strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			return qerr_set(err, EBUSY, "cgroup pool: %s has a child cgroup %s", dir,
					de->d_name);
	return 0;
}

struct reset {
	const char *ctrl; /* v1 controller owning the file; NULL on v2 */
	const char *file;
	const char *value;
};

/* What a new group has.  Order matters: memsw >= limit at every step, and
 * a quota is checked against the period. */
static const struct reset v1_resets[] = {
    {"memory", "memory.memsw.limit_in_bytes", "-1"},
    {"memory", "memory.limit_in_bytes", "-1"},
    {"memory", "memory.soft_limit_in_bytes", "-1"},
    {"cpu", "cpu.cfs_quota_us", "-1"},
    {"cpu", "cpu.cfs_period_us", "100000"},
    {"cpu", "cpu.cfs_burst_us", "0"},
    {"cpu", "cpu.shares", "1024"},
    {"cpu", "cpu.rt_runtime_us", "0"},
    {"cpu", "cpu.idle", "0"},
    {"pids", "pids.max", "max"},
    /* A frozen group would freeze the next sandbox's first process. */
    {"freezer", "freezer.state", "THAWED"},
    {"blkio", "blkio.bfq.weight", "100"},
};

static const struct reset v2_resets[] = {
    /* No limits. */
    {NULL, "memory.max", "max"},
    {NULL, "memory.high", "max"},
    {NULL, "memory.swap.max", "max"},
    {NULL, "pids.max", "max"},
    {NULL, "cpu.max", "max 100000"},
    /* No protections, the default weight. */
    {NULL, "memory.low", "0"},
    {NULL, "memory.min", "0"},
    {NULL, "cpu.weight", "100"},
    /* Empty: the parent's. */
    {NULL, "cpuset.cpus", "\n"},
    {NULL, "cpuset.mems", "\n"},
    {NULL, "cgroup.freeze", "0"},
};

/* Per-device entries ("MAJ:MIN ..." lines) are removed by writing
 * "MAJ:MIN<suffix>" for each. */
static const struct reset device_resets[] = {
    {"blkio", "blkio.throttle.read_bps_device", " 0"},
    {"blkio", "blkio.throttle.write_bps_device", " 0"},
    {"blkio", "blkio.throttle.read_iops_device", " 0"},
    {"blkio", "blkio.throttle.write_iops_device", " 0"},
    {"blkio", "blkio.bfq.weight_device", " default"},
    {NULL, "io.max", " rbps=max wbps=max riops=max wiops=max"},
};

/* Write, skipping a file this kernel does not have. */
static int write_optional(const char *dir, const char *file, const char *value, struct qerr *err)
{
	char path[PATH_MAX];
	int r;

	if ((r = path_in(path, sizeof(path), dir, file, err)) < 0)
		return r;
	r = cgroups_write_file(path, value, false);
	if (r < 0 && r != -ENOENT)
		return qerr_sys(err, -r, "cgroup pool: write \"%s\" to %s", value, path);
	return 0;
}

static bool applies(const struct pool_hier *h, const struct reset *rs)
{
	return h->v2 ? rs->ctrl == NULL : rs->ctrl && is_v1(h, rs->ctrl);
}

static int reset_device_lines(const char *dir, const struct reset *rs, struct qerr *err)
{
	char path[PATH_MAX], buf[FILE_MAX], val[64];
	char *save = NULL;
	int r;

	if ((r = path_in(path, sizeof(path), dir, rs->file, err)) < 0)
		return r;
	if ((r = cgroups_read_file(path, buf, sizeof(buf))) == -ENOENT)
		return 0;
	if (r < 0)
		return qerr_sys(err, -r, "cgroup pool: read %s", path);
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t n = strcspn(line, " ");

		/* bfq.weight_device starts with "default 100". */
		if (!memchr(line, ':', n) || n > 24)
			continue;
		snprintf(val, sizeof(val), "%.*s%s", (int)n, line, rs->value);
		if ((r = write_optional(dir, rs->file, val, err)) < 0)
			return r;
	}
	return 0;
}

/* hugetlb.<size>.limit_in_bytes (v1) or hugetlb.<size>.max (v2), and their
 * .rsvd variants: one file per page size. */
static int reset_hugetlb(const char *dir, bool v2, struct qerr *err)
{
	const char *suffix = v2 ? ".max" : ".limit_in_bytes";
	size_t sl = strlen(suffix);
	cleanup_dir DIR *d = opendir(dir);
	struct dirent *de;
	int r;

	if (!d)
		return qerr_sys(err, errno, "cgroup pool: open %s", dir);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (strncmp(de->d_name, "hugetlb.", 8) != 0 || n <= sl ||
		    strcmp(de->d_name + n - sl, suffix) != 0)
			continue;
		if ((r = write_optional(dir, de->d_name, v2 ? "max" : "-1", err)) < 0)
			return r;
	}
	return 0;
}

/* A new v1 devices group copies its parent's behaviour and rules. */
static int reset_devices(const char *parent, const char *dir, struct qerr *err)
{
	char path[PATH_MAX], list[FILE_MAX];
	char *save = NULL;
	int r;

	if ((r = path_in(path, sizeof(path), parent, "devices.list", err)) < 0)
		return r;
	if ((r = cgroups_read_file(path, list, sizeof(list))) < 0)
		return qerr_sys(err, -r, "cgroup pool: read %s", path);
	if (strcmp(list, "a *:* rwm") == 0)
		return write_optional(dir, "devices.allow", "a", err);
	if ((r = write_optional(dir, "devices.deny", "a", err)) < 0)
		return r;
	for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if ((r = write_optional(dir, "devices.allow", line, err)) < 0)
			return r;
	return 0;
}

/* v2: a controller enabled for children would make the group refuse
 * processes (the no-internal-processes rule). */
static int reset_subtree_control(const char *dir, struct qerr *err)
{
	char path[PATH_MAX], buf[1024], val[72];
	char *save = NULL;
	int r;

	if ((r = path_in(path, sizeof(path), dir, "cgroup.subtree_control", err)) < 0)
		return r;
	if ((r = cgroups_read_file(path, buf, sizeof(buf))) < 0)
		return qerr_sys(err, -r, "cgroup pool: read %s", path);
	for (char *c = strtok_r(buf, " ", &save); c; c = strtok_r(NULL, " ", &save)) {
		snprintf(val, sizeof(val), "-%.64s", c);
		if ((r = write_optional(dir, "cgroup.subtree_control", val, err)) < 0)
			return r;
	}
	return 0;
}

static int reset_limits(const struct pool_hier *h, const char *dir, struct qerr *err)
{
	const struct reset *table = h->v2 ? v2_resets : v1_resets;
	size_t n = h->v2 ? ARRAY_SIZE(v2_resets) : ARRAY_SIZE(v1_resets);
	int r;

	if (h->v2 && (r = reset_subtree_control(dir, err)) < 0)
		return r;
	for (size_t k = 0; k < n; k++)
		if (applies(h, &table[k]) &&
		    (r = write_optional(dir, table[k].file, table[k].value, err)) < 0)
			return r;
	for (size_t k = 0; k < ARRAY_SIZE(device_resets); k++)
		if (applies(h, &device_resets[k]) &&
		    (r = reset_device_lines(dir, &device_resets[k], err)) < 0)
			return r;
	if ((h->v2 || is_v1(h, "hugetlb")) && (r = reset_hugetlb(dir, h->v2, err)) < 0)
		return r;
	if (is_v1(h, "cpuset") && (r = cpuset_copy(h->parent, dir, false, err)) < 0)
		return r;
	if (is_v1(h, "devices") && (r = reset_devices(h->parent, dir, err)) < 0)
		return r;
	return 0;
}

/* The group's name in the v1 hierarchies (*v1, NULL without v1) and in
 * the v2 one (*v2, NULL without v2; it must be a pool name). */
static int group_names(struct cgroup_pool *p, const char **mine, const char **v1, const char **v2,
		       struct qerr *err)
{
	*v1 = *v2 = NULL;
	for (size_t i = 0; i < p->n; i++) {
		const char *base = mine[i] + strlen(p->h[i].parent) + 1;

		if (p->h[i].v2 && !is_pool_name(base))
			return qerr_set(err, EINVAL,
					"cgroup pool: %s: not a pool group (v2 cannot rename)",
					mine[i]);
		if (!p->h[i].v2 && !is_pool_name(base) && sandbox_id_check(base, NULL) < 0)
			return qerr_set(err, EINVAL, "cgroup pool: %s: not a sandbox's group",
					mine[i]);
		if (p->h[i].v2)
			*v2 = base;
		else if (*v1 && strcmp(*v1, base) != 0)
			return qerr_set(err, EINVAL, "cgroup pool: %s and %s: different groups",
					*v1, base);
		else
			*v1 = base;
	}
	return 0;
}

int cgroup_pool_give_back(struct cgroup_pool *p, char *const *dirs, size_t n, char *name,
			  size_t len, struct qerr *err)
{
	const char *mine[CGROUPS_HIER_MAX] = {0};
	const char *v1, *v2, *target;
	char fresh[CGROUP_POOL_NAME_MAX];
	int r;

	if (len < CGROUP_POOL_NAME_MAX)
		return qerr_set(err, ERANGE, "cgroup pool: name buffer too small");
	if ((r = match_dirs(p, dirs, n, mine, err)) < 0 ||
	    (r = group_names(p, mine, &v1, &v2, err)) < 0)
		return r;
	for (size_t i = 0; i < p->n; i++)
		if ((r = check_empty(mine[i], err)) < 0)
			return r;
	for (size_t i = 0; i < p->n; i++)
		if ((r = reset_limits(&p->h[i], mine[i], err)) < 0)
			return r;
	/* One name in every hierarchy, and v2 cannot change its own. */
	if (!v2 && (r = new_name(p, fresh, err)) < 0)
		return r;
	target = v2 ? v2 : fresh;
	if (v1 && strcmp(v1, target) != 0 && (r = rename_v1(p, v1, target, err)) < 0)
		return r;
	snprintf(name, len, "%s", target);
	return 0;
}

/* ---- list ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_name(char ***names, size_t *n, size_t *cap, const char *name)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		char **nv = realloc(*names, c * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*names = nv;
		*cap = c;
	}
	if (!((*names)[*n] = strdup(name)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int list_one(const char *prefix, const char *parent, char ***names, size_t *n, size_t *cap,
		    struct qerr *err)
{
	cleanup_dir DIR *d = opendir(parent);
	struct dirent *de;

	if (!d)
		return qerr_sys(err, errno, "cgroup pool: open %s", parent);
	while ((de = readdir(d)))
		if (de->d_type == DT_DIR && is_pool_name(de->d_name) &&
		    strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
		    add_name(names, n, cap, de->d_name) < 0)
			return qerr_set(err, ENOMEM, "cgroup pool: out of memory");
	return 0;
}

int cgroup_pool_list(struct cgroup_pool *p, char ***names, size_t *n, struct qerr *err)
{
	char **v = NULL;
	size_t count = 0, cap = 0, k = 0;
	int r;

	for (size_t i = 0; i < p->n; i++)
		if ((r = list_one(p->prefix, p->h[i].parent, &v, &count, &cap, err)) < 0) {
			cgroup_pool_names_free(v, count);
			return r;
		}
	if (count)
		qsort(v, count, sizeof(*v), cmp_str);
	for (size_t i = 0; i < count; i++) {
		if (k && strcmp(v[k - 1], v[i]) == 0)
			free(v[i]);
		else
			v[k++] = v[i];
	}
	*names = v;
	*n = k;
	return 0;
}

void cgroup_pool_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
