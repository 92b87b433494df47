/* The syscall policy: one table (policy.c) that says, for each x86-64
 * syscall, what the workload gets.  The seccomp program (trap_seccomp.c), the
 * supervisor's answers, `quiver-guest policy`, `qctl policy` and the table in
 * docs/security-model.md are all generated from it.
 *
 * A syscall that is not in the table is denied with ENOSYS by the supervisor
 * (and counted).  Non-native ABIs (i386 through int 0x80, x32) kill the
 * process in-kernel. */
#ifndef QUIVER_GUEST_POLICY_H
#define QUIVER_GUEST_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "libcommon/err.h"

struct trap_ctx;

/* What happens today. */
enum policy_action {
	POLICY_PASS,	/* host kernel directly (if the argument check holds) */
	POLICY_EMULATE, /* the supervisor answers */
	POLICY_DENY,	/* the supervisor answers -errno, counted */
};

/* Where the call will be routed once the daemon exists (docs only today). */
enum policy_later {
	POLICY_LATER_NONE,
	POLICY_LATER_IO,  /* iod, issue 4 */
	POLICY_LATER_NET, /* netd, issue 5 */
};

/* Argument checks of PASS entries for calls that multiplex.  Each is both a
 * BPF condition (trap_seccomp.c: ALLOW when safe, else the default NOTIFY)
 * and a C predicate the supervisor re-evaluates on the notification's
 * arguments (policy_check_errno). */
enum policy_check {
	POLICY_CHECK_NONE,
	POLICY_CHECK_CLONE_FLAGS,	/* no CLONE_NEW* flag in a0 */
	POLICY_CHECK_IOCTL_CMD,		/* (u32)a1 not TIOCSTI / TIOCLINUX */
	POLICY_CHECK_PRCTL_OPTION,	/* (u32)a0 in an allowlist */
	POLICY_CHECK_PERSONALITY,	/* (u32)a0 in an allowlist */
	POLICY_CHECK_SOCKET_FAMILY,	/* (u32)a0 in AF_UNIX, AF_INET, AF_INET6, AF_NETLINK */
	POLICY_CHECK_SOCKETPAIR_FAMILY, /* (u32)a0 == AF_UNIX */
	POLICY_CHECK_MKNOD_TYPE,	/* (a1 & S_IFMT) is regular or fifo */
	POLICY_CHECK_MKNODAT_TYPE,	/* (a2 & S_IFMT) is regular or fifo */
};

/* A notification, copied out of the kernel's struct, as handlers see it. */
struct policy_call {
	int listener;
	uint64_t id; /* the notification id, for SECCOMP_IOCTL_NOTIF_ID_VALID */
	pid_t pid;   /* in the supervisor's pid namespace */
	int nr;
	uint64_t args[6];
	const struct trap_ctx *ctx;
};

/* An emulation handler: 0 with *val set (the syscall's return value), or a
 * negative errno the workload gets, or one of these: */
#define POLICY_RC_ANSWERED 1 /* the handler answered itself (ADDFD with SEND) */
#define POLICY_RC_CONTINUE 2 /* let the kernel run the call (no path of the workload's) */
typedef int (*policy_emulate_fn)(const struct policy_call *call, int64_t *val);

/* An EMULATE entry's handler (policy_emulator). */
enum policy_emulator { POLICY_EMULATOR_NONE, POLICY_EMULATOR_SYSINFO };

/* No pointers: in the static-pie quiver-guest every pointer in the table
 * is relocated at exec, which made its 24 KiB private, dirty pages in each
 * supervisor; as arrays of characters the table stays in shared, clean
 * read-only pages. */
#define POLICY_NAME_MAX 24
#define POLICY_WHY_MAX	112
struct policy_entry {
	char name[POLICY_NAME_MAX]; /* "" for a number not in the table */
	int nr;
	enum policy_action action;
	int err; /* DENY: the errno; PASS with a check: the errno when it fails */
	enum policy_check check;
	/* DENY answered in-kernel by BPF (SCMP_ACT_ERRNO): for hot denials
	 * such as clone3; these are not counted. */
	bool in_kernel;
	enum policy_later later;
	enum policy_emulator emulator; /* EMULATE only */
	char why[POLICY_WHY_MAX];      /* one-line rationale */
};

/* The handler of an EMULATE entry (NULL for others). */
policy_emulate_fn policy_emulator(const struct policy_entry *e);

/* Walk the table in syscall-number order: policy_next(NULL) is the first
 * entry, NULL follows the last. */
const struct policy_entry *policy_next(const struct policy_entry *prev);
#define policy_foreach(e) for ((e) = policy_next(NULL); (e); (e) = policy_next(e))

/* The entry for x86-64 syscall nr, or NULL (not in the table: ENOSYS). */
const struct policy_entry *policy_lookup(int nr);

/* For a PASS entry with a check: 0 when the arguments pass it, else the
 * errno the supervisor answers.  0 for entries without a check. */
int policy_check_errno(const struct policy_entry *e, const uint64_t args[6]);

/* The values an allowlist check accepts (prctl options, personalities,
 * socket families); NULL for other checks.  Shared by the BPF compiler, the
 * C predicate and the docs. */
const uint32_t *policy_check_values(enum policy_check check, size_t *n_out);

/* The clone flags refused (CLONE_NEW*), and the ioctl cmds refused. */
uint64_t policy_clone_ns_flags(void);
const uint32_t *policy_ioctl_denied(size_t *n_out);

/* One-line description of a check for docs ("a0 has no CLONE_NEW* flag"). */
const char *policy_check_describe(enum policy_check check);

const char *policy_action_name(enum policy_action a);
const char *policy_later_note(enum policy_later l); /* "" for none */
/* The note for one entry: where it goes with iod, or policy_later_note. */
const char *policy_entry_note(const struct policy_entry *e);

/* What the entry does today, as one phrase: "PASS", "DENY(EPERM)",
 * "DENY(ENOSYS) in-kernel", "PASS if <check>, else DENY(EINVAL)". */
void policy_describe_action(const struct policy_entry *e, char *buf, size_t size);

/* How many entries have each action (index enum policy_action), and how
 * many PASS entries carry an argument check / a later note. */
struct policy_stats {
	unsigned int total;
	unsigned int by_action[3];
	unsigned int checked;
	unsigned int in_kernel;
	unsigned int later_io;
	unsigned int later_net;
};
void policy_stats(struct policy_stats *st);

/* Print the table: format "table" (aligned text), "json" or "markdown". */
int policy_print(FILE *out, const char *format, struct qerr *err);

/* Emulation handlers (sys_*.c). */
int sys_sysinfo(const struct policy_call *call, int64_t *val);
/* The file-path calls iod serves (sys_iod.c) when the sandbox has iod:
 * their PASS entries then trap, and sys_iod answers. */
bool sys_iod_serves(int nr);
/* Calls that can change what sys_iod caches of a task's credentials: with
 * iod they trap, the cache is forgotten, and the kernel runs them. */
bool sys_iod_watches(int nr);
void sys_iod_forget_creds(void);
int sys_iod(const struct policy_call *call, int64_t *val);
/* The calling task's thread group, and its credentials as a request
 * carries them (sys_iod.c's per-thread cache).  0 or -errno. */
struct iod_creds;
int sys_iod_task(const struct policy_call *call, pid_t *tgid, struct iod_creds *creds);

/* Offload-all (sys_offload.c): reads, writes and fsyncs of regular files
 * through iod.  sys_offload_serves: the calls it answers; watches: the
 * calls that close fds, after which it drops its copies (execve and
 * execveat, which sys_iod_watches has, too). */
struct iod_client;
int sys_offload_init(struct iod_client *ic);
bool sys_offload_serves(int nr);
bool sys_offload_watches(int nr);
int sys_offload(const struct policy_call *call, int64_t *val);
void sys_offload_forget(const struct policy_call *call);
/* An fd for the supervisor's loop: readable when a process holding
 * registered files is gone; then call sys_offload_sweep. */
int sys_offload_fd(void);
void sys_offload_sweep(void);
struct sys_offload_stats {
	uint64_t hits, misses; /* calls on a registered file, and registrations tried */
	uint64_t added, passed, drops;
	uint64_t bytes_read, bytes_written;
	unsigned files; /* registered now */
};
void sys_offload_stats(struct sys_offload_stats *out);

/* The socket calls the socket service serves (sys_net.c) in netd's quiver
 * mode: their PASS entries then trap, and sys_net answers (or lets the
 * kernel run the ones that are not its business). */
bool sys_net_serves(int nr);
int sys_net(const struct policy_call *call, int64_t *val);

/* Access to the workload's memory (sys_uaccess.c), by process_vm_readv/
 * writev on the notification's pid.  The notification must still be valid
 * (SECCOMP_IOCTL_NOTIF_ID_VALID): a write checks it before writing, a read
 * after reading, so the pid named the trapped task while the bytes moved.
 * The pid is in the supervisor's pid namespace, which is the sandbox's own:
 * if the task was killed and its pid recycled in between, the other process
 * is also the workload's.  Copy once, then validate the copy.  0 or a
 * negative errno (-EFAULT for a short or failed access, -ENOENT when the
 * notification is gone). */
int sys_copy_from_user(const struct policy_call *call, void *dst, uint64_t addr, size_t len);
/* 0 while the notification is pending (its task still waits in the call),
 * -ENOENT once it is gone. */
int sys_notif_valid(const struct policy_call *call);
int sys_copy_to_user(const struct policy_call *call, uint64_t addr, const void *src, size_t len);

#endif
