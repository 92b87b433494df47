/* trap.h with seccomp user notification (libseccomp 2.5).
 *
 * Two filters go on the workload: the OCI profile (if any, no listener) and
 * Quiver's, compiled from the policy table with a listener the supervisor
 * serves.  The kernel runs every filter and takes the most restrictive
 * result (KILL > TRAP > ERRNO > USER_NOTIF > LOG > ALLOW), so the profile can
 * narrow Quiver's policy and never widen it. */
#include <errno.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdbool.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guest/iod_client.h"
#include "guest/policy.h"
#include "guest/trap.h"
#include "guest/trap_bpf.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"

#define OCI "config.json: linux.seccomp"

/* Bounds on a profile (Docker's default has ~60 entries, ~370 names). */
#define OCI_SYSCALLS_MAX 4096u
#define OCI_NAMES_MAX	 4096u
#define OCI_NAME_MAX	 64u
#define OCI_ARCHES_MAX	 32u
#define OCI_FLAGS_MAX	 16u
#define OCI_ARGS_MAX	 6u
#define ERRNO_MAX	 4095u

#define X32_SYSCALL_BIT 0x40000000

/* At most this many notifications per trap_serve call, so one busy sandbox
 * cannot starve the supervisor's other events; the fd stays readable. */
#define SERVE_BATCH 256

static void release_ctx(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
}
#define cleanup_scmp __attribute__((cleanup(release_ctx)))

/* ---- the OCI profile ---------------------------------------------------- */

struct oci_action {
	const char *name;
	uint32_t action;      /* ERRNO's data is filled in from errnoRet */
	const char *rejected; /* why Quiver refuses it, or NULL */
};

static const struct oci_action oci_actions[] = {
    {"SCMP_ACT_KILL", SCMP_ACT_KILL, NULL},
    {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD, NULL},
    {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS, NULL},
    {"SCMP_ACT_TRAP", SCMP_ACT_TRAP, NULL},
    {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(0), NULL},
    {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW, NULL},
    {"SCMP_ACT_LOG", SCMP_ACT_LOG, NULL},
    {"SCMP_ACT_TRACE", 0, "not supported: the workload has no tracer"},
    {"SCMP_ACT_NOTIFY", 0,
     "not supported: Quiver's supervisor holds the sandbox's seccomp listener"},
};

static const struct {
	const char *name;
	enum scmp_compare op;
} oci_ops[] = {
    {"SCMP_CMP_NE", SCMP_CMP_NE},
    {"SCMP_CMP_LT", SCMP_CMP_LT},
    {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ},
    {"SCMP_CMP_GE", SCMP_CMP_GE},
    {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

/* path: the JSON path of obj, for messages. */
static int oci_parse_action(json_t *obj, const char *key, const char *errno_key, const char *path,
			    uint32_t *out, struct qerr *err)
{
	json_t *a = json_object_get(obj, key), *e;
	const char *name;
	json_int_t ev = EPERM;

	if (!a)
		return qerr_set(err, EINVAL, "%s.%s: missing", path, key);
	if (!json_is_string(a))
		return qerr_set(err, EINVAL, "%s.%s: must be a string", path, key);
	name = json_string_value(a);
	for (size_t i = 0; i < ARRAY_SIZE(oci_actions); i++) {
		if (strcmp(name, oci_actions[i].name))
			continue;
		if (oci_actions[i].rejected)
			return qerr_set(err, ENOTSUP, "%s.%s: %s %s", path, key, name,
					oci_actions[i].rejected);
		e = json_object_get(obj, errno_key);
		if (e) {
			if (!json_is_integer(e) || json_integer_value(e) < 0 ||
			    json_integer_value(e) > ERRNO_MAX)
				return qerr_set(err, EINVAL, "%s.%s: must be an integer in 0..%u",
						path, errno_key, ERRNO_MAX);
			ev = json_integer_value(e);
		}
		*out = oci_actions[i].action == SCMP_ACT_ERRNO(0) ? SCMP_ACT_ERRNO((uint32_t)ev)
								  : oci_actions[i].action;
		return 0;
	}
	return qerr_set(err, EINVAL, "%s.%s: unknown action \"%s\"", path, key, name);
}

static int oci_parse_arches(scmp_filter_ctx ctx, json_t *arches, struct qerr *err)
{
	json_t *a;
	size_t i;

	if (!arches)
		return 0;
	if (!json_is_array(arches))
		return qerr_set(err, EINVAL, OCI ".architectures: must be an array");
	if (json_array_size(arches) > OCI_ARCHES_MAX)
		return qerr_set(err, E2BIG, OCI ".architectures: more than %u entries",
				OCI_ARCHES_MAX);
	json_array_foreach (arches, i, a) {
		const char *s = json_string_value(a);
		char lower[32];
		uint32_t arch;
		size_t n;
		int rc;

		if (!json_is_string(a))
			return qerr_set(err, EINVAL, OCI ".architectures[%zu]: must be a string",
					i);
		if (strncmp(s, "SCMP_ARCH_", 10) || strlen(s + 10) >= sizeof(lower))
			return qerr_set(err, EINVAL, OCI ".architectures[%zu]: unknown \"%s\"", i,
					s);
		for (n = 0; s[10 + n]; n++)
			lower[n] = (char)(s[10 + n] >= 'A' && s[10 + n] <= 'Z' ? s[10 + n] + 32
									       : s[10 + n]);
		lower[n] = '\0';
		arch = seccomp_arch_resolve_name(lower);
		if (!arch)
			return qerr_set(err, EINVAL, OCI ".architectures[%zu]: unknown \"%s\"", i,
					s);
		/* Only what this machine can execute matters; Quiver's own
		 * filter kills every non-native ABI anyway. */
		if (arch != SCMP_ARCH_X86 && arch != SCMP_ARCH_X32)
			continue;
		rc = seccomp_arch_add(ctx, arch);
		if (rc < 0 && rc != -EEXIST)
			return qerr_sys(err, -rc, OCI ".architectures[%zu]: %s", i, s);
	}
	return 0;
}

static int oci_parse_flags(scmp_filter_ctx ctx, json_t *flags, struct qerr *err)
{
	json_t *f;
	size_t i;

	if (!flags)
		return 0;
	if (!json_is_array(flags))
		return qerr_set(err, EINVAL, OCI ".flags: must be an array");
	if (json_array_size(flags) > OCI_FLAGS_MAX)
		return qerr_set(err, E2BIG, OCI ".flags: more than %u entries", OCI_FLAGS_MAX);
	json_array_foreach (flags, i, f) {
		const char *s = json_string_value(f);

		if (!json_is_string(f))
			return qerr_set(err, EINVAL, OCI ".flags[%zu]: must be a string", i);
		if (!strcmp(s, "SECCOMP_FILTER_FLAG_LOG")) {
			if (ctx && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1) < 0)
				return qerr_set(err, ENOTSUP, OCI ".flags[%zu]: %s unsupported", i,
						s);
		} else if (!strcmp(s, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")) {
			if (ctx && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1) < 0)
				return qerr_set(err, ENOTSUP, OCI ".flags[%zu]: %s unsupported", i,
						s);
		} else if (!strcmp(s, "SECCOMP_FILTER_FLAG_TSYNC") ||
			   !strcmp(s, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")) {
			/* TSYNC: the workload is single-threaded when the filter
			 * goes on.  WAIT_KILLABLE_RECV is about listeners, and
			 * this filter has none. */
		} else {
			return qerr_set(err, EINVAL, OCI ".flags[%zu]: unknown flag \"%s\"", i, s);
		}
	}
	return 0;
}

static int oci_parse_args(json_t *args, const char *path, struct scmp_arg_cmp *cmps,
			  unsigned int *n_out, bool *same_index, struct qerr *err)
{
	unsigned int seen = 0;
	json_t *a;
	size_t i;

	*n_out = 0;
	*same_index = false;
	if (!args || json_is_null(args))
		return 0;
	if (!json_is_array(args))
		return qerr_set(err, EINVAL, "%s.args: must be an array", path);
	if (json_array_size(args) > OCI_ARGS_MAX)
		return qerr_set(err, E2BIG, "%s.args: more than %u entries", path, OCI_ARGS_MAX);
	json_array_foreach (args, i, a) {
		json_t *idx = json_object_get(a, "index");
		json_t *val = json_object_get(a, "value");
		json_t *two = json_object_get(a, "valueTwo");
		json_t *op = json_object_get(a, "op");
		size_t k;

		if (!json_is_object(a))
			return qerr_set(err, EINVAL, "%s.args[%zu]: must be an object", path, i);
		if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
		    json_integer_value(idx) > 5)
			return qerr_set(err, EINVAL,
					"%s.args[%zu].index: must be an integer in 0..5", path, i);
		/* JSON integers are signed 64-bit in jansson; larger uint64
		 * values (rare: masks with the top bit) are refused. */
		if (!json_is_integer(val))
			return qerr_set(err, EINVAL, "%s.args[%zu].value: must be an integer", path,
					i);
		if (two && !json_is_integer(two))
			return qerr_set(err, EINVAL, "%s.args[%zu].valueTwo: must be an integer",
					path, i);
		if (!json_is_string(op))
			return qerr_set(err, EINVAL, "%s.args[%zu].op: must be a string", path, i);
		for (k = 0; k < ARRAY_SIZE(oci_ops); k++)
			if (!strcmp(json_string_value(op), oci_ops[k].name))
				break;
		if (k == ARRAY_SIZE(oci_ops))
			return qerr_set(err, EINVAL, "%s.args[%zu].op: unknown operator \"%s\"",
					path, i, json_string_value(op));
		if (seen & (1u << json_integer_value(idx)))
			*same_index = true;
		seen |= 1u << json_integer_value(idx);
		cmps[i] = (struct scmp_arg_cmp){
		    .arg = (unsigned int)json_integer_value(idx),
		    .op = oci_ops[k].op,
		    .datum_a = (scmp_datum_t)json_integer_value(val),
		    .datum_b = two ? (scmp_datum_t)json_integer_value(two) : 0,
		};
	}
	*n_out = (unsigned int)json_array_size(args);
	return 0;
}

static int oci_add_rule(scmp_filter_ctx ctx, uint32_t action, int nr, const char *name,
			const struct scmp_arg_cmp *cmps, unsigned int n, bool same_index,
			const char *path, struct qerr *err)
{
	int rc;

	if (same_index) {
		/* Like runc: several conditions on one argument become one
		 * rule each (OR), libseccomp cannot AND them. */
		for (unsigned int i = 0; i < n; i++) {
			rc = seccomp_rule_add_array(ctx, action, nr, 1, &cmps[i]);
			if (rc < 0)
				return qerr_sys(err, -rc, "%s: %s", path, name);
		}
		return 0;
	}
	rc = seccomp_rule_add_array(ctx, action, nr, n, cmps);
	if (rc < 0)
		return qerr_sys(err, -rc, "%s: %s", path, name);
	return 0;
}

static int oci_parse_syscalls(scmp_filter_ctx ctx, uint32_t def, json_t *syscalls, struct qerr *err)
{
	json_t *sc;
	size_t i;

	if (!syscalls || json_is_null(syscalls))
		return 0;
	if (!json_is_array(syscalls))
		return qerr_set(err, EINVAL, OCI ".syscalls: must be an array");
	if (json_array_size(syscalls) > OCI_SYSCALLS_MAX)
		return qerr_set(err, E2BIG, OCI ".syscalls: more than %u entries",
				OCI_SYSCALLS_MAX);
	json_array_foreach (syscalls, i, sc) {
		char path[64];
		struct scmp_arg_cmp cmps[OCI_ARGS_MAX];
		unsigned int n_cmps;
		bool same_index;
		json_t *names, *nm;
		uint32_t action;
		size_t j;
		int rc;

		snprintf(path, sizeof(path), OCI ".syscalls[%zu]", i);
		if (!json_is_object(sc))
			return qerr_set(err, EINVAL, "%s: must be an object", path);
		names = json_object_get(sc, "names");
		if (!json_is_array(names) || json_array_size(names) == 0)
			return qerr_set(err, EINVAL, "%s.names: must be a non-empty array", path);
		if (json_array_size(names) > OCI_NAMES_MAX)
			return qerr_set(err, E2BIG, "%s.names: more than %u entries", path,
					OCI_NAMES_MAX);
		rc = oci_parse_action(sc, "action", "errnoRet", path, &action, err);
		if (rc < 0)
			return rc;
		rc = oci_parse_args(json_object_get(sc, "args"), path, cmps, &n_cmps, &same_index,
				    err);
		if (rc < 0)
			return rc;
		json_array_foreach (names, j, nm) {
			const char *name = json_string_value(nm);
			int nr;

			if (!json_is_string(nm) || !name[0] || strlen(name) > OCI_NAME_MAX)
				return qerr_set(
				    err, EINVAL,
				    "%s.names[%zu]: must be a syscall name (a string of "
				    "1..%u bytes)",
				    path, j, OCI_NAME_MAX);
			nr = seccomp_syscall_resolve_name(name);
			/* Like runc: a name this libseccomp does not know
			 * (newer kernel, other arch) is skipped, and a rule
			 * that repeats the default adds nothing. */
			if (nr == __NR_SCMP_ERROR || action == def || !ctx)
				continue;
			rc = oci_add_rule(ctx, action, nr, name, cmps, n_cmps, same_index, path,
					  err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Parse and compile the profile into *out (NULL when there is none).  With
 * build false it only validates. */
static int oci_build(json_t *seccomp, scmp_filter_ctx *out, struct qerr *err)
{
	cleanup_scmp scmp_filter_ctx ctx = NULL;
	uint32_t def;
	json_t *lp;
	int rc;

	*out = NULL;
	if (!seccomp || json_is_null(seccomp))
		return 0;
	if (!json_is_object(seccomp))
		return qerr_set(err, EINVAL, OCI ": must be an object");
	rc = oci_parse_action(seccomp, "defaultAction", "defaultErrnoRet", OCI, &def, err);
	if (rc < 0)
		return rc;
	lp = json_object_get(seccomp, "listenerPath");
	if (lp && !(json_is_string(lp) && !json_string_value(lp)[0]))
		return qerr_set(err, ENOTSUP,
				OCI ".listenerPath: not supported: Quiver's supervisor holds the "
				    "sandbox's seccomp listener");
	ctx = seccomp_init(def);
	if (!ctx)
		return qerr_set(err, ENOMEM, OCI ": seccomp_init failed");
	/* The caller set no_new_privs if the config asked for it; without it
	 * the workload still has CAP_SYS_ADMIN here. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1)) < 0)
		return qerr_sys(err, -rc, OCI ": seccomp attributes");
	rc = oci_parse_arches(ctx, json_object_get(seccomp, "architectures"), err);
	if (rc < 0)
		return rc;
	rc = oci_parse_flags(ctx, json_object_get(seccomp, "flags"), err);
	if (rc < 0)
		return rc;
	rc = oci_parse_syscalls(ctx, def, json_object_get(seccomp, "syscalls"), err);
	if (rc < 0)
		return rc;
	*out = steal_ptr(ctx);
	return 0;
}

int trap_oci_seccomp_check(json_t *oci_seccomp, struct qerr *err)
{
	cleanup_scmp scmp_filter_ctx ctx = NULL;

	/* Compiling the rules (not loading them) is the validation: it also
	 * catches what libseccomp itself refuses. */
	return oci_build(oci_seccomp, &ctx, err);
}

/* ---- Quiver's filter ---------------------------------------------------- */

/* ALLOW syscall nr when (u32)args[arg] is not in deny[]: libseccomp has no
 * masked "not equal", and SCMP_A1_32(SCMP_CMP_NE, v) in 2.5 still compares
 * the high word with 0, so cmd = (1 << 32) | TIOCSTI would pass it while the
 * kernel reads TIOCSTI.  Instead, walk the binary trie of the denied values
 * from the top bit down and ALLOW every branch that leaves it: each rule is
 * one MASKED_EQ on the low 32 bits (the high word is masked out).  At most
 * 32 rules per denied value. */
static int allow_u32_not_in(scmp_filter_ctx ctx, int nr, unsigned int arg, const uint32_t *deny,
			    size_t n_deny)
{
	/* Trie nodes still to expand: the top bits fixed so far (mask) and
	 * their value, shared by at least one denied value.  Depth <= 32, two
	 * children per level. */
	struct {
		uint32_t mask, value;
	} stack[2 * 33];
	size_t sp = 0;

	stack[sp].mask = 0;
	stack[sp++].value = 0;
	while (sp) {
		uint32_t mask, value;
		int bit;
		uint32_t b, next;

		sp--;
		mask = stack[sp].mask;
		value = stack[sp].value;
		if (mask == 0xffffffffu)
			continue; /* a leaf: one denied value, nothing to allow */
		bit = 31 - __builtin_popcount(mask);
		b = 1u << bit;
		next = mask | b;
		for (uint32_t v = 0; v <= 1; v++) {
			uint32_t val = value | (v ? b : 0);
			bool present = false;

			for (size_t i = 0; i < n_deny; i++)
				if ((deny[i] & next) == val)
					present = true;
			if (present) {
				if (sp >= ARRAY_SIZE(stack))
					return -E2BIG;
				stack[sp].mask = next;
				stack[sp++].value = val;
			} else {
				struct scmp_arg_cmp c = {
				    .arg = arg,
				    .op = SCMP_CMP_MASKED_EQ,
				    .datum_a = next,
				    .datum_b = val,
				};
				int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &c);

				if (rc < 0)
					return rc;
			}
		}
	}
	return 0;
}

/* ALLOW syscall nr when (u32)args[arg] is one of allow[]. */
static int allow_u32_in(scmp_filter_ctx ctx, int nr, unsigned int arg, const uint32_t *allow,
			size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct scmp_arg_cmp c = {.arg = arg,
					 .op = SCMP_CMP_MASKED_EQ,
					 .datum_a = 0xffffffffu,
					 .datum_b = allow[i]};
		int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &c);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static int allow_mknod(scmp_filter_ctx ctx, int nr, unsigned int arg)
{
	static const uint32_t types[] = {0, S_IFREG, S_IFIFO};

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		struct scmp_arg_cmp c = {
		    .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = S_IFMT, .datum_b = types[i]};
		int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &c);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static int add_checked(scmp_filter_ctx ctx, const struct policy_entry *e)
{
	const uint32_t *list;
	size_t n;

	switch (e->check) {
	case POLICY_CHECK_NONE:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, e->nr, 0);
	case POLICY_CHECK_CLONE_FLAGS: {
		struct scmp_arg_cmp c = {.arg = 0,
					 .op = SCMP_CMP_MASKED_EQ,
					 .datum_a = (uint32_t)policy_clone_ns_flags(),
					 .datum_b = 0};

		return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, e->nr, 1, &c);
	}
	case POLICY_CHECK_IOCTL_CMD:
		list = policy_ioctl_denied(&n);
		return allow_u32_not_in(ctx, e->nr, 1, list, n);
	case POLICY_CHECK_PRCTL_OPTION:
	case POLICY_CHECK_PERSONALITY:
	case POLICY_CHECK_SOCKET_FAMILY:
	case POLICY_CHECK_SOCKETPAIR_FAMILY:
		list = policy_check_values(e->check, &n);
		return allow_u32_in(ctx, e->nr, 0, list, n);
	case POLICY_CHECK_MKNOD_TYPE:
		return allow_mknod(ctx, e->nr, 1);
	case POLICY_CHECK_MKNODAT_TYPE:
		return allow_mknod(ctx, e->nr, 2);
	}
	return -EINVAL;
}

/* Which of Quiver's filters: bits of TRAP_IOD, TRAP_NET and TRAP_OFFLOAD,
 * an index into the embedded programs below (offload-all goes with iod:
 * the two variants of offload without iod are not used). */
enum { TRAP_IOD = 1, TRAP_NET = 2, TRAP_OFFLOAD = 4, TRAP_VARIANTS = 8 };
static unsigned int variant;

void trap_use_iod(bool iod)
{
	variant = iod ? variant | TRAP_IOD : variant & ~(unsigned int)TRAP_IOD;
}

void trap_use_net(bool net)
{
	variant = net ? variant | TRAP_NET : variant & ~(unsigned int)TRAP_NET;
}

void trap_use_offload(bool offload)
{
	variant = offload ? variant | TRAP_OFFLOAD : variant & ~(unsigned int)TRAP_OFFLOAD;
}

/* With iod, what it serves traps; with offload-all, the reads and writes
 * and what closes fds; with the socket service, the socket calls it
 * serves (the default action: no allow rule). */
static bool traps_here(int nr)
{
	return ((variant & TRAP_IOD) && (sys_iod_serves(nr) || sys_iod_watches(nr))) ||
	       ((variant & TRAP_OFFLOAD) && (sys_offload_serves(nr) || sys_offload_watches(nr))) ||
	       ((variant & TRAP_NET) && sys_net_serves(nr));
}

int trap_build_filter(void **out, struct qerr *err)
{
	cleanup_scmp scmp_filter_ctx ctx = NULL;
	const struct policy_entry *e;
	int rc;

	*out = NULL;
	/* Default NOTIFY: whatever no rule allows reaches the supervisor, which
	 * answers from the table (and ENOSYS for what the table lacks). */
	ctx = seccomp_init(SCMP_ACT_NOTIFY);
	if (!ctx)
		return qerr_set(err, ENOMEM, "seccomp: init failed");
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1)) < 0 ||
	    /* i386 (int 0x80) and x32 calls would be matched against the wrong
	     * numbers: kill, in-kernel. */
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
	    /* A binary search over syscall numbers instead of a linear chain. */
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
		return qerr_sys(err, -rc, "seccomp: attributes");
	policy_foreach(e)
	{
		switch (e->action) {
		case POLICY_PASS:
			rc = traps_here(e->nr) ? 0 : add_checked(ctx, e);
			break;
		case POLICY_DENY:
			rc = e->in_kernel ? seccomp_rule_add(ctx, SCMP_ACT_ERRNO(e->err), e->nr, 0)
					  : 0;
			break;
		case POLICY_EMULATE:
			rc = 0;
			break;
		}
		if (rc < 0)
			return qerr_sys(err, -rc, "seccomp: rule for %s", e->name);
	}
	*out = steal_ptr(ctx);
	return 0;
}

void trap_free_filter(void *filter)
{
	if (filter)
		seccomp_release(filter);
}

/* Quiver's filter, compiled at build time: make runs a first-stage
 * `quiver-guest policy --format bpf-c` and links the output into the real
 * binary, so that a sandbox start loads a ready program (~0.16 ms) instead
 * of spending milliseconds in libseccomp's compiler.  Weak, because every
 * other user of libguest (the unit tests, the first stage) has none and
 * compiles at run time; `quiver-guest policy --format check-bpf` and the
 * tests verify that the embedded program is what the table compiles to. */
extern const struct sock_filter trap_policy_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_iod_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_iod_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_net_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_net_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_iod_net_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_iod_net_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_off_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_off_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_iod_off_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_iod_off_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_net_off_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_net_off_bpf_len __attribute__((weak));
extern const struct sock_filter trap_policy_iod_net_off_bpf[] __attribute__((weak));
extern const unsigned int trap_policy_iod_net_off_bpf_len __attribute__((weak));

static const struct {
	const char *name;
	const struct sock_filter *prog;
	const unsigned int *len;
} embedded_progs[TRAP_VARIANTS] = {
    {"trap_policy_bpf", trap_policy_bpf, &trap_policy_bpf_len},
    {"trap_policy_iod_bpf", trap_policy_iod_bpf, &trap_policy_iod_bpf_len},
    {"trap_policy_net_bpf", trap_policy_net_bpf, &trap_policy_net_bpf_len},
    {"trap_policy_iod_net_bpf", trap_policy_iod_net_bpf, &trap_policy_iod_net_bpf_len},
    {"trap_policy_off_bpf", trap_policy_off_bpf, &trap_policy_off_bpf_len},
    {"trap_policy_iod_off_bpf", trap_policy_iod_off_bpf, &trap_policy_iod_off_bpf_len},
    {"trap_policy_net_off_bpf", trap_policy_net_off_bpf, &trap_policy_net_off_bpf_len},
    {"trap_policy_iod_net_off_bpf", trap_policy_iod_net_off_bpf, &trap_policy_iod_net_off_bpf_len},
};

static bool have_embedded(void)
{
	for (unsigned int v = 0; v < TRAP_VARIANTS; v++)
		if (!embedded_progs[v].len || *embedded_progs[v].len == 0)
			return false;
	return true;
}

static const struct sock_filter *embedded(unsigned int *len)
{
	*len = *embedded_progs[variant].len;
	return embedded_progs[variant].prog;
}

/* The BPF program libseccomp generates for the table (malloc'd). */
static int compile_bpf(struct sock_filter **prog, size_t *len, struct qerr *err)
{
	cleanup_scmp scmp_filter_ctx ctx = NULL;
	int rc = trap_build_filter((void **)&ctx, err);
	if (rc < 0)
		return rc;
	cleanup_close int fd = memfd_create("quiver-policy-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "seccomp: memfd");
	rc = seccomp_export_bpf(ctx, fd);
	if (rc < 0)
		return qerr_sys(err, -rc, "seccomp: export BPF");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return qerr_sys(err, errno, "seccomp: export BPF");
	if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size > (off_t)(BPF_MAXINSNS * sizeof(struct sock_filter)))
		return qerr_set(err, EINVAL, "seccomp: exported BPF has %lld bytes",
				(long long)st.st_size);
	cleanup_free struct sock_filter *buf = malloc((size_t)st.st_size);
	if (!buf)
		return qerr_set(err, ENOMEM, "seccomp: export BPF");
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		return qerr_sys(err, errno ? errno : EIO, "seccomp: read exported BPF");
	size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
	/* the same decisions in about half the instructions (guest/trap_bpf.h);
	 * a program the rewrite does not handle is kept as libseccomp made it */
	rc = trap_bpf_shrink(buf, n, prog, len, err);
	if (rc == -ENOTSUP) {
		/* said, so that a policy change that defeats the rewrite shows
		 * in the build's output rather than as slower starts */
		qlog_warn("seccomp: %s: the filter stays as libseccomp made it (%zu instructions)",
			  err->msg, n);
		*len = n;
		*prog = steal_ptr(buf);
		return 0;
	}
	return rc < 0 ? rc : 0;
}

static int export_one(FILE *out, const char *name, struct qerr *err)
{
	cleanup_free struct sock_filter *prog = NULL;
	size_t len = 0;
	int rc = compile_bpf(&prog, &len, err);
	if (rc < 0)
		return rc;
	fprintf(out,
		"const unsigned int %s_len = %zu;\n"
		"const struct sock_filter %s[] = {\n",
		name, len, name);
	for (size_t i = 0; i < len; i++)
		fprintf(out, "\t{0x%04x, %u, %u, 0x%08x},\n", prog[i].code, prog[i].jt, prog[i].jf,
			prog[i].k);
	fprintf(out, "};\n\n");
	return 0;
}

int trap_export_c(FILE *out, struct qerr *err)
{
	unsigned int was = variant;
	int rc = 0;

	fprintf(out, "/* Generated by `quiver-guest policy --format bpf-c` from guest/policy.c:\n"
		     " * Quiver's seccomp filters (plain, with iod, with the socket service,\n"
		     " * with both; and each with offload-all), compiled at build time.\n"
		     " * Do not edit. */\n"
		     "#include <linux/filter.h>\n\n");
	for (variant = 0; variant < TRAP_VARIANTS && rc == 0; variant++)
		rc = export_one(out, embedded_progs[variant].name, err);
	variant = was;
	if (rc < 0)
		return rc;
	return fflush(out) == 0 ? 0 : qerr_sys(err, errno, "write BPF source");
}

static int check_one(struct qerr *err)
{
	cleanup_free struct sock_filter *prog = NULL;
	size_t len = 0;
	unsigned int elen;
	const struct sock_filter *e = embedded(&elen);
	int rc = compile_bpf(&prog, &len, err);
	if (rc < 0)
		return rc;
	if (len != elen || memcmp(prog, e, len * sizeof(struct sock_filter)) != 0)
		return qerr_set(err, ESTALE,
				"seccomp: the embedded %s (%u instructions) differs from the "
				"table's (%zu): rebuild",
				embedded_progs[variant].name, elen, len);
	return (int)len;
}

int trap_check_embedded(struct qerr *err)
{
	unsigned int was = variant;
	int rc = 0;

	if (!have_embedded())
		return qerr_set(err, ENOENT, "seccomp: this binary has no embedded filter");
	for (variant = TRAP_VARIANTS; variant-- > 0 && rc >= 0;)
		rc = check_one(err);
	variant = was;
	return rc;
}

/* seccomp(2) directly with a program and a new listener. */
static int load_program(const struct sock_filter *f, unsigned int len, struct qerr *err)
{
	struct sock_fprog prog = {
	    .len = (unsigned short)len,
	    .filter = (struct sock_filter *)f,
	};
	long fd =
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0)
		return qerr_sys(err, errno, "seccomp: load Quiver's filter");
	/* libseccomp's listener is close-on-exec; so must ours be. */
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
		int e = errno;
		close((int)fd);
		return qerr_sys(err, e, "seccomp: listener");
	}
	return (int)fd;
}

/* libseccomp probes the kernel on first use; have it do so before any
 * filter is on, so that no filter can make it believe a feature is
 * missing. */
static int probe_libseccomp(struct qerr *err)
{
	if (seccomp_api_get() < 5)
		return qerr_set(err, ENOSYS,
				"seccomp: user notification unsupported (libseccomp API level %u)",
				seccomp_api_get());
	return 0;
}

int trap_install_quiver(struct qerr *err)
{
	unsigned int len;
	if (have_embedded()) {
		const struct sock_filter *f = embedded(&len);
		return load_program(f, len, err);
	}
	/* compiled here (the unit tests, the first stage): the same program
	 * the build embeds */
	cleanup_free struct sock_filter *prog = NULL;
	size_t n = 0;
	int rc = probe_libseccomp(err);
	if (rc < 0 || (rc = compile_bpf(&prog, &n, err)) < 0)
		return rc;
	return load_program(prog, (unsigned int)n, err);
}

int trap_oci_compile(json_t *oci_seccomp, void **out, struct qerr *err)
{
	*out = NULL;
	if (!oci_seccomp)
		return 0;
	int rc = probe_libseccomp(err);
	if (rc < 0)
		return rc;
	scmp_filter_ctx oci = NULL;
	rc = oci_build(oci_seccomp, &oci, err);
	if (rc < 0)
		return rc;
	*out = oci;
	return 0;
}

int trap_oci_load(void *compiled, struct qerr *err)
{
	if (!compiled)
		return 0;
	int rc = seccomp_load((scmp_filter_ctx)compiled);
	if (rc < 0)
		return qerr_sys(err, -rc, OCI ": load");
	return 0;
}

void trap_oci_free(void *compiled)
{
	if (compiled)
		seccomp_release((scmp_filter_ctx)compiled);
}

int trap_install(json_t *oci_seccomp, struct qerr *err)
{
	void *oci = NULL;
	int rc = trap_oci_compile(oci_seccomp, &oci, err);
	if (rc < 0)
		return rc;
	int fd = trap_install_quiver(err);
	if (fd >= 0 && (rc = trap_oci_load(oci, err)) < 0) {
		close(fd);
		fd = rc;
	}
	trap_oci_free(oci);
	return fd;
}

/* ---- serving notifications ---------------------------------------------- */

struct notif_sizes {
	size_t notif, resp;
};

/* The kernel's structs may be larger than this build's headers: RECV
 * copies the kernel's size out, SEND reads the kernel's size in. */
static int notif_sizes(struct notif_sizes *out)
{
	static struct seccomp_notif_sizes sizes; /* cached; read-only after */
	static int done;

	if (!done) {
		if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
			return -errno;
		done = 1;
	}
	out->notif = sizes.seccomp_notif > sizeof(struct seccomp_notif)
			 ? sizes.seccomp_notif
			 : sizeof(struct seccomp_notif);
	out->resp = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
			? sizes.seccomp_notif_resp
			: sizeof(struct seccomp_notif_resp);
	return 0;
}

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* A handler's result as answer() returns it: its own answer or a
 * CONTINUE go in *special. */
static int handled(int rc, int *special)
{
	if (rc == POLICY_RC_ANSWERED || rc == POLICY_RC_CONTINUE) {
		*special = rc;
		return 0;
	}
	return rc < 0 ? -rc : 0;
}

/* Decide the answer: 0 and *val, or a positive errno.  *denied tells
 * whether the policy (not an emulation) refused the call. */
static int answer(const struct policy_call *call, bool native, int64_t *val, bool *denied,
		  int *special)
{
	const struct policy_entry *e = native ? policy_lookup(call->nr) : NULL;
	int rc;

	*val = 0;
	*denied = true;
	*special = 0;
	if (!e)
		return ENOSYS;
	switch (e->action) {
	case POLICY_DENY:
		return e->err;
	case POLICY_PASS:
		if (call->ctx && call->ctx->iod && call->ctx->iod->offload &&
		    sys_offload_serves(call->nr)) {
			*denied = false;
			return handled(sys_offload(call, val), special);
		}
		if (call->ctx && call->ctx->iod && sys_iod_serves(call->nr)) {
			*denied = false;
			return handled(sys_iod(call, val), special);
		}
		if (call->ctx && call->ctx->net && sys_net_serves(call->nr)) {
			*denied = false;
			return handled(sys_net(call, val), special);
		}
		if (call->ctx && call->ctx->iod && sys_iod_watches(call->nr)) {
			*denied = false;
			/* First: it reads the task's credentials (cached) to
			 * know its thread group; execve closes close-on-exec
			 * fds.  Then the credentials are forgotten. */
			if (call->ctx->iod->offload)
				sys_offload_forget(call);
			sys_iod_forget_creds();
			*special = POLICY_RC_CONTINUE;
			return 0;
		}
		if (call->ctx && call->ctx->iod && call->ctx->iod->offload &&
		    sys_offload_watches(call->nr)) {
			*denied = false;
			sys_offload_forget(call);
			*special = POLICY_RC_CONTINUE;
			return 0;
		}
		/* BPF allowed the safe arguments, so a checked call here has
		 * failed its check; if the C predicate disagrees, that is a
		 * bug, and the answer stays no: never CONTINUE. */
		rc = policy_check_errno(e, call->args);
		return rc ? rc : EPERM;
	case POLICY_EMULATE:
		*denied = false;
		policy_emulate_fn fn = policy_emulator(e);
		rc = fn ? fn(call, val) : -ENOSYS;
		return rc < 0 ? -rc : 0;
	}
	return EPERM;
}

void trap_respond(int listener, uint64_t id, int err, int64_t val, bool cont)
{
	union {
		struct seccomp_notif_resp r;
		unsigned char raw[128];
	} resp;

	memset(&resp, 0, sizeof(resp));
	resp.r.id = id;
	resp.r.error = err ? -err : 0;
	resp.r.val = err ? 0 : val;
	resp.r.flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
	while (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno == EINTR)
		;
}

/* SECCOMP_IOCTL_NOTIF_ADDFD waits until the trapped task has installed the
 * fd, in its own context, and that task's completion wakes us.  A plain
 * SCHED_OTHER waker would preempt the task there, just before it returns
 * to user space: two context switches for nothing, about 14 us on this
 * kind of guest (perf sched timehist).  SCHED_BATCH for the wait tells the
 * scheduler not to preempt on that wake-up: the task runs on to its next
 * call and we finish the ioctl when it blocks or its slice ends.
 *
 * The policy stays SCHED_BATCH until the supervisor is about to sleep
 * (trap_sched_restore): switching for each injection cost two
 * sched_setscheduler calls, ~5 us of a mediated open here, and in between
 * the supervisor polls rather than sleeps, so no other wake-up of it is
 * changed. */
static enum { SUP_SCHED_UNKNOWN, SUP_SCHED_FIXED, SUP_SCHED_OTHER, SUP_SCHED_BATCH } sched_now;

int trap_inject_fd(int listener, uint64_t id, int fd, bool cloexec)
{
	struct sched_param none = {0};
	struct seccomp_notif_addfd a = {.id = id,
					.flags = SECCOMP_ADDFD_FLAG_SEND,
					.srcfd = (uint32_t)fd,
					.newfd_flags = cloexec ? O_CLOEXEC : 0};

	/* 'fixed': started with another policy, or the switch failed */
	if (sched_now == SUP_SCHED_UNKNOWN)
		sched_now =
		    sched_getscheduler(0) == SCHED_OTHER ? SUP_SCHED_OTHER : SUP_SCHED_FIXED;
	if (sched_now == SUP_SCHED_OTHER)
		sched_now = sched_setscheduler(0, SCHED_BATCH, &none) == 0 ? SUP_SCHED_BATCH
									   : SUP_SCHED_FIXED;
	int r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
	return r < 0 ? -errno : r;
}

void trap_sched_restore(void)
{
	struct sched_param none = {0};
	if (sched_now == SUP_SCHED_BATCH)
		sched_now = sched_setscheduler(0, SCHED_OTHER, &none) == 0 ? SUP_SCHED_OTHER
									   : SUP_SCHED_FIXED;
}

int trap_serve(struct trap_ctx *ctx, int listener, struct qerr *err)
{
	struct notif_sizes sz = {0, 0};
	union {
		struct seccomp_notif n;
		unsigned char raw[512];
	} req;
	union {
		struct seccomp_notif_resp r;
		unsigned char raw[128];
	} resp;
	int rc;

	rc = notif_sizes(&sz);
	if (rc < 0)
		return qerr_sys(err, -rc, "seccomp: notification sizes");
	if (sz.notif > sizeof(req) || sz.resp > sizeof(resp))
		return qerr_set(err, EOVERFLOW, "seccomp: kernel notification size %zu/%zu",
				sz.notif, sz.resp);
	for (int served = 0; served < SERVE_BATCH;) {
		struct pollfd p = {.fd = listener, .events = POLLIN};
		struct policy_call call;
		bool native, denied;
		int64_t val;
		int e, special;

		rc = poll(&p, 1, 0);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return qerr_sys(err, errno, "seccomp: poll listener");
		if (rc == 0)
			return 0;
		if (p.revents & POLLNVAL)
			return qerr_set(err, EBADF, "seccomp: listener %d is not open", listener);
		if (!(p.revents & POLLIN)) {
			/* POLLHUP: every task that used the filter has exited
			 * (6.18 reports it from exit on, before the reap); none
			 * can trap again. */
			if (p.revents & POLLHUP)
				return qerr_set(err, EPIPE,
						"seccomp: listener has no processes left");
			return qerr_set(err, EIO, "seccomp: listener poll revents %#x",
					(unsigned int)p.revents);
		}
		/* The kernel refuses a RECV buffer that is not zeroed. */
		memset(&req, 0, sizeof(req));
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			/* ENOENT: the task was killed between poll and recv. */
			if (errno == EINTR || errno == ENOENT)
				continue;
			return qerr_sys(err, errno, "seccomp: receive notification");
		}
		served++;
		native = req.n.data.arch == AUDIT_ARCH_X86_64 &&
			 !(req.n.data.nr & X32_SYSCALL_BIT) && req.n.data.nr >= 0;
		call = (struct policy_call){
		    .listener = listener,
		    .id = req.n.id,
		    .pid = (pid_t)req.n.pid,
		    .nr = req.n.data.nr,
		    .ctx = ctx,
		};
		memcpy(call.args, req.n.data.args, sizeof(call.args));
		e = answer(&call, native, &val, &denied, &special);
		if (ctx && ctx->counters) {
			struct guest_counters *c = ctx->counters;
			bool indexed = native && call.nr < (int)GUEST_NR_MAX;

			count(indexed ? &c->trapped[call.nr] : &c->trapped_other);
			if (denied && e && indexed)
				count(&c->denied[call.nr]);
		}
		if (special == POLICY_RC_ANSWERED)
			continue;
		memset(&resp, 0, sizeof(resp));
		resp.r.id = req.n.id;
		resp.r.error = e ? -e : 0;
		resp.r.val = e ? 0 : val;
		resp.r.flags = special == POLICY_RC_CONTINUE ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
		while (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0) {
			/* ENOENT: the task died or was interrupted; no one to
			 * answer. */
			if (errno == ENOENT)
				break;
			if (errno != EINTR)
				return qerr_sys(err, errno, "seccomp: send response");
		}
	}
	return 0;
}
