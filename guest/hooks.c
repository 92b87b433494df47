/* OCI hooks: the state document and the runner (see hooks.h). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "guest/hooks.h"

#define HOOKS_OCI_VERSION "1.1.0"

char *hooks_state_json(const struct guest_config *cfg, const char *id, const char *status,
		       pid_t pid, struct qerr *err)
{
	json_t *o = json_object();
	json_t *ann = json_object();
	char *s = NULL;
	if (!o || !ann)
		goto out;
	for (size_t i = 0; i < cfg->n_annotations; i++)
		json_object_set_new(ann, cfg->annotations[i].key,
				    json_string(cfg->annotations[i].value));
	json_object_set_new(o, "ociVersion", json_string(HOOKS_OCI_VERSION));
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "status", json_string(status));
	if (pid > 0)
		json_object_set_new(o, "pid", json_integer(pid));
	json_object_set_new(o, "bundle", json_string(cfg->bundle_dir));
	json_object_set(o, "annotations", ann);
	s = json_dumps(o, JSON_COMPACT);
out:
	json_decref(ann);
	json_decref(o);
	if (!s)
		qerr_set(err, ENOMEM, "hook state: out of memory");
	return s;
}

/* The child: only async-signal-safe calls from here on. */
static _Noreturn void hook_child(const struct guest_hook *h, char *const *argv, int in_fd,
				 int err_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (in_fd == 0 ? fcntl(0, F_SETFD, 0) < 0 : dup2(in_fd, 0) < 0)
		_exit(127);
	if (null >= 0) {
		dup2(null, 1);
		dup2(null, 2);
	}
	/* err_fd is close-on-exec: it tells the parent whether execve worked */
	for (int fd = 3; fd < err_fd; fd++)
		close(fd);
	syscall(SYS_close_range, (unsigned)err_fd + 1, ~0u, 0);
	static char *const empty_env[] = {NULL};
	execve(h->path, argv, h->n_env ? h->env : empty_env);
	int e = errno;
	(void)!write(err_fd, &e, sizeof(e));
	_exit(127);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for pid, killing it after timeout seconds (0: no timeout).
 * Returns its wait status, or -ETIMEDOUT. */
static int wait_hook(pid_t pid, int timeout, int *status)
{
	if (timeout <= 0) {
		while (waitpid(pid, status, 0) < 0)
			if (errno != EINTR)
				return -errno;
		return 0;
	}
	/* A polling wait: no pidfd or signal handler needed, so it works in
	 * every process that runs hooks (W is under seccomp, vmmd has
	 * threads). */
	int64_t deadline = now_ms() + (int64_t)timeout * 1000;
	long step_ns = 1000000;
	for (;;) {
		pid_t p = waitpid(pid, status, WNOHANG);
		if (p == pid)
			return 0;
		if (p < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		struct timespec ts = {.tv_nsec = step_ns};
		nanosleep(&ts, NULL);
		if (step_ns < 20000000)
			step_ns *= 2;
	}
}

static int run_one(const struct guest_hook *h, const char *kind, size_t i, const char *state,
		   struct qerr *err)
{
	/* The state goes into the pipe before the fork: no writer to block
	 * on a hook that never reads, and no SIGPIPE for one that exits. */
	size_t len = strlen(state);
	int in[2], ep[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return qerr_sys(err, errno, "hook %s[%zu] %s: pipe", kind, i, h->path);
	if (len > 4096)
		(void)fcntl(in[1], F_SETPIPE_SZ, (int)len + 1);
	ssize_t n = write(in[1], state, len);
	close(in[1]);
	if (n != (ssize_t)len) {
		close(in[0]);
		return qerr_set(err, E2BIG, "hook %s[%zu] %s: state does not fit a pipe", kind, i,
				h->path);
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]);
		return qerr_sys(err, e, "hook %s[%zu] %s: pipe", kind, i, h->path);
	}
	char *argv_default[] = {h->path, NULL};
	char *const *argv = h->n_args ? h->args : argv_default;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(in[0]);
		close(ep[0]);
		close(ep[1]);
		return qerr_sys(err, e, "hook %s[%zu] %s: fork", kind, i, h->path);
	}
	if (pid == 0) {
		close(ep[0]);
		hook_child(h, argv, in[0], ep[1]);
	}
	close(in[0]);
	close(ep[1]);
	int exec_errno = 0;
	do
		n = read(ep[0], &exec_errno, sizeof(exec_errno));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	int status = 0;
	int r = wait_hook(pid, h->has_timeout ? h->timeout : 0, &status);
	if (n == (ssize_t)sizeof(exec_errno))
		return qerr_sys(err, exec_errno, "hook %s[%zu] %s", kind, i, h->path);
	if (r == -ETIMEDOUT)
		return qerr_set(err, ETIMEDOUT, "hook %s[%zu] %s: timed out after %d s", kind, i,
				h->path, h->timeout);
	if (r < 0)
		return qerr_sys(err, -r, "hook %s[%zu] %s: wait", kind, i, h->path);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return qerr_set(err, EIO, "hook %s[%zu] %s: exit status %d", kind, i, h->path,
				WEXITSTATUS(status));
	return qerr_set(err, EIO, "hook %s[%zu] %s: killed by signal %d", kind, i, h->path,
			WTERMSIG(status));
}

int hooks_run(const struct guest_hook_list *list, const char *kind, const char *state,
	      bool keep_going, struct qerr *err)
{
	for (size_t i = 0; i < list->n; i++) {
		struct qerr e = {0};
		int r = run_one(&list->v[i], kind, i, state, &e);
		if (r == 0)
			continue;
		if (!keep_going) {
			*err = e;
			return r;
		}
		qlog_warn("%s", e.msg);
	}
	return 0;
}
