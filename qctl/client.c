/* qctl's side of ROOT/vmmd.sock.  Embedded mode: when nobody serves ROOT,
 * start quiver-vmmd in the background.  vmmd's first process exits once the
 * daemon is ready (or another one holds the root), so waiting for it is
 * the readiness signal: no polling on the usual path. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/sp_client.h"
#include "qctl/qctl.h"

static struct qspc sock = QSPC_INIT("quiver-vmmd");
static bool connected;

static int dial(struct qerr *err)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/vmmd.sock", g.root);
	return qspc_dial(&sock, path, err);
}

int vmmd_start_daemon(struct qerr *err)
{
	char prog[PATH_MAX];
	const char *argv[10];
	int n = 0, status;
	pid_t pid;

	sibling_path("quiver-vmmd", "QUIVER_VMMD", prog, sizeof(prog));
	if (access(prog, X_OK) < 0)
		return qerr_sys(err, errno, "cannot start the daemon %s", prog);
	argv[n++] = prog;
	argv[n++] = "--root";
	argv[n++] = g.root;
	if (g.debug)
		argv[n++] = "--debug";
	if (g.metrics) {
		argv[n++] = "--metrics";
		argv[n++] = g.metrics;
	}
	if (g.hibernate_idle) {
		argv[n++] = "--hibernate-idle";
		argv[n++] = g.hibernate_idle;
	}
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		return qerr_sys(err, errno, "fork");
	if (pid == 0) {
		/* Only async-signal-safe calls between fork and exec. */
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		/* Nothing else of the caller's: the daemon outlives it, and a
		 * pipe it kept open would never report EOF to its reader. */
		close_range(3, ~0U, 0);
		setsid();
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return qerr_sys(err, errno, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return qerr_set(err, EIO, "the daemon %s did not start (see %s/vmmd.log)", prog,
				g.root);
	return 0;
}

static int ensure_root(struct qerr *err)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", g.root) >= (int)sizeof(tmp))
		return qerr_set(err, ENAMETOOLONG, "root %s: name too long", g.root);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return qerr_sys(err, errno, "mkdir %s", tmp);
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "mkdir %s", tmp);
	return 0;
}

int vmmd_connect(bool start, struct qerr *err)
{
	struct qerr derr;
	int r, delay_ms = 5, waited = 0;

	if (connected)
		return 0;
	r = dial(&derr);
	if (r == 0)
		goto ok;
	if (!start) {
		*err = derr;
		return r;
	}
	if ((r = ensure_root(err)) < 0 || (r = vmmd_start_daemon(err)) < 0)
		return r;
	/* Ready when it exited 0; the backoff covers a daemon that lost the
	 * lock race to one that is still starting, or to one still exiting
	 * (killed, its last files closing: an inotify instance takes
	 * milliseconds), which will never listen: ours is started again. */
	for (int next_start = 250;;) {
		r = dial(&derr);
		if (r == 0)
			goto ok;
		if (waited >= 2000)
			break;
		nanosleep(&(struct timespec){.tv_nsec = delay_ms * 1000000L}, NULL);
		waited += delay_ms;
		delay_ms = delay_ms * 2 > 200 ? 200 : delay_ms * 2;
		if (waited >= next_start) {
			next_start += 250;
			if ((r = vmmd_start_daemon(err)) < 0)
				return r;
		}
	}
	return qerr_set(err, derr.code ? derr.code : ECONNREFUSED,
			"cannot reach quiver-vmmd at %s/vmmd.sock: %s", g.root, derr.msg);
ok:
	trace_point("connected");
	connected = true;
	return 0;
}

int vmmd_call(const struct qmsg_out *req, struct qmsg_in *reply, struct qerr *err)
{
	/* A call that failed other than with an error reply (no answer in
	 * time, vmmd gone) closed the connection, and a vmmd that restarted
	 * since the last call (kill -9 while `run` waited for its sandbox)
	 * closed it: dial again, starting vmmd if none runs, rather than
	 * fail the call. */
	if (qspc_peer_closed(&sock))
		qspc_close(&sock);
	if (connected && sock.fd < 0)
		connected = false;
	int r = vmmd_connect(true, err);

	if (r < 0)
		return r;
	return qspc_call(&sock, req, reply, CALL_TIMEOUT, err);
}

int vmmd_send(struct qmsg_out *req, struct qerr *err)
{
	struct qmsg_in reply;
	int r = vmmd_call(req, &reply, err);

	qmsg_out_free(req);
	if (r == 0)
		qmsg_in_free(&reply);
	return r;
}

int vmmd_call_id(const char *op, const char *id, struct qmsg_in *reply, struct qerr *err)
{
	struct qmsg_out m;
	int r;

	qmsg_out_init(&m);
	qmsg_begin(&m, op, 1);
	qmsg_put_str(&m, "id", id);
	r = vmmd_call(&m, reply, err);
	qmsg_out_free(&m);
	return r;
}
