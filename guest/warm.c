/* Warm guest kernels: `quiver-guest warm`, spawned by poold.
 *
 * The launcher (G) clones a supervisor S into fresh pid, mount, ipc and uts
 * namespaces, a network namespace (poold's pooled one, or a new one) and
 * poold's pooled cgroup (v2 at clone time with CLONE_INTO_CGROUP, v1 by
 * cgroup.procs), waits until S listens on its warm socket, reports S's pid
 * to poold on the sync socket and exits.  S then waits, doing nothing, for
 * one of:
 *   - EOF on the sync socket before poold said "taken": poold is gone, and
 *     an unowned warm S has no reason to live;
 *   - "taken" from poold: S belongs to a caller now, who must assign it
 *     within WARM_TAKEN_TIMEOUT_S.  When poold names the bundle, S reads
 *     its config.json at once, while the caller makes the assignment;
 *   - an assignment on the warm socket (docs/guest-protocol.md, "Warm
 *     start"): id, bundle, state dir, cgroup directories, optional writable
 *     layer, and the workload's stdin/stdout/stderr as SCM_RIGHTS.  S loads
 *     config.json, checks that it fits what is already made (warm_check),
 *     makes its state files, writes the limits and goes on exactly as a
 *     cold S would from the rootfs on, with the assigner in G's place.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/sandbox_id.h"
#include "libcommon/unix_connect.h"
#include "guest/cgroups.h"
#include "guest/guest.h"
#include "guest/hooks.h"

#define WARM_TAKEN_TIMEOUT_S 30
#define WARM_NS_FLAGS	     (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)

/* ---- what a warm S can serve ---- */

int warm_check(const struct guest_config *cfg, struct qerr *err)
{
	static const enum guest_ns_type need[] = {GUEST_NS_PID, GUEST_NS_MOUNT, GUEST_NS_IPC,
						  GUEST_NS_UTS, GUEST_NS_NETWORK};
	for (size_t i = 0; i < ARRAY_SIZE(need); i++)
		if (!cfg->ns_present[need[i]])
			return qerr_set(err, EAGAIN, "no new %s namespace", guest_ns_name(need[i]));
	for (size_t i = 0; i < cfg->n_namespaces; i++) {
		const struct guest_namespace *ns = &cfg->namespaces[i];
		if (ns->path)
			return qerr_set(err, EAGAIN, "joins a %s namespace",
					guest_ns_name(ns->type));
		if (ns->type == GUEST_NS_USER || ns->type == GUEST_NS_TIME)
			return qerr_set(err, EAGAIN, "asks for a %s namespace",
					guest_ns_name(ns->type));
	}
	/* These run in the runtime's namespaces before S's exist (G's job). */
	if (hooks_any(&cfg->hooks.prestart) || hooks_any(&cfg->hooks.create_runtime) ||
	    hooks_any(&cfg->hooks.create_container))
		return qerr_set(err, EAGAIN, "has prestart/createRuntime/createContainer hooks");
	if (cfg->process.terminal)
		return qerr_set(err, EAGAIN, "asks for a terminal");
	if (cfg->cgroups_path)
		return qerr_set(err, EAGAIN, "sets linux.cgroupsPath");
	return 0;
}

/* ---- S, waiting ---- */

/* The host's cgroup hierarchies, read by G before it clones S (they do not
 * change): S has its own copy, and parses /proc/self/mountinfo no more. */
static struct cgroups_host *warm_host;

/* The sandbox's state files, made while warm next to the warm socket
 * (<sock>.counters, <sock>.log, <sock>.ctl, on the same filesystem as the
 * state directories) and renamed into the state directory on assignment:
 * three file creations were a millisecond of the start.  No directory of
 * their own: its rmdir on assignment was another 0.6 ms where freeing its
 * block is a synchronous discard (ext4 mounted with discard). */
static const char *const premade_dest[WARM_PREMADE_N] = {"counters", "guest.log", "guest.sock"};
static struct {
	int dirfd; /* the warm socket's directory */
	char base[NAME_MAX + 1];
	struct guest_counters *counters;
	int ctl_fd;
	int dev_tree;  /* the default /dev, detached (mounts.c), or -1 */
	int sys_tree;  /* the same for /sys, with S's groups */
	int proc_tree; /* and /proc, with runc's paths read-only or masked */
} premade = {.dirfd = -1, .ctl_fd = -1, .dev_tree = -1, .sys_tree = -1, .proc_tree = -1};

static int premade_name(size_t i, char *buf, size_t len, struct qerr *err)
{
	if ((size_t)snprintf(buf, len, "%s.%s", premade.base, warm_premade_suffix[i]) >= len)
		return qerr_set(err, ENAMETOOLONG, "%s.%s: too long", premade.base,
				warm_premade_suffix[i]);
	return 0;
}

static int premake(const char *dir, int dirfd, const char *base, struct qerr *err)
{
	char name[NAME_MAX + 1];
	int r;
	if ((size_t)snprintf(premade.base, sizeof(premade.base), "%s", base) >=
	    sizeof(premade.base))
		return qerr_set(err, ENAMETOOLONG, "%s: too long", base);
	premade.dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (premade.dirfd < 0)
		return qerr_sys(err, errno, "dup %s", dir);
	if ((r = premade_name(0, name, sizeof(name), err)) < 0 ||
	    (r = guest_counters_create(premade.dirfd, name, &premade.counters, err)) < 0 ||
	    (r = premade_name(1, name, sizeof(name), err)) < 0)
		return r;
	int logfd =
	    openat(premade.dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0)
		return qerr_sys(err, errno, "create %s/%s", dir, name);
	close(logfd);
	if ((r = premade_name(2, name, sizeof(name), err)) < 0)
		return r;
	return bind_seqpacket(dir, premade.dirfd, name, &premade.ctl_fd, err);
}

/* Move the premade files into the state directory (a bound socket keeps
 * its binding under its new name, a mapping its file). */
static int place_premade(struct sup_args *a, struct qerr *err)
{
	char name[NAME_MAX + 1];
	int r;
	for (size_t i = 0; i < WARM_PREMADE_N; i++) {
		if ((r = premade_name(i, name, sizeof(name), err)) < 0)
			return r;
		if (renameat2(premade.dirfd, name, a->state_dirfd, premade_dest[i],
			      RENAME_NOREPLACE) < 0)
			return qerr_sys(err, errno, "move %s into the state directory",
					premade_dest[i]);
	}
	a->counters = premade.counters;
	a->ctl_fd = premade.ctl_fd;
	a->dev_tree = premade.dev_tree;
	a->sys_tree = premade.sys_tree;
	a->proc_tree = premade.proc_tree;
	premade.dev_tree = premade.sys_tree = premade.proc_tree = -1;
	close(premade.dirfd);
	premade.dirfd = -1;
	return 0;
}

/* The paths are on the heap, not PATH_MAX arrays here: S keeps this for
 * its life, and the first byte of each array dirtied a page of its own. */
struct assignment {
	char id[SANDBOX_ID_MAX + 1];
	char *bundle, *state_dir;
	char *upper, *work; /* "" without a writable layer */
	char *cgroups[CGROUPS_HIER_MAX];
	size_t n_cgroups;
	int64_t host_pid, rootfs_dev, rootfs_ino;
	bool start;
	int stdio[3];
};

static int abs_path(const struct qmsg_in *in, const char *key, char **dst, bool need,
		    struct qerr *err)
{
	char path[PATH_MAX];
	int r = qmsg_get_str(in->root, key, path, sizeof(path), err);
	if (r == -ENOENT && !need)
		path[0] = '\0';
	else if (r < 0)
		return r;
	else if (path[0] != '/')
		return qerr_set(err, EINVAL, "assign: %s: must be an absolute path", key);
	if (!(*dst = strdup(path)))
		return qerr_set(err, ENOMEM, "out of memory");
	return 0;
}

static int parse_assignment(const struct qmsg_in *in, struct assignment *as, struct qerr *err)
{
	int r;
	if (strcmp(in->op, "assign") != 0)
		return qerr_set(err, EINVAL, "warm supervisor: unknown op %s", in->op);
	if ((r = qmsg_get_str(in->root, "id", as->id, sizeof(as->id), err)) < 0 ||
	    (r = sandbox_id_check(as->id, err)) < 0 ||
	    (r = abs_path(in, "bundle", &as->bundle, true, err)) < 0 ||
	    (r = abs_path(in, "state_dir", &as->state_dir, true, err)) < 0 ||
	    (r = abs_path(in, "layer_upper", &as->upper, false, err)) < 0 ||
	    (r = abs_path(in, "layer_work", &as->work, false, err)) < 0 ||
	    (r = qmsg_get_int(in->root, "host_pid", 1, INT32_MAX, &as->host_pid, err)) < 0 ||
	    (r = qmsg_get_int(in->root, "rootfs_dev", 0, INT64_MAX, &as->rootfs_dev, err)) < 0 ||
	    (r = qmsg_get_int(in->root, "rootfs_ino", 0, INT64_MAX, &as->rootfs_ino, err)) < 0)
		return r;
	r = qmsg_get_bool(in->root, "start", &as->start, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if (!as->upper[0] != !as->work[0])
		return qerr_set(err, EINVAL, "assign: layer_upper and layer_work go together");
	const msgpack_object *arr = NULL;
	if ((r = qmsg_get_array(in->root, "cgroups", CGROUPS_HIER_MAX, &arr, err)) < 0)
		return r;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		char dir[PATH_MAX];
		if ((r = qmsg_obj_str(&arr->via.array.ptr[i], dir, sizeof(dir), err)) < 0)
			return qerr_prefix(err, "assign: cgroups");
		if (!(as->cgroups[as->n_cgroups] = strdup(dir)))
			return qerr_set(err, ENOMEM, "out of memory");
		as->n_cgroups++;
	}
	for (int i = 0; i < 3; i++)
		if (as->stdio[i] < 0)
			return qerr_set(err, EINVAL,
					"assign: stdin, stdout and stderr must come along");
	return 0;
}

/* The bundle's rootfs must be the very directory the assigner saw: a mount
 * made on the host after we were cloned is not in our mount namespace. */
static int check_rootfs(const struct guest_config *cfg, const struct assignment *as,
			struct qerr *err)
{
	struct stat st;
	if (stat(cfg->root_path, &st) < 0)
		return qerr_sys(err, errno, "rootfs %s", cfg->root_path);
	if ((int64_t)st.st_dev != as->rootfs_dev || (int64_t)st.st_ino != as->rootfs_ino)
		return qerr_set(err, EAGAIN,
				"rootfs %s is not the assigner's (mounted after this warm "
				"supervisor was made)",
				cfg->root_path);
	return 0;
}

/* The config of the bundle poold named when it took us, read while the
 * caller renames our cgroups, records the sandbox and sends the
 * assignment (about 0.1-0.2 ms of parsing off the start path).  Used if
 * the assignment names the same bundle; anything wrong with it is left
 * for adopt's own load to report. */
static struct {
	char *bundle;
	struct guest_config *cfg;
} early;

static void read_early(const char *m, size_t n)
{
	struct qerr err = {0};
	if (n <= sizeof(WARM_TAKEN) || n - sizeof(WARM_TAKEN) >= PATH_MAX ||
	    memcmp(m, WARM_TAKEN, sizeof(WARM_TAKEN)) != 0 ||
	    !(early.bundle = strndup(m + sizeof(WARM_TAKEN), n - sizeof(WARM_TAKEN))))
		return;
	/* poold made us at a low priority; a taken S is a sandbox's */
	if (setpriority(PRIO_PROCESS, 0, 0) < 0)
		qlog_warn("setpriority: %s", strerror(errno));
	if (early.bundle[0] != '/' || guest_config_load(early.bundle, &early.cfg, &err) < 0)
		early.cfg = NULL;
}

/* Everything G does for a cold start that a warm S can do for itself. */
static int adopt(struct sup_args *a, struct create_opts *o, const struct assignment *as,
		 struct qerr *err)
{
	int r = 0;
	if (early.cfg && strcmp(early.bundle, as->bundle) == 0) /* cfg implies bundle */
		a->cfg = early.cfg;
	else
		r = guest_config_load(as->bundle, &a->cfg, err);
	if (early.cfg != a->cfg)
		guest_config_free(early.cfg);
	early.cfg = NULL;
	free(early.bundle);
	early.bundle = NULL;
	if (r < 0)
		return r;
	if ((r = warm_check(a->cfg, err)) < 0)
		return qerr_prefix(err, "not for a warm start");
	if ((r = check_rootfs(a->cfg, as, err)) < 0)
		return r;
	*o = (struct create_opts){
	    .id = as->id, .bundle = as->bundle, .state_dir = as->state_dir, .sync_fd = -1};
	a->opts = o;
	a->state_dirfd = open(as->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (a->state_dirfd < 0)
		return qerr_sys(err, errno, "state dir %s", as->state_dir);
	if ((size_t)snprintf(a->log_path, sizeof(a->log_path), "%s/guest.log", as->state_dir) >=
	    sizeof(a->log_path))
		return qerr_set(err, ENAMETOOLONG, "state dir %s: too long", as->state_dir);
	if ((r = place_premade(a, err)) < 0)
		return r;

	struct cgroups *cg = NULL;
	if (!warm_host)
		return qerr_set(err, EIO, "cgroup hierarchies unknown");
	if ((r = cgroups_from_dirs(warm_host, as->cgroups, as->n_cgroups, &cg, err)) < 0)
		return r;
	a->cg = cg;
	if ((r = cgroups_apply_limits(cg, a->cfg->has_resources ? &a->cfg->resources : NULL, true,
				      err)) < 0)
		return r;
	if (as->upper[0]) {
		a->layer_upper = as->upper;
		a->layer_work = as->work;
	}
	a->go = true;
	a->autostart = as->start;
	a->host_pid = (pid_t)as->host_pid;
	a->console_fd = -1;
	for (int i = 0; i < GUEST_NS_COUNT; i++)
		a->ns_fds[i] = -1;
	return 0;
}

static _Noreturn void assign_failed(int conn, int dirfd, const struct qerr *err)
{
	qlog_error("warm: %s", err->msg);
	if (dirfd >= 0) {
		unlinkat(dirfd, "guest.sock", 0);
		unlinkat(dirfd, "counters", 0);
	}
	(void)gs_send(conn, GS_ERROR, err);
	_exit(1);
}

static struct sup_args s_args;	  /* lives as long as S */
static struct create_opts s_opts; /* s_args.opts */
static struct assignment s_as;	  /* s_opts' strings */

/* Reads and adopts the assignment into the statics above (or exits).  Not
 * inlined: its 16 KiB buffer is then below the serving loop's frame, where
 * the idle supervisor gives it back, not above it for the sandbox's life. */
static __attribute__((noinline)) void read_assignment(int conn)
{
	char buf[16384];
	struct qerr err = {0};
	struct qmsg_in in;
	s_args = (struct sup_args){.state_dirfd = -1,
				   .ctl_fd = -1,
				   .console_fd = -1,
				   .g_sock = conn,
				   .dev_tree = -1,
				   .sys_tree = -1,
				   .proc_tree = -1};
	s_as = (struct assignment){.stdio = {-1, -1, -1}};
	ssize_t n = recv_fds(conn, buf, sizeof(buf), s_as.stdio, 3);
	if (n <= 0) {
		qerr_set(&err, n < 0 ? (int)-n : EIO, "assign: nothing received");
		assign_failed(conn, -1, &err);
	}
	if (qmsg_parse(&in, buf, (size_t)n, &err) < 0 || parse_assignment(&in, &s_as, &err) < 0 ||
	    adopt(&s_args, &s_opts, &s_as, &err) < 0)
		assign_failed(conn, s_args.state_dirfd, &err);
	qmsg_in_free(&in);
	/* poold makes warm supervisors at a low priority; the sandbox is not */
	if (setpriority(PRIO_PROCESS, 0, 0) < 0)
		qlog_warn("setpriority: %s", strerror(errno));
	for (int i = 0; i < 3; i++) {
		if (dup2(s_as.stdio[i], i) < 0) {
			qerr_sys(&err, errno, "dup2 stdio");
			assign_failed(conn, s_args.state_dirfd, &err);
		}
		close(s_as.stdio[i]);
		s_as.stdio[i] = -1;
	}
	if (qlog_init("quiver-guest", s_args.log_path, QLOG_TEXT, QLOG_INFO, &err) < 0)
		assign_failed(conn, s_args.state_dirfd, &err);
	qlog_debug("warm supervisor assigned to %s", s_as.id);
}

/* Never returns: S becomes the sandbox's supervisor, or exits. */
static _Noreturn void take_assignment(int conn, int devnull)
{
	read_assignment(conn);
	supervisor_serve(&s_args, devnull);
}

static bool peer_is_root(int conn)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	return getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == 0;
}

static _Noreturn void warm_wait(const char *sock, int owner, int lfd, int devnull)
{
	bool taken = false;
	time_t deadline = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = owner, .events = POLLIN},
				      {.fd = lfd, .events = POLLIN}};
		int timeout = -1;
		if (taken) {
			time_t left = deadline - time(NULL);
			if (left <= 0) {
				qlog_warn("warm: taken but not assigned within %ds; exiting",
					  WARM_TAKEN_TIMEOUT_S);
				_exit(1);
			}
			timeout = (int)left * 1000;
		}
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (!taken && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			char m[sizeof(WARM_TAKEN) + PATH_MAX];
			ssize_t n = recv(owner, m, sizeof(m), MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0)
				_exit(0); /* poold is gone and nobody took us */
			read_early(m, (size_t)n);
			taken = true;
			deadline = time(NULL) + WARM_TAKEN_TIMEOUT_S;
			close(owner);
			owner = -1;
		}
		if (p[1].revents & POLLIN) {
			int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (conn < 0)
				continue;
			if (!peer_is_root(conn)) {
				close(conn);
				continue;
			}
			/* one assignment per supervisor: the socket's name goes */
			close(lfd);
			unlink(sock);
			if (owner >= 0)
				close(owner);
			take_assignment(conn, devnull);
		}
	}
}

struct warm_s {
	const struct warm_opts *o;
	int go_rd, ready_wr;
};

static void report_ready(int fd, const struct qerr *err)
{
	struct gs_msg m = {.type = err ? GS_ERROR : GS_READY};
	if (err) {
		m.code = err->code;
		snprintf(m.msg, sizeof(m.msg), "%s", err->msg);
	}
	(void)!write(fd, &m, sizeof(m));
}

static int warm_supervisor(void *arg)
{
	struct warm_s *w = arg;
	const struct warm_opts *o = w->o;
	struct qerr err = {0};
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		qerr_sys(&err, errno, "prctl(PR_SET_DUMPABLE)");
		report_ready(w->ready_wr, &err);
		_exit(1);
	}
	char c;
	if (read(w->go_rd, &c, 1) != 1)
		_exit(1); /* G failed */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int lfd = -1;
	cleanup_free char *dir = strdup(o->sock);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (devnull < 0 || !slash) {
		qerr_sys(&err, devnull < 0 ? errno : EINVAL, "warm socket %s", o->sock);
		report_ready(w->ready_wr, &err);
		_exit(1);
	}
	*slash = '\0';
	cleanup_close int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0 || bind_seqpacket(dir, dirfd, slash + 1, &lfd, &err) < 0) {
		if (dirfd < 0)
			qerr_sys(&err, errno, "open %s", dir);
		report_ready(w->ready_wr, &err);
		_exit(1);
	}
	if (premake(dir, dirfd, slash + 1, &err) < 0) {
		report_ready(w->ready_wr, &err);
		_exit(1);
	}
	/* Without them a sandbox makes its own /dev, /sys and /proc, as a
	 * cold one does. */
	premade.dev_tree = rootfs_dev_prebuild(&err);
	if (premade.dev_tree < 0)
		qlog_warn("warm: the default /dev: %s", err.msg);
	struct cgroups *cg = NULL;
	if (cgroups_from_dirs(warm_host, (char *const *)o->cgroups, o->n_cgroups, &cg, &err) == 0) {
		premade.sys_tree = rootfs_sys_prebuild(cg, &err);
		cgroups_free(cg);
	}
	if (premade.sys_tree < 0)
		qlog_warn("warm: the default /sys: %s", err.msg);
	premade.proc_tree = rootfs_proc_prebuild(&err);
	if (premade.proc_tree < 0)
		qlog_warn("warm: the default /proc: %s", err.msg);
	report_ready(w->ready_wr, NULL);
	close(w->ready_wr);
	/* the log too (poold's warm.log): take_assignment's qlog_init closes it
	 * when it opens guest.log, and must not find its number reused */
	int keep[] = {o->sync_fd,	lfd,
		      devnull,		premade.dirfd,
		      premade.ctl_fd,	premade.dev_tree,
		      premade.sys_tree, premade.proc_tree,
		      qlog_file_fd()};
	if (close_all_but(3, keep, (int)ARRAY_SIZE(keep), &err) < 0)
		_exit(1);
	for (int i = 0; i <= 2; i++)
		dup2(devnull, i);
	warm_wait(o->sock, o->sync_fd, lfd, devnull);
}

/* ---- G ---- */

static int send_warm(int sync_fd, pid_t pid, struct qerr *err)
{
	uint64_t start;
	int r = read_pid_start(pid, &start, err);
	if (r < 0)
		return r;
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "warm", 2);
	qmsg_put_int(&m, "pid", pid);
	qmsg_put_uint(&m, "pid_start", start);
	if (send(sync_fd, qmsg_data(&m), qmsg_size(&m), MSG_NOSIGNAL) < 0)
		r = qerr_sys(err, errno, "sync socket");
	qmsg_out_free(&m);
	return r;
}

static int warm_launch(const struct warm_opts *o, pid_t *s_pid, struct qerr *err)
{
	struct cgroups *cg = NULL;
	int r = cgroups_host_detect(&warm_host, err);
	if (r < 0)
		return r;
	r = cgroups_from_dirs(warm_host, (char *const *)o->cgroups, o->n_cgroups, &cg, err);
	if (r < 0)
		return r;
	cleanup_close int v2fd = -1;
	for (size_t i = 0; i < cg->n && v2fd < 0; i++)
		if (cg->v2[i] &&
		    (v2fd = open(cg->dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			r = qerr_sys(err, errno, "open %s", cg->dirs[i]);
			goto out;
		}
	if (o->netns) {
		cleanup_close int nsfd = open(o->netns, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
			r = qerr_sys(err, errno, "join network namespace %s", o->netns);
			goto out;
		}
	}
	int go[2] = {-1, -1}, rdy[2] = {-1, -1};
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(rdy, O_CLOEXEC) < 0) {
		r = qerr_sys(err, errno, "pipe");
		goto out;
	}
	struct clone_args ca = {
	    .flags =
		WARM_NS_FLAGS | (o->netns ? 0 : CLONE_NEWNET) | (v2fd >= 0 ? CLONE_INTO_CGROUP : 0),
	    .exit_signal = SIGCHLD,
	    .cgroup = v2fd >= 0 ? (uint64_t)v2fd : 0,
	};
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0) {
		close(go[1]);
		close(rdy[0]);
		struct warm_s w = {.o = o, .go_rd = go[0], .ready_wr = rdy[1]};
		_exit(warm_supervisor(&w));
	}
	close(go[0]);
	close(rdy[1]);
	if (pid < 0) {
		r = qerr_sys(err, errno, "clone3 warm supervisor");
		goto pipes;
	}
	*s_pid = (pid_t)pid;
	/* v2 was entered at clone time; v1 hierarchies need cgroup.procs.
	 * The default device list is the same for every sandbox: written
	 * now, off the start path. */
	if ((r = cgroups_join(cg, *s_pid, err)) < 0 || (r = cgroups_apply(cg, NULL, err)) < 0)
		goto pipes;
	if (write(go[1], "g", 1) != 1) {
		r = qerr_sys(err, errno, "warm supervisor: go");
		goto pipes;
	}
	struct gs_msg m;
	ssize_t n;
	do
		n = read(rdy[0], &m, sizeof(m));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(m))
		r = qerr_set(err, EIO, "warm supervisor died while starting");
	else if (m.type != GS_READY) {
		m.msg[sizeof(m.msg) - 1] = '\0';
		r = qerr_set(err, m.code > 0 ? m.code : EIO, "%s", m.msg);
	} else
		r = send_warm(o->sync_fd, *s_pid, err);
pipes:
	close(go[1]);
	close(rdy[0]);
out:
	cgroups_free(cg);
	return r;
}

int warm_main(const struct warm_opts *o)
{
	struct qerr err = {0};
	pid_t s_pid = 0;
	/* Refilling must not take the CPU from running sandboxes; S puts its
	 * priority back once it is assigned. */
	if (setpriority(PRIO_PROCESS, 0, 10) < 0)
		qlog_warn("setpriority: %s", strerror(errno));
	int r = warm_launch(o, &s_pid, &err);
	if (r < 0) {
		/* poold closed its end of the sync socket: it stopped (or
		 * died) while we were starting, and dropped us with its
		 * pools.  What failed then (its pooled cgroup removed under
		 * us, the report's send) is that, not an error of ours. */
		bool gone = unix_peer_gone(o->sync_fd);
		if (gone)
			qlog_info("warm: poold dropped this supervisor while it was starting (%s)",
				  err.msg);
		else
			qlog_error("warm: %s", err.msg);
		if (s_pid > 0) {
			kill(s_pid, SIGKILL);
			while (waitpid(s_pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		if (!gone)
			sync_send_error(o->sync_fd, &err);
		return 1;
	}
	return 0;
}
