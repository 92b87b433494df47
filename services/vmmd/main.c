/* quiver-vmmd start-up and loop.
 *
 *	quiver-vmmd [--root DIR] [--foreground] [--log FILE|-] [--log-format text|json]
 *		    [--debug] [--metrics ADDR]
 *
 * Without --foreground it detaches, and its first process exits 0 once the
 * daemon serves ROOT/vmmd.sock (or another vmmd already does), 1 if it could
 * not start: qctl's embedded mode waits on that instead of polling.  With
 * --foreground under a Type=notify unit it tells systemd instead
 * (libcommon/notify.h): READY=1 then, WATCHDOG=1 from the loop. */
#include <errno.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/daemon.h"
#include "libcommon/log.h"
#include "libcommon/notify.h"
#include "libcommon/statefile.h"
#include "services/vmmd/vmmd.h"

#define DEFAULT_ROOT	"/run/quiver"
#define DEFAULT_METRICS "127.0.0.1:9464"
#define SWEEP_MS	5000

struct vmmd vmmd = {.rootfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: quiver-vmmd [--root DIR] [--foreground] [--log FILE|-] "
			"[--log-format text|json] [--debug] [--metrics ADDR] "
			"[--hibernate-idle SECONDS]\n");
	exit(1);
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	qlog_info("signal %d: stopping; sandboxes keep running", sig);
	vmmd.stopping = true;
	uv_stop(vmmd.loop);
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	notify_watchdog();
}

static void on_sweep(uv_timer_t *t)
{
	(void)t;
	recovery_sweep_creating();
}

/* vmmd holds a pidfd per sandbox: with the usual soft limit of 1024 fds
 * it would stop adopting sandboxes at about a thousand.  Take the hard
 * limit (raising the soft one needs no privilege). */
static void raise_nofile_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		qlog_warn("raise the open-file limit to %llu: %s", (unsigned long long)rl.rlim_max,
			  strerror(errno));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"log", required_argument, NULL, 'l'},
	    {"log-format", required_argument, NULL, 'F'},
	    {"debug", no_argument, NULL, 'd'},
	    {"metrics", required_argument, NULL, 'm'},
	    {"hibernate-idle", required_argument, NULL, 'I'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *root = DEFAULT_ROOT, *logpath = NULL, *metrics = NULL;
	enum qlog_format fmt = QLOG_TEXT;
	enum qlog_level level = QLOG_INFO;
	bool foreground = false, metrics_given;
	int c, readyfd = -1, r;
	uint64_t ping_us;
	cleanup_close int lockfd = -1;
	char pidbuf[32];
	struct qerr err;

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
		case 'F':
			if (qlog_parse_format(optarg, &fmt) < 0)
				usage();
			break;
		case 'd':
			level = QLOG_DEBUG;
			break;
		case 'm':
			metrics = optarg;
			break;
		case 'I': {
			char *end;
			double v = strtod(optarg, &end);
			if (*end || end == optarg || !(v >= 0 && v <= 86400 * 365))
				usage();
			vmmd.hibernate_idle_ns = (int64_t)(v * 1e9);
			break;
		}
		case 'V':
			printf("quiver-vmmd %s\n", VMMD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	if (daemon_mkdir_p(root, 0700) < 0 || !realpath(root, vmmd.root))
		fatal("runtime directory %s", root);
	metrics_given = metrics != NULL;
	if (!metrics && strcmp(vmmd.root, DEFAULT_ROOT) == 0)
		metrics = DEFAULT_METRICS;

	ping_us = notify_init(foreground);
	if (!foreground)
		readyfd = daemon_detach();

	lockfd = daemon_claim_root(vmmd.root, "vmmd", &vmmd.rootfd, &readyfd);
	if (lockfd < 0)
		return 0;
	daemon_log_init("quiver-vmmd", vmmd.root, "vmmd", logpath, fmt, level);
	if (!foreground)
		daemon_stdio_to_null();
	raise_nofile_limit();

	snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int)getpid());
	if (statefile_write_mode(vmmd.rootfd, "vmmd.pid", pidbuf, strlen(pidbuf), 0644, &err) < 0)
		fatalx("%s", err.msg);
	if (statefile_sweep(vmmd.rootfd, ".", &err) < 0)
		qlog_warn("%s", err.msg);

	vmmd.loop = uv_default_loop();
	if (recovery_scan(&err) < 0)
		fatalx("recovery: %s", err.msg);
	if (control_listen(&err) < 0)
		fatalx("control socket: %s", err.msg);
	if (events_listen(&err) < 0)
		fatalx("event socket: %s", err.msg);
	if ((r = vmmd_metrics_start(metrics, &err)) < 0) {
		if (metrics_given)
			fatalx("metrics on %s: %s", metrics, err.msg);
		qlog_warn("metrics on %s: %s", metrics, err.msg);
		if (vmmd_metrics_start(NULL, &err) < 0)
			qlog_warn("metrics: %s", err.msg);
	}
	uv_timer_init(vmmd.loop, &vmmd.sweep_timer);
	uv_timer_start(&vmmd.sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
	hibernate_idle_start();
	if (ping_us) {
		uv_timer_init(vmmd.loop, &vmmd.watchdog_timer);
		uv_timer_start(&vmmd.watchdog_timer, on_watchdog, 0, ping_us / 1000 ?: 1);
	}
	uv_signal_init(vmmd.loop, &vmmd.sigterm);
	uv_signal_start(&vmmd.sigterm, on_signal, SIGTERM);
	uv_signal_init(vmmd.loop, &vmmd.sigint);
	uv_signal_start(&vmmd.sigint, on_signal, SIGINT);

	qlog_info("serving %s (pid %d, %zu sandboxes)", vmmd.root, (int)getpid(), sandbox_count());
	daemon_ready(&readyfd, 'R');
	notify_ready("serving %s (%zu sandboxes)", vmmd.root, sandbox_count());
	uv_run(vmmd.loop, UV_RUN_DEFAULT);
	notify_stopping();

	background_drain();
	pool_client_close();
	control_close();
	events_close();
	vmmd_metrics_stop();
	unlinkat(vmmd.rootfd, "vmmd.sock", 0);
	unlinkat(vmmd.rootfd, "events.sock", 0);
	unlinkat(vmmd.rootfd, "vmmd.pid", 0);
	unlinkat(vmmd.rootfd, "vmmd.metrics", 0);
	qlog_info("stopped");
	return 0;
}
