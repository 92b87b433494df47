/* The guest kernel's own processes: the launcher (G), the supervisor (S) and
 * the workload (W), plus `quiver-guest exec`.  See docs/guest-protocol.md.
 *
 * Module map:
 *   main.c        command line, dispatch
 *   launcher.c    G: config, cgroups, state files, clone S, report `created`
 *   supervisor.c  S: rootfs, fork W, control socket, seccomp listeners, reaping
 *   workload.c    W (and exec'd processes): the preparation up to execve
 *   mounts.c      the rootfs: mounts, pivot_root, masked/readonly paths
 *   creds.c       user, groups, rlimits, capabilities, no_new_privs
 *   console.c     pty and the --console-socket hand-over
 *   hooks.c       OCI hooks: the state on stdin, the runner (hooks.h)
 *   exec.c        `quiver-guest exec`
 */
#ifndef QUIVER_GUEST_GUEST_H
#define QUIVER_GUEST_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "libcommon/err.h"
#include "libcommon/launch_proto.h"
#include "guest/counters.h"
#include "guest/oci_config.h"
#include "guest/cgroups.h"

/* ---- command line ---- */

struct create_opts {
	const char *id;
	const char *bundle;
	const char *state_dir;
	int sync_fd;
	const char *console_socket; /* NULL: none */
	int preserve_fds;
	const char *cgroup_parent; /* NULL: none */
	bool systemd_cgroup;
};

struct exec_opts {
	const char *id;
	const char *state_dir;
	const char *bundle; /* NULL: read it from STATE_DIR/state.json is not done; required */
	pid_t pid;	    /* S */
	int sync_fd;
	const char *process_file; /* NULL: use args */
	char **args;		  /* NULL-terminated, when no --process */
	char **env;		  /* extra K=V, NULL-terminated */
	size_t n_env;
	const char *cwd;
	bool tty;
	const char *console_socket;
	int preserve_fds;
	bool detach;
};

/* `quiver-guest warm` (warm.c): a supervisor made ahead of its bundle. */
struct warm_opts {
	const char *sock;  /* where the warm S listens for its assignment */
	const char *netns; /* a pooled network namespace to join, or NULL: a new one */
	const char *cgroups[CGROUPS_HIER_MAX]; /* the pooled cgroup's directories */
	size_t n_cgroups;
	int sync_fd; /* poold's end: "warm"/"error" from G, "taken" to S, EOF = poold gone */
};

int launcher_main(const struct create_opts *o);
int warm_main(const struct warm_opts *o);
/* Whether a config can be served by a warm S (fresh pid, mount, ipc, uts
 * and network namespaces, no user or time namespace, no hooks that run
 * before S exists, no terminal, the default cgroup path).  -EAGAIN with
 * the reason if not. */
int warm_check(const struct guest_config *cfg, struct qerr *err);
int exec_main(const struct exec_opts *o);

/* Send one message on the sync socket: {op:"error", code, msg}. */
void sync_send_error(int sync_fd, const struct qerr *err);

/* ---- supervisor ---- */

/* Everything S inherits from G across clone(). */
struct sup_args {
	const struct create_opts *opts;
	struct guest_config *cfg;
	struct guest_counters *counters;
	const struct cgroups *cg; /* the sandbox's cgroup directories (made by G) */
	int state_dirfd; /* STATE_DIR, a host directory: used with *at() after pivot_root */
	int ctl_fd;	 /* guest.sock, bound and listening */
	int g_sock;	 /* socketpair end to G: "go" from G, hello/ready/error to G */
	int console_fd;	 /* connected --console-socket, or -1 */
	int ns_fds[GUEST_NS_COUNT]; /* namespaces to join by path (opened by G), or -1 */
	char log_path[4096];	    /* STATE_DIR/guest.log */
	bool go;		    /* S: G's GS_GO received */
	pid_t host_pid;		    /* S's pid on the host (sent with GS_GO) */
	const char *layer_upper;    /* writable layer over the rootfs (overlayfs), or NULL */
	const char *layer_work;
	int dev_tree;	/* /dev built while warm (rootfs_dev_prebuild), or -1 */
	int sys_tree;	/* /sys built while warm (rootfs_sys_prebuild), or -1 */
	int proc_tree;	/* /proc built while warm (rootfs_proc_prebuild), or -1 */
	bool autostart; /* warm, assigned with start: no separate start request */
};

/* The child entry of clone(): never returns. */
int supervisor_main(void *arg);
/* A warm S once assigned (warm.c): everything from the rootfs on, with
 * a->go set and a->g_sock the assigner's connection. */
_Noreturn void supervisor_serve(struct sup_args *a, int devnull);

/* Messages on the G<->S socketpair: libcommon/launch_proto.h. */
int gs_send(int fd, int type, const struct qerr *err);

/* ---- workload ---- */

/* What W (or an exec'd process) needs to prepare itself. */
struct workload_spec {
	const struct guest_process *proc;
	json_t *seccomp;  /* linux.seccomp, may be NULL */
	int console_fd;	  /* --console-socket connection, -1 if none */
	int preserve_fds; /* fds 3..3+N-1 stay open */
	int keep_fds[4];  /* our own fds that must survive close_range (CLOEXEC) */
	int n_keep_fds;
	bool in_user_ns; /* setgroups may be denied */
};

/* Everything from setsid to the final capabilities (order: workload.c).
 * send_listener is called with the seccomp listener fd, before any OCI
 * profile is loaded, and must hand it over to S.  With no_new_privs, the
 * OCI profile is returned compiled in *late_profile, for workload_exec to
 * load just before execve; otherwise it is loaded here and *late_profile is
 * NULL. */
int workload_prepare(const struct workload_spec *ws, int (*send_listener)(int fd, void *arg),
		     void *arg, void **late_profile, struct qerr *err);
/* The same with the OCI profile already compiled (trap_oci_compile; NULL
 * if none), which stays the caller's: for W spawned in S's memory, where
 * S frees it once W has exec'd.  *late_profile is oci with no_new_privs. */
int workload_prepare_compiled(const struct workload_spec *ws, void *oci,
			      int (*send_listener)(int fd, void *arg), void *arg,
			      void **late_profile, struct qerr *err);
/* execve args[0] with env, looking it up in the env's PATH when it has no
 * '/' (runc does the lookup in the container's environment, not ours).
 * late_profile (from workload_prepare, may be NULL) is loaded after the
 * lookup, just before execve.  Returns only on failure (negative errno,
 * err filled). */
int workload_exec(const struct guest_process *proc, char *const *env, void *late_profile,
		  struct qerr *err);
/* The PATH lookup alone: fills out (size outlen) with the path to exec. */
int workload_find_program(const char *file, char *const *env, char *out, size_t outlen,
			  struct qerr *err);

/* Close every fd from `from` up, except the ones in keep (at most 8). */
int close_all_but(int from, const int *keep, int n_keep, struct qerr *err);

/* ---- rootfs ---- */

/* What rootfs_setup calls back into S for; arg is passed to each.
 *   cgroups_ready  before the first mount that needs the sandbox's cgroup
 *                  directories (G may still be making them); returns once
 *                  they exist
 *   become_root    may be NULL: once the rootfs and the bind sources are
 *                  opened, before the first mount (in a user namespace it
 *                  switches to the namespace's root)
 *   before_pivot   may be NULL: after the mounts, before pivot_root (the
 *                  createContainer hooks) */
struct rootfs_calls {
	int (*cgroups_ready)(void *arg);
	int (*become_root)(void *arg);
	int (*before_pivot)(void *arg, struct qerr *err);
	void *arg;
	/* Not NULL: the root is an overlay of the bundle's rootfs (lower,
	 * never written) and this upper/work pair from poold's layer pool. */
	const char *layer_upper, *layer_work;
	/* Not NULL: a /dev a warm S built before it was taken
	 * (rootfs_dev_prebuild), attached in place of the config's /dev
	 * mounts when they are the default ones; closed either way, -1 after. */
	int *dev_tree;
	int *sys_tree;	/* the same for /sys (rootfs_sys_prebuild) */
	int *proc_tree; /* and /proc (rootfs_proc_prebuild) */
};

/* Build, detached, the /dev that runc's and containerd's default specs
 * mount (tmpfs, devpts, shm, mqueue, the six default nodes and the
 * links), in S's namespaces (mqueue and devpts are tied to them).
 * Returns the tree's fd. */
int rootfs_dev_prebuild(struct qerr *err);
/* Whether cfg's mounts at and under /dev are exactly what that tree
 * holds, so that it can stand in for them. */
bool rootfs_dev_fits(const struct guest_config *cfg);
/* The same for /sys: sysfs with, at fs/cgroup, the tmpfs and read-only
 * binds of the groups in cg (S's own, which the sandbox gets). */
int rootfs_sys_prebuild(const struct cgroups *cg, struct qerr *err);
/* cfg's mounts at and under /sys are sysfs and cgroup as in runc's spec,
 * and cg's directories are the ones tree binds. */
bool rootfs_sys_fits(const struct guest_config *cfg, const struct cgroups *cg, int tree);
/* The same for /proc (S's, the sandbox's pid namespace) with runc's
 * readonlyPaths and maskedPaths under it applied. */
int rootfs_proc_prebuild(struct qerr *err);
/* cfg mounts proc at /proc, nothing else there, its readonlyPaths and
 * maskedPaths under /proc are runc's, its /dev the default one
 * (rootfs_dev_fits), and it sets no sysctl. */
bool rootfs_proc_fits(const struct guest_config *cfg);

/* In S's new mount namespace: build the rootfs and pivot_root into it, then
 * hostname, sysctl, readonly and masked paths, read-only root. */
int rootfs_setup(const struct guest_config *cfg, const struct cgroups *cg,
		 const struct rootfs_calls *calls, struct qerr *err);

/* ---- credentials ---- */

int creds_set_rlimits(const struct guest_process *p, struct qerr *err);
int creds_set_oom_score_adj(int adj, struct qerr *err);
/* setgroups/setresgid/setresuid keeping the capabilities (PR_SET_KEEPCAPS),
 * then raise the effective set back to the permitted one so that the rest of
 * the preparation (seccomp without no_new_privs) still works. */
int creds_set_user(const struct guest_user *u, bool in_user_ns, struct qerr *err);
/* Drop the bounding set, set effective/permitted/inheritable with the
 * capabilities in `keep` still held (CAP_SYS_ADMIN, which installing the
 * seccomp filter without no_new_privs needs), raise the ambient set. */
int creds_drop_bounding_and_ambient(const struct guest_caps *c, uint64_t keep, struct qerr *err);
/* The final effective/permitted/inheritable sets (after the filter). */
int creds_set_caps(const struct guest_caps *c, struct qerr *err);
const char *creds_rlimit_name(int type);

/* ---- console ---- */

/* In W after setsid: new pty in the container's devpts, master sent over
 * console_fd with SCM_RIGHTS, slave becomes the controlling terminal and
 * fds 0, 1, 2. */
int console_setup(int console_fd, const struct guest_process *p, struct qerr *err);
/* Connect to a --console-socket path (SOCK_STREAM, as runc). */
int console_connect(const char *path, struct qerr *err);

/* ---- small helpers (launcher.c) ---- */

/* send one fd with SCM_RIGHTS and a data payload */
int send_fd(int sock, int fd, const void *data, size_t len);
/* recv_fd, recv_fds: libcommon/launch_proto.h */
/* A SOCK_SEQPACKET listener at DIR/NAME, mode 0600 (dirfd: DIR, used when
 * the path does not fit sun_path). */
int bind_seqpacket(const char *dir, int dirfd, const char *name, int *out, struct qerr *err);
/* Field 22 of /proc/PID/stat. */
int read_pid_start(pid_t pid, uint64_t *out, struct qerr *err);

/* CLOCK_MONOTONIC in nanoseconds (the vDSO: no system call). */
static inline uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#endif
