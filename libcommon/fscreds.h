/* A thread's filesystem credentials: reading a workload's from procfs (the
 * guest) and taking them on for one operation (iod, and the guest for the
 * few paths it opens itself).
 *
 * Only what the kernel consults for path permission checks is carried:
 * fsuid, fsgid, the supplementary groups and the effective capabilities —
 * all of them, not only the file ones: procfs's ptrace checks compare the
 * caller's effective set with the target's permitted set, so a cut set
 * would be refused what the workload itself is allowed.  Switching is per thread (raw syscalls:
 * glibc would broadcast setgroups to every thread of the process), and needs CAP_SETUID, CAP_SETGID
 * and CAP_SETPCAP-free capset on the way in. */
#ifndef QUIVER_FSCREDS_H
#define QUIVER_FSCREDS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "libcommon/iod_proto.h"

/* A task's credentials as /proc/<tid>/status shows them. */
struct fscreds_task {
	uint32_t ruid, fsuid, rgid, fsgid;
	uint64_t cap_eff, cap_prm;
	uint32_t umask;
	uint32_t ngroups; /* more than IOD_GROUPS_MAX: -E2BIG from the reader */
	uint32_t groups[IOD_GROUPS_MAX];
};

/* Parse the text of a /proc/<tid>/status file.  0, or -EINVAL when a field
 * is missing or malformed, -E2BIG for too many groups. */
int fscreds_parse_status(const char *text, struct fscreds_task *out);

/* The credentials an operation runs with: the task's fs ones, or for
 * access(2) without AT_EACCESS, the real ones as the kernel does it (real
 * uid/gid; the permitted capabilities if the real uid is 0, else none). */
void fscreds_for_op(const struct fscreds_task *t, bool real, struct iod_creds *out);

/* Take on c for this thread (0, or -EPERM when the kernel did not take it
 * all: the thread is then back to its own), and go back. */
int fscreds_enter(const struct iod_creds *c);
void fscreds_leave(void);

/* Same credentials (the fields that matter). */
bool fscreds_equal(const struct iod_creds *a, const struct iod_creds *b);

#endif
