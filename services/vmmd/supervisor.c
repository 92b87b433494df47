/* A sandbox's supervisor (S), seen from vmmd through a pidfd: the pidfd
 * joins the loop so an exit is noticed at once, signals go through it so a
 * reused pid is never signalled, and its start time guards re-adoption.
 *
 * The sandbox stops (status, "exited" event) as soon as S's exit report is
 * in ROOT/ID, seen through inotify: S writes it once the workload is reaped
 * and every other task of the sandbox killed, and its own exit, which tears
 * the mount, network and pid namespaces down before the pidfd says so,
 * takes another ~0.5 ms here.  The pidfd stays watched until S is gone; a
 * delete waits for that (supervisor_reap) before the sandbox's groups,
 * netns and directory go.  A report inotify misses (the watch could not be
 * made, or the report came first) is read when the pidfd fires, as
 * before. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/statefile.h"
#include "services/vmmd/vmmd.h"

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int proc_start_time(pid_t pid, uint64_t *out)
{
	char path[64], buf[1024];
	cleanup_close int fd = -1;
	ssize_t n;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* comm may contain spaces and parentheses: fields resume after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	p++;
	for (int field = 3; field <= 22; field++) {
		while (*p == ' ')
			p++;
		if (!*p)
			return -EIO;
		if (field == 22) {
			*out = strtoull(p, NULL, 10);
			return 0;
		}
		while (*p && *p != ' ')
			p++;
	}
	return -EIO;
}

static void pidfd_poll_closed(uv_handle_t *h)
{
	free(h);
}

/* One inotify instance for every sandbox's directory, made on first use. */
static int report_fd = -1;
static uv_poll_t report_poll;

static void report_unwatch(struct sandbox *sb)
{
	if (sb->report_wd > 0)
		inotify_rm_watch(report_fd, sb->report_wd); /* EINVAL once ROOT/ID is gone */
	sb->report_wd = 0;
}

void supervisor_unwatch(struct sandbox *sb)
{
	report_unwatch(sb);
	if (sb->pidfd_poll) {
		uv_poll_stop(sb->pidfd_poll);
		uv_close((uv_handle_t *)sb->pidfd_poll, pidfd_poll_closed);
		sb->pidfd_poll = NULL;
	}
	if (sb->pidfd >= 0) {
		close(sb->pidfd);
		sb->pidfd = -1;
	}
}

/* The exit report S writes just before it exits: {"status","exit_code","signal"}. */
static int read_exit_file(struct sandbox *sb)
{
	char name[SANDBOX_ID_MAX + 8];
	cleanup_free char *text = NULL;
	size_t len;
	struct qerr err;
	json_error_t jerr;
	json_t *o, *st, *code, *sig;
	int r;

	snprintf(name, sizeof(name), "%s/exit", sb->id);
	r = statefile_read(vmmd.rootfd, name, EXIT_FILE_MAX, &text, &len, &err);
	if (r < 0)
		return r;
	o = json_loadb(text, len, 0, &jerr);
	if (!o)
		return -EINVAL;
	st = json_object_get(o, "status");
	code = json_object_get(o, "exit_code");
	sig = json_object_get(o, "signal");
	if (!json_is_integer(code) || json_integer_value(code) < 0 ||
	    json_integer_value(code) > 255) {
		json_decref(o);
		return -EINVAL;
	}
	sb->exit_code = (int)json_integer_value(code);
	sb->exit_status = json_is_integer(st) ? (int)json_integer_value(st) : 0;
	sb->exit_signal =
	    json_is_integer(sig) && json_integer_value(sig) > 0 && json_integer_value(sig) < 128
		? (int)json_integer_value(sig)
		: 0;
	json_decref(o);
	return 0;
}

/* Status stopped, the "exited" event and (persist, not transient) the
 * stopped record; the exit from S's report, or from what vmmd sent. */
static void mark_stopped(struct sandbox *sb, bool persist)
{
	struct qerr err;

	if (read_exit_file(sb) < 0) {
		/* S was killed before it could report (SIGKILL, or a crash). */
		int sig = sb->sent_signal ? sb->sent_signal : SIGKILL;
		sb->exit_signal = sig;
		sb->exit_code = 128 + sig;
		sb->exit_status = sig;
	}
	sb->has_exit = true;
	pthread_mutex_lock(&vmmd.lock);
	sb->status = SB_STOPPED;
	sb->hib = HIB_NONE; /* what was in swap went with its tasks */
	pthread_mutex_unlock(&vmmd.lock);
	wake_watch_stop(sb); /* its copies would keep the sockets alive */
	sb->exited_ns = now_ns();
	/* the event first: a subscriber waiting for the exit need not wait
	 * for the fsync as well */
	events_publish("exited", sb);
	/* A transient sandbox (qctl run, or create with transient) is deleted
	 * by its caller as soon as it stops: its durable stopped record, two
	 * fsyncs and the old record's freeing, would be written to be removed
	 * a moment later, and the delete would wait behind it.  If vmmd
	 * restarts first, recovery finds the supervisor gone and takes the
	 * same exit from its report. */
	if (persist && !sb->transient && sandbox_save(sb, &err) < 0)
		qlog_error("%s: %s", sb->id, err.msg);
	qlog_info("%s: supervisor %d exited with %d", sb->id, (int)sb->pid, sb->exit_code);
}

void supervisor_exited(struct sandbox *sb, bool persist)
{
	supervisor_unwatch(sb);
	if (sb->status != SB_STOPPED)
		mark_stopped(sb, persist);
}

static struct sandbox *by_report_wd(int wd)
{
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next)
		if (sb->report_wd == wd)
			return sb;
	return NULL;
}

static void report_readable(uv_poll_t *h, int status, int events)
{
	/* struct inotify_event is followed by its name; the buffer is aligned
	 * for it */
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void)h;
	(void)status;
	(void)events;
	while ((n = read(report_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			struct sandbox *sb = by_report_wd(ev->wd);
			if (!sb)
				continue;
			if (ev->mask & IN_IGNORED) {
				sb->report_wd = 0; /* the kernel dropped it with ROOT/ID */
				continue;
			}
			/* S renames its report into place: complete, or not there */
			if (ev->len && strcmp(ev->name, "exit") == 0 && sb->status != SB_STOPPED &&
			    sb->status != SB_CREATING && sb->pidfd >= 0) {
				report_unwatch(sb);
				mark_stopped(sb, true);
			}
		}
	}
}

/* Watch ROOT/ID for S's exit report; without the watch the pidfd still
 * says when S is gone, later. */
static void report_watch(struct sandbox *sb)
{
	if (report_fd < 0) {
		int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fd < 0 || uv_poll_init(vmmd.loop, &report_poll, fd) < 0) {
			qlog_warn("inotify for exit reports: %s",
				  strerror(fd < 0 ? errno : ENOMEM));
			if (fd >= 0)
				close(fd);
			return;
		}
		report_fd = fd;
		uv_poll_start(&report_poll, UV_READABLE, report_readable);
	}
	char path[64 + SANDBOX_ID_MAX];
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", vmmd.rootfd, sb->id);
	int wd = inotify_add_watch(report_fd, path, IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW);
	if (wd < 0) {
		qlog_debug("%s: no watch for its exit report: %s", sb->id, strerror(errno));
		return;
	}
	sb->report_wd = wd;
}

static void pidfd_readable(uv_poll_t *h, int status, int events)
{
	struct sandbox *sb = h->data;

	(void)status;
	(void)events;
	supervisor_exited(sb, true);
}

int supervisor_watch(struct sandbox *sb, struct qerr *err)
{
	uint64_t start;
	int fd, r;

	fd = sys_pidfd_open(sb->pid);
	if (fd < 0)
		return qerr_sys(err, errno, "pidfd_open %d", (int)sb->pid);
	/* The pidfd pins the pid: once the start time matches, it is ours. */
	r = proc_start_time(sb->pid, &start);
	if (r < 0 || start != sb->pid_start) {
		close(fd);
		return qerr_set(err, ESRCH, "process %d is not the sandbox's supervisor",
				(int)sb->pid);
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	sb->pidfd = fd;
	sb->pidfd_poll = malloc(sizeof(*sb->pidfd_poll));
	if (!sb->pidfd_poll || uv_poll_init(vmmd.loop, sb->pidfd_poll, fd) < 0) {
		free(sb->pidfd_poll);
		sb->pidfd_poll = NULL;
		close(fd);
		sb->pidfd = -1;
		return qerr_set(err, ENOMEM, "cannot watch process %d", (int)sb->pid);
	}
	sb->pidfd_poll->data = sb;
	uv_poll_start(sb->pidfd_poll, UV_READABLE, pidfd_readable);
	report_watch(sb);
	return 0;
}

bool supervisor_refresh(struct sandbox *sb, bool persist)
{
	struct pollfd pfd;

	if (sb->status == SB_STOPPED)
		return true;
	if (sb->pidfd < 0)
		return false;
	pfd.fd = sb->pidfd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 0) == 1) {
		supervisor_exited(sb, persist);
		return true;
	}
	return false;
}

int supervisor_signal(struct sandbox *sb, int sig, struct qerr *err)
{
	if (sb->pidfd < 0)
		return qerr_set(err, ESRCH, "container not running");
	if (sys_pidfd_send_signal(sb->pidfd, sig) < 0) {
		if (errno == ESRCH)
			return qerr_set(err, ESRCH, "container not running");
		return qerr_sys(err, errno, "signal %d to %d", sig, (int)sb->pid);
	}
	if (sig == SIGKILL || sig == SIGTERM)
		sb->sent_signal = sig;
	return 0;
}

int supervisor_wait(struct sandbox *sb, int timeout_ms, bool persist, struct qerr *err)
{
	struct pollfd pfd;
	int r;

	if (sb->pidfd < 0)
		return 0;
	pfd.fd = sb->pidfd;
	pfd.events = POLLIN;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return qerr_set(err, ETIMEDOUT, "supervisor %d did not exit", (int)sb->pid);
	if (r < 0)
		return qerr_sys(err, errno, "poll");
	supervisor_exited(sb, persist);
	return 0;
}

int supervisor_reap(struct sandbox *sb, struct qerr *err)
{
	/* S wrote its report and is exiting: a moment, then SIGKILL (harmless
	 * to a task already in exit) for one that hangs after its report */
	if (sb->pidfd < 0 || supervisor_wait(sb, 200, false, NULL) == 0)
		return 0;
	if (sys_pidfd_send_signal(sb->pidfd, SIGKILL) < 0 && errno != ESRCH)
		return qerr_sys(err, errno, "signal %d to %d", SIGKILL, (int)sb->pid);
	return supervisor_wait(sb, SUPERVISOR_KILL_WAIT, false, err);
}
