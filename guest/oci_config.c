/* config.json → struct guest_config: parse, bound and validate once, so the
 * launcher and supervisor work on plain C data (oci_config.h).
 *
 * Unknown members are ignored, as the runtime-spec asks; a member that is
 * present must have the right type and a sensible value.  Each error names
 * the file, the JSON path and the problem on one line. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/oci_config.h"
#include "guest/trap.h"
#include "libcommon/cleanup.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define JPATH_MAX 256

/* Where a message goes and which file it names. */
struct pc {
	const char *file;
	struct qerr *err;
};

static int __attribute__((format(printf, 4, 5)))
perr_code(struct pc *c, int code, const char *path, const char *fmt, ...)
{
	char msg[QERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path && path[0])
		return qerr_set(c->err, code, "%s: %s: %s", c->file, path, msg);
	return qerr_set(c->err, code, "%s: %s", c->file, msg);
}

#define perr(c, path, ...) perr_code(c, EINVAL, path, __VA_ARGS__)

/* "parent.key", or "key" at the top of a standalone object.  Paths are
 * built from fixed keys and indices, so truncation only happens for absurd
 * nesting; a truncated path is still a useful message. */
static const char *jp(char *buf, const char *parent, const char *key)
{
	int n;

	if (parent[0])
		n = snprintf(buf, JPATH_MAX, "%s.%s", parent, key);
	else
		n = snprintf(buf, JPATH_MAX, "%s", key);
	if (n < 0)
		buf[0] = '\0';
	return buf;
}

static const char *jpi(char *buf, const char *parent, size_t i)
{
	if (snprintf(buf, JPATH_MAX, "%s[%zu]", parent, i) < 0)
		buf[0] = '\0';
	return buf;
}

/* ---- typed getters: absent members are fine unless required ---- */

/* The member key of obj, or NULL when it is absent or null (both mean "not
 * set"); path gets its JSON path.  When NULL, *rc is what the getter
 * returns: the "missing" error if the member is required, else 0. */
static json_t *member(struct pc *c, json_t *obj, const char *parent, const char *key, bool required,
		      char *path, int *rc)
{
	json_t *v = json_object_get(obj, key);

	jp(path, parent, key);
	*rc = 0;
	if (v && !json_is_null(v))
		return v;
	if (required)
		*rc = perr(c, path, "missing");
	return NULL;
}

static int check_string(struct pc *c, json_t *v, const char *path, size_t max, char **out)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return perr(c, path, "must be a string");
	s = json_string_value(v);
	len = json_string_length(v);
	/* jansson rejects \u0000 unless asked not to, so len == strlen(s). */
	if (len > max)
		return perr_code(c, E2BIG, path, "longer than %zu bytes", max);
	*out = strdup(s);
	if (!*out)
		return perr_code(c, ENOMEM, path, "out of memory");
	return 0;
}

static int get_string(struct pc *c, json_t *obj, const char *parent, const char *key, bool required,
		      size_t max, char **out)
{
	char path[JPATH_MAX];
	int rc;
	json_t *v = member(c, obj, parent, key, required, path, &rc);

	if (!v)
		return rc;
	return check_string(c, v, path, max, out);
}

static int get_abs_path(struct pc *c, json_t *obj, const char *parent, const char *key,
			bool required, char **out)
{
	char path[JPATH_MAX];
	int r = get_string(c, obj, parent, key, required, GUEST_CONFIG_PATH_MAX, out);

	if (r < 0)
		return r;
	if (*out && (*out)[0] != '/')
		return perr(c, jp(path, parent, key), "must be an absolute path");
	return 0;
}

static int get_bool(struct pc *c, json_t *obj, const char *parent, const char *key, bool *out,
		    bool *present)
{
	char path[JPATH_MAX];
	int rc;
	json_t *v = member(c, obj, parent, key, false, path, &rc);

	if (present)
		*present = false;
	if (!v)
		return rc;
	if (!json_is_boolean(v))
		return perr(c, path, "must be a boolean");
	*out = json_is_true(v);
	if (present)
		*present = true;
	return 0;
}

static int check_int(struct pc *c, json_t *v, const char *path, json_int_t min, json_int_t max,
		     json_int_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return perr(c, path, "must be an integer");
	i = json_integer_value(v);
	if (i < min || i > max)
		return perr(c, path, "must be between %lld and %lld", (long long)min,
			    (long long)max);
	*out = i;
	return 0;
}

static int get_int(struct pc *c, json_t *obj, const char *parent, const char *key, bool required,
		   json_int_t min, json_int_t max, json_int_t *out, bool *present)
{
	char path[JPATH_MAX];
	int rc;
	json_t *v = member(c, obj, parent, key, required, path, &rc);

	if (present)
		*present = false;
	if (!v)
		return rc;
	if (check_int(c, v, path, min, max, out) < 0)
		return -EINVAL;
	if (present)
		*present = true;
	return 0;
}

/* An object member: *out NULL when absent (and not required). */
static int get_object(struct pc *c, json_t *obj, const char *parent, const char *key, bool required,
		      json_t **out)
{
	char path[JPATH_MAX];
	int rc;
	json_t *v = member(c, obj, parent, key, required, path, &rc);

	*out = NULL;
	if (!v)
		return rc;
	if (!json_is_object(v))
		return perr(c, path, "must be an object");
	if (json_object_size(v) > GUEST_CONFIG_ARRAY_MAX)
		return perr_code(c, E2BIG, path, "more than %u members", GUEST_CONFIG_ARRAY_MAX);
	*out = v;
	return 0;
}

static int get_array(struct pc *c, json_t *obj, const char *parent, const char *key, size_t max,
		     json_t **out)
{
	char path[JPATH_MAX];
	int rc;
	json_t *v = member(c, obj, parent, key, false, path, &rc);

	*out = NULL;
	if (!v)
		return rc;
	if (!json_is_array(v))
		return perr(c, path, "must be an array");
	if (json_array_size(v) > max)
		return perr_code(c, E2BIG, path, "more than %zu entries", max);
	*out = v;
	return 0;
}

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* An array of strings → NULL-terminated vector (empty array → {NULL}). */
static int strv_from_array(struct pc *c, json_t *arr, const char *path, size_t maxlen, char ***out,
			   size_t *n_out)
{
	char ipath[JPATH_MAX];
	size_t n = arr ? json_array_size(arr) : 0;
	char **v = calloc(n + 1, sizeof(*v));

	if (!v)
		return perr_code(c, ENOMEM, path, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int r = check_string(c, json_array_get(arr, i), jpi(ipath, path, i), maxlen, &v[i]);
		if (r < 0) {
			strv_free(v);
			return r;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

static int get_strv(struct pc *c, json_t *obj, const char *parent, const char *key, size_t maxn,
		    size_t maxlen, char ***out, size_t *n_out)
{
	char path[JPATH_MAX];
	json_t *arr;
	int r = get_array(c, obj, parent, key, maxn, &arr);

	if (r < 0)
		return r;
	return strv_from_array(c, arr, jp(path, parent, key), maxlen, out, n_out);
}

/* ---- process ---- */

static int parse_ids(struct pc *c, json_t *user, const char *path, struct guest_user *u)
{
	char p[JPATH_MAX];
	json_int_t v;
	bool present;
	json_t *arr;
	int r;

	if ((r = get_int(c, user, path, "uid", true, 0, UINT32_MAX, &v, NULL)) < 0)
		return r;
	u->uid = (uid_t)v;
	if ((r = get_int(c, user, path, "gid", true, 0, UINT32_MAX, &v, NULL)) < 0)
		return r;
	u->gid = (gid_t)v;
	if ((r = get_int(c, user, path, "umask", false, 0, 0777, &v, &present)) < 0)
		return r;
	u->has_umask = present;
	u->umask = (mode_t)v;
	if ((r = get_array(c, user, path, "additionalGids", NGROUPS_MAX, &arr)) < 0)
		return r;
	if (!arr)
		return 0;
	u->additional_gids = calloc(json_array_size(arr) + 1, sizeof(gid_t));
	if (!u->additional_gids)
		return perr_code(c, ENOMEM, path, "out of memory");
	jp(p, path, "additionalGids");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char ip[JPATH_MAX];
		if ((r = check_int(c, json_array_get(arr, i), jpi(ip, p, i), 0, UINT32_MAX, &v)) <
		    0)
			return r;
		u->additional_gids[i] = (gid_t)v;
	}
	u->n_additional_gids = json_array_size(arr);
	return 0;
}

static int parse_capset(struct pc *c, json_t *caps, const char *path, const char *key,
			uint64_t *mask)
{
	char p[JPATH_MAX], ip[JPATH_MAX];
	json_t *arr;
	int r;

	if ((r = get_array(c, caps, path, key, 256, &arr)) < 0)
		return r;
	if (!arr)
		return 0;
	jp(p, path, key);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);
		const char *name;
		cap_value_t cap;

		jpi(ip, p, i);
		if (!json_is_string(e))
			return perr(c, ip, "must be a string");
		name = json_string_value(e);
		/* cap_from_name also takes numbers and lower case; the spec
		 * names capabilities "CAP_X", so insist on that. */
		if (json_string_length(e) > 64 || strncmp(name, "CAP_", 4) != 0 ||
		    cap_from_name(name, &cap) != 0 || cap < 0 || cap > 63)
			return perr(c, ip, "unknown capability \"%.64s\"", name);
		*mask |= 1ULL << cap;
	}
	return 0;
}

static const struct {
	const char *name;
	int value;
} rlimit_names[] = {
    {"RLIMIT_CPU", RLIMIT_CPU},		  {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_DATA", RLIMIT_DATA},	  {"RLIMIT_STACK", RLIMIT_STACK},
    {"RLIMIT_CORE", RLIMIT_CORE},	  {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC},	  {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},	  {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},	  {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},	  {"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

int guest_rlimit_from_name(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(rlimit_names); i++)
		if (strcmp(name, rlimit_names[i].name) == 0)
			return rlimit_names[i].value;
	return -1;
}

static int parse_rlimits(struct pc *c, json_t *arr, const char *path, struct guest_process *p)
{
	char ip[JPATH_MAX], tp[JPATH_MAX];
	uint64_t seen = 0;
	int r;

	p->rlimits = calloc(json_array_size(arr) + 1, sizeof(*p->rlimits));
	if (!p->rlimits)
		return perr_code(c, ENOMEM, path, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);
		struct guest_rlimit *rl = &p->rlimits[i];
		cleanup_free char *type = NULL;
		json_int_t soft, hard;

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		if ((r = get_string(c, e, ip, "type", true, 64, &type)) < 0)
			return r;
		rl->type = guest_rlimit_from_name(type);
		if (rl->type < 0)
			return perr(c, jp(tp, ip, "type"), "unknown rlimit \"%s\"", type);
		if (seen & (1ULL << rl->type))
			return perr(c, jp(tp, ip, "type"), "duplicate rlimit \"%s\"", type);
		seen |= 1ULL << rl->type;
		if ((r = get_int(c, e, ip, "soft", true, 0, INT64_MAX, &soft, NULL)) < 0)
			return r;
		if ((r = get_int(c, e, ip, "hard", true, 0, INT64_MAX, &hard, NULL)) < 0)
			return r;
		if (soft > hard)
			return perr(c, jp(tp, ip, "soft"),
				    "soft limit %lld is above the hard limit %lld", (long long)soft,
				    (long long)hard);
		rl->soft = (uint64_t)soft;
		rl->hard = (uint64_t)hard;
		p->n_rlimits++;
	}
	return 0;
}

/* Parse a process object; path is "process" in config.json, "" standalone. */
static int parse_process(struct pc *c, json_t *obj, const char *path, struct guest_process *p)
{
	char sub[JPATH_MAX];
	json_t *o, *arr;
	json_int_t v;
	bool present;
	int r;

	if ((r = get_bool(c, obj, path, "terminal", &p->terminal, NULL)) < 0)
		return r;
	if ((r = get_object(c, obj, path, "consoleSize", false, &o)) < 0)
		return r;
	if (o) {
		jp(sub, path, "consoleSize");
		if ((r = get_int(c, o, sub, "height", true, 0, UINT16_MAX, &v, NULL)) < 0)
			return r;
		p->console_height = (unsigned int)v;
		if ((r = get_int(c, o, sub, "width", true, 0, UINT16_MAX, &v, NULL)) < 0)
			return r;
		p->console_width = (unsigned int)v;
		p->has_console_size = true;
	}
	if ((r = get_object(c, obj, path, "user", true, &o)) < 0)
		return r;
	if ((r = parse_ids(c, o, jp(sub, path, "user"), &p->user)) < 0)
		return r;

	if ((r = get_array(c, obj, path, "args", GUEST_CONFIG_ARGS_MAX, &arr)) < 0)
		return r;
	if (!arr || json_array_size(arr) == 0)
		return perr(c, jp(sub, path, "args"), "must be a non-empty array");
	if ((r = strv_from_array(c, arr, jp(sub, path, "args"), GUEST_CONFIG_STRING_MAX, &p->args,
				 &p->n_args)) < 0)
		return r;
	if (p->args[0][0] == '\0')
		return perr(c, jp(sub, path, "args[0]"), "must not be empty");

	if ((r = get_strv(c, obj, path, "env", GUEST_CONFIG_ENV_MAX, GUEST_CONFIG_STRING_MAX,
			  &p->env, &p->n_env)) < 0)
		return r;
	for (size_t i = 0; i < p->n_env; i++) {
		char ip[JPATH_MAX];
		const char *eq = strchr(p->env[i], '=');
		if (!eq || eq == p->env[i])
			return perr(c, jpi(ip, jp(sub, path, "env"), i), "must be KEY=VALUE");
	}

	if ((r = get_abs_path(c, obj, path, "cwd", true, &p->cwd)) < 0)
		return r;

	if ((r = get_object(c, obj, path, "capabilities", false, &o)) < 0)
		return r;
	if (o) {
		jp(sub, path, "capabilities");
		p->has_capabilities = true;
		if ((r = parse_capset(c, o, sub, "bounding", &p->caps.bounding)) < 0 ||
		    (r = parse_capset(c, o, sub, "effective", &p->caps.effective)) < 0 ||
		    (r = parse_capset(c, o, sub, "inheritable", &p->caps.inheritable)) < 0 ||
		    (r = parse_capset(c, o, sub, "permitted", &p->caps.permitted)) < 0 ||
		    (r = parse_capset(c, o, sub, "ambient", &p->caps.ambient)) < 0)
			return r;
	}

	if ((r = get_array(c, obj, path, "rlimits", 64, &arr)) < 0)
		return r;
	if (arr && (r = parse_rlimits(c, arr, jp(sub, path, "rlimits"), p)) < 0)
		return r;

	if ((r = get_bool(c, obj, path, "noNewPrivileges", &p->no_new_privileges, NULL)) < 0)
		return r;
	if ((r = get_int(c, obj, path, "oomScoreAdj", false, -1000, 1000, &v, &present)) < 0)
		return r;
	p->has_oom_score_adj = present;
	p->oom_score_adj = (int)v;
	if ((r = get_string(c, obj, path, "apparmorProfile", false, 1024, &p->apparmor_profile)) <
	    0)
		return r;
	if ((r = get_string(c, obj, path, "selinuxLabel", false, 4096, &p->selinux_label)) < 0)
		return r;
	return 0;
}

void guest_process_free(struct guest_process *p)
{
	if (!p)
		return;
	free(p->user.additional_gids);
	strv_free(p->args);
	strv_free(p->env);
	free(p->cwd);
	free(p->rlimits);
	free(p->apparmor_profile);
	free(p->selinux_label);
	memset(p, 0, sizeof(*p));
}

/* ---- mounts ---- */

enum opt_kind { OPT_SET, OPT_CLEAR, OPT_PROPAGATION, OPT_REC_SET, OPT_REC_CLEAR };

static const struct mount_opt {
	const char *name;
	enum opt_kind kind;
	unsigned long value;
} mount_opts[] = {
    {"defaults", OPT_SET, 0},
    {"async", OPT_CLEAR, MS_SYNCHRONOUS},
    {"sync", OPT_SET, MS_SYNCHRONOUS},
    {"atime", OPT_CLEAR, MS_NOATIME},
    {"noatime", OPT_SET, MS_NOATIME},
    {"diratime", OPT_CLEAR, MS_NODIRATIME},
    {"nodiratime", OPT_SET, MS_NODIRATIME},
    {"relatime", OPT_SET, MS_RELATIME},
    {"norelatime", OPT_CLEAR, MS_RELATIME},
    {"strictatime", OPT_SET, MS_STRICTATIME},
    {"nostrictatime", OPT_CLEAR, MS_STRICTATIME},
    {"lazytime", OPT_SET, MS_LAZYTIME},
    {"nolazytime", OPT_CLEAR, MS_LAZYTIME},
    {"bind", OPT_SET, MS_BIND},
    {"rbind", OPT_SET, MS_BIND | MS_REC},
    {"dev", OPT_CLEAR, MS_NODEV},
    {"nodev", OPT_SET, MS_NODEV},
    {"exec", OPT_CLEAR, MS_NOEXEC},
    {"noexec", OPT_SET, MS_NOEXEC},
    {"suid", OPT_CLEAR, MS_NOSUID},
    {"nosuid", OPT_SET, MS_NOSUID},
    {"ro", OPT_SET, MS_RDONLY},
    {"rw", OPT_CLEAR, MS_RDONLY},
    {"dirsync", OPT_SET, MS_DIRSYNC},
    {"remount", OPT_SET, MS_REMOUNT},
    {"mand", OPT_SET, MS_MANDLOCK},
    {"nomand", OPT_CLEAR, MS_MANDLOCK},
    {"iversion", OPT_SET, MS_I_VERSION},
    {"noiversion", OPT_CLEAR, MS_I_VERSION},
    {"silent", OPT_SET, MS_SILENT},
    {"loud", OPT_CLEAR, MS_SILENT},
    {"nosymfollow", OPT_SET, MS_NOSYMFOLLOW},
    {"symfollow", OPT_CLEAR, MS_NOSYMFOLLOW},
    {"private", OPT_PROPAGATION, MS_PRIVATE},
    {"rprivate", OPT_PROPAGATION, MS_PRIVATE | MS_REC},
    {"shared", OPT_PROPAGATION, MS_SHARED},
    {"rshared", OPT_PROPAGATION, MS_SHARED | MS_REC},
    {"slave", OPT_PROPAGATION, MS_SLAVE},
    {"rslave", OPT_PROPAGATION, MS_SLAVE | MS_REC},
    {"unbindable", OPT_PROPAGATION, MS_UNBINDABLE},
    {"runbindable", OPT_PROPAGATION, MS_UNBINDABLE | MS_REC},
    /* Recursive attributes (mount_setattr with AT_RECURSIVE), as runc 1.1. */
    {"rro", OPT_REC_SET, MOUNT_ATTR_RDONLY},
    {"rrw", OPT_REC_CLEAR, MOUNT_ATTR_RDONLY},
    {"rnosuid", OPT_REC_SET, MOUNT_ATTR_NOSUID},
    {"rsuid", OPT_REC_CLEAR, MOUNT_ATTR_NOSUID},
    {"rnodev", OPT_REC_SET, MOUNT_ATTR_NODEV},
    {"rdev", OPT_REC_CLEAR, MOUNT_ATTR_NODEV},
    {"rnoexec", OPT_REC_SET, MOUNT_ATTR_NOEXEC},
    {"rexec", OPT_REC_CLEAR, MOUNT_ATTR_NOEXEC},
    {"rnodiratime", OPT_REC_SET, MOUNT_ATTR_NODIRATIME},
    {"rdiratime", OPT_REC_CLEAR, MOUNT_ATTR_NODIRATIME},
    {"rnoatime", OPT_REC_SET, MOUNT_ATTR_NOATIME},
    {"rstrictatime", OPT_REC_SET, MOUNT_ATTR_STRICTATIME},
    {"rrelatime", OPT_REC_SET, MOUNT_ATTR_RELATIME},
    {"rnosymfollow", OPT_REC_SET, MOUNT_ATTR_NOSYMFOLLOW},
    {"rsymfollow", OPT_REC_CLEAR, MOUNT_ATTR_NOSYMFOLLOW},
};

static int propagation_from_name(const char *name, unsigned long *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(mount_opts); i++)
		if (mount_opts[i].kind == OPT_PROPAGATION &&
		    strcmp(name, mount_opts[i].name) == 0) {
			*out = mount_opts[i].value;
			return 0;
		}
	return -1;
}

static int apply_mount_option(struct pc *c, const char *path, const char *opt,
			      struct guest_mount *m, char *data, size_t *data_len)
{
	size_t len;

	for (size_t i = 0; i < ARRAY_SIZE(mount_opts); i++) {
		const struct mount_opt *o = &mount_opts[i];

		if (strcmp(opt, o->name) != 0)
			continue;
		switch (o->kind) {
		case OPT_SET:
			m->flags |= o->value;
			m->clear_flags &= ~o->value;
			break;
		case OPT_CLEAR:
			m->flags &= ~o->value;
			m->clear_flags |= o->value;
			break;
		case OPT_PROPAGATION:
			m->propagation = o->value;
			break;
		case OPT_REC_SET:
			if (o->value == MOUNT_ATTR_NOATIME || o->value == MOUNT_ATTR_STRICTATIME ||
			    o->value == MOUNT_ATTR_RELATIME)
				m->rec_attr_clr |= MOUNT_ATTR__ATIME;
			m->rec_attr_set |= o->value;
			m->rec_attr_clr &= ~(uint64_t)o->value;
			break;
		case OPT_REC_CLEAR:
			m->rec_attr_clr |= o->value;
			m->rec_attr_set &= ~(uint64_t)o->value;
			break;
		}
		return 0;
	}
	if (strcmp(opt, "tmpcopyup") == 0) {
		m->tmpcopyup = true;
		return 0;
	}
	if (strcmp(opt, "idmap") == 0 || strcmp(opt, "ridmap") == 0)
		return perr_code(c, ENOTSUP, path, "\"%s\" is not supported", opt);
	if (opt[0] == '\0')
		return perr(c, path, "must not be empty");
	if (strchr(opt, ','))
		return perr(c, path, "must be one option (no ',')");
	/* Anything else is filesystem data ("mode=755", "size=64k", ...). */
	len = strlen(opt);
	if (*data_len + len + 2 > GUEST_CONFIG_STRING_MAX)
		return perr_code(c, E2BIG, path, "mount data longer than %u bytes",
				 GUEST_CONFIG_STRING_MAX);
	if (*data_len)
		data[(*data_len)++] = ',';
	memcpy(data + *data_len, opt, len + 1);
	*data_len += len;
	return 0;
}

static int parse_mount(struct pc *c, json_t *e, const char *path, struct guest_mount *m)
{
	char p[JPATH_MAX], ip[JPATH_MAX];
	cleanup_free char *data = NULL;
	size_t data_len = 0;
	int r;

	if (!json_is_object(e))
		return perr(c, path, "must be an object");
	if ((r = get_abs_path(c, e, path, "destination", true, &m->destination)) < 0)
		return r;
	if ((r = get_string(c, e, path, "type", false, 256, &m->type)) < 0)
		return r;
	if ((r = get_string(c, e, path, "source", false, GUEST_CONFIG_PATH_MAX, &m->source)) < 0)
		return r;
	if ((r = get_strv(c, e, path, "options", 256, GUEST_CONFIG_STRING_MAX, &m->options,
			  &m->n_options)) < 0)
		return r;
	/* What the options can add up to (each, a comma or the NUL), not the
	 * limit: 64 KiB per mount grew the heap and had free() trim it back,
	 * a brk and a TLB flush each (apply_mount_option checks the limit). */
	size_t need = 1;
	for (size_t i = 0; i < m->n_options && need < GUEST_CONFIG_STRING_MAX; i++)
		need += strlen(m->options[i]) + 1;
	data = malloc(need < GUEST_CONFIG_STRING_MAX ? need : GUEST_CONFIG_STRING_MAX);
	if (!data)
		return perr_code(c, ENOMEM, path, "out of memory");
	data[0] = '\0';
	jp(p, path, "options");
	for (size_t i = 0; i < m->n_options; i++)
		if ((r = apply_mount_option(c, jpi(ip, p, i), m->options[i], m, data, &data_len)) <
		    0)
			return r;
	m->data = strdup(data);
	if (!m->data)
		return perr_code(c, ENOMEM, path, "out of memory");
	m->is_bind = (m->flags & MS_BIND) != 0;
	if (!m->is_bind && !m->type)
		return perr(c, jp(p, path, "type"), "missing (required unless bind or rbind)");
	if (m->is_bind && !m->source)
		return perr(c, jp(p, path, "source"), "missing (required for a bind mount)");
	return 0;
}

static void mount_free(struct guest_mount *m)
{
	free(m->destination);
	free(m->type);
	free(m->source);
	strv_free(m->options);
	free(m->data);
}

/* ---- linux ---- */

static const struct {
	const char *name;
	int flag;
} ns_names[GUEST_NS_COUNT] = {
    [GUEST_NS_PID] = {"pid", CLONE_NEWPID},	     [GUEST_NS_NETWORK] = {"network", CLONE_NEWNET},
    [GUEST_NS_MOUNT] = {"mount", CLONE_NEWNS},	     [GUEST_NS_IPC] = {"ipc", CLONE_NEWIPC},
    [GUEST_NS_UTS] = {"uts", CLONE_NEWUTS},	     [GUEST_NS_USER] = {"user", CLONE_NEWUSER},
    [GUEST_NS_CGROUP] = {"cgroup", CLONE_NEWCGROUP}, [GUEST_NS_TIME] = {"time", CLONE_NEWTIME},
};

const char *guest_ns_name(enum guest_ns_type type)
{
	if ((unsigned int)type >= GUEST_NS_COUNT)
		return "?";
	return ns_names[type].name;
}

static int parse_namespaces(struct pc *c, json_t *arr, const char *path, struct guest_config *g)
{
	char ip[JPATH_MAX], tp[JPATH_MAX];
	int r;

	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);
		cleanup_free char *type = NULL;
		struct guest_namespace *ns;
		int t = -1;

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		if ((r = get_string(c, e, ip, "type", true, 64, &type)) < 0)
			return r;
		for (int k = 0; k < GUEST_NS_COUNT; k++)
			if (strcmp(type, ns_names[k].name) == 0)
				t = k;
		if (t < 0)
			return perr(c, jp(tp, ip, "type"), "unknown namespace \"%s\"", type);
		if (g->ns_present[t])
			return perr(c, jp(tp, ip, "type"), "duplicate namespace \"%s\"", type);
		g->ns_present[t] = true;
		ns = &g->namespaces[g->n_namespaces++];
		ns->type = (enum guest_ns_type)t;
		ns->clone_flag = ns_names[t].flag;
		if ((r = get_abs_path(c, e, ip, "path", false, &ns->path)) < 0)
			return r;
		if (!ns->path)
			g->clone_flags |= ns->clone_flag;
	}
	return 0;
}

static int parse_idmaps(struct pc *c, json_t *arr, const char *path, struct guest_idmap **out,
			size_t *n_out)
{
	char ip[JPATH_MAX];
	struct guest_idmap *v;
	json_int_t x;
	int r;

	v = calloc(json_array_size(arr) + 1, sizeof(*v));
	if (!v)
		return perr_code(c, ENOMEM, path, "out of memory");
	*out = v;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		if ((r = get_int(c, e, ip, "containerID", true, 0, UINT32_MAX, &x, NULL)) < 0)
			return r;
		v[i].container_id = (uint32_t)x;
		if ((r = get_int(c, e, ip, "hostID", true, 0, UINT32_MAX, &x, NULL)) < 0)
			return r;
		v[i].host_id = (uint32_t)x;
		if ((r = get_int(c, e, ip, "size", true, 1, UINT32_MAX, &x, NULL)) < 0)
			return r;
		v[i].size = (uint32_t)x;
		if ((uint64_t)v[i].container_id + v[i].size > (uint64_t)UINT32_MAX + 1 ||
		    (uint64_t)v[i].host_id + v[i].size > (uint64_t)UINT32_MAX + 1) {
			char sp[JPATH_MAX];
			return perr(c, jp(sp, ip, "size"), "range overflows 32-bit ids");
		}
		*n_out = i + 1;
	}
	return 0;
}

static bool is_cpu_list(const char *s)
{
	if (!s[0])
		return false;
	for (; *s; s++)
		if (!(*s >= '0' && *s <= '9') && *s != ',' && *s != '-')
			return false;
	return true;
}

static bool is_page_size(const char *s)
{
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (n == 0 || n > 8)
		return false;
	return (s[n] == 'K' || s[n] == 'M' || s[n] == 'G') && s[n + 1] == 'B' && s[n + 2] == '\0';
}

static int parse_device_rules(struct pc *c, json_t *arr, const char *path,
			      struct guest_resources *res)
{
	char ip[JPATH_MAX], p[JPATH_MAX];
	int r;

	res->has_devices = true;
	res->devices = calloc(json_array_size(arr) + 1, sizeof(*res->devices));
	if (!res->devices)
		return perr_code(c, ENOMEM, path, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i), *allow;
		struct guest_device_rule *d = &res->devices[i];
		cleanup_free char *type = NULL, *access = NULL;
		json_int_t x;
		bool present;

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		allow = json_object_get(e, "allow");
		if (!allow)
			return perr(c, jp(p, ip, "allow"), "missing");
		if ((r = get_bool(c, e, ip, "allow", &d->allow, NULL)) < 0)
			return r;
		if ((r = get_string(c, e, ip, "type", false, 8, &type)) < 0)
			return r;
		if (!type || strcmp(type, "a") == 0)
			d->type = 'a';
		else if (strcmp(type, "b") == 0 || strcmp(type, "c") == 0)
			d->type = type[0];
		else
			return perr(c, jp(p, ip, "type"), "must be \"a\", \"b\" or \"c\"");
		d->major = d->minor = -1;
		if ((r = get_int(c, e, ip, "major", false, -1, UINT32_MAX, &x, &present)) < 0)
			return r;
		if (present)
			d->major = x;
		if ((r = get_int(c, e, ip, "minor", false, -1, UINT32_MAX, &x, &present)) < 0)
			return r;
		if (present)
			d->minor = x;
		if ((r = get_string(c, e, ip, "access", false, 8, &access)) < 0)
			return r;
		if (!access) {
			strcpy(d->access, "rwm");
		} else {
			bool bad = access[0] == '\0' || strlen(access) > 3;
			for (const char *a = access; *a && !bad; a++)
				bad = !strchr("rwm", *a) || strchr(a + 1, *a);
			if (bad)
				return perr(
				    c, jp(p, ip, "access"),
				    "must be a non-empty combination of \"r\", \"w\", \"m\"");
			strcpy(d->access, access);
		}
		res->n_devices++;
	}
	return 0;
}

/* Memory values: -1 means unlimited; anything else below 0 is an error. */
static int get_mem(struct pc *c, json_t *o, const char *path, const char *key, bool *has,
		   int64_t *out)
{
	char p[JPATH_MAX];
	json_int_t x;
	int r;

	if ((r = get_int(c, o, path, key, false, INT64_MIN, INT64_MAX, &x, has)) < 0)
		return r;
	if (*has && x < -1)
		return perr(c, jp(p, path, key),
			    "must be -1 (unlimited) or a non-negative integer");
	if (*has)
		*out = x;
	return 0;
}

static int parse_resources(struct pc *c, json_t *o, const char *path, struct guest_resources *res)
{
	char sub[JPATH_MAX], p[JPATH_MAX];
	json_t *m, *arr;
	json_int_t x;
	bool present;
	int r;

	if ((r = get_object(c, o, path, "memory", false, &m)) < 0)
		return r;
	if (m) {
		jp(sub, path, "memory");
		if ((r = get_mem(c, m, sub, "limit", &res->has_memory_limit, &res->memory_limit)) <
			0 ||
		    (r = get_mem(c, m, sub, "reservation", &res->has_memory_reservation,
				 &res->memory_reservation)) < 0 ||
		    (r = get_mem(c, m, sub, "swap", &res->has_memory_swap, &res->memory_swap)) < 0)
			return r;
		if (res->has_memory_limit && res->has_memory_swap && res->memory_limit > 0 &&
		    res->memory_swap >= 0 && res->memory_swap < res->memory_limit)
			return perr(c, jp(p, sub, "swap"),
				    "must be at least memory.limit (it counts memory + swap)");
	}

	if ((r = get_object(c, o, path, "cpu", false, &m)) < 0)
		return r;
	if (m) {
		jp(sub, path, "cpu");
		if ((r = get_int(c, m, sub, "shares", false, 0, INT64_MAX, &x, &present)) < 0)
			return r;
		res->has_cpu_shares = present;
		res->cpu_shares = (uint64_t)x;
		if ((r = get_int(c, m, sub, "quota", false, INT64_MIN, INT64_MAX, &x, &present)) <
		    0)
			return r;
		if (present && x < -1)
			return perr(c, jp(p, sub, "quota"),
				    "must be -1 (unlimited) or a non-negative integer");
		res->has_cpu_quota = present;
		res->cpu_quota = x;
		if ((r = get_int(c, m, sub, "period", false, 0, INT64_MAX, &x, &present)) < 0)
			return r;
		res->has_cpu_period = present;
		res->cpu_period = (uint64_t)x;
		if ((r = get_string(c, m, sub, "cpus", false, 4096, &res->cpu_cpus)) < 0)
			return r;
		if (res->cpu_cpus && !is_cpu_list(res->cpu_cpus))
			return perr(c, jp(p, sub, "cpus"), "must be a cpu list like \"0-3,5\"");
		if ((r = get_string(c, m, sub, "mems", false, 4096, &res->cpu_mems)) < 0)
			return r;
		if (res->cpu_mems && !is_cpu_list(res->cpu_mems))
			return perr(c, jp(p, sub, "mems"), "must be a node list like \"0-1\"");
	}

	if ((r = get_object(c, o, path, "pids", false, &m)) < 0)
		return r;
	if (m) {
		jp(sub, path, "pids");
		if ((r = get_int(c, m, sub, "limit", true, INT64_MIN, INT64_MAX, &x, &present)) < 0)
			return r;
		res->has_pids_limit = true;
		res->pids_limit = x;
	}

	if ((r = get_array(c, o, path, "hugepageLimits", 16, &arr)) < 0)
		return r;
	if (arr) {
		jp(sub, path, "hugepageLimits");
		res->hugepage_limits =
		    calloc(json_array_size(arr) + 1, sizeof(*res->hugepage_limits));
		if (!res->hugepage_limits)
			return perr_code(c, ENOMEM, sub, "out of memory");
		for (size_t i = 0; i < json_array_size(arr); i++) {
			struct guest_hugepage_limit *h = &res->hugepage_limits[i];
			json_t *e = json_array_get(arr, i);
			char ip[JPATH_MAX];

			jpi(ip, sub, i);
			if (!json_is_object(e))
				return perr(c, ip, "must be an object");
			res->n_hugepage_limits++;
			if ((r = get_string(c, e, ip, "pageSize", true, 16, &h->page_size)) < 0)
				return r;
			if (!is_page_size(h->page_size))
				return perr(c, jp(p, ip, "pageSize"),
					    "must look like \"2MB\" or \"1GB\"");
			if ((r = get_int(c, e, ip, "limit", true, 0, INT64_MAX, &x, NULL)) < 0)
				return r;
			h->limit = (uint64_t)x;
		}
	}

	if ((r = get_array(c, o, path, "devices", GUEST_CONFIG_ARRAY_MAX, &arr)) < 0)
		return r;
	if (arr && (r = parse_device_rules(c, arr, jp(sub, path, "devices"), res)) < 0)
		return r;
	return 0;
}

static void resources_free(struct guest_resources *res)
{
	free(res->cpu_cpus);
	free(res->cpu_mems);
	for (size_t i = 0; i < res->n_hugepage_limits; i++)
		free(res->hugepage_limits[i].page_size);
	free(res->hugepage_limits);
	free(res->devices);
}

static int parse_device_nodes(struct pc *c, json_t *arr, const char *path, struct guest_config *g)
{
	char ip[JPATH_MAX], p[JPATH_MAX];
	int r;

	g->devices = calloc(json_array_size(arr) + 1, sizeof(*g->devices));
	if (!g->devices)
		return perr_code(c, ENOMEM, path, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		struct guest_device_node *d = &g->devices[i];
		json_t *e = json_array_get(arr, i);
		cleanup_free char *type = NULL;
		json_int_t x;
		bool present;

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		g->n_devices++;
		if ((r = get_abs_path(c, e, ip, "path", true, &d->path)) < 0)
			return r;
		if ((r = get_string(c, e, ip, "type", true, 8, &type)) < 0)
			return r;
		if (strlen(type) != 1 || !strchr("cbup", type[0]))
			return perr(c, jp(p, ip, "type"), "must be \"c\", \"b\", \"u\" or \"p\"");
		d->type = type[0];
		if ((r = get_int(c, e, ip, "major", d->type != 'p', 0, UINT32_MAX, &x, &present)) <
		    0)
			return r;
		d->major = present ? x : 0;
		if ((r = get_int(c, e, ip, "minor", d->type != 'p', 0, UINT32_MAX, &x, &present)) <
		    0)
			return r;
		d->minor = present ? x : 0;
		/* podman passes the host node's whole st_mode (S_IFCHR|0600):
		 * runc ORs the type in anyway, so only the permission bits count. */
		if ((r = get_int(c, e, ip, "fileMode", false, 0, S_IFMT | 07777, &x, &present)) < 0)
			return r;
		d->has_file_mode = present;
		d->file_mode = (mode_t)x & 07777;
		if ((r = get_int(c, e, ip, "uid", false, 0, UINT32_MAX, &x, &present)) < 0)
			return r;
		d->has_uid = present;
		d->uid = (uid_t)x;
		if ((r = get_int(c, e, ip, "gid", false, 0, UINT32_MAX, &x, &present)) < 0)
			return r;
		d->has_gid = present;
		d->gid = (gid_t)x;
	}
	return 0;
}

/* A map of strings (annotations, linux.sysctl). */
static int parse_kv(struct pc *c, json_t *obj, const char *path, struct guest_kv **out,
		    size_t *n_out)
{
	char kp[JPATH_MAX];
	struct guest_kv *v;
	const char *key;
	json_t *val;
	size_t i = 0;
	int r;

	v = calloc(json_object_size(obj) + 1, sizeof(*v));
	if (!v)
		return perr_code(c, ENOMEM, path, "out of memory");
	*out = v;
	json_object_foreach (obj, key, val) {
		snprintf(kp, sizeof(kp), "%s.%.64s", path, key);
		if (strlen(key) > 1024)
			return perr_code(c, E2BIG, kp, "key longer than 1024 bytes");
		v[i].key = strdup(key);
		if (!v[i].key)
			return perr_code(c, ENOMEM, kp, "out of memory");
		*n_out = ++i;
		if ((r = check_string(c, val, kp, GUEST_CONFIG_STRING_MAX, &v[i - 1].value)) < 0)
			return r;
	}
	return 0;
}

static void kv_free(struct guest_kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

static int parse_paths(struct pc *c, json_t *obj, const char *parent, const char *key, char ***out,
		       size_t *n_out)
{
	char p[JPATH_MAX], ip[JPATH_MAX];
	int r;

	if ((r = get_strv(c, obj, parent, key, GUEST_CONFIG_ARRAY_MAX, GUEST_CONFIG_PATH_MAX, out,
			  n_out)) < 0)
		return r;
	for (size_t i = 0; i < *n_out; i++)
		if ((*out)[i][0] != '/')
			return perr(c, jpi(ip, jp(p, parent, key), i), "must be an absolute path");
	return 0;
}

static int parse_linux(struct pc *c, json_t *lx, struct guest_config *g)
{
	const char *path = "linux";
	char p[JPATH_MAX];
	cleanup_free char *prop = NULL;
	json_t *arr, *o;
	int r;

	if ((r = get_array(c, lx, path, "namespaces", 2 * GUEST_NS_COUNT, &arr)) < 0)
		return r;
	if (arr && (r = parse_namespaces(c, arr, "linux.namespaces", g)) < 0)
		return r;

	if ((r = get_array(c, lx, path, "uidMappings", 340, &arr)) < 0)
		return r;
	if (arr && (r = parse_idmaps(c, arr, "linux.uidMappings", &g->uid_mappings,
				     &g->n_uid_mappings)) < 0)
		return r;
	if ((r = get_array(c, lx, path, "gidMappings", 340, &arr)) < 0)
		return r;
	if (arr && (r = parse_idmaps(c, arr, "linux.gidMappings", &g->gid_mappings,
				     &g->n_gid_mappings)) < 0)
		return r;
	if ((g->n_uid_mappings || g->n_gid_mappings) && !g->ns_present[GUEST_NS_USER])
		return perr(c, g->n_uid_mappings ? "linux.uidMappings" : "linux.gidMappings",
			    "needs a user namespace (linux.namespaces)");
	if ((g->clone_flags & CLONE_NEWUSER) && (!g->n_uid_mappings || !g->n_gid_mappings))
		return perr(c, !g->n_uid_mappings ? "linux.uidMappings" : "linux.gidMappings",
			    "a new user namespace needs uid and gid mappings");

	if ((r = get_object(c, lx, path, "resources", false, &o)) < 0)
		return r;
	if (o) {
		g->has_resources = true;
		if ((r = parse_resources(c, o, "linux.resources", &g->resources)) < 0)
			return r;
	}

	if ((r = get_string(c, lx, path, "cgroupsPath", false, GUEST_CONFIG_PATH_MAX,
			    &g->cgroups_path)) < 0)
		return r;
	if (g->cgroups_path && strstr(g->cgroups_path, ".."))
		return perr(c, "linux.cgroupsPath", "must not contain \"..\"");

	if ((r = parse_paths(c, lx, path, "maskedPaths", &g->masked_paths, &g->n_masked_paths)) < 0)
		return r;
	if ((r = parse_paths(c, lx, path, "readonlyPaths", &g->readonly_paths,
			     &g->n_readonly_paths)) < 0)
		return r;

	if ((r = get_object(c, lx, path, "sysctl", false, &o)) < 0)
		return r;
	if (o && (r = parse_kv(c, o, "linux.sysctl", &g->sysctl, &g->n_sysctl)) < 0)
		return r;
	for (size_t i = 0; i < g->n_sysctl; i++)
		if (!g->sysctl[i].key[0] || strstr(g->sysctl[i].key, "..") ||
		    strchr(g->sysctl[i].key, '/') == g->sysctl[i].key) {
			snprintf(p, sizeof(p), "linux.sysctl.%.64s", g->sysctl[i].key);
			return perr(c, p, "not a sysctl name");
		}

	if ((r = get_array(c, lx, path, "devices", GUEST_CONFIG_ARRAY_MAX, &arr)) < 0)
		return r;
	if (arr && (r = parse_device_nodes(c, arr, "linux.devices", g)) < 0)
		return r;

	if ((r = get_string(c, lx, path, "rootfsPropagation", false, 32, &prop)) < 0)
		return r;
	if (prop && propagation_from_name(prop, &g->rootfs_propagation) < 0)
		return perr(c, "linux.rootfsPropagation", "unknown propagation \"%s\"", prop);

	if ((r = get_object(c, lx, path, "seccomp", false, &o)) < 0)
		return r;
	if (o)
		g->seccomp = json_incref(o);
	return 0;
}

/* ---- hooks ---- */

static int parse_hook_list(struct pc *c, json_t *hooks, const char *key,
			   struct guest_hook_list *list)
{
	char path[JPATH_MAX], ip[JPATH_MAX];
	json_t *arr;
	int r;

	if ((r = get_array(c, hooks, "hooks", key, 256, &arr)) < 0)
		return r;
	if (!arr)
		return 0;
	jp(path, "hooks", key);
	list->v = calloc(json_array_size(arr) + 1, sizeof(*list->v));
	if (!list->v)
		return perr_code(c, ENOMEM, path, "out of memory");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		struct guest_hook *h = &list->v[i];
		json_t *e = json_array_get(arr, i);
		json_int_t x;

		jpi(ip, path, i);
		if (!json_is_object(e))
			return perr(c, ip, "must be an object");
		list->n++;
		if ((r = get_abs_path(c, e, ip, "path", true, &h->path)) < 0)
			return r;
		if ((r = get_strv(c, e, ip, "args", GUEST_CONFIG_ARGS_MAX, GUEST_CONFIG_STRING_MAX,
				  &h->args, &h->n_args)) < 0)
			return r;
		if ((r = get_strv(c, e, ip, "env", GUEST_CONFIG_ENV_MAX, GUEST_CONFIG_STRING_MAX,
				  &h->env, &h->n_env)) < 0)
			return r;
		if ((r = get_int(c, e, ip, "timeout", false, 1, INT_MAX, &x, &h->has_timeout)) < 0)
			return r;
		h->timeout = (int)x;
	}
	return 0;
}

static void hook_list_free(struct guest_hook_list *list)
{
	for (size_t i = 0; i < list->n; i++) {
		free(list->v[i].path);
		strv_free(list->v[i].args);
		strv_free(list->v[i].env);
	}
	free(list->v);
}

static int parse_hooks(struct pc *c, json_t *hooks, struct guest_hooks *h)
{
	int r;

	if ((r = parse_hook_list(c, hooks, "prestart", &h->prestart)) < 0 ||
	    (r = parse_hook_list(c, hooks, "createRuntime", &h->create_runtime)) < 0 ||
	    (r = parse_hook_list(c, hooks, "createContainer", &h->create_container)) < 0 ||
	    (r = parse_hook_list(c, hooks, "startContainer", &h->start_container)) < 0 ||
	    (r = parse_hook_list(c, hooks, "poststart", &h->poststart)) < 0 ||
	    (r = parse_hook_list(c, hooks, "poststop", &h->poststop)) < 0)
		return r;
	return 0;
}

/* ---- top level ---- */

static int parse_root(struct pc *c, json_t *top, struct guest_config *g)
{
	cleanup_free char *rel = NULL, *joined = NULL;
	json_t *root;
	struct stat st;
	int r;

	if ((r = get_object(c, top, "", "root", true, &root)) < 0)
		return r;
	if ((r = get_string(c, root, "root", "path", true, GUEST_CONFIG_PATH_MAX, &rel)) < 0)
		return r;
	if (rel[0] == '\0')
		return perr(c, "root.path", "must not be empty");
	if ((r = get_bool(c, root, "root", "readonly", &g->root_readonly, NULL)) < 0)
		return r;
	if (rel[0] == '/')
		joined = strdup(rel);
	else if (asprintf(&joined, "%s/%s", g->bundle_dir, rel) < 0)
		joined = NULL;
	if (!joined)
		return perr_code(c, ENOMEM, "root.path", "out of memory");
	if (stat(joined, &st) < 0)
		return perr_code(c, errno, "root.path", "%s: %s", joined, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return perr_code(c, ENOTDIR, "root.path", "%s: %s", joined, strerror(ENOTDIR));
	g->root_path = realpath(joined, NULL);
	if (!g->root_path)
		return perr_code(c, errno, "root.path", "%s: %s", joined, strerror(errno));
	return 0;
}

static int parse_config(struct pc *c, json_t *top, struct guest_config *g)
{
	json_t *o;
	int r;

	if ((r = get_string(c, top, "", "ociVersion", true, 64, &g->oci_version)) < 0)
		return r;
	if (strncmp(g->oci_version, "1.", 2) != 0)
		return perr(c, "ociVersion", "unsupported version \"%s\" (need 1.x)",
			    g->oci_version);
	if ((r = parse_root(c, top, g)) < 0)
		return r;

	if ((r = get_object(c, top, "", "process", false, &o)) < 0)
		return r;
	if (o) {
		g->has_process = true;
		if ((r = parse_process(c, o, "process", &g->process)) < 0)
			return r;
	}

	if ((r = get_string(c, top, "", "hostname", false, 64, &g->hostname)) < 0)
		return r;
	if ((r = get_string(c, top, "", "domainname", false, 64, &g->domainname)) < 0)
		return r;

	if ((r = get_array(c, top, "", "mounts", GUEST_CONFIG_MOUNTS_MAX, &o)) < 0)
		return r;
	if (o) {
		g->mounts = calloc(json_array_size(o) + 1, sizeof(*g->mounts));
		if (!g->mounts)
			return perr_code(c, ENOMEM, "mounts", "out of memory");
		for (size_t i = 0; i < json_array_size(o); i++) {
			char ip[JPATH_MAX];

			g->n_mounts++;
			if ((r = parse_mount(c, json_array_get(o, i), jpi(ip, "mounts", i),
					     &g->mounts[i])) < 0)
				return r;
		}
	}

	if ((r = get_object(c, top, "", "linux", false, &o)) < 0)
		return r;
	if (o && (r = parse_linux(c, o, g)) < 0)
		return r;
	/* Setting a hostname in the host's UTS namespace would change the host's. */
	if ((g->hostname || g->domainname) && !g->ns_present[GUEST_NS_UTS])
		return perr(c, g->hostname ? "hostname" : "domainname",
			    "needs a private UTS namespace (linux.namespaces)");

	if ((r = get_object(c, top, "", "annotations", false, &o)) < 0)
		return r;
	if (o && (r = parse_kv(c, o, "annotations", &g->annotations, &g->n_annotations)) < 0)
		return r;

	if ((r = get_object(c, top, "", "hooks", false, &o)) < 0)
		return r;
	if (o && (r = parse_hooks(c, o, &g->hooks)) < 0)
		return r;

	if ((r = trap_oci_seccomp_check(g->seccomp, c->err)) < 0)
		return qerr_prefix(c->err, "%s: linux.seccomp", c->file);
	return 0;
}

void guest_config_free(struct guest_config *g)
{
	if (!g)
		return;
	free(g->oci_version);
	free(g->bundle_dir);
	free(g->config_path);
	free(g->root_path);
	guest_process_free(&g->process);
	free(g->hostname);
	free(g->domainname);
	for (size_t i = 0; i < g->n_mounts; i++)
		mount_free(&g->mounts[i]);
	free(g->mounts);
	for (size_t i = 0; i < g->n_namespaces; i++)
		free(g->namespaces[i].path);
	free(g->uid_mappings);
	free(g->gid_mappings);
	resources_free(&g->resources);
	free(g->cgroups_path);
	strv_free(g->masked_paths);
	strv_free(g->readonly_paths);
	kv_free(g->sysctl, g->n_sysctl);
	for (size_t i = 0; i < g->n_devices; i++)
		free(g->devices[i].path);
	free(g->devices);
	if (g->seccomp)
		json_decref(g->seccomp);
	kv_free(g->annotations, g->n_annotations);
	hook_list_free(&g->hooks.prestart);
	hook_list_free(&g->hooks.create_runtime);
	hook_list_free(&g->hooks.create_container);
	hook_list_free(&g->hooks.start_container);
	hook_list_free(&g->hooks.poststart);
	hook_list_free(&g->hooks.poststop);
	free(g);
}

/* Parse JSON text with duplicate keys rejected (which of two "uid"s wins
 * would otherwise depend on the parser) and the top level an object. */
static int load_json(struct pc *c, const char *text, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *j;

	if (len > GUEST_CONFIG_FILE_MAX)
		return perr_code(c, E2BIG, NULL, "larger than %u bytes", GUEST_CONFIG_FILE_MAX);
	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return perr(c, NULL, "not valid JSON: line %d column %d: %s", jerr.line,
			    jerr.column, jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return perr(c, NULL, "must be a JSON object");
	}
	*out = j;
	return 0;
}

int guest_config_parse(const char *bundle_dir, const char *name, const char *text, size_t len,
		       struct guest_config **out, struct qerr *err)
{
	struct pc c = {.file = name, .err = err};
	json_auto_t *top = NULL;
	struct guest_config *g;
	int r;

	if ((r = load_json(&c, text, len, &top)) < 0)
		return r;
	g = calloc(1, sizeof(*g));
	if (!g)
		return perr_code(&c, ENOMEM, NULL, "out of memory");
	g->bundle_dir = realpath(bundle_dir, NULL);
	if (!g->bundle_dir) {
		r = perr_code(&c, errno, NULL, "bundle %s: %s", bundle_dir, strerror(errno));
		guest_config_free(g);
		return r;
	}
	if (asprintf(&g->config_path, "%s/config.json", g->bundle_dir) < 0) {
		g->config_path = NULL;
		guest_config_free(g);
		return perr_code(&c, ENOMEM, NULL, "out of memory");
	}
	if ((r = parse_config(&c, top, g)) < 0) {
		guest_config_free(g);
		return r;
	}
	*out = g;
	return 0;
}

/* Read a whole regular file of at most GUEST_CONFIG_FILE_MAX bytes. */
static int read_bounded(struct pc *c, const char *path, char **out, size_t *len_out)
{
	cleanup_close int fd = -1;
	cleanup_free char *buf = NULL;
	struct stat st;
	size_t len = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return perr_code(c, errno, NULL, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return perr_code(c, errno, NULL, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return perr(c, NULL, "%s: not a regular file", path);
	if (st.st_size > (off_t)GUEST_CONFIG_FILE_MAX)
		return perr_code(c, E2BIG, NULL, "larger than %u bytes", GUEST_CONFIG_FILE_MAX);
	/* The file's size and one byte more, to notice a file that grew
	 * meanwhile (then more, up to one byte over the limit): not the limit
	 * itself, 4 MiB mapped and unmapped for a config of a few KiB. */
	size_t cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf)
		return perr_code(c, ENOMEM, NULL, "out of memory");
	for (;;) {
		if (len == cap) {
			size_t more = cap * 2 < GUEST_CONFIG_FILE_MAX + 1
					  ? cap * 2
					  : GUEST_CONFIG_FILE_MAX + 1;
			char *bigger = realloc(buf, more);
			if (!bigger)
				return perr_code(c, ENOMEM, NULL, "out of memory");
			buf = bigger;
			cap = more;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return perr_code(c, errno, NULL, "%s: %s", path, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > GUEST_CONFIG_FILE_MAX)
			return perr_code(c, E2BIG, NULL, "larger than %u bytes",
					 GUEST_CONFIG_FILE_MAX);
	}
	*out = steal_ptr(buf);
	*len_out = len;
	return 0;
}

int guest_config_load(const char *bundle_dir, struct guest_config **out, struct qerr *err)
{
	struct pc c = {.file = "config.json", .err = err};
	cleanup_free char *path = NULL, *text = NULL;
	size_t len;
	int r;

	if (asprintf(&path, "%s/config.json", bundle_dir) < 0) {
		path = NULL;
		return perr_code(&c, ENOMEM, NULL, "out of memory");
	}
	if ((r = read_bounded(&c, path, &text, &len)) < 0)
		return r;
	return guest_config_parse(bundle_dir, "config.json", text, len, out, err);
}

int guest_process_load(const char *path, struct guest_process *out, struct qerr *err)
{
	struct pc c = {.file = path, .err = err};
	json_auto_t *top = NULL;
	cleanup_free char *text = NULL;
	size_t len;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = read_bounded(&c, path, &text, &len)) < 0)
		return r;
	if ((r = load_json(&c, text, len, &top)) < 0)
		return r;
	if ((r = parse_process(&c, top, "", out)) < 0) {
		guest_process_free(out);
		return r;
	}
	return 0;
}
