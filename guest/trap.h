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
 * Returns the listener fd (>= 0, close-on-exec).  Until the listener is
 * served, the caller may only make PASS calls (see `quiver-guest policy`):
 * any other would block on a supervisor that has not got the fd yet. */
int trap_install(json_t *oci_seccomp, struct qerr *err);

/* Quiver's own filter, compiled from the policy table but not loaded (a
 * libseccomp scmp_filter_ctx): for tests, measurements and exporting the BPF
 * (seccomp_export_bpf).  Free with trap_free_filter. */
int trap_build_filter(void **out, struct qerr *err);
void trap_free_filter(void *filter);

/* Write Quiver's compiled filter as C source (the build embeds it; see
 * trap_seccomp.c), and check that the embedded program is what the table
 * compiles to now (returns its length, -ENOENT without one, -ESTALE when
 * it differs). */
#include <stdio.h>
int trap_export_c(FILE *out, struct qerr *err);
int trap_check_embedded(struct qerr *err);

/* What the supervisor knows about its sandbox when it serves a syscall. */
struct trap_ctx {
	struct guest_counters *counters;
	int64_t memory_limit; /* bytes, from linux.resources.memory.limit; <= 0: none */
	/* The memory cgroup's usage file (v1 memory.usage_in_bytes, v2
	 * memory.current), for sysinfo's freeram; NULL: unknown. */
	const char *memory_usage_path;
};

/* Serve every notification pending on listener (non-blocking).  Returns 0,
 * or -EPIPE when the listener has no processes left (remove it). */
int trap_serve(struct trap_ctx *ctx, int listener, struct qerr *err);

#endif
