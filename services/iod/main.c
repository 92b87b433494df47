/* quiver-iod start-up and loop.
 *
 *	quiver-iod [--root DIR] [--foreground] [--log FILE|-] [--debug]
 *		   [--metrics ADDR] [--mode uring|sync] [--budget N] [--spin-us N]
 *		   [--hello-ms N]
 *
 * ROOT is vmmd's (default /run/quiver); iod serves ROOT/iod.sock.  Each
 * guest connects once per sandbox (libcommon/iod_proto.h): it hands over
 * the sandbox's root fd, iod creates the ring pair and hands it back.  One
 * epoll loop: the listening socket, connections, every sandbox's SQ
 * eventfd, the io_uring fd and a signalfd.  A connection whose hello has
 * not come within --hello-ms (default 10 s) is closed.  Each turn takes up
 * to --budget requests from each sandbox with work (so one busy sandbox
 * cannot starve the others), submits the turn's steps to io_uring in one batch, and
 * pushes completions as they come.  Under a Type=notify unit (with
 * --foreground) a timerfd in the same loop pings systemd's watchdog
 * (libcommon/notify.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/daemon.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "libcommon/notify.h"
#include "libcommon/statefile.h"
#include "libcommon/unix_connect.h"
#include "services/iod/iod.h"

#define DEFAULT_ROOT	   "/run/quiver"
#define DEFAULT_BUDGET	   4
#define DEFAULT_SPIN_US	   250
#define DEFAULT_HELLO_MS   10000
#define GREETING_MAX	   1024 /* connections waiting for their hello */
#define SPIN_MAX_SANDBOXES 4

enum ev_kind {
	EV_LISTEN = 1,
	EV_SIGNAL,
	EV_URING,
	EV_HELLO,
	EV_CONN,
	EV_SQ,
	EV_WATCHDOG,
	EV_HELLO_TIMER
};

struct iod iod = {.rootfd = -1,
		  .listen_fd = -1,
		  .epfd = -1,
		  .hello_timer_fd = -1,
		  .lock = PTHREAD_MUTEX_INITIALIZER};

static struct iod_ev ev_listen = {EV_LISTEN, NULL}, ev_signal = {EV_SIGNAL, NULL},
		     ev_uring = {EV_URING, NULL}, ev_watchdog = {EV_WATCHDOG, NULL},
		     ev_hello_timer = {EV_HELLO_TIMER, NULL};
static int watchdog_fd = -1;

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: quiver-iod [--root DIR] [--foreground] [--log FILE|-] [--debug] "
			"[--metrics ADDR] [--mode uring|sync] [--budget N] [--spin-us N] "
			"[--hello-ms N]\n");
	exit(2);
}

static void ep_add(int fd, uint32_t events, struct iod_ev *ev)
{
	struct epoll_event e = {.events = events, .data.ptr = ev};

	if (epoll_ctl(iod.epfd, EPOLL_CTL_ADD, fd, &e) < 0)
		fatal("epoll_ctl add %d", fd);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- connections waiting for their hello ---- */

/* The timer goes off at the oldest connection's deadline (none: off). */
static void greeting_arm(void)
{
	struct itimerspec it = {0};

	if (iod.greeting) {
		uint64_t due = iod.greeting->hello_due;
		it.it_value.tv_sec = (time_t)(due / 1000000000u);
		it.it_value.tv_nsec = (long)(due % 1000000000u);
	}
	if (timerfd_settime(iod.hello_timer_fd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
		fatal("timerfd_settime");
}

/* Appended: the list stays in the order of the deadlines. */
static void greeting_add(struct sbx *sb)
{
	struct sbx **pp = &iod.greeting;

	sb->hello_due = now_ns() + (uint64_t)iod.hello_ms * 1000000u;
	while (*pp)
		pp = &(*pp)->gnext;
	*pp = sb;
	sb->gnext = NULL;
	if (iod.n_greeting++ == 0)
		greeting_arm();
}

static void greeting_remove(struct sbx *sb)
{
	for (struct sbx **pp = &iod.greeting; *pp; pp = &(*pp)->gnext) {
		if (*pp == sb) {
			*pp = sb->gnext;
			iod.n_greeting--;
			if (pp == &iod.greeting)
				greeting_arm();
			return;
		}
	}
}

/* Connections whose hello is overdue are closed: each holds a struct sbx
 * and an fd until then.  After a turn's events, none of which may then
 * point to a connection freed here. */
static void on_hello_timer(void)
{
	uint64_t ticks, now = now_ns();
	unsigned closed = 0;

	if (read(iod.hello_timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		qlog_warn("hello timer: %s", strerror(errno));
	while (iod.greeting && iod.greeting->hello_due <= now) {
		struct sbx *sb = iod.greeting;
		iod.greeting = sb->gnext;
		iod.n_greeting--;
		epoll_ctl(iod.epfd, EPOLL_CTL_DEL, sb->conn, NULL);
		close(sb->conn);
		free(sb);
		closed++;
	}
	if (closed)
		qlog_warn("closed %u connection%s that sent no hello within %u ms", closed,
			  closed == 1 ? "" : "s", iod.hello_ms);
	greeting_arm();
}

/* ---- sandboxes ---- */

static void sbx_unlink(struct sbx *sb)
{
	pthread_mutex_lock(&iod.lock);
	for (struct sbx **pp = &iod.sandboxes; *pp; pp = &(*pp)->next) {
		if (*pp == sb) {
			*pp = sb->next;
			iod.n_sandboxes--;
			break;
		}
	}
	pthread_mutex_unlock(&iod.lock);
}

/* The connection is gone (or the ring broke): stop listening to it; the
 * memory goes when the last job is done. */
static void sbx_kill(struct sbx *sb, const char *why)
{
	if (sb->dead)
		return;
	qlog_info("sandbox %s detached (%s, %llu ops)", sb->id, why, (unsigned long long)sb->ops);
	sb->dead = true;
	epoll_ctl(iod.epfd, EPOLL_CTL_DEL, sb->conn, NULL);
	if (sb->ring.sq_efd >= 0)
		epoll_ctl(iod.epfd, EPOLL_CTL_DEL, sb->ring.sq_efd, NULL);
}

/* Only from the loop, between turns: no job of the sandbox is being run. */
void sbx_maybe_free(struct sbx *sb)
{
	if (!sb->dead)
		return;
	exec_flush_overflow(sb); /* drops what waits there */
	if (sb->inflight > 0)
		return;
	sbx_unlink(sb);
	ring_destroy(&sb->ring);
	exec_files_close(sb);
	if (sb->data)
		munmap(sb->data, IOD_DATA_SIZE);
	close(sb->conn);
	if (sb->rootfd >= 0)
		close(sb->rootfd);
	free(sb);
}

/* data_fd >= 0: the data area goes as the fourth fd. */
static void welcome(int conn, int error, struct ring *r, bool root_ro, int data_fd)
{
	struct iod_welcome w = {.version = IOD_PROTO_VERSION,
				.error = error,
				.entries = IOD_RING_ENTRIES,
				.entry_size = IOD_ENTRY_SIZE,
				.flags = (root_ro ? IOD_WELCOME_ROOT_RO : 0) |
					 (data_fd >= 0 ? IOD_WELCOME_DATA : 0)};
	int fds[4] = {-1, -1, -1, data_fd};

	if (r) {
		fds[0] = r->memfd;
		fds[1] = r->sq_efd;
		fds[2] = r->cq_efd;
	}
	if (send_with_fds(conn, &w, sizeof(w), fds, r ? (data_fd >= 0 ? 4 : 3) : 0) < 0)
		qlog_warn("welcome: %s", strerror(errno));
}

/* Offload-all's data area, made as the ring is (sealed at its size) and
 * mapped here.  The memfd (to send), or -errno. */
static int data_create(struct sbx *sb)
{
	void *p;
	int fd = ring_shm_create("quiver-iod-data", IOD_DATA_SIZE, &p);

	if (fd >= 0)
		sb->data = p;
	return fd;
}

static void on_hello(struct iod_ev *ev)
{
	struct sbx *sb = ev->sb;
	struct iod_hello h;
	struct ring_params p = {.entries = IOD_RING_ENTRIES, .entry_size = IOD_ENTRY_SIZE};
	struct statfs sfs;
	struct stat st;
	int rootfd = -1, data_fd = -1, r;
	ssize_t n = recv_fd(sb->conn, &h, sizeof(h), &rootfd);

	if (n == -EAGAIN || n == -EINTR)
		return;
	greeting_remove(sb);
	epoll_ctl(iod.epfd, EPOLL_CTL_DEL, sb->conn, NULL);
	if (n != (ssize_t)sizeof(h) || h.version != IOD_PROTO_VERSION ||
	    (h.flags & ~IOD_HELLO_OFFLOAD_ALL) || memchr(h.id, '\0', sizeof(h.id)) == NULL ||
	    rootfd < 0 || fstat(rootfd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		qlog_warn("connection: bad hello");
		welcome(sb->conn, EPROTO, NULL, false, -1);
		goto drop;
	}
	memcpy(sb->id, h.id, sizeof(sb->id));
	sb->rootfd = rootfd;
	rootfd = -1;
	/* The flag of the mount the root fd is on, in the sandbox's mount
	 * namespace: read-only there means nothing in the sandbox can change
	 * what is on it (the policy denies mount and remount). */
	if (fstatfs(sb->rootfd, &sfs) == 0 && (sfs.f_flags & ST_RDONLY))
		sb->root_ro = true;
	r = ring_create(&sb->ring, RING_SERVER, &p);
	if (r < 0) {
		qlog_warn("sandbox %s: ring: %s", sb->id, strerror(-r));
		welcome(sb->conn, -r, NULL, false, -1);
		goto drop;
	}
	if ((h.flags & IOD_HELLO_OFFLOAD_ALL) && (data_fd = data_create(sb)) < 0) {
		qlog_warn("sandbox %s: data area: %s", sb->id, strerror(-data_fd));
		welcome(sb->conn, -data_fd, NULL, false, -1);
		goto drop;
	}
	welcome(sb->conn, 0, &sb->ring, sb->root_ro, data_fd);
	if (data_fd >= 0)
		close(data_fd);
	close(sb->ring.memfd);
	sb->ring.memfd = -1;
	sb->ev_conn = (struct iod_ev){EV_CONN, sb};
	sb->ev_sq = (struct iod_ev){EV_SQ, sb};
	/* After the hello the guest sends only fds that go with requests
	 * (IOD_REQ_FD), read with them: the connection is watched for its
	 * end alone. */
	ep_add(sb->conn, EPOLLRDHUP, &sb->ev_conn);
	ep_add(ring_wait_fd(&sb->ring), EPOLLIN, &sb->ev_sq);
	ring_wait_prepare(&sb->ring);
	pthread_mutex_lock(&iod.lock);
	sb->next = iod.sandboxes;
	iod.sandboxes = sb;
	iod.n_sandboxes++;
	pthread_mutex_unlock(&iod.lock);
	qlog_info("sandbox %s attached%s", sb->id, sb->data ? " (offload-all)" : "");
	exec_drain(sb); /* anything queued before the welcome was read */
	return;
drop:
	if (rootfd >= 0)
		close(rootfd);
	if (sb->rootfd >= 0)
		close(sb->rootfd);
	ring_destroy(&sb->ring);
	if (sb->data)
		munmap(sb->data, IOD_DATA_SIZE);
	close(sb->conn);
	free(sb);
}

static void on_listen(void)
{
	static bool warned_full;

	for (;;) {
		int c = accept4(iod.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct sbx *sb;
		struct ucred cr;
		socklen_t len = sizeof(cr);

		if (c < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				qlog_warn("accept: %s", strerror(errno));
			return;
		}
		/* Only root's guests: the socket is 0600 in a 0700 directory,
		 * and this says so again. */
		if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != 0) {
			close(c);
			continue;
		}
		if (iod.n_greeting >= GREETING_MAX) {
			if (!warned_full)
				qlog_warn("%u connections wait for their hello; closing new ones",
					  iod.n_greeting);
			warned_full = true;
			close(c);
			continue;
		}
		warned_full = false;
		sb = calloc(1, sizeof(*sb));
		if (!sb) {
			close(c);
			continue;
		}
		sb->conn = c;
		sb->rootfd = -1;
		for (unsigned h = 0; h < IOD_FILES_MAX; h++)
			sb->files[h] = -1;
		sb->ring.memfd = sb->ring.sq_efd = sb->ring.cq_efd = -1;
		sb->ev_conn = (struct iod_ev){EV_HELLO, sb};
		ep_add(c, EPOLLIN | EPOLLRDHUP, &sb->ev_conn);
		greeting_add(sb);
	}
}

/* ---- loop ---- */

/* A periodic timerfd in the loop: the ping stops when the loop does. */
static void watchdog_start(uint64_t ping_us)
{
	struct itimerspec it = {
	    .it_interval = {.tv_sec = (time_t)(ping_us / 1000000u),
			    .tv_nsec = (long)(ping_us % 1000000u) * 1000},
	};

	it.it_value = it.it_interval;
	watchdog_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (watchdog_fd < 0 || timerfd_settime(watchdog_fd, 0, &it, NULL) < 0)
		fatal("watchdog timerfd");
	ep_add(watchdog_fd, EPOLLIN, &ev_watchdog);
}

static void loop(int sigfd)
{
	struct epoll_event evs[64];
	uint64_t last_work = 0;

	while (!iod.stopping) {
		bool hot = false, overflow = exec_has_overflow();
		/* Right after work, poll without sleeping for a while: on this
		 * kind of machine a wake-up costs more than the request, and the
		 * guest's next request usually follows within microseconds.
		 * Not with many sandboxes attached: there the guests need the
		 * CPU, and requests keep iod awake anyway.
		 * While polling the rings are not armed, so guests do not write
		 * the eventfd either. */
		bool spinning = iod.n_sandboxes <= SPIN_MAX_SANDBOXES &&
				now_ns() - last_work < (uint64_t)iod.spin_us * 1000u;
		unsigned work = 0;
		bool hello_timer = false;
		int n;

		for (struct sbx *sb = iod.sandboxes; sb && !hot && !spinning; sb = sb->next)
			hot = !sb->dead && sb->inflight < IOD_RING_ENTRIES && !sb->overflow &&
			      ring_wait_prepare(&sb->ring) > 0;
		n = epoll_wait(iod.epfd, evs, 64, hot || spinning ? 0 : overflow ? 1 : -1);
		if (n < 0 && errno != EINTR)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct iod_ev *ev = evs[i].data.ptr;

			switch (ev->kind) {
			case EV_LISTEN:
				on_listen();
				break;
			case EV_SIGNAL: {
				struct signalfd_siginfo si;
				if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					iod.stopping = true;
				break;
			}
			case EV_HELLO:
				on_hello(ev);
				break;
			case EV_CONN:
				sbx_kill(ev->sb, "connection closed");
				break;
			case EV_SQ:
				ring_wait_finish(&ev->sb->ring);
				break;
			case EV_URING:
				break;
			case EV_HELLO_TIMER:
				hello_timer = true;
				break;
			case EV_WATCHDOG: {
				uint64_t ticks;
				if (read(watchdog_fd, &ticks, sizeof(ticks)) ==
				    (ssize_t)sizeof(ticks))
					notify_watchdog();
				break;
			}
			}
		}
		if (hello_timer)
			on_hello_timer();
		work += exec_reap();
		for (struct sbx *sb = iod.sandboxes, *next; sb; sb = next) {
			next = sb->next;
			if (!sb->dead)
				work += exec_drain(sb);
		}

		/* A completion may start the job's next step: submit until
		 * nothing new is queued. */
		do {
			exec_submit();
			work += exec_reap();
		} while (iod.sq_pending > 0);
		if (work)
			last_work = now_ns();
		else if (spinning)
			/* Let a task woken onto this CPU (a guest's workload,
			 * answered) run now rather than after the spin. */
			sched_yield();
		for (struct sbx *sb = iod.sandboxes, *next; sb; sb = next) {
			next = sb->next;
			if (sb->overflow)
				exec_flush_overflow(sb);
			if (sb->broken)
				sbx_kill(sb, "ring broken");
			sbx_maybe_free(sb);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},	{"foreground", no_argument, NULL, 'f'},
	    {"log", required_argument, NULL, 'l'},	{"debug", no_argument, NULL, 'd'},
	    {"metrics", required_argument, NULL, 'm'},	{"mode", required_argument, NULL, 'M'},
	    {"budget", required_argument, NULL, 'b'},	{"spin-us", required_argument, NULL, 's'},
	    {"hello-ms", required_argument, NULL, 'H'}, {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},		{NULL, 0, NULL, 0},
	};
	const char *root = DEFAULT_ROOT, *logpath = NULL, *metrics = NULL;
	enum qlog_level level = QLOG_INFO;
	bool foreground = false;
	int c, readyfd = -1, sigfd;
	cleanup_close int lockfd = -1;
	char pidbuf[32];
	struct qerr err = {0};
	sigset_t ss;
	struct rlimit rl;
	uint64_t ping_us;

	iod.budget = DEFAULT_BUDGET;
	iod.spin_us = DEFAULT_SPIN_US;
	iod.hello_ms = DEFAULT_HELLO_MS;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			root = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'l':
			logpath = optarg;
			break;
		case 'd':
			level = QLOG_DEBUG;
			break;
		case 'm':
			metrics = optarg;
			break;
		case 'M':
			if (strcmp(optarg, "uring") == 0)
				iod.mode = IOD_MODE_URING;
			else if (strcmp(optarg, "sync") == 0)
				iod.mode = IOD_MODE_SYNC;
			else {
				fprintf(stderr, "quiver-iod: --mode: \"%s\" is not uring or sync\n",
					optarg);
				return 1;
			}
			break;
		case 'b': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > (long)IOD_RING_ENTRIES) {
				fprintf(stderr, "quiver-iod: --budget: \"%s\" is not 1..%u\n",
					optarg, IOD_RING_ENTRIES);
				return 1;
			}
			iod.budget = (unsigned)v;
			break;
		}
		case 's': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > 100000) {
				fprintf(stderr, "quiver-iod: --spin-us: \"%s\" is not 0..100000\n",
					optarg);
				return 1;
			}
			iod.spin_us = (unsigned)v;
			break;
		}
		case 'H': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 10 || v > 600000) {
				fprintf(stderr,
					"quiver-iod: --hello-ms: \"%s\" is not 10..600000\n",
					optarg);
				return 1;
			}
			iod.hello_ms = (unsigned)v;
			break;
		}
		case 'V':
			printf("quiver-iod %s\n", IOD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	if (daemon_mkdir_p(root, 0700) < 0 || !realpath(root, iod.root)) {
		fprintf(stderr, "quiver-iod: runtime directory %s: %s\n", root, strerror(errno));
		return 1;
	}
	ping_us = notify_init(foreground);
	if (!foreground)
		readyfd = daemon_detach();
	lockfd = daemon_claim_root(iod.root, "iod", &iod.rootfd, &readyfd);
	if (lockfd < 0)
		return 0;
	daemon_log_init("quiver-iod", iod.root, "iod", logpath, QLOG_TEXT, level);
	if (!foreground)
		daemon_stdio_to_null();
	/* Every sandbox costs iod a few fds (connection, root, eventfds) and
	 * every request in flight one or two more. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (exec_init(&err) < 0)
		fatalx("%s", err.msg);
	iod.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (iod.epfd < 0)
		fatal("epoll_create1");
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	sigfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		fatal("signalfd");
	iod.listen_fd = unix_listen_seqpacket(iod.root, IOD_SOCK_NAME, &err);
	if (iod.listen_fd < 0)
		fatalx("%s", err.msg);
	iod.hello_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (iod.hello_timer_fd < 0)
		fatal("timerfd_create");
	ep_add(iod.hello_timer_fd, EPOLLIN, &ev_hello_timer);
	ep_add(iod.listen_fd, EPOLLIN, &ev_listen);
	ep_add(sigfd, EPOLLIN, &ev_signal);
	if (exec_uring_fd() >= 0)
		ep_add(exec_uring_fd(), EPOLLIN, &ev_uring);
	if (ping_us)
		watchdog_start(ping_us);
	if (metrics && iod_metrics_start(metrics, &err) < 0)
		fatalx("metrics on %s: %s", metrics, err.msg);
	snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int)getpid());
	if (statefile_write_mode(iod.rootfd, "iod.pid", pidbuf, strlen(pidbuf), 0644, &err) < 0)
		fatalx("%s", err.msg);
	/* Modes of what iod creates for a workload are the workload's umask,
	 * applied by exec.c: the process's own must not mask them again. */
	umask(0);
	qlog_info("serving %s (pid %d), %s mode, budget %u", iod.root, (int)getpid(),
		  iod.mode == IOD_MODE_SYNC ? "sync" : "io_uring", iod.budget);
	daemon_ready(&readyfd, 'R');
	notify_ready("serving %s, %s mode", iod.root,
		     iod.mode == IOD_MODE_SYNC ? "sync" : "io_uring");

	loop(sigfd);
	notify_stopping();

	close(iod.listen_fd);
	unlinkat(iod.rootfd, IOD_SOCK_NAME, 0);
	while (iod.sandboxes) {
		struct sbx *sb = iod.sandboxes;
		sbx_kill(sb, "iod stopping");
		sbx_maybe_free(sb);
		if (iod.sandboxes == sb) { /* jobs in flight: cancelled with the ring */
			sb->inflight = 0;
			sbx_maybe_free(sb);
		}
	}
	exec_fini();
	iod_metrics_stop();
	unlinkat(iod.rootfd, "iod.pid", 0);
	unlinkat(iod.rootfd, "iod.metrics", 0);
	qlog_info("stopped");
	return 0;
}
