/* The workload's preparation, shared by W (forked by S at create time) and
 * the processes `quiver-guest exec` starts: everything up to the execve.
 *
 * Order matters:
 *   OCI profile compiled     before any filter is on (trap.h)
 *   rlimits, oom_score_adj   still fully privileged (raising needs caps)
 *   no_new_privs             before the filter, which then needs no privilege
 *   user and groups          with PR_SET_KEEPCAPS
 *   close every other fd     before the filter, so it is not a trapped call,
 *                            and before the chdir (CVE-2024-21626)
 *   chdir into cwd           refused when it lands outside the root
 *   bounding + ambient       prctl, before the filter (prctl is argument-checked)
 *   Quiver's filter          with CAP_SYS_ADMIN still held when no_new_privs is off
 *   listener to S            before any OCI profile: no profile can block it
 *   OCI profile              now if no_new_privs is off (it needs CAP_SYS_ADMIN),
 *                            else just before execve (workload_exec), as runc does
 *   final capset             drops CAP_SYS_ADMIN if the config did not grant it
 */
#include <errno.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "guest/guest.h"
#include "guest/trap.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

int close_all_but(int from, const int *keep, int n_keep, struct qerr *err)
{
	int k[16];
	int n = 0;
	for (int i = 0; i < n_keep; i++) {
		if (keep[i] < from)
			continue;
		if (n == (int)ARRAY_SIZE(k))
			return qerr_set(err, E2BIG, "close_range: more than %zu fds to keep",
					ARRAY_SIZE(k));
		k[n++] = keep[i];
	}
	qsort(k, (size_t)n, sizeof(int), cmp_int);
	unsigned int lo = (unsigned int)from;
	for (int i = 0; i < n; i++) {
		unsigned int fd = (unsigned int)k[i];
		if (fd > lo && syscall(SYS_close_range, lo, fd - 1, 0) < 0)
			return qerr_sys(err, errno, "close_range");
		if (fd + 1 > lo)
			lo = fd + 1;
	}
	if (syscall(SYS_close_range, lo, ~0u, 0) < 0)
		return qerr_sys(err, errno, "close_range");
	return 0;
}

/* chdir into the process's cwd and make sure it is inside our root: a cwd
 * that reaches outside through a magic link (/proc/PID/fd/N, /proc/PID/cwd
 * of a process that holds a host directory, or a symlink the workload
 * planted to one, for `qctl exec --cwd`) is refused.  The kernel reports
 * such a directory to getcwd() as unreachable (glibc: ENOENT). */
static int enter_cwd(const char *cwd, struct qerr *err)
{
	if (chdir(cwd) < 0)
		return qerr_sys(err, errno, "process.cwd: %s", cwd);
	char here[PATH_MAX];
	if (!getcwd(here, sizeof(here)) || here[0] != '/')
		return qerr_set(err, EPERM, "process.cwd: %s: outside the container's root", cwd);
	return 0;
}

/* workload_prepare once the OCI profile is compiled: it owns nothing. */
static int prepare_filtered(const struct workload_spec *ws, void *oci,
			    int (*send_listener)(int fd, void *arg), void *arg, struct qerr *err)
{
	const struct guest_process *p = ws->proc;
	int r;

	/* S blocks every signal to read them from a signalfd; the workload
	 * starts with none blocked. */
	sigset_t none;
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		return qerr_sys(err, errno, "sigprocmask");

	if (setsid() < 0)
		return qerr_sys(err, errno, "setsid");
	if (p->terminal) {
		if (ws->console_fd < 0)
			return qerr_set(
			    err, EINVAL,
			    "config.json: process.terminal: true needs --console-socket");
		r = console_setup(ws->console_fd, p, err);
		if (r < 0)
			return r;
	}

	r = creds_set_rlimits(p, err);
	if (r < 0)
		return r;
	if (p->has_oom_score_adj) {
		r = creds_set_oom_score_adj(p->oom_score_adj, err);
		if (r < 0)
			return r;
	}
	if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return qerr_sys(err, errno, "prctl(PR_SET_NO_NEW_PRIVS)");

	r = creds_set_user(&p->user, ws->in_user_ns, err);
	if (r < 0)
		return r;
	/* Only 0, 1, 2, the preserved fds and our own channel survive; the
	 * console socket goes too (the pty master was sent already).  Before
	 * the chdir: a cwd of /proc/self/fd/N must find no host directory
	 * open here (runc's CVE-2024-21626). */
	r = close_all_but(3 + ws->preserve_fds, ws->keep_fds, ws->n_keep_fds, err);
	if (r < 0)
		return r;
	r = enter_cwd(p->cwd, err);
	if (r < 0)
		return r;

	/* Installing a filter without no_new_privs needs CAP_SYS_ADMIN: keep
	 * it until then even when the config does not grant it. */
	uint64_t keep = p->no_new_privileges ? 0 : (1ull << CAP_SYS_ADMIN);
	if (p->has_capabilities) {
		r = creds_drop_bounding_and_ambient(&p->caps, keep, err);
		if (r < 0)
			return r;
	}

	int listener = trap_install_quiver(err);
	if (listener < 0)
		return listener;
	r = send_listener(listener, arg);
	close(listener);
	if (r < 0)
		return qerr_sys(err, -r, "hand the seccomp listener to the supervisor");
	if (!p->no_new_privileges) {
		r = trap_oci_load(oci, err);
		if (r < 0)
			return r;
	}

	if (p->has_capabilities && (keep & ~p->caps.permitted)) {
		r = creds_set_caps(&p->caps, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int workload_prepare_compiled(const struct workload_spec *ws, void *oci,
			      int (*send_listener)(int fd, void *arg), void *arg,
			      void **late_profile, struct qerr *err)
{
	*late_profile = NULL;
	int r = prepare_filtered(ws, oci, send_listener, arg, err);
	if (r == 0 && ws->proc->no_new_privileges)
		*late_profile = oci;
	return r;
}

int workload_prepare(const struct workload_spec *ws, int (*send_listener)(int fd, void *arg),
		     void *arg, void **late_profile, struct qerr *err)
{
	void *oci = NULL;
	*late_profile = NULL;
	int r = trap_oci_compile(ws->seccomp, &oci, err);
	if (r < 0)
		return r;
	r = workload_prepare_compiled(ws, oci, send_listener, arg, late_profile, err);
	if (!*late_profile)
		trap_oci_free(oci);
	return r;
}

static const char *env_get(char *const *env, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; env && env[i]; i++)
		if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
			return env[i] + kl + 1;
	return NULL;
}

int workload_find_program(const char *file, char *const *env, char *out, size_t outlen,
			  struct qerr *err)
{
	if (file[0] == '\0')
		return qerr_set(err, ENOENT, "exec: \"\": No such file or directory");
	if (strchr(file, '/')) {
		if (snprintf(out, outlen, "%s", file) >= (int)outlen)
			return qerr_set(err, ENAMETOOLONG, "exec: %s: name too long", file);
		return 0;
	}
	const char *path = env_get(env, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	int found_err = ENOENT;
	for (const char *d = path;; d++) {
		const char *end = strchrnul(d, ':');
		/* an empty PATH element means the current directory */
		int n = end == d ? snprintf(out, outlen, "./%s", file)
				 : snprintf(out, outlen, "%.*s/%s", (int)(end - d), d, file);
		if (n > 0 && (size_t)n < outlen) {
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(out, X_OK) == 0)
					return 0;
				found_err = EACCES;
			}
		}
		if (*end == '\0')
			break;
		d = end;
	}
	return qerr_set(err, found_err, "exec: %s: %s", file,
			found_err == ENOENT ? "executable file not found in $PATH"
					    : strerror(found_err));
}

int workload_exec(const struct guest_process *proc, char *const *env, void *late_profile,
		  struct qerr *err)
{
	char path[GUEST_CONFIG_PATH_MAX];
	int r = workload_find_program(proc->args[0], env, path, sizeof(path), err);
	if (r < 0)
		return r;
	r = trap_oci_load(late_profile, err);
	if (r < 0)
		return r;
	execve(path, proc->args, env);
	return qerr_sys(err, errno, "exec: %s", proc->args[0]);
}
