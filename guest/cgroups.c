/* A sandbox's cgroups through the raw cgroup filesystem (docs/cgroups.md).
 *
 * libcgroup is not used: its API re-reads /proc/mounts on every
 * cgroup_init() and walks every controller, on the sandbox start path, and it
 * has no notion of hybrid hosts' unified hierarchy.  What we need is a few
 * mkdir/open/write calls, done here directly. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "guest/cgroups.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define LINE_MAX_BYTES 8192
#define PIDS_MAX       (1u << 22) /* pid_max can be at most 4194304 */

/* v1 hierarchies we make a directory in. */
static const char *const used_v1[] = {"cpu",	 "cpuacct", "cpuset", "memory",	 "pids",
				      "devices", "freezer", "blkio",  "hugetlb", "name=systemd"};

const char *cgroups_layout_name(enum cgroups_layout layout)
{
	switch (layout) {
	case CGROUPS_LAYOUT_V1:
		return "v1";
	case CGROUPS_LAYOUT_V2:
		return "v2";
	case CGROUPS_LAYOUT_HYBRID:
		return "hybrid";
	}
	return "?";
}

/* ---- small file helpers ---- */

int cgroups_read_file(const char *path, char *buf, size_t size)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;

	if (fd < 0)
		return -errno;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	return (int)len;
}

int cgroups_write_file(const char *path, const char *value, bool create)
{
	int flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
	cleanup_close int fd = open(path, flags, 0644);
	size_t len = strlen(value);
	ssize_t n;

	if (fd < 0)
		return -errno;
	do
		n = write(fd, value, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EIO;
	return 0;
}

bool cgroups_has_token(const char *list, const char *token, const char *seps)
{
	size_t tl = strlen(token);

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, seps);
		if (n == tl && strncmp(p, token, n) == 0)
			return true;
		p += n;
		if (*p)
			p++;
	}
	return false;
}

/* Every comma-separated token of want is in have (comma-separated). */
static bool all_tokens_in(const char *want, const char *have)
{
	char tok[128];

	for (const char *p = want; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 0 || n >= sizeof(tok))
			return false;
		memcpy(tok, p, n);
		tok[n] = '\0';
		if (!cgroups_has_token(have, tok, ","))
			return false;
		p += n;
		if (*p)
			p++;
	}
	return true;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/* ---- host detection ---- */

struct cg_mount {
	bool v2;
	char root[PATH_MAX];
	char mountpoint[PATH_MAX];
	char superopts[512];
};

/* Parse one mountinfo line; returns 1 for a cgroup/cgroup2 mount, 0 for
 * another, -EINVAL for a malformed line. */
static int parse_mountinfo_line(char *line, struct cg_mount *m)
{
	char *f[64], *save = NULL, *tok;
	size_t n = 0, sep = 0;

	for (tok = strtok_r(line, " \n", &save); tok && n < ARRAY_SIZE(f);
	     tok = strtok_r(NULL, " \n", &save))
		f[n++] = tok;
	for (size_t i = 6; i < n; i++)
		if (strcmp(f[i], "-") == 0) {
			sep = i;
			break;
		}
	if (n < 10 || sep == 0 || sep + 3 >= n)
		return -EINVAL;
	if (strcmp(f[sep + 1], "cgroup2") == 0)
		m->v2 = true;
	else if (strcmp(f[sep + 1], "cgroup") == 0)
		m->v2 = false;
	else
		return 0;
	if (strlen(f[3]) >= sizeof(m->root) || strlen(f[4]) >= sizeof(m->mountpoint) ||
	    strlen(f[sep + 3]) >= sizeof(m->superopts))
		return -EINVAL;
	strcpy(m->root, f[3]);
	strcpy(m->mountpoint, f[4]);
	strcpy(m->superopts, f[sep + 3]);
	unescape_octal(m->root);
	unescape_octal(m->mountpoint);
	return 1;
}

/* Our cgroup path as seen through a mount whose root is root. */
static char *own_under_root(const char *path, const char *root)
{
	size_t rl = strlen(root);

	if (strcmp(root, "/") == 0)
		return strdup(path);
	if (strncmp(path, root, rl) == 0 && (path[rl] == '/' || path[rl] == '\0'))
		return strdup(path[rl] ? path + rl : "/");
	/* Not visible through this mount (a cgroup namespace): treat the
	 * mount's root as ours. */
	return strdup("/");
}

static bool v1_is_used(const char *controllers)
{
	for (size_t i = 0; i < ARRAY_SIZE(used_v1); i++)
		if (cgroups_has_token(controllers, used_v1[i], ","))
			return true;
	return false;
}

static int add_hierarchy(struct cgroups_host *host, bool v2, const struct cg_mount *m,
			 const char *controllers, const char *path, struct qerr *err)
{
	struct cgroups_hierarchy *h;

	for (size_t i = 0; i < host->n; i++)
		if (strcmp(host->h[i].mountpoint, m->mountpoint) == 0)
			return 0;
	if (host->n == CGROUPS_HIER_MAX)
		return qerr_set(err, E2BIG, "cgroups: more than %d hierarchies", CGROUPS_HIER_MAX);
	h = &host->h[host->n];
	h->v2 = v2;
	h->mountpoint = strdup(m->mountpoint);
	h->controllers = strdup(controllers);
	h->own = own_under_root(path, m->root);
	host->n++;
	if (!h->mountpoint || !h->controllers || !h->own)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	return 0;
}

int cgroups_host_parse(const char *mountinfo_path, const char *self_cgroup_path, unsigned int flags,
		       struct cgroups_host **out, struct qerr *err)
{
	cleanup_fclose FILE *mi = NULL, *sc = NULL;
	cleanup_free struct cg_mount *mounts = NULL;
	cleanup_free char *line = NULL;
	size_t n_mounts = 0, cap = 0;
	bool has_v1 = false, has_v2 = false;
	struct cgroups_host *host;
	int r;

	line = malloc(LINE_MAX_BYTES);
	if (!line)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	mi = fopen(mountinfo_path, "re");
	if (!mi)
		return qerr_sys(err, errno, "cgroups: %s", mountinfo_path);
	while (fgets(line, LINE_MAX_BYTES, mi)) {
		struct cg_mount m = {0};

		r = parse_mountinfo_line(line, &m);
		if (r < 0)
			return qerr_set(err, EINVAL, "cgroups: %s: malformed line", mountinfo_path);
		if (r == 0)
			continue;
		if (n_mounts == cap) {
			struct cg_mount *nm;
			if (cap >= 256)
				return qerr_set(err, E2BIG, "cgroups: %s: too many cgroup mounts",
						mountinfo_path);
			cap = cap ? cap * 2 : 16;
			nm = realloc(mounts, cap * sizeof(*mounts));
			if (!nm)
				return qerr_set(err, ENOMEM, "cgroups: out of memory");
			mounts = nm;
		}
		mounts[n_mounts++] = m;
		if (m.v2)
			has_v2 = true;
		else
			has_v1 = true;
	}
	if (!has_v1 && !has_v2)
		return qerr_set(err, ENOENT, "cgroups: no cgroup filesystem mounted (%s)",
				mountinfo_path);

	host = calloc(1, sizeof(*host));
	if (!host)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	host->layout =
	    !has_v1 ? CGROUPS_LAYOUT_V2 : (has_v2 ? CGROUPS_LAYOUT_HYBRID : CGROUPS_LAYOUT_V1);
	host->fake_files = flags & CGROUPS_HOST_FAKE_FILES;

	sc = fopen(self_cgroup_path, "re");
	if (!sc) {
		r = qerr_sys(err, errno, "cgroups: %s", self_cgroup_path);
		goto fail;
	}
	/* "hierarchy-id:controllers:path"; "0::path" is the unified one. */
	while (fgets(line, LINE_MAX_BYTES, sc)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		const char *ctrls, *path;

		if (!c2) {
			r = qerr_set(err, EINVAL, "cgroups: %s: malformed line", self_cgroup_path);
			goto fail;
		}
		*c1 = *c2 = '\0';
		ctrls = c1 + 1;
		path = c2 + 1;
		line[strcspn(line, "\n")] = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		if (path[0] != '/')
			continue;
		for (size_t i = 0; i < n_mounts; i++) {
			const struct cg_mount *m = &mounts[i];
			char v2ctrls[512] = "";
			char ctrlpath[PATH_MAX + 32];

			if (ctrls[0] == '\0' && m->v2) {
				/* Which controllers the unified hierarchy has
				 * (hybrid: only those no v1 hierarchy took). */
				snprintf(ctrlpath, sizeof(ctrlpath), "%s/cgroup.controllers",
					 m->mountpoint);
				(void)cgroups_read_file(ctrlpath, v2ctrls, sizeof(v2ctrls));
				r = add_hierarchy(host, true, m, v2ctrls, path, err);
			} else if (ctrls[0] && !m->v2 && all_tokens_in(ctrls, m->superopts)) {
				if (!v1_is_used(ctrls))
					break;
				r = add_hierarchy(host, false, m, ctrls, path, err);
			} else {
				continue;
			}
			if (r < 0)
				goto fail;
			break;
		}
	}
	if (host->n == 0) {
		r = qerr_set(err, ENOENT, "cgroups: no usable cgroup hierarchy (%s, %s)",
			     mountinfo_path, self_cgroup_path);
		goto fail;
	}
	*out = host;
	return 0;
fail:
	cgroups_host_free(host);
	return r;
}

int cgroups_host_detect(struct cgroups_host **out, struct qerr *err)
{
	return cgroups_host_parse("/proc/self/mountinfo", "/proc/self/cgroup", 0, out, err);
}

void cgroups_host_free(struct cgroups_host *host)
{
	if (!host)
		return;
	for (size_t i = 0; i < host->n; i++) {
		free(host->h[i].mountpoint);
		free(host->h[i].controllers);
		free(host->h[i].own);
	}
	free(host);
}

/* ---- path rules ---- */

/* Append "/comp" for each component of p, dropping empty and "." ones;
 * ".." is refused. */
static int append_clean(char *buf, size_t size, const char *p)
{
	size_t len = strlen(buf);

	while (*p) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (!(n == 1 && p[0] == '.')) {
			if (len + 1 + n >= size)
				return -ENAMETOOLONG;
			buf[len++] = '/';
			memcpy(buf + len, p, n);
			len += n;
			buf[len] = '\0';
		}
		p += n;
	}
	return 0;
}

static bool valid_unit_part(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == ':' || (unsigned char)s[i] < 0x20)
			return false;
	return true;
}

/* systemd's slice expansion: "a-b-c.slice" lives at a.slice/a-b.slice/a-b-c.slice. */
static int expand_slice(char *buf, size_t size, const char *slice, size_t n)
{
	const size_t suffix = strlen(".slice");

	if (n == 0) {
		slice = "system.slice";
		n = strlen(slice);
	}
	if (n == strlen("-.slice") && strncmp(slice, "-.slice", n) == 0)
		return 0; /* the root slice */
	if (n <= suffix || strncmp(slice + n - suffix, ".slice", suffix) != 0 ||
	    !valid_unit_part(slice, n) || slice[0] == '-' || memmem(slice, n, "--", 2))
		return -EINVAL;
	for (size_t i = 0; i < n - suffix; i++) {
		if (slice[i] != '-')
			continue;
		if (strlen(buf) + 2 + i + suffix >= size)
			return -ENAMETOOLONG;
		strcat(buf, "/");
		strncat(buf, slice, i);
		strcat(buf, ".slice");
	}
	if (strlen(buf) + 2 + n >= size)
		return -ENAMETOOLONG;
	strcat(buf, "/");
	strncat(buf, slice, n);
	return 0;
}

static bool valid_id(const char *id)
{
	return id && id[0] && !strchr(id, '/') && strcmp(id, ".") != 0 && strcmp(id, "..") != 0 &&
	       strlen(id) < 256;
}

int cgroups_path_rel(const char *cgroups_path, const char *id, bool systemd, char **rel,
		     bool *absolute, struct qerr *err)
{
	char buf[PATH_MAX] = "";
	int r;

	if (!valid_id(id))
		return qerr_set(err, EINVAL, "cgroups: invalid container id \"%.64s\"",
				id ? id : "");
	if (cgroups_path && strlen(cgroups_path) >= PATH_MAX)
		return qerr_set(err, ENAMETOOLONG, "linux.cgroupsPath: too long");

	if (systemd) {
		const char *p = (cgroups_path && cgroups_path[0]) ? cgroups_path : NULL;
		const char *c1, *c2, *name, *prefix;
		size_t slice_n, prefix_n, name_n;

		if (!p) {
			p = "system.slice:quiver:";
			name = id;
		}
		c1 = strchr(p, ':');
		c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2 || strchr(c2 + 1, ':'))
			return qerr_set(
			    err, EINVAL,
			    "linux.cgroupsPath: \"%.128s\": expected \"slice:prefix:name\" "
			    "with the systemd cgroup driver",
			    cgroups_path);
		if (p != cgroups_path)
			name = id;
		else
			name = c2 + 1;
		prefix = c1 + 1;
		slice_n = (size_t)(c1 - p);
		prefix_n = (size_t)(c2 - prefix);
		name_n = strlen(name);
		if (name_n == 0 || !valid_unit_part(name, name_n) ||
		    !valid_unit_part(prefix, prefix_n))
			return qerr_set(err, EINVAL, "linux.cgroupsPath: \"%.128s\": bad unit name",
					cgroups_path);
		if ((r = expand_slice(buf, sizeof(buf), p, slice_n)) < 0)
			return qerr_set(err, -r,
					"linux.cgroupsPath: \"%.128s\": bad slice \"%.*s\"",
					cgroups_path, (int)slice_n, p);
		if (strlen(buf) + prefix_n + name_n + 16 >= sizeof(buf))
			return qerr_set(err, ENAMETOOLONG, "linux.cgroupsPath: too long");
		/* A name that is itself a slice is used as is (runc does the same). */
		if (name_n > 6 && strcmp(name + name_n - 6, ".slice") == 0)
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%s", name);
		else if (prefix_n)
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%.*s-%s.scope",
				 (int)prefix_n, prefix, name);
		else
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%s.scope", name);
		*absolute = true;
	} else if (!cgroups_path || !cgroups_path[0]) {
		snprintf(buf, sizeof(buf), "quiver/%s", id);
		*absolute = false;
	} else {
		*absolute = cgroups_path[0] == '/';
		r = append_clean(buf, sizeof(buf), cgroups_path);
		if (r == -EINVAL)
			return qerr_set(err, EINVAL,
					"linux.cgroupsPath: \"%.128s\": \"..\" not allowed",
					cgroups_path);
		if (r < 0)
			return qerr_set(err, -r, "linux.cgroupsPath: too long");
		if (!*absolute)
			memmove(buf, buf + 1, strlen(buf)); /* drop the leading '/' */
		if (buf[0] == '\0' || strcmp(buf, "/") == 0)
			return qerr_set(err, EINVAL,
					"linux.cgroupsPath: \"%.128s\": names a hierarchy's root",
					cgroups_path);
	}
	*rel = strdup(buf);
	if (!*rel)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	return 0;
}

/* ---- a sandbox's cgroups ---- */

void cgroups_free(struct cgroups *cg)
{
	if (!cg)
		return;
	for (size_t i = 0; i < cg->n; i++) {
		free(cg->dirs[i]);
		free(cg->controllers[i]);
		free(cg->mountpoint[i]);
	}
	free(cg);
}

int cgroups_resolve(const struct cgroups_host *host, const char *cgroups_path, const char *id,
		    bool systemd, struct cgroups **out, struct qerr *err)
{
	cleanup_free char *rel = NULL;
	struct cgroups *cg;
	bool absolute;
	int r;

	if ((r = cgroups_path_rel(cgroups_path, id, systemd, &rel, &absolute, err)) < 0)
		return r;
	cg = calloc(1, sizeof(*cg));
	if (!cg)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	cg->fake_files = host->fake_files;
	for (size_t i = 0; i < host->n; i++) {
		const struct cgroups_hierarchy *h = &host->h[i];
		char buf[PATH_MAX];

		snprintf(buf, sizeof(buf), "%s", h->mountpoint);
		if ((!absolute && append_clean(buf, sizeof(buf), h->own) < 0) ||
		    append_clean(buf, sizeof(buf), rel) < 0) {
			cgroups_free(cg);
			return qerr_set(err, ENAMETOOLONG, "cgroups: %s: path too long",
					h->mountpoint);
		}
		cg->dirs[i] = strdup(buf);
		cg->controllers[i] = strdup(h->controllers);
		cg->mountpoint[i] = strdup(h->mountpoint);
		cg->v2[i] = h->v2;
		cg->n++;
		if (!cg->dirs[i] || !cg->controllers[i] || !cg->mountpoint[i]) {
			cgroups_free(cg);
			return qerr_set(err, ENOMEM, "cgroups: out of memory");
		}
	}
	*out = cg;
	return 0;
}

int cgroups_from_dirs(const struct cgroups_host *host, char *const *dirs, size_t n,
		      struct cgroups **out, struct qerr *err)
{
	struct cgroups *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return qerr_set(err, ENOMEM, "cgroups: out of memory");
	cg->fake_files = host->fake_files;
	for (size_t k = 0; k < n && k < CGROUPS_HIER_MAX; k++) {
		const struct cgroups_hierarchy *h = NULL;
		for (size_t i = 0; i < host->n && !h; i++) {
			size_t ml = strlen(host->h[i].mountpoint);
			if (strncmp(dirs[k], host->h[i].mountpoint, ml) == 0 && dirs[k][ml] == '/')
				h = &host->h[i];
		}
		if (!h || strstr(dirs[k], "/../") || strstr(dirs[k], "/./")) {
			cgroups_free(cg);
			return qerr_set(err, EINVAL, "cgroups: %s is not in a cgroup hierarchy",
					dirs[k]);
		}
		cg->dirs[cg->n] = strdup(dirs[k]);
		cg->controllers[cg->n] = strdup(h->controllers);
		cg->mountpoint[cg->n] = strdup(h->mountpoint);
		cg->v2[cg->n] = h->v2;
		if (!cg->dirs[cg->n] || !cg->controllers[cg->n] || !cg->mountpoint[cg->n++]) {
			cgroups_free(cg);
			return qerr_set(err, ENOMEM, "cgroups: out of memory");
		}
	}
	*out = cg;
	return 0;
}

static bool is_v1_cpuset(const struct cgroups *cg, size_t i)
{
	return !cg->v2[i] && cgroups_has_token(cg->controllers[i], "cpuset", ",");
}

/* A new v1 cpuset starts with empty cpus and mems, and no task can join it
 * until they are set: copy them from the parent. */
static int cpuset_fill(const struct cgroups *cg, const char *dir, struct qerr *err)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};

	for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
		char path[PATH_MAX + 64], parent[PATH_MAX + 64], val[4096];
		int r;

		snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
		r = cgroups_read_file(path, val, sizeof(val));
		if (r > 0)
			continue;
		if (r < 0 && !(r == -ENOENT && cg->fake_files))
			return qerr_sys(err, -r, "cgroups: read %s", path);
		snprintf(parent, sizeof(parent), "%s", dir);
		*strrchr(parent, '/') = '\0';
		snprintf(parent + strlen(parent), sizeof(parent) - strlen(parent), "/%s", files[f]);
		if ((r = cgroups_read_file(parent, val, sizeof(val))) < 0)
			return qerr_sys(err, -r, "cgroups: read %s", parent);
		if ((r = cgroups_write_file(path, val, cg->fake_files)) < 0)
			return qerr_sys(err, -r, "cgroups: write \"%s\" to %s", val, path);
	}
	return 0;
}

/* mkdir -p below the mountpoint; the last component must be new. */
static int create_one(struct cgroups *cg, size_t i, struct qerr *err)
{
	const char *dir = cg->dirs[i];
	size_t mlen = strlen(cg->mountpoint[i]);
	char buf[PATH_MAX];
	const char *p = dir + mlen;
	int r;

	snprintf(buf, sizeof(buf), "%s", cg->mountpoint[i]);
	while (*p) {
		size_t n, len = strlen(buf);
		bool last;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		last = p[n] == '\0';
		buf[len] = '/';
		memcpy(buf + len + 1, p, n);
		buf[len + 1 + n] = '\0';
		p += n;
		if (mkdir(buf, 0755) < 0) {
			if (errno == EEXIST && last)
				return qerr_set(err, EEXIST,
						"cgroups: %s already exists (left over from an "
						"earlier sandbox, or the id is in use)",
						buf);
			if (errno != EEXIST)
				return qerr_sys(err, errno, "cgroups: mkdir %s", buf);
		} else if (last) {
			cg->created[i] = true;
		}
		if (is_v1_cpuset(cg, i) && (r = cpuset_fill(cg, buf, err)) < 0)
			return r;
	}
	if (!cg->created[i])
		return qerr_set(err, EINVAL, "cgroups: %s: not below %s", dir, cg->mountpoint[i]);
	return 0;
}

int cgroups_create(struct cgroups *cg, struct qerr *err)
{
	int r;

	for (size_t i = 0; i < cg->n; i++) {
		if ((r = create_one(cg, i, err)) < 0) {
			for (size_t k = 0; k <= i; k++)
				if (cg->created[k]) {
					if (cg->fake_files) {
						/* Fake roots hold the plain files we created. */
						char cmd[PATH_MAX];
						DIR *d = opendir(cg->dirs[k]);
						struct dirent *de;
						while (d && (de = readdir(d)))
							if (de->d_type == DT_REG &&
							    snprintf(cmd, sizeof(cmd), "%s/%s",
								     cg->dirs[k], de->d_name) > 0)
								unlink(cmd);
						if (d)
							closedir(d);
					}
					rmdir(cg->dirs[k]);
					cg->created[k] = false;
				}
			return r;
		}
	}
	return 0;
}

/* ---- limits ---- */

struct render {
	const struct cgroups *cg;
	struct cgroups_write *w;
	size_t n, cap;
	struct qerr *err;
};

/* The hierarchy that holds controller ctrl: a v1 hierarchy carrying it, else
 * the v2 one if its root lists it.  -1 if none. */
static int find_hier(const struct cgroups *cg, const char *ctrl)
{
	for (size_t i = 0; i < cg->n; i++)
		if (!cg->v2[i] && cgroups_has_token(cg->controllers[i], ctrl, ","))
			return (int)i;
	for (size_t i = 0; i < cg->n; i++)
		if (cg->v2[i] && cgroups_has_token(cg->controllers[i], ctrl, " "))
			return (int)i;
	return -1;
}

static int __attribute__((format(printf, 5, 6)))
emit(struct render *rd, int hier, bool optional, const char *file, const char *fmt, ...)
{
	struct cgroups_write *w;
	va_list ap;
	int n;

	if (rd->n == rd->cap) {
		size_t cap = rd->cap ? rd->cap * 2 : 32;
		struct cgroups_write *nw = realloc(rd->w, cap * sizeof(*nw));
		if (!nw)
			return qerr_set(rd->err, ENOMEM, "cgroups: out of memory");
		rd->w = nw;
		rd->cap = cap;
	}
	w = &rd->w[rd->n];
	memset(w, 0, sizeof(*w));
	w->hier = (size_t)hier;
	w->optional = optional;
	snprintf(w->file, sizeof(w->file), "%s", file);
	va_start(ap, fmt);
	n = vsnprintf(w->value, sizeof(w->value), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(w->value))
		return qerr_set(rd->err, E2BIG, "cgroups: value for %s too long", file);
	rd->n++;
	return 0;
}

static int need(struct render *rd, const char *ctrl, const char *what)
{
	int h = find_hier(rd->cg, ctrl);

	if (h < 0)
		return qerr_set(rd->err, EOPNOTSUPP,
				"linux.resources.%s: no %s cgroup controller on this host", what,
				ctrl);
	return h;
}

static const char *const default_devices[] = {
    "c *:* m",	   "b *:* m",	/* mknod anything; opening needs a rule below */
    "c 1:3 rwm",   "c 1:5 rwm", /* null, zero */
    "c 1:7 rwm",   "c 1:8 rwm", /* full, random */
    "c 1:9 rwm",   "c 5:0 rwm", /* urandom, tty */
    "c 5:1 rwm",   "c 5:2 rwm", /* console, ptmx */
    "c 136:* rwm",		/* pts */
};

static void device_rule(char *buf, size_t size, const struct guest_device_rule *d)
{
	char maj[24] = "*", min[24] = "*";

	if (d->major >= 0)
		snprintf(maj, sizeof(maj), "%lld", (long long)d->major);
	if (d->minor >= 0)
		snprintf(min, sizeof(min), "%lld", (long long)d->minor);
	snprintf(buf, size, "%c %s:%s %s", d->type, maj, min, d->access);
}

static int render_memory(struct render *rd, const struct guest_resources *res)
{
	int h, r;

	if (!res->has_memory_limit && !res->has_memory_reservation && !res->has_memory_swap)
		return 0;
	if ((h = need(rd, "memory", "memory")) < 0)
		return h;
	if (!rd->cg->v2[h]) {
		if (res->has_memory_limit && (r = emit(rd, h, false, "memory.limit_in_bytes",
						       "%lld", (long long)res->memory_limit)) < 0)
			return r;
		/* memsw exists only with swap accounting (swapaccount=1). */
		if (res->has_memory_swap && (r = emit(rd, h, true, "memory.memsw.limit_in_bytes",
						      "%lld", (long long)res->memory_swap)) < 0)
			return r;
		if (res->has_memory_reservation &&
		    (r = emit(rd, h, false, "memory.soft_limit_in_bytes", "%lld",
			      (long long)res->memory_reservation)) < 0)
			return r;
		return 0;
	}
	if (res->has_memory_limit) {
		if (res->memory_limit < 0)
			r = emit(rd, h, false, "memory.max", "max");
		else
			r = emit(rd, h, false, "memory.max", "%lld", (long long)res->memory_limit);
		if (r < 0)
			return r;
	}
	if (res->has_memory_swap) {
		/* The spec's swap is memory+swap; v2's swap.max is swap alone. */
		if (res->memory_swap < 0)
			r = emit(rd, h, true, "memory.swap.max", "max");
		else if (res->has_memory_limit && res->memory_limit >= 0)
			r = emit(rd, h, true, "memory.swap.max", "%lld",
				 (long long)(res->memory_swap - res->memory_limit));
		else
			r = qerr_set(
			    rd->err, EINVAL,
			    "linux.resources.memory.swap: needs memory.limit on cgroup v2");
		if (r < 0)
			return r;
	}
	if (res->has_memory_reservation &&
	    (r = emit(rd, h, false, "memory.low", "%lld",
		      (long long)(res->memory_reservation < 0 ? 0 : res->memory_reservation))) < 0)
		return r;
	return 0;
}

static int render_cpu(struct render *rd, const struct guest_resources *res)
{
	int h, r;

	if (res->has_cpu_shares || res->has_cpu_quota || res->has_cpu_period) {
		if ((h = need(rd, "cpu", "cpu")) < 0)
			return h;
		if (!rd->cg->v2[h]) {
			if (res->has_cpu_shares &&
			    (r = emit(rd, h, false, "cpu.shares", "%llu",
				      (unsigned long long)res->cpu_shares)) < 0)
				return r;
			/* The period first: a quota is checked against it. */
			if (res->has_cpu_period &&
			    (r = emit(rd, h, false, "cpu.cfs_period_us", "%llu",
				      (unsigned long long)res->cpu_period)) < 0)
				return r;
			if (res->has_cpu_quota && (r = emit(rd, h, false, "cpu.cfs_quota_us",
							    "%lld", (long long)res->cpu_quota)) < 0)
				return r;
		} else {
			if (res->has_cpu_shares && res->cpu_shares) {
				/* runc's mapping of shares [2, 262144] to weight [1, 10000]. */
				uint64_t s = res->cpu_shares;
				s = s < 2 ? 2 : (s > 262144 ? 262144 : s);
				if ((r = emit(
					 rd, h, false, "cpu.weight", "%llu",
					 (unsigned long long)(1 + ((s - 2) * 9999) / 262142))) < 0)
					return r;
			}
			if (res->has_cpu_quota || res->has_cpu_period) {
				unsigned long long period = res->has_cpu_period && res->cpu_period
								? res->cpu_period
								: 100000;
				if (res->has_cpu_quota && res->cpu_quota >= 0)
					r = emit(rd, h, false, "cpu.max", "%lld %llu",
						 (long long)res->cpu_quota, period);
				else
					r = emit(rd, h, false, "cpu.max", "max %llu", period);
				if (r < 0)
					return r;
			}
		}
	}
	if (res->cpu_cpus || res->cpu_mems) {
		if ((h = need(rd, "cpuset", "cpu.cpus")) < 0)
			return h;
		if (res->cpu_cpus &&
		    (r = emit(rd, h, false, "cpuset.cpus", "%s", res->cpu_cpus)) < 0)
			return r;
		if (res->cpu_mems &&
		    (r = emit(rd, h, false, "cpuset.mems", "%s", res->cpu_mems)) < 0)
			return r;
	}
	return 0;
}

int cgroups_render(const struct cgroups *cg, const struct guest_resources *res,
		   struct cgroups_write **out, size_t *n_out, struct qerr *err)
{
	struct render rd = {.cg = cg, .err = err};
	int h, r;

	*out = NULL;
	*n_out = 0;
	if (res) {
		if ((r = render_memory(&rd, res)) < 0 || (r = render_cpu(&rd, res)) < 0)
			goto fail;
		if (res->has_pids_limit) {
			if ((r = h = need(&rd, "pids", "pids")) < 0)
				goto fail;
			if (res->pids_limit > 0)
				r = emit(&rd, h, false, "pids.max", "%lld",
					 (long long)res->pids_limit);
			else
				r = emit(&rd, h, false, "pids.max", "max");
			if (r < 0)
				goto fail;
		}
		for (size_t i = 0; i < res->n_hugepage_limits; i++) {
			const struct guest_hugepage_limit *hp = &res->hugepage_limits[i];
			char file[64];

			if ((r = h = need(&rd, "hugetlb", "hugepageLimits")) < 0)
				goto fail;
			snprintf(file, sizeof(file), "hugetlb.%s.%s", hp->page_size,
				 cg->v2[h] ? "max" : "limit_in_bytes");
			if ((r = emit(&rd, h, false, file, "%llu", (unsigned long long)hp->limit)) <
			    0)
				goto fail;
		}
	}
	/* Devices: v1 only.  On pure v2 the device controller is an eBPF
	 * program attached to the cgroup, which Quiver does not implement yet:
	 * there, device access is limited only by what the rootfs's /dev holds. */
	h = -1;
	for (size_t i = 0; i < cg->n; i++)
		if (!cg->v2[i] && cgroups_has_token(cg->controllers[i], "devices", ","))
			h = (int)i;
	if (h >= 0) {
		char rule[64];

		if ((r = emit(&rd, h, false, "devices.deny", "a")) < 0)
			goto fail;
		for (size_t i = 0; res && i < res->n_devices; i++) {
			device_rule(rule, sizeof(rule), &res->devices[i]);
			if ((r = emit(&rd, h, false,
				      res->devices[i].allow ? "devices.allow" : "devices.deny",
				      "%s", rule)) < 0)
				goto fail;
		}
		/* As runc: the default list comes after the config's rules. */
		for (size_t i = 0; i < ARRAY_SIZE(default_devices); i++)
			if ((r = emit(&rd, h, false, "devices.allow", "%s", default_devices[i])) <
			    0)
				goto fail;
	}
	*out = rd.w;
	*n_out = rd.n;
	return 0;
fail:
	free(rd.w);
	return r;
}

/* v2: a controller is usable in a cgroup only if every ancestor below the
 * root lists it in cgroup.subtree_control. */
static int v2_enable(const struct cgroups *cg, size_t i, const char *ctrl, struct qerr *err)
{
	char buf[PATH_MAX + 32];
	const char *dir = cg->dirs[i];
	size_t mlen = strlen(cg->mountpoint[i]);
	const char *last = strrchr(dir, '/');

	for (const char *p = dir + mlen;;) {
		char path[PATH_MAX + 64], cur[1024], val[72];
		int r;

		/* buf = dir up to p: the ancestor whose subtree_control we write. */
		snprintf(buf, sizeof(buf), "%.*s", (int)(p - dir), dir);
		snprintf(path, sizeof(path), "%s/cgroup.subtree_control", buf);
		r = cgroups_read_file(path, cur, sizeof(cur));
		if (r < 0 && !(r == -ENOENT && cg->fake_files))
			return qerr_sys(err, -r, "cgroups: read %s", path);
		if (r < 0 || !cgroups_has_token(cur, ctrl, " ")) {
			snprintf(val, sizeof(val), "+%s", ctrl);
			if ((r = cgroups_write_file(path, val, cg->fake_files)) < 0)
				return qerr_sys(err, -r, "cgroups: write \"%s\" to %s", val, path);
		}
		if (p == last)
			break;
		p = strchr(p + 1, '/');
		if (!p)
			break;
	}
	return 0;
}

/* The config's device rules add nothing to the default list when they
 * only deny everything (the usual `{"allow": false, "access": "rwm"}`):
 * the list starts with "deny a" anyway. */
static bool devices_are_default(const struct guest_resources *res)
{
	for (size_t i = 0; res && i < res->n_devices; i++) {
		const struct guest_device_rule *d = &res->devices[i];
		if (d->allow || d->type != 'a' || d->major >= 0 || d->minor >= 0 ||
		    strcmp(d->access, "rwm") != 0)
			return false;
	}
	return true;
}

int cgroups_apply(const struct cgroups *cg, const struct guest_resources *res, struct qerr *err)
{
	return cgroups_apply_limits(cg, res, false, err);
}

int cgroups_apply_limits(const struct cgroups *cg, const struct guest_resources *res,
			 bool defaults_applied, struct qerr *err)
{
	cleanup_free struct cgroups_write *w = NULL;
	size_t n;
	int r;

	if ((r = cgroups_render(cg, res, &w, &n, err)) < 0)
		return r;
	if (res && res->has_devices) {
		bool v1_devices = false;
		for (size_t i = 0; i < cg->n; i++)
			v1_devices |=
			    !cg->v2[i] && cgroups_has_token(cg->controllers[i], "devices", ",");
		if (!v1_devices)
			qlog_warn("cgroups: linux.resources.devices ignored: device filtering on "
				  "cgroup v2 (eBPF) is not implemented yet");
	}
	for (size_t k = 0; k < n; k++) {
		char ctrl[64];

		if (!cg->v2[w[k].hier])
			continue;
		snprintf(ctrl, sizeof(ctrl), "%.*s", (int)strcspn(w[k].file, "."), w[k].file);
		if ((r = v2_enable(cg, w[k].hier, ctrl, err)) < 0)
			return r;
	}
	bool skip_devices = defaults_applied && devices_are_default(res);
	for (size_t k = 0; k < n; k++) {
		char path[PATH_MAX + 80];

		if (skip_devices && strncmp(w[k].file, "devices.", 8) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", cg->dirs[w[k].hier], w[k].file);
		r = cgroups_write_file(path, w[k].value, cg->fake_files && !w[k].optional);
		if (r == -ENOENT && w[k].optional)
			continue;
		if (r < 0)
			return qerr_sys(err, -r, "cgroups: write \"%s\" to %s", w[k].value, path);
	}
	return 0;
}

int cgroups_join(const struct cgroups *cg, pid_t pid, struct qerr *err)
{
	char val[24];

	snprintf(val, sizeof(val), "%d", (int)pid);
	for (size_t i = 0; i < cg->n; i++) {
		char path[PATH_MAX + 32];
		int r;

		snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dirs[i]);
		if ((r = cgroups_write_file(path, val, cg->fake_files)) < 0)
			return qerr_sys(err, -r, "cgroups: move pid %d to %s", (int)pid, path);
	}
	return 0;
}

/* ---- removal and listing (vmmd; no config needed) ---- */

/* Only directories below the root of a cgroup filesystem, without "..". */
static int check_cgroup_dir(const char *dir, struct qerr *err)
{
	char parent[PATH_MAX];
	struct statfs sf;
	char *slash;

	if (dir[0] != '/' || strstr(dir, "/../") || strlen(dir) >= PATH_MAX ||
	    (strlen(dir) >= 3 && strcmp(dir + strlen(dir) - 3, "/..") == 0))
		return qerr_set(err, EINVAL, "cgroups: %.256s: not an absolute, clean path", dir);
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash == parent)
		return qerr_set(err, EINVAL, "cgroups: %s: not a cgroup directory", dir);
	*slash = '\0';
	/* The parent must be on cgroupfs too, so a hierarchy's root (whose
	 * parent is /sys/fs/cgroup's tmpfs, or /sys/fs) is refused. */
	if (statfs(parent, &sf) < 0)
		return errno == ENOENT ? 0 : qerr_sys(err, errno, "cgroups: statfs %s", parent);
	if (sf.f_type != CGROUP_SUPER_MAGIC && sf.f_type != CGROUP2_SUPER_MAGIC)
		return qerr_set(err, EINVAL, "cgroups: %s: not a cgroup directory", dir);
	return 0;
}

/* Call fn on dir and every sub-cgroup, children first. */
static int walk(const char *dir, int depth, int (*fn)(const char *, void *), void *arg)
{
	DIR *d;
	struct dirent *de;
	int r = 0, first = 0;

	if (depth > 64)
		return -ELOOP;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char sub[PATH_MAX];

		if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= (int)sizeof(sub))
			continue;
		r = walk(sub, depth + 1, fn, arg);
		if (r < 0 && !first)
			first = r;
	}
	closedir(d);
	r = fn(dir, arg);
	return first ? first : r;
}

static int read_pids(const char *dir, int (*each)(pid_t, void *), void *arg)
{
	char path[PATH_MAX + 32];
	cleanup_fclose FILE *f = NULL;
	long pid;
	int r;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fscanf(f, "%ld", &pid) == 1)
		if (pid > 0 && pid <= INT_MAX && (r = each((pid_t)pid, arg)) < 0)
			return r;
	return 0;
}

static int kill_one(pid_t pid, void *arg)
{
	(void)arg;
	if (kill(pid, SIGKILL) < 0 && errno != ESRCH)
		return -errno;
	return 0;
}

static int kill_stragglers(const char *dir, void *arg)
{
	char path[PATH_MAX + 32];

	(void)arg;
	/* v2 (5.14+): the kernel kills everything below, atomically. */
	snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	if (cgroups_write_file(path, "1", false) == 0)
		return 0;
	/* v1: a frozen task cannot die; thaw, then signal each. */
	snprintf(path, sizeof(path), "%s/freezer.state", dir);
	(void)cgroups_write_file(path, "THAWED", false);
	return read_pids(dir, kill_one, NULL);
}

static int rmdir_one(const char *dir, void *arg)
{
	(void)arg;
	if (rmdir(dir) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int cgroups_remove(char *const *dirs, size_t n, struct qerr *err)
{
	struct qerr later;
	int first = 0;

	/* Go on past a failure (remove what can be removed); report the first. */
	for (size_t i = 0; i < n; i++) {
		struct qerr *e = first ? &later : err;
		struct timespec ts = {0, 5 * 1000 * 1000};
		int r = check_cgroup_dir(dirs[i], e);

		if (r < 0) {
			first = first ? first : r;
			continue;
		}
		/* Processes of a just-killed pid namespace take a moment to
		 * leave: retry for about two seconds. */
		for (int attempt = 0;; attempt++) {
			if (access(dirs[i], F_OK) < 0 && errno == ENOENT) {
				r = 0;
				break;
			}
			(void)walk(dirs[i], 0, kill_stragglers, NULL);
			r = walk(dirs[i], 0, rmdir_one, NULL);
			if (r != -EBUSY || attempt >= 60)
				break;
			nanosleep(&ts, NULL);
			if (ts.tv_nsec < 50 * 1000 * 1000)
				ts.tv_nsec *= 2;
		}
		if (r < 0) {
			r = qerr_sys(e, -r, "cgroups: remove %s", dirs[i]);
			first = first ? first : r;
		}
	}
	return first;
}

struct pid_list {
	pid_t *v;
	size_t n, cap;
};

static int add_pid(pid_t pid, void *arg)
{
	struct pid_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		pid_t *nv;
		if (cap > PIDS_MAX)
			return -E2BIG;
		nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = pid;
	return 0;
}

static int collect_pids(const char *dir, void *arg)
{
	return read_pids(dir, add_pid, arg);
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

int cgroups_list_pids(char *const *dirs, size_t n, pid_t **pids, size_t *n_pids, struct qerr *err)
{
	struct pid_list l = {0};
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		int r = check_cgroup_dir(dirs[i], err);
		if (r < 0) {
			free(l.v);
			return r;
		}
		if ((r = walk(dirs[i], 0, collect_pids, &l)) < 0) {
			free(l.v);
			return qerr_sys(err, -r, "cgroups: list pids of %s", dirs[i]);
		}
	}
	if (l.n) {
		qsort(l.v, l.n, sizeof(*l.v), cmp_pid);
		for (size_t i = 0; i < l.n; i++)
			if (k == 0 || l.v[k - 1] != l.v[i])
				l.v[k++] = l.v[i];
	}
	*pids = l.v;
	*n_pids = k;
	return 0;
}
