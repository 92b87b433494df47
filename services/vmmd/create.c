/* The API's create: a platform starts sandboxes through vmmd's socket
 * without a CLI per sandbox.  The request is answered at once; the work
 * goes on in the loop, so one slow sandbox holds up nobody:
 *
 *   warm  vmmd plays the launcher's part for a warm supervisor from poold
 *         (docs/guest-protocol.md, "Warm start"): it sends the assignment
 *         (stdio: /dev/null) and reads W's hello and S's READY from the
 *         connection, watched by the loop.  With start, S starts the
 *         workload itself as soon as it is prepared.
 *   cold  vmmd spawns `quiver-guest create` as qctl would and reads its
 *         report from the sync socket, watched by the loop; start is then
 *         the usual guest call.
 *
 * The outcome is published as events: created, started, exited, or
 * failed (with the reservation dropped). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/daemon.h"
#include "libcommon/log.h"
#include "guest/guest.h"
#include "services/vmmd/vmmd.h"

extern char **environ;

struct assign {
	struct sandbox *sb;
	int fd;
	uv_poll_t *poll;
	bool warm, start;
	pid_t launcher; /* cold: G */
	pid_t w_host;
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
};

/* Launchers exit right after their report, but not always before we read
 * it: the ones still running are reaped on SIGCHLD (only these: hooks
 * wait for their own children). */
#define REAP_MAX 1024
static pid_t to_reap[REAP_MAX];
static size_t n_to_reap;
static uv_signal_t sigchld;
static bool sigchld_on;

static void on_sigchld(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	for (size_t i = 0; i < n_to_reap;) {
		if (waitpid(to_reap[i], NULL, WNOHANG) != 0)
			to_reap[i] = to_reap[--n_to_reap];
		else
			i++;
	}
}

static void reap_later(pid_t pid)
{
	if (!sigchld_on) {
		uv_signal_init(vmmd.loop, &sigchld);
		uv_signal_start(&sigchld, on_sigchld, SIGCHLD);
		uv_unref((uv_handle_t *)&sigchld);
		sigchld_on = true;
	}
	if (n_to_reap < REAP_MAX)
		to_reap[n_to_reap++] = pid;
	else
		qlog_warn("launcher %d: too many to reap", (int)pid);
}

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void assign_free(struct assign *a)
{
	if (a->poll) {
		uv_poll_stop(a->poll);
		uv_close((uv_handle_t *)a->poll, poll_closed);
	}
	if (a->fd >= 0)
		close(a->fd);
	for (size_t i = 0; i < a->ncgroups; i++)
		free(a->cgroups[i]);
	if (a->launcher > 0 && waitpid(a->launcher, NULL, WNOHANG) == 0)
		reap_later(a->launcher);
	if (a->sb)
		a->sb->assign = NULL;
	free(a);
}

void create_abandon(struct sandbox *sb)
{
	if (sb->assign) {
		sb->assign->sb = NULL;
		assign_free(sb->assign);
	}
	sb->assign = NULL;
}

static void failed(struct assign *a, const char *msg)
{
	struct sandbox *sb = a->sb;
	qlog_warn("%s: create: %s", sb->id, msg);
	events_publish("failed", sb);
	assign_free(a);
	if (sb->status == SB_CREATING && sb->pid > 0)
		kill(sb->pid, SIGKILL);
	sandbox_drop(sb);
}

static void ready(struct assign *a)
{
	struct sandbox *sb = a->sb;
	struct qerr err = {0};
	bool warm = a->warm, start = a->start;
	if (sb->status != SB_CREATING) {
		/* the supervisor already exited (a quick workload) */
		assign_free(a);
		return;
	}
	if (sandbox_adopt(sb, sb->pid, sb->pid_start, a->w_host, a->cgroups, a->ncgroups, &err) <
	    0) {
		failed(a, err.msg);
		return;
	}
	assign_free(a);
	if (!start) {
		sandbox_mark_created(sb);
		return;
	}
	if (warm) {
		sandbox_mark_running(sb);
		return;
	}
	if (sandbox_start(sb, &err) < 0)
		qlog_warn("%s: start: %s", sb->id, err.msg);
}

/* warm: W's hello (its host pid, from the credentials), then READY/ERROR */
static void warm_readable(struct assign *a)
{
	struct gs_msg m;
	struct qerr err = {0};
	pid_t cred;
	int n = gs_recv(a->fd, &m, &cred, MSG_DONTWAIT);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		failed(a, "warm supervisor exited during create");
		return;
	}
	n = gs_handle(a->fd, &m, cred, &a->w_host, &err);
	if (n > 0)
		ready(a);
	else if (n < 0)
		failed(a, err.msg);
}

/* cold: G's one message on the sync socket, "created" or "error" */
static void cold_readable(struct assign *a)
{
	char buf[65536];
	struct qmsg_in in;
	struct qerr err = {0};
	int64_t pid = 0, start = 0, init = 0;
	ssize_t n = recv(a->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || qmsg_parse(&in, buf, (size_t)n, &err) < 0) {
		failed(a, n <= 0 ? "the launcher exited without a report" : err.msg);
		return;
	}
	if (qmsg_reply_error(&in, &err) < 0 ||
	    qmsg_get_int(in.root, "pid", 1, INT32_MAX, &pid, &err) < 0 ||
	    qmsg_get_int(in.root, "pid_start", 0, INT64_MAX, &start, &err) < 0 ||
	    qmsg_get_int(in.root, "init_pid", 0, INT32_MAX, &init, &err) < 0) {
		qmsg_in_free(&in);
		failed(a, err.msg);
		return;
	}
	const msgpack_object *cg = qmsg_find(in.root, "cgroups");
	for (uint32_t i = 0; cg && cg->type == MSGPACK_OBJECT_ARRAY && i < cg->via.array.size &&
			     a->ncgroups < SANDBOX_CGROUPS_MAX;
	     i++) {
		char dir[PATH_MAX];
		if (qmsg_obj_str(&cg->via.array.ptr[i], dir, sizeof(dir), &err) == 0)
			a->cgroups[a->ncgroups++] = strdup(dir);
	}
	qmsg_in_free(&in);
	a->sb->pid = (pid_t)pid;
	a->sb->pid_start = (uint64_t)start;
	a->w_host = (pid_t)init;
	ready(a);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	struct assign *a = h->data;
	if (a->warm)
		warm_readable(a);
	else
		cold_readable(a);
}

static int watch(struct assign *a, struct qerr *err)
{
	a->poll = malloc(sizeof(*a->poll));
	if (!a->poll)
		return qerr_set(err, ENOMEM, "out of memory");
	uv_poll_init(vmmd.loop, a->poll, a->fd);
	a->poll->data = a;
	uv_poll_start(a->poll, UV_READABLE | UV_DISCONNECT, on_readable);
	return 0;
}

static int send_assignment(struct assign *a, const struct pool_lease *l, int64_t dev, int64_t ino,
			   struct qerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int one = 1;
	if (strlen(l->sock) >= sizeof(sa.sun_path))
		return qerr_set(err, ENAMETOOLONG, "warm socket %s: too long", l->sock);
	strcpy(sa.sun_path, l->sock);
	a->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (a->fd < 0 || setsockopt(a->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    connect(a->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return qerr_sys(err, errno, "warm supervisor %s", l->sock);
	msgpack_sbuffer buf;
	msgpack_packer pk;
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	pack_assignment(&pk, a->sb, l, dev, ino, a->start);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int fds[3] = {devnull, devnull, devnull};
	int r = devnull < 0 ? -errno : send_with_fds(a->fd, buf.data, buf.size, fds, 3);
	if (r < 0)
		r = qerr_sys(err, -r, "warm supervisor: send the assignment");
	if (devnull >= 0)
		close(devnull);
	msgpack_sbuffer_destroy(&buf);
	return r;
}

static int spawn_cold(struct assign *a, struct qerr *err)
{
	char state_dir[PATH_MAX + SANDBOX_ID_MAX + 2], log[PATH_MAX + SANDBOX_ID_MAX + 16];
	char guest[PATH_MAX];
	int sp[2];
	snprintf(state_dir, sizeof(state_dir), "%s/%s", vmmd.root, a->sb->id);
	snprintf(log, sizeof(log), "%s/launcher.log", state_dir);
	vmmd_guest_path(guest, sizeof(guest));
	const char *argv[] = {"quiver-guest", "create",	     "--id",	a->sb->id,   "--bundle",
			      a->sb->bundle,  "--state-dir", state_dir, "--sync-fd", "3",
			      "--log",	      log,	     NULL};
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return qerr_sys(err, errno, "socketpair");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	posix_spawn_file_actions_adddup2(&fa, sp[1], 3);
	int rc = posix_spawn(&a->launcher, guest, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sp[1]);
	a->fd = sp[0];
	if (rc != 0)
		return qerr_sys(err, rc, "spawn %s", guest);
	return 0;
}

int create_async(struct sandbox *sb, const struct pool_lease *l, int64_t rootfs_dev,
		 int64_t rootfs_ino, bool start, struct qerr *err)
{
	struct assign *a = calloc(1, sizeof(*a));
	int r;
	if (!a)
		return qerr_set(err, ENOMEM, "out of memory");
	*a = (struct assign){.sb = sb, .fd = -1, .warm = l->warm, .start = start};
	if (l->warm) {
		/* Watched from now on: a quick workload may be gone before
		 * its READY is read. */
		sb->pid = l->pid;
		sb->pid_start = l->pid_start;
		for (size_t i = 0; i < l->ncgroups; i++)
			a->cgroups[a->ncgroups++] = strdup(l->cgroups[i]);
		if ((r = supervisor_watch(sb, err)) < 0 ||
		    (r = send_assignment(a, l, rootfs_dev, rootfs_ino, err)) < 0)
			goto fail;
	} else if ((r = spawn_cold(a, err)) < 0) {
		goto fail;
	}
	if ((r = watch(a, err)) < 0)
		goto fail;
	sb->assign = a;
	return 0;
fail:
	if (l->warm && sb->pid > 0)
		kill(sb->pid, SIGKILL);
	supervisor_unwatch(sb);
	sb->pid = 0;
	assign_free(a);
	return r;
}

void vmmd_guest_path(char *buf, size_t len)
{
	if (daemon_sibling("quiver-guest", "QUIVER_GUEST", buf, len) < 0)
		snprintf(buf, len, "quiver-guest");
}
