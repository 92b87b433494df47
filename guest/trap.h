/* How the workload's syscalls are caught: seccomp with user notification.
 * The policy (policy.h) says what each syscall gets; this interface installs
 * the filter generated from it and serves the notifications it produces. */
#ifndef QUIVER_GUEST_TRAP_H
#define QUIVER_GUEST_TRAP_H

#include <jansson.h>
#include <stdbool.h>

#include "libcommon/err.h"
#include "guest/counters.h"

/* Check an OCI linux.seccomp object for validity (called while config.json
 * is validated, so a bad profile fails `create` with a clear message).
 * oci_seccomp may be NULL (no profile). */
int trap_oci_seccomp_check(json_t *oci_seccomp, struct qerr *err);

/* In the workload, in this order (guest/workload.c):
 *   trap_oci_compile   before any filter is on (NULL profile: nothing to do)
 *   trap_install_quiver  Quiver's filter with a new listener; returns the
 *                      listener fd (close-on-exec).  Until the supervisor
 *                      serves it, only PASS calls may be made.
 *   hand the listener to the supervisor
 *   trap_oci_load      the OCI profile as its own filter, as late as the
 *                      process allows (just before execve with
 *                      no_new_privs, else while CAP_SYS_ADMIN is still
 *                      held).  The kernel applies the most restrictive
 *                      result of all filters, so the profile can narrow
 *                      Quiver's policy and never widen it; loading it after
 *                      the hand-over means no profile can block the
 *                      hand-over itself.
 * trap_install does all of it in one call, for tests (returns the listener). */
int trap_oci_compile(json_t *oci_seccomp, void **out, struct qerr *err);
int trap_install_quiver(struct qerr *err);
/* Which of Quiver's two filters trap_install_quiver loads: the plain one,
 * or (iod true) the one where the calls iod serves trap too.  Set in S
 * before W is forked. */
void trap_use_iod(bool iod);
/* The same for the socket service (netd's quiver mode, guest/sys_net.c):
 * the socket calls it serves trap too. */
void trap_use_net(bool net);
/* Offload-all (with iod): reads, writes and fsyncs trap, and the calls
 * that close fds (guest/sys_offload.c). */
void trap_use_offload(bool offload);
int trap_oci_load(void *compiled, struct qerr *err);
void trap_oci_free(void *compiled);
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

struct iod_client;
struct net_client;

/* What the supervisor knows about its sandbox when it serves a syscall. */
struct trap_ctx {
	struct guest_counters *counters;
	int64_t memory_limit; /* bytes, from linux.resources.memory.limit; <= 0: none */
	/* The memory cgroup's usage file (v1 memory.usage_in_bytes, v2
	 * memory.current), for sysinfo's freeram; NULL: unknown. */
	const char *memory_usage_path;
	struct iod_client *iod; /* the sandbox's iod connection, or NULL */
	struct net_client *net; /* quiver mode: the sandbox's netd connection, or NULL */
};

/* Answer notification id later than trap_serve (an iod completion): err a
 * positive errno or 0 with val, or cont: let the kernel run the call.  The
 * task may be gone (ENOENT), which is not an error. */
void trap_respond(int listener, uint64_t id, int err, int64_t val, bool cont);
/* Answer notification id with fd, injected into the task
 * (SECCOMP_ADDFD_FLAG_SEND): the call returns the new fd number, which this
 * returns too, or -errno. */
int trap_inject_fd(int listener, uint64_t id, int fd, bool cloexec);
/* trap_inject_fd leaves the caller SCHED_BATCH (no wake-up preemption);
 * call this before sleeping, so that a wake-up from idle preempts again. */
void trap_sched_restore(void);

/* Serve every notification pending on listener (non-blocking).  Returns 0,
 * or -EPIPE when the listener has no processes left (remove it). */
int trap_serve(struct trap_ctx *ctx, int listener, struct qerr *err);

#endif
