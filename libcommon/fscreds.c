/* Filesystem credentials: parse, take on, give back (libcommon/fscreds.h). */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libcommon/fscreds.h"

/* The value after "\n<key>:\t" (or at the start for the first line). */
static const char *field(const char *text, const char *key)
{
	size_t n = strlen(key);
	const char *p = text;

	while (p && *p) {
		if (strncmp(p, key, n) == 0 && p[n] == ':')
			return p + n + 1;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static int parse_u32s(const char *p, uint32_t *out, unsigned want)
{
	for (unsigned i = 0; i < want; i++) {
		char *end;
		unsigned long v;

		if (!p)
			return -EINVAL;
		while (*p == ' ' || *p == '\t')
			p++;
		errno = 0;
		v = strtoul(p, &end, 10);
		if (end == p || errno || v > UINT32_MAX)
			return -EINVAL;
		out[i] = (uint32_t)v;
		p = end;
	}
	return 0;
}

static int parse_hex(const char *p, uint64_t *out, int base)
{
	char *end;

	if (!p)
		return -EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	errno = 0;
	*out = strtoull(p, &end, base);
	if (end == p || errno || (*end != '\n' && *end != '\0'))
		return -EINVAL;
	return 0;
}

int fscreds_parse_status(const char *text, struct fscreds_task *out)
{
	uint32_t uid[4], gid[4];
	uint64_t v;
	const char *g;

	memset(out, 0, sizeof(*out));
	if (parse_u32s(field(text, "Uid"), uid, 4) < 0 ||
	    parse_u32s(field(text, "Gid"), gid, 4) < 0)
		return -EINVAL;
	out->ruid = uid[0];
	out->fsuid = uid[3];
	out->rgid = gid[0];
	out->fsgid = gid[3];
	if (parse_hex(field(text, "CapEff"), &out->cap_eff, 16) < 0 ||
	    parse_hex(field(text, "CapPrm"), &out->cap_prm, 16) < 0)
		return -EINVAL;
	if (parse_hex(field(text, "Umask"), &v, 8) < 0 || v > 0777)
		return -EINVAL;
	out->umask = (uint32_t)v;
	g = field(text, "Groups");
	if (!g)
		return -EINVAL;
	for (;;) {
		char *end;
		unsigned long x;

		while (*g == ' ' || *g == '\t')
			g++;
		if (*g == '\n' || *g == '\0')
			break;
		errno = 0;
		x = strtoul(g, &end, 10);
		if (end == g || errno || x > UINT32_MAX)
			return -EINVAL;
		if (out->ngroups == IOD_GROUPS_MAX)
			return -E2BIG;
		out->groups[out->ngroups++] = (uint32_t)x;
		g = end;
	}
	return 0;
}

void fscreds_for_op(const struct fscreds_task *t, bool real, struct iod_creds *out)
{
	memset(out, 0, sizeof(*out));
	out->fsuid = real ? t->ruid : t->fsuid;
	out->fsgid = real ? t->rgid : t->fsgid;
	if (real)
		out->cap_eff = t->ruid == 0 ? t->cap_prm : 0;
	else
		out->cap_eff = t->cap_eff;
	out->umask = t->umask;
	out->ngroups = t->ngroups;
	memcpy(out->groups, t->groups, sizeof(out->groups[0]) * t->ngroups);
}

bool fscreds_equal(const struct iod_creds *a, const struct iod_creds *b)
{
	return a->fsuid == b->fsuid && a->fsgid == b->fsgid && a->cap_eff == b->cap_eff &&
	       a->ngroups == b->ngroups &&
	       memcmp(a->groups, b->groups, sizeof(a->groups[0]) * a->ngroups) == 0;
}

/* What the thread had before fscreds_enter, and what it has now.  Each
 * switch costs a prepare_creds/commit_creds in the kernel (about 1.7 us
 * here, a full enter and leave 20 us), so only what differs is set: a
 * workload running as root usually differs from iod in its effective
 * capabilities alone. */
struct state {
	uint64_t eff;
	uint32_t fsuid, fsgid;
	uint32_t ngroups;
	gid_t groups[IOD_GROUPS_MAX > 64 ? IOD_GROUPS_MAX : 64];
};

static __thread struct {
	bool saved;
	struct __user_cap_data_struct caps[2];
	struct state st;
} own;
static __thread struct state cur;

static int caps_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	return syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
}

static int caps_set(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static int save_own(void)
{
	int n;

	if (own.saved)
		return 0;
	if (caps_get(own.caps) < 0)
		return -EPERM;
	n = getgroups((int)(sizeof(own.st.groups) / sizeof(own.st.groups[0])), own.st.groups);
	if (n < 0)
		return -EPERM;
	own.st.ngroups = (uint32_t)n;
	own.st.eff = (uint64_t)own.caps[0].effective | (uint64_t)own.caps[1].effective << 32;
	own.st.fsuid = (uint32_t)setfsuid((uid_t)-1);
	own.st.fsgid = (uint32_t)setfsgid((gid_t)-1);
	cur = own.st;
	own.saved = true;
	return 0;
}

static bool same_groups(const struct state *s, uint32_t n, const gid_t *g)
{
	return s->ngroups == n && memcmp(s->groups, g, sizeof(g[0]) * n) == 0;
}

static int set_groups(uint32_t n, const gid_t *g)
{
	if (same_groups(&cur, n, g))
		return 0;
	if (syscall(SYS_setgroups, (size_t)n, g) < 0)
		return -errno;
	cur.ngroups = n;
	memcpy(cur.groups, g, sizeof(g[0]) * n);
	return 0;
}

/* setfs*id return the old value and never fail visibly: ask again. */
static int set_fsgid(uint32_t gid)
{
	if (cur.fsgid == gid)
		return 0;
	setfsgid((gid_t)gid);
	cur.fsgid = (uint32_t)setfsgid((gid_t)-1);
	return cur.fsgid == gid ? 0 : -EPERM;
}

static int set_fsuid(uint32_t uid)
{
	if (cur.fsuid == uid)
		return 0;
	setfsuid((uid_t)uid);
	cur.fsuid = (uint32_t)setfsuid((uid_t)-1);
	return cur.fsuid == uid ? 0 : -EPERM;
}

static int set_eff(uint64_t eff)
{
	struct __user_cap_data_struct d[2];

	if (cur.eff == eff)
		return 0;
	memcpy(d, own.caps, sizeof(d));
	d[0].effective = (uint32_t)eff;
	d[1].effective = (uint32_t)(eff >> 32);
	if (caps_set(d) < 0)
		return -errno;
	cur.eff = eff;
	return 0;
}

int fscreds_enter(const struct iod_creds *c)
{
	gid_t groups[IOD_GROUPS_MAX];
	uint64_t eff = c->cap_eff;

	if (save_own() < 0 || c->ngroups > IOD_GROUPS_MAX)
		return -EPERM;
	for (uint32_t i = 0; i < c->ngroups; i++)
		groups[i] = c->groups[i];
	/* Never more than this thread may have. */
	eff &= (uint64_t)own.caps[0].permitted | (uint64_t)own.caps[1].permitted << 32;
	/* The ids and groups first: setting them needs CAP_SET[UG]ID, which
	 * the workload's set may not have. */
	if (set_groups(c->ngroups, groups) < 0 || set_fsgid(c->fsgid) < 0 ||
	    set_fsuid(c->fsuid) < 0 || set_eff(eff) < 0) {
		fscreds_leave();
		return -EPERM;
	}
	return 0;
}

void fscreds_leave(void)
{
	if (!own.saved)
		return;
	/* Capabilities first: the fs ids and groups need CAP_SET[UG]ID.  The
	 * thread would keep a workload's identity: never go on. */
	if (set_eff(own.st.eff) < 0 || set_groups(own.st.ngroups, own.st.groups) < 0 ||
	    set_fsuid(own.st.fsuid) < 0 || set_fsgid(own.st.fsgid) < 0)
		abort();
}
