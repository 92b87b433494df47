/* fork+exec of quiver-guest with its sync socket (docs/guest-protocol.md):
 * the guest answers exactly one message, "created"/"exec" or "error". */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "qctl/qctl.h"

#define GUEST_ARGV_MAX 256

const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
const size_t n_forwarded_signals = ARRAY_SIZE(forwarded_signals);

static int wait_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

int guest_spawn(const char *const *args, int preserve_fds, struct guest_spawn *out,
		struct qerr *err)
{
	char prog[PATH_MAX], fdnum[16];
	const char *argv[GUEST_ARGV_MAX + 4];
	cleanup_free char *buf = NULL;
	int sv[2], target = 3 + preserve_fds, n = 0, status;
	sigset_t all, dfl;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	ssize_t len;
	pid_t pid;
	int r;

	sibling_path("quiver-guest", "QUIVER_GUEST", prog, sizeof(prog));
	if (access(prog, X_OK) < 0)
		return qerr_sys(err, errno, "exec %s", prog);
	argv[n++] = prog;
	for (size_t i = 0; args[i]; i++) {
		if (n >= GUEST_ARGV_MAX)
			return qerr_set(err, E2BIG, "too many arguments");
		argv[n++] = args[i];
	}
	snprintf(fdnum, sizeof(fdnum), "%d", target);
	/* exec's "-- ARGS" must stay last: the sync fd goes before it. */
	{
		int dd = -1;
		for (int i = 1; i < n; i++)
			if (strcmp(argv[i], "--") == 0) {
				dd = i;
				break;
			}
		if (dd < 0) {
			argv[n++] = "--sync-fd";
			argv[n++] = fdnum;
		} else {
			memmove(&argv[dd + 2], &argv[dd], (size_t)(n - dd) * sizeof(char *));
			argv[dd] = "--sync-fd";
			argv[dd + 1] = fdnum;
			n += 2;
		}
	}
	argv[n] = NULL;
	buf = malloc(QMSG_MAX_BYTES);
	if (!buf)
		return qerr_set(err, ENOMEM, "out of memory");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return qerr_sys(err, errno, "socketpair");
	/* Keep both ends away from the preserved range and the target. */
	for (int i = 0; i < 2; i++) {
		if (sv[i] <= target) {
			int fd = fcntl(sv[i], F_DUPFD_CLOEXEC, target + 1);
			if (fd < 0)
				return qerr_sys(err, errno, "fcntl");
			close(sv[i]);
			sv[i] = fd;
		}
	}
	/* posix_spawn, not fork: glibc's vfork-style clone shares our address
	 * space until the exec, so none of our (multi-threaded) page tables is
	 * copied and no copy-on-write fault follows. */
	sigemptyset(&all);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	r = posix_spawnattr_init(&attr);
	if (r == 0)
		r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (r == 0)
		r = posix_spawnattr_setsigmask(&attr, &all);
	if (r == 0)
		r = posix_spawnattr_setsigdefault(&attr, &dfl);
	if (r == 0)
		r = posix_spawn_file_actions_init(&fa);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, sv[1], target);
	if (r == 0)
		r = posix_spawn_file_actions_addclosefrom_np(&fa, target + 1);
	if (r == 0)
		r = posix_spawn(&pid, prog, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		close(sv[0]);
		close(sv[1]);
		return qerr_sys(err, r, "spawn %s", prog);
	}
	close(sv[1]);
	out->launcher = pid;
	do
		len = recv(sv[0], buf, QMSG_MAX_BYTES, MSG_TRUNC);
	while (len < 0 && errno == EINTR);
	close(sv[0]);
	if (len <= 0) {
		int code = 1;
		if (waitpid(pid, &status, 0) == pid)
			code = wait_status_code(status);
		out->launcher = -1;
		return qerr_set(err, EIO, "%s exited with status %d without a report", prog, code);
	}
	if ((size_t)len > QMSG_MAX_BYTES)
		return qerr_set(err, EMSGSIZE, "quiver-guest: report too large");
	if (qmsg_parse(&out->msg, buf, (size_t)len, err) < 0)
		return qerr_prefix(err, "quiver-guest's report");
	if (qmsg_reply_error(&out->msg, err) < 0) {
		qmsg_in_free(&out->msg);
		/* The guest has undone everything; reap it. */
		waitpid(pid, &status, 0);
		out->launcher = -1;
		return -err->code;
	}
	return 0;
}
