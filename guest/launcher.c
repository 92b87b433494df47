/* G, the launcher: `quiver-guest create`.
 *
 * Runs in the host namespaces: loads config.json, makes the state files,
 * clones S into the new namespaces, then, while S builds the rootfs, makes
 * the cgroups, puts S in them, writes its id maps, lets it go and waits
 * until it reports the workload prepared; then answers `created` on the
 * sync socket and exits.  Anything that fails is undone before the
 * one-line `error` is sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "guest/cgroups.h"
#include "guest/guest.h"
#include "guest/hooks.h"

/* ---- small helpers shared with S, W and exec ---- */

int send_fd(int sock, int fd, const void *data, size_t len)
{
	return send_with_fds(sock, data, len, &fd, fd >= 0 ? 1 : 0);
}

int gs_send(int fd, int type, const struct qerr *err)
{
	struct gs_msg m = {.type = type};
	if (err) {
		m.code = err->code;
		snprintf(m.msg, sizeof(m.msg), "%s", err->msg);
	}
	return write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : -errno;
}

int read_pid_start(pid_t pid, uint64_t *out, struct qerr *err)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "%s", path);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return qerr_sys(err, n < 0 ? errno : EIO, "read %s", path);
	buf[n] = '\0';
	/* comm (field 2) may hold spaces and ')': count from the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return qerr_set(err, EIO, "%s: unexpected format", path);
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return qerr_set(err, EIO, "%s: unexpected format", path);
	}
	*out = strtoull(p + 1, NULL, 10);
	return 0;
}

void sync_send_error(int sync_fd, const struct qerr *err)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_error_reply(&m, err);
	if (send(sync_fd, qmsg_data(&m), qmsg_size(&m), MSG_NOSIGNAL) < 0)
		qlog_error("sync socket: %s", strerror(errno));
	qmsg_out_free(&m);
}

/* ---- the launcher ---- */

struct launch {
	const struct create_opts *o;
	struct guest_config *cfg;
	struct cgroups *cg;
	bool cg_created;
	int state_dirfd;
	bool made_counters, made_sock, made_log;
	pid_t s_pid;
	int ctl_fd;
	int console_fd;
	int gs[2];
	int ns_fds[GUEST_NS_COUNT];
};

static void undo(struct launch *l)
{
	struct qerr e = {0};
	if (l->s_pid > 0) {
		kill(l->s_pid, SIGKILL);
		while (waitpid(l->s_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (l->cg_created && cgroups_remove(l->cg->dirs, l->cg->n, &e) < 0)
		qlog_warn("cleanup: %s", e.msg);
	if (l->state_dirfd >= 0) {
		if (l->made_counters)
			unlinkat(l->state_dirfd, "counters", 0);
		if (l->made_sock)
			unlinkat(l->state_dirfd, "guest.sock", 0);
		if (l->made_log)
			unlinkat(l->state_dirfd, "guest.log", 0);
	}
}

int bind_seqpacket(const char *dir, int dirfd, const char *name, int *out, struct qerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	/* A long directory does not fit sun_path: go through our fd of it. */
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd, name);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	mode_t old = umask(0177); /* 0600 from the start, no window */
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = qerr_sys(err, errno, "bind %s/%s", dir, name);
		close(fd);
		return r;
	}
	if (listen(fd, 16) < 0) {
		r = qerr_sys(err, errno, "listen %s/%s", dir, name);
		unlinkat(dirfd, name, 0);
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

static int bind_ctl(struct launch *l, struct qerr *err)
{
	int r = bind_seqpacket(l->o->state_dir, l->state_dirfd, "guest.sock", &l->ctl_fd, err);
	if (r == 0)
		l->made_sock = true;
	return r;
}

static int write_map(pid_t pid, const char *file, const struct guest_idmap *m, size_t n,
		     struct qerr *err)
{
	char path[64], buf[4096];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		int k = snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", m[i].container_id,
				 m[i].host_id, m[i].size);
		if (k < 0 || (size_t)k >= sizeof(buf) - len)
			return qerr_set(err, E2BIG, "config.json: linux.%s: too many mappings",
					strcmp(file, "uid_map") == 0 ? "uidMappings"
								     : "gidMappings");
		len += (size_t)k;
	}
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "open %s", path);
	if (write(fd, buf, len) != (ssize_t)len)
		return qerr_sys(err, errno, "write %s", path);
	return 0;
}

/* Only the directories, before S is cloned (it needs them for the cgroup
 * mount); making them, the limits and the join happen while S builds the
 * rootfs. */
static int resolve_cgroups(struct launch *l, struct qerr *err)
{
	struct cgroups_host *host = NULL;
	int r = cgroups_host_detect(&host, err);
	if (r < 0)
		return r;
	cleanup_free char *path = NULL;
	const char *cgpath = l->cfg->cgroups_path;
	if (!cgpath && l->o->cgroup_parent) {
		if (asprintf(&path, "%s/%s", l->o->cgroup_parent, l->o->id) < 0) {
			cgroups_host_free(host);
			return qerr_sys(err, ENOMEM, "asprintf");
		}
		cgpath = path;
	}
	r = cgroups_resolve(host, cgpath, l->o->id, l->o->systemd_cgroup, &l->cg, err);
	cgroups_host_free(host);
	return r;
}

static int make_cgroups(struct launch *l, struct qerr *err)
{
	int r = cgroups_create(l->cg, err);
	if (r < 0)
		return r;
	l->cg_created = true;
	r = cgroups_apply(l->cg, l->cfg->has_resources ? &l->cfg->resources : NULL, err);
	if (r < 0)
		return r;
	return cgroups_join(l->cg, l->s_pid, err);
}

static int open_namespaces(struct launch *l, struct qerr *err)
{
	const struct guest_config *cfg = l->cfg;
	for (size_t i = 0; i < cfg->n_namespaces; i++) {
		const struct guest_namespace *ns = &cfg->namespaces[i];
		if (!ns->path)
			continue;
		if (ns->type == GUEST_NS_PID || ns->type == GUEST_NS_MOUNT)
			return qerr_set(err, EINVAL,
					"config.json: linux.namespaces: %s: joining an existing %s "
					"namespace is not supported (the guest kernel must be its "
					"init and own its mounts)",
					guest_ns_name(ns->type), guest_ns_name(ns->type));
		l->ns_fds[ns->type] = open(ns->path, O_RDONLY | O_CLOEXEC);
		if (l->ns_fds[ns->type] < 0)
			return qerr_sys(err, errno, "config.json: linux.namespaces: %s: %s",
					guest_ns_name(ns->type), ns->path);
	}
	return 0;
}

/* Join the namespaces given by path, user first (the others may belong to
 * it).  G does this just before cloning, so S inherits them. */
static int join_namespaces(struct launch *l, struct qerr *err)
{
	static const enum guest_ns_type order[] = {GUEST_NS_USER, GUEST_NS_NETWORK, GUEST_NS_IPC,
						   GUEST_NS_UTS,  GUEST_NS_CGROUP,  GUEST_NS_TIME};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		int fd = l->ns_fds[order[i]];
		if (fd >= 0 && setns(fd, 0) < 0)
			return qerr_sys(err, errno, "config.json: linux.namespaces: %s: setns",
					guest_ns_name(order[i]));
	}
	return 0;
}

static int send_created(struct launch *l, pid_t w_host, struct qerr *err)
{
	uint64_t start;
	int r = read_pid_start(l->s_pid, &start, err);
	if (r < 0)
		return r;
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "created", 5);
	qmsg_put_int(&m, "pid", l->s_pid);
	qmsg_put_uint(&m, "pid_start", start);
	qmsg_put_int(&m, "init_pid", w_host);
	qmsg_put_key(&m, "cgroups");
	msgpack_pack_array(&m.pk, l->cg->n);
	for (size_t i = 0; i < l->cg->n; i++)
		qmsg_pack_cstr(&m.pk, l->cg->dirs[i]);
	qmsg_put_key(&m, "annotations");
	msgpack_pack_map(&m.pk, l->cfg->n_annotations);
	for (size_t i = 0; i < l->cfg->n_annotations; i++) {
		qmsg_pack_cstr(&m.pk, l->cfg->annotations[i].key);
		qmsg_pack_cstr(&m.pk, l->cfg->annotations[i].value);
	}
	r = 0;
	if (send(l->o->sync_fd, qmsg_data(&m), qmsg_size(&m), MSG_NOSIGNAL) < 0)
		r = qerr_sys(err, errno, "sync socket");
	qmsg_out_free(&m);
	return r;
}

/* Wait for W's hello (its host pid, from SO_PASSCRED) and S's verdict. */
static int wait_ready(struct launch *l, pid_t *w_host, struct qerr *err)
{
	*w_host = 0;
	for (;;) {
		struct gs_msg m;
		pid_t cred = 0;
		int n = gs_recv(l->gs[0], &m, &cred, 0);
		/* S exiting with our HELLO_W echo unread resets the channel; the
		 * error is reported once, before what S sent us first. */
		if (n == -ECONNRESET)
			continue;
		if (n < 0)
			return qerr_sys(err, -n, "supervisor channel");
		if (n == 0) {
			int status = 0;
			if (waitpid(l->s_pid, &status, 0) == l->s_pid)
				l->s_pid = 0;
			return qerr_set(err, EIO, "supervisor exited during create (status %d)",
					status);
		}
		int r = gs_handle(l->gs[0], &m, cred, w_host, err);
		if (r != 0)
			return r < 0 ? r : 0;
	}
}

/* prestart (deprecated, run at the same point) and createRuntime, in the
 * runtime namespace. */
static int run_create_runtime_hooks(struct launch *l, struct qerr *err)
{
	const struct guest_hooks *h = &l->cfg->hooks;
	if (!hooks_any(&h->prestart) && !hooks_any(&h->create_runtime))
		return 0;
	cleanup_free char *state = hooks_state_json(l->cfg, l->o->id, "creating", l->s_pid, err);
	if (!state)
		return -err->code;
	int r = hooks_run(&h->prestart, "prestart", state, false, err);
	if (r < 0)
		return r;
	return hooks_run(&h->create_runtime, "createRuntime", state, false, err);
}

static int launch(struct launch *l, struct qerr *err)
{
	const struct create_opts *o = l->o;
	int r = guest_config_load(o->bundle, &l->cfg, err);
	if (r < 0)
		return r;
	struct guest_config *cfg = l->cfg;
	if (!cfg->has_process)
		return qerr_set(err, EINVAL, "config.json: process: required by create");
	/* S must be the init of its own pid namespace (kill(-1) and reaping
	 * rely on it) and own its mount namespace (pivot_root). */
	if (!(cfg->clone_flags & CLONE_NEWPID))
		return qerr_set(err, EINVAL,
				"config.json: linux.namespaces: a new pid namespace is required");
	if (!(cfg->clone_flags & CLONE_NEWNS))
		return qerr_set(err, EINVAL,
				"config.json: linux.namespaces: a new mount namespace is required");
	if (cfg->process.terminal && !o->console_socket)
		return qerr_set(err, EINVAL,
				"config.json: process.terminal: true needs --console-socket");

	l->state_dirfd = open(o->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->state_dirfd < 0)
		return qerr_sys(err, errno, "state dir %s", o->state_dir);
	r = open_namespaces(l, err);
	if (r < 0)
		return r;
	r = resolve_cgroups(l, err);
	if (r < 0)
		return r;

	struct guest_counters *counters = NULL;
	r = guest_counters_create(l->state_dirfd, "counters", &counters, err);
	if (r < 0)
		return r;
	l->made_counters = true;
	int logfd = openat(l->state_dirfd, "guest.log",
			   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0)
		return qerr_sys(err, errno, "create %s/guest.log", o->state_dir);
	close(logfd);
	l->made_log = true;
	r = bind_ctl(l, err);
	if (r < 0)
		return r;
	if (o->console_socket) {
		l->console_fd = console_connect(o->console_socket, err);
		if (l->console_fd < 0)
			return l->console_fd;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, l->gs) < 0)
		return qerr_sys(err, errno, "socketpair");
	int one = 1;
	if (setsockopt(l->gs[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		return qerr_sys(err, errno, "SO_PASSCRED");

	struct sup_args *sa = calloc(1, sizeof(*sa));
	if (!sa)
		return qerr_sys(err, ENOMEM, "calloc");
	*sa = (struct sup_args){
	    .opts = o,
	    .cfg = cfg,
	    .counters = counters,
	    .state_dirfd = l->state_dirfd,
	    .ctl_fd = l->ctl_fd,
	    .g_sock = l->gs[1],
	    .console_fd = l->console_fd,
	    .dev_tree = -1,
	    .sys_tree = -1,
	    .proc_tree = -1,
	};
	for (int i = 0; i < GUEST_NS_COUNT; i++)
		sa->ns_fds[i] = l->ns_fds[i];
	sa->cg = l->cg;
	snprintf(sa->log_path, sizeof(sa->log_path), "%s/guest.log", o->state_dir);

	r = join_namespaces(l, err);
	if (r < 0)
		return r;

	/* clone3 without a stack behaves like fork: S goes on with a copy of
	 * ours.  The cgroup namespace is left to S (see supervisor.c). */
	struct clone_args ca = {
	    .flags = (uint64_t)(cfg->clone_flags & ~CLONE_NEWCGROUP),
	    .exit_signal = SIGCHLD,
	};
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0)
		return qerr_sys(err, errno, "clone3 supervisor");
	if (pid == 0) {
		close(l->gs[0]);
		_exit(supervisor_main(sa));
	}
	l->s_pid = (pid_t)pid;
	close(l->gs[1]);
	l->gs[1] = -1;
	free(sa);

	/* S is building the rootfs meanwhile (unless it waits for its id
	 * maps); it waits for GS_GO before it mounts the cgroups, unshares its
	 * cgroup namespace or forks W. */
	r = make_cgroups(l, err);
	if (r < 0)
		return r;
	if (cfg->clone_flags & CLONE_NEWUSER) {
		/* As root of the parent namespace we may write a gid_map
		 * without denying setgroups first. */
		r = write_map(l->s_pid, "uid_map", cfg->uid_mappings, cfg->n_uid_mappings, err);
		if (r < 0)
			return r;
		r = write_map(l->s_pid, "gid_map", cfg->gid_mappings, cfg->n_gid_mappings, err);
		if (r < 0)
			return r;
	}
	/* The sandbox's namespaces exist and S has not pivoted yet (it waits
	 * for our go before it mounts anything when there are such hooks). */
	r = run_create_runtime_hooks(l, err);
	if (r < 0)
		return r;
	/* S's host pid, for the state its createContainer hooks read */
	struct gs_msg go = {.type = GS_GO, .code = l->s_pid};
	if (write(l->gs[0], &go, sizeof(go)) != (ssize_t)sizeof(go))
		return qerr_sys(err, errno, "supervisor channel");

	pid_t w_host;
	r = wait_ready(l, &w_host, err);
	if (r < 0)
		return r;
	return send_created(l, w_host, err);
}

int launcher_main(const struct create_opts *o)
{
	struct qerr err = {0};
	struct launch l = {
	    .o = o, .state_dirfd = -1, .ctl_fd = -1, .console_fd = -1, .gs = {-1, -1}};
	for (int i = 0; i < GUEST_NS_COUNT; i++)
		l.ns_fds[i] = -1;
	int r = launch(&l, &err);
	if (r < 0) {
		qlog_error("create %s: %s", o->id, err.msg);
		undo(&l);
		sync_send_error(o->sync_fd, &err);
	}
	/* Nothing else to release: we exit now, and S has its own copies. */
	return r < 0 ? 1 : 0;
}
