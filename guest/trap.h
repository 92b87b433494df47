/* How the workload's syscalls are caught: seccomp with user notification.
 * The policy (policy.h) says what each syscall gets; this interface installs
 * the filter generated from it and serves the notifications it produces. */
#ifndef QUIVER_GUEST_TRAP_H
#define QUIVER_GUEST_TRAP_H

#include <jansson.h>

#include "libcommon/err.h"
#include "guest/counters.h"

/* Check an OCI linux.seccomp object for validity (called while config.json
 * is validated, so a bad profile fails `create` with a clear message).
 * oci_seccomp may be NULL (no profile). */
int trap_oci_seccomp_check(json_t *oci_seccomp, struct qerr *err);

/* In the workload, after it has everything but its final capabilities:
 * install the OCI profile (if any) as its own filter, which can only narrow
 * what Quiver's filter allows, then Quiver's filter with a new listener.
 * Returns the listener fd (>= 0). */
int trap_install(json_t *oci_seccomp, struct qerr *err);

/* What the supervisor knows about its sandbox when it serves a syscall. */
struct trap_ctx {
	struct guest_counters *counters;
	int64_t memory_limit; /* bytes, from linux.resources.memory.limit; <= 0: none */
};

/* Serve every notification pending on listener (non-blocking).  Returns 0,
 * or -EPIPE when the listener has no processes left (remove it). */
int trap_serve(struct trap_ctx *ctx, int listener, struct qerr *err);

#endif
