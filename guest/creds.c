/* The workload's credentials: user and groups, rlimits, oom_score_adj and
 * the five capability sets.  Raw syscalls (capset, prctl) rather than
 * libcap's text interface: the sets arrive as bit masks already. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "guest/guest.h"

static const struct {
	int type;
	const char *name;
} rlimit_names[] = {
    {RLIMIT_CPU, "RLIMIT_CPU"},		  {RLIMIT_FSIZE, "RLIMIT_FSIZE"},
    {RLIMIT_DATA, "RLIMIT_DATA"},	  {RLIMIT_STACK, "RLIMIT_STACK"},
    {RLIMIT_CORE, "RLIMIT_CORE"},	  {RLIMIT_RSS, "RLIMIT_RSS"},
    {RLIMIT_NPROC, "RLIMIT_NPROC"},	  {RLIMIT_NOFILE, "RLIMIT_NOFILE"},
    {RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"},	  {RLIMIT_AS, "RLIMIT_AS"},
    {RLIMIT_LOCKS, "RLIMIT_LOCKS"},	  {RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"},
    {RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"}, {RLIMIT_NICE, "RLIMIT_NICE"},
    {RLIMIT_RTPRIO, "RLIMIT_RTPRIO"},	  {RLIMIT_RTTIME, "RLIMIT_RTTIME"},
};

const char *creds_rlimit_name(int type)
{
	for (size_t i = 0; i < ARRAY_SIZE(rlimit_names); i++)
		if (rlimit_names[i].type == type)
			return rlimit_names[i].name;
	return "RLIMIT_?";
}

int creds_set_rlimits(const struct guest_process *p, struct qerr *err)
{
	for (size_t i = 0; i < p->n_rlimits; i++) {
		const struct guest_rlimit *l = &p->rlimits[i];
		struct rlimit rl = {.rlim_cur = l->soft, .rlim_max = l->hard};
		if (setrlimit(l->type, &rl) == 0)
			continue;
		int e = errno;
		struct rlimit cur;
		if (e == EPERM && getrlimit(l->type, &cur) == 0 && l->hard > cur.rlim_max)
			return qerr_set(err, EPERM,
					"config.json: process.rlimits: %s: cannot raise hard limit "
					"above %llu (no CAP_SYS_RESOURCE)",
					creds_rlimit_name(l->type),
					(unsigned long long)cur.rlim_max);
		return qerr_sys(err, e, "config.json: process.rlimits: %s",
				creds_rlimit_name(l->type));
	}
	return 0;
}

int creds_set_oom_score_adj(int adj, struct qerr *err)
{
	cleanup_close int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "open /proc/self/oom_score_adj");
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%d", adj);
	if (write(fd, buf, (size_t)n) < 0)
		return qerr_sys(err, errno, "config.json: process.oomScoreAdj: %d", adj);
	return 0;
}

static int capget_all(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	return (int)syscall(SYS_capget, &h, d);
}

static int capset_masks(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {
	    {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
	    {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
	};
	return (int)syscall(SYS_capset, &h, d);
}

static bool setgroups_denied(void)
{
	char buf[8] = "";
	cleanup_close int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	return n > 0 && strncmp(buf, "deny", 4) == 0;
}

int creds_set_user(const struct guest_user *u, bool in_user_ns, struct qerr *err)
{
	/* Keep the permitted set across the uid change; the final sets are
	 * applied afterwards by creds_set_caps. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return qerr_sys(err, errno, "prctl(PR_SET_KEEPCAPS)");
	if (!in_user_ns || !setgroups_denied()) {
		if (setgroups(u->n_additional_gids, u->additional_gids) < 0)
			return qerr_sys(err, errno, "config.json: process.user.additionalGids");
	} else if (u->n_additional_gids) {
		return qerr_set(err, EPERM,
				"config.json: process.user.additionalGids: setgroups is denied in "
				"this user namespace");
	}
	if (setresgid(u->gid, u->gid, u->gid) < 0)
		return qerr_sys(err, errno, "config.json: process.user.gid: %u", u->gid);
	if (setresuid(u->uid, u->uid, u->uid) < 0)
		return qerr_sys(err, errno, "config.json: process.user.uid: %u", u->uid);
	/* Leaving uid 0 cleared the effective set: restore it from the
	 * permitted one for the rest of the preparation. */
	struct __user_cap_data_struct d[2];
	if (capget_all(d) < 0)
		return qerr_sys(err, errno, "capget");
	uint64_t perm = d[0].permitted | ((uint64_t)d[1].permitted << 32);
	uint64_t inh = d[0].inheritable | ((uint64_t)d[1].inheritable << 32);
	if (capset_masks(perm, perm, inh) < 0)
		return qerr_sys(err, errno, "capset");
	umask(u->has_umask ? u->umask : 022);
	return 0;
}

static int last_cap(void)
{
	static int last = -1;
	if (last >= 0)
		return last;
	char buf[16] = "";
	cleanup_close int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0)
		last = atoi(buf);
	if (last <= 0 || last > 63)
		last = CAP_LAST_CAP;
	return last;
}

int creds_drop_bounding_and_ambient(const struct guest_caps *c, uint64_t keep, struct qerr *err)
{
	int lc = last_cap();
	for (int i = 0; i <= lc; i++) {
		if (c->bounding & (1ull << i))
			continue;
		if (prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 && errno != EINVAL)
			return qerr_sys(err, errno, "prctl(PR_CAPBSET_DROP, %d)", i);
	}
	/* The sets, with `keep` still in effective/permitted for what the
	 * preparation has left to do; ambient needs permitted+inheritable. */
	if (capset_masks(c->effective | keep, c->permitted | keep, c->inheritable) < 0)
		return qerr_sys(err, errno, "config.json: process.capabilities: capset");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return qerr_sys(err, errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	for (int i = 0; i <= lc; i++) {
		/* The kernel raises an ambient capability only when it is also
		 * inheritable; runc's default spec lists ambient caps without an
		 * inheritable set, and runc skips them: so do we. */
		if (!(c->ambient & (1ull << i)) || !(c->inheritable & (1ull << i)))
			continue;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0) < 0)
			return qerr_sys(err, errno,
					"config.json: process.capabilities.ambient: cap %d", i);
	}
	return 0;
}

int creds_set_caps(const struct guest_caps *c, struct qerr *err)
{
	if (capset_masks(c->effective, c->permitted, c->inheritable) < 0)
		return qerr_sys(err, errno, "config.json: process.capabilities: capset");
	return 0;
}
