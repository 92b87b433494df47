/* `quiver-guest exec`: one more process in a running sandbox.
 *
 * In the host namespaces it connects to S's control socket (and the console
 * socket), joins S's cgroups, then enters S's namespaces with one
 * setns(pidfd, flags) and forks, so that the child is born inside the pid
 * namespace.  The child goes through the same preparation as W
 * (workload_prepare), hands its seccomp listener to S with op `listener`
 * and execs.  The parent reports {op:"exec", pid} once the execve worked,
 * then exits (--detach) or waits for the child and exits with its status.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/unix_connect.h"
#include "guest/cgroups.h"
#include "guest/guest.h"

struct exec_msg {
	int32_t code;
	char msg[QERR_MSG_MAX];
};

static int connect_ctl(const char *state_dir, struct qerr *err)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/guest.sock", state_dir) >= (int)sizeof(path))
		return qerr_set(err, ENAMETOOLONG, "%s/guest.sock: path too long", state_dir);
	cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	int r = unix_connect(fd, path);
	if (r < 0)
		return qerr_sys(err, -r, "connect %s", path);
	return steal_fd(fd);
}

/* Write our pid into the cgroups S is in, as the host sees them. */
static int join_cgroups_of(pid_t spid, struct qerr *err)
{
	struct cgroups_host *host = NULL;
	int r = cgroups_host_detect(&host, err);
	if (r < 0)
		return r;
	char path[64], line[4096];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)spid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f) {
		cgroups_host_free(host);
		return qerr_sys(err, errno, "%s", path);
	}
	while (r == 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':');
		char *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = '\0';
		const char *ctl = a + 1, *cg = b + 1;
		for (size_t i = 0; i < host->n; i++) {
			const struct cgroups_hierarchy *h = &host->h[i];
			bool match = h->v2 ? ctl[0] == '\0' : strcmp(h->controllers, ctl) == 0;
			if (!match)
				continue;
			char procs[4096 + 64];
			snprintf(procs, sizeof(procs), "%s%s/cgroup.procs", h->mountpoint,
				 strcmp(cg, "/") == 0 ? "" : cg);
			int fd = open(procs, O_WRONLY | O_CLOEXEC);
			if (fd < 0) {
				r = qerr_sys(err, errno, "open %s", procs);
				break;
			}
			if (write(fd, "0", 1) < 0)
				r = qerr_sys(err, errno, "write %s", procs);
			close(fd);
			break;
		}
	}
	cgroups_host_free(host);
	return r;
}

/* The process to run: --process FILE, or config.json's process with the
 * command line's args, env, cwd and tty. */
static int build_process(const struct exec_opts *o, const struct guest_config *cfg,
			 struct guest_process *p, char ***env_out, struct qerr *err)
{
	if (o->process_file) {
		int r = guest_process_load(o->process_file, p, err);
		if (r < 0)
			return r;
	} else {
		*p = cfg->process;
		p->args = o->args;
		for (p->n_args = 0; o->args[p->n_args]; p->n_args++)
			;
		p->terminal = o->tty;
		if (o->cwd)
			p->cwd = (char *)o->cwd;
	}
	/* extra --env entries override same-named ones */
	size_t n = p->n_env + o->n_env;
	char **env = calloc(n + 1, sizeof(char *));
	if (!env)
		return qerr_sys(err, ENOMEM, "calloc");
	size_t k = 0;
	for (size_t i = 0; i < p->n_env; i++) {
		const char *eq = strchr(p->env[i], '=');
		size_t kl = eq ? (size_t)(eq - p->env[i]) : strlen(p->env[i]);
		bool overridden = false;
		for (size_t j = 0; j < o->n_env && !overridden; j++)
			overridden = strncmp(o->env[j], p->env[i], kl) == 0 && o->env[j][kl] == '=';
		if (!overridden)
			env[k++] = p->env[i];
	}
	for (size_t j = 0; j < o->n_env; j++)
		env[k++] = o->env[j];
	*env_out = env;
	return 0;
}

struct child_ctx {
	int ctl;
};

/* Hand the listener to S and wait until S serves it: only then may the
 * child make a trapped call. */
static int send_listener_to_s(int fd, void *arg)
{
	struct child_ctx *c = arg;
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "listener", 0);
	int r = send_fd(c->ctl, fd, qmsg_data(&m), qmsg_size(&m));
	qmsg_out_free(&m);
	if (r < 0)
		return r;
	char buf[4096];
	ssize_t n;
	do
		n = recv(c->ctl, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n < 0 ? -errno : -EPIPE;
	struct qmsg_in in;
	struct qerr e = {0};
	if (qmsg_parse(&in, buf, (size_t)n, &e) < 0)
		return -EPROTO;
	r = strcmp(in.op, "ok") == 0 ? 0 : -EPROTO;
	qmsg_in_free(&in);
	return r;
}

static _Noreturn void child_main(const struct exec_opts *o, const struct guest_config *cfg,
				 struct guest_process *p, char **env, int ctl, int console_fd,
				 int errpipe)
{
	struct qerr err = {0};
	struct child_ctx cc = {.ctl = ctl};
	struct workload_spec ws = {
	    .proc = p,
	    .seccomp = cfg->seccomp,
	    .console_fd = console_fd,
	    .preserve_fds = o->preserve_fds,
	    .keep_fds = {ctl, errpipe},
	    .n_keep_fds = 2,
	    .in_user_ns = cfg->ns_present[GUEST_NS_USER],
	};
	void *late_profile = NULL;
	if (workload_prepare(&ws, send_listener_to_s, &cc, &late_profile, &err) == 0) {
		close(ctl);
		struct guest_process q = *p;
		workload_exec(&q, env, late_profile, &err);
	}
	struct exec_msg m = {.code = err.code ? err.code : EIO};
	snprintf(m.msg, sizeof(m.msg), "%s", err.msg);
	(void)!write(errpipe, &m, sizeof(m));
	_exit(127);
}

static int ns_flags(const struct guest_config *cfg)
{
	/* setns(pidfd) refuses to re-enter our own user namespace: only the
	 * ones the sandbox has of its own */
	int f = CLONE_NEWNS | CLONE_NEWPID;
	static const struct {
		enum guest_ns_type t;
		int flag;
	} opt[] = {
	    {GUEST_NS_USER, CLONE_NEWUSER},	{GUEST_NS_NETWORK, CLONE_NEWNET},
	    {GUEST_NS_IPC, CLONE_NEWIPC},	{GUEST_NS_UTS, CLONE_NEWUTS},
	    {GUEST_NS_CGROUP, CLONE_NEWCGROUP}, {GUEST_NS_TIME, CLONE_NEWTIME},
	};
	for (size_t i = 0; i < ARRAY_SIZE(opt); i++)
		if (cfg->ns_present[opt[i].t])
			f |= opt[i].flag;
	return f;
}

static int do_exec(const struct exec_opts *o, pid_t *child, struct qerr *err)
{
	cleanup_config struct guest_config *cfg = NULL;
	int r = guest_config_load(o->bundle, &cfg, err);
	if (r < 0)
		return r;
	struct guest_process p;
	cleanup_free char **env = NULL;
	r = build_process(o, cfg, &p, &env, err);
	if (r < 0)
		return r;
	if (p.terminal && !o->console_socket)
		return qerr_set(err, EINVAL, "--tty needs --console-socket");

	cleanup_close int ctl = connect_ctl(o->state_dir, err);
	if (ctl < 0)
		return ctl;
	cleanup_close int console_fd = -1;
	if (p.terminal) {
		console_fd = console_connect(o->console_socket, err);
		if (console_fd < 0)
			return console_fd;
	}
	/* From here on we hold host privileges inside the sandbox's
	 * namespaces: non-dumpable, so that the workload can neither open our
	 * (or our child's) /proc/PID/mem, fd or cwd entries nor ptrace us
	 * before the child's filter is on and its capabilities are dropped
	 * (runc's CVE-2016-9962).  execve makes the exec'd program dumpable
	 * again. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return qerr_sys(err, errno, "prctl(PR_SET_DUMPABLE)");
	cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, o->pid, 0);
	if (pidfd < 0)
		return qerr_sys(err, errno, "sandbox %s: pid %d", o->id, (int)o->pid);
	r = join_cgroups_of(o->pid, err);
	if (r < 0)
		return r;
	if (setns(pidfd, ns_flags(cfg)) < 0)
		return qerr_sys(err, errno, "setns into sandbox %s", o->id);

	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return qerr_sys(err, errno, "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(ep[0]);
		close(ep[1]);
		return qerr_sys(err, errno, "fork");
	}
	if (pid == 0) {
		close(ep[0]);
		child_main(o, cfg, &p, env, ctl, console_fd, ep[1]);
	}
	close(ep[1]);
	*child = pid;
	struct exec_msg m;
	ssize_t n;
	do
		n = read(ep[0], &m, sizeof(m));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(m)) {
		m.msg[sizeof(m.msg) - 1] = '\0';
		waitpid(pid, NULL, 0);
		*child = 0;
		return qerr_set(err, m.code, "%s", m.msg);
	}
	return 0;
}

int exec_main(const struct exec_opts *o)
{
	struct qerr err = {0};
	pid_t child = 0;
	if (do_exec(o, &child, &err) < 0) {
		qlog_error("exec %s: %s", o->id, err.msg);
		sync_send_error(o->sync_fd, &err);
		return 1;
	}
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "exec", 1);
	qmsg_put_int(&m, "pid", child);
	if (send(o->sync_fd, qmsg_data(&m), qmsg_size(&m), MSG_NOSIGNAL) < 0)
		qlog_warn("sync socket: %s", strerror(errno));
	qmsg_out_free(&m);
	close(o->sync_fd);
	if (o->detach)
		return 0;
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			return 255;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
