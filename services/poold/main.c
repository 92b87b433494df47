/* quiver-poold start-up and loop.
 *
 *	quiver-poold [--root DIR] [--config FILE] [--foreground] [--log FILE|-]
 *		     [--debug] [--metrics ADDR]
 *
 * ROOT is vmmd's (default /run/quiver): poold serves ROOT/poold.sock and
 * keeps its state in ROOT/poold/.  The configuration (default
 * /etc/quiver/poold.json, optional) is read before detaching, so a bad one
 * is reported on the terminal and poold exits 1.  Without --foreground the
 * first process exits 0 once the daemon serves its socket; with it, under a
 * Type=notify unit, systemd hears READY=1 then and WATCHDOG=1 from the loop
 * (libcommon/notify.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/daemon.h"
#include "libcommon/log.h"
#include "libcommon/notify.h"
#include "libcommon/statefile.h"
#include "services/poold/cgroup_pool.h"
#include "services/poold/layer_pool.h"
#include "services/poold/netns_pool.h"
#include "services/poold/poold.h"

#define DEFAULT_ROOT   "/run/quiver"
#define DEFAULT_CONFIG "/etc/quiver/poold.json"
#define REFILL_TICK_MS 20

struct poold poold = {.rootfd = -1, .statefd = -1};

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: quiver-poold [--root DIR] [--config FILE] [--foreground] "
			"[--log FILE|-] [--debug] [--metrics ADDR]\n");
	exit(2);
}

static void guest_path(void)
{
	if (daemon_sibling("quiver-guest", "QUIVER_GUEST", poold.guest_bin,
			   sizeof(poold.guest_bin)) < 0)
		fatalx("cannot find quiver-guest next to quiver-poold");
}

/* ---- the loop ---- */

static void control_one(void *arg, const void *body, size_t len, struct qmsg_out *reply)
{
	struct qmsg_in req;
	struct qerr err = {0};

	(void)arg;
	if (qmsg_parse(&req, body, len, &err) < 0) {
		qlog_warn("control: malformed request: %s", err.msg);
		qmsg_error_reply(reply, &err);
	} else {
		dispatch(&req, reply);
		qmsg_in_free(&req);
	}
	if (poold.stopping)
		uv_stop(poold.loop);
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	/* first: a release may give the refill its cgroups back */
	claims_release_pending(false);
	pools_refill();
	poold_metrics_update();
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	notify_watchdog();
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	qlog_info("signal %d: stopping", sig);
	poold.stopping = true;
	uv_stop(poold.loop);
}

static void on_sigchld(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	warm_reap_children();
}

static int control_listen(struct qerr *err)
{
	/* a client (vmmd, qctl) that leaves 64 replies unread is dropped */
	static const struct qsp_opts opts = {
	    .role = QSP_REP,
	    .queue_max = 64,
	    .hello_ms = 10000,
	    .max_request = QMSG_MAX_BYTES,
	    .on_request = control_one,
	};
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/poold.sock", poold.root);
	unlinkat(poold.rootfd, "poold.sock", 0);
	return qsp_listen(poold.loop, path, &opts, &poold.control, err);
}

/* ---- start-up ---- */

static void open_pools(void)
{
	struct qerr err = {0};
	char path[PATH_MAX + 16];
	if (cgroup_pool_open(poold.cfg.cgroup_parent, &poold.cg, &err) < 0)
		fatalx("cgroup pool: %s", err.msg);
	/* FNV-1a of the root: this poold's groups among other roots' */
	uint32_t h = 2166136261u;
	for (const char *c = poold.root; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	char tag[16];
	snprintf(tag, sizeof(tag), "%08x", h);
	cgroup_pool_set_tag(poold.cg, tag);
	snprintf(path, sizeof(path), "%s/netns", poold.state);
	if (netns_pool_open(path, &poold.ns, &err) < 0)
		fatalx("netns pool: %s", err.msg);
	/* Without a swap area poold still serves the pools; hibernation then
	 * needs the host's swap.  One left active by a poold that was killed
	 * is adopted even when this config asks for none, so that it is
	 * taken down at our stop. */
	snprintf(path, sizeof(path), "%s/swap.img", poold.state);
	if (poold.cfg.swap_mib || swap_area_usage(path, NULL, NULL) == 0) {
		if (swap_area_start(&poold.swap, poold.state, poold.cfg.swap_mib, &err) < 0) {
			snprintf(poold.swap_error, sizeof(poold.swap_error), "%s", err.msg);
			qlog_warn("%s", err.msg);
		}
		err = (struct qerr){0};
	}
	/* Without a layer store poold still serves the other pools. */
	struct layer_pool_config lc = {
	    .state_dir = poold.state,
	    .image_bytes = poold.cfg.layer_image_mib << 20,
	    .force_tmpfs = strcmp(poold.cfg.layer_backend, "tmpfs") == 0,
	    .template_src = poold.cfg.layer_template[0] ? poold.cfg.layer_template : NULL,
	};
	if (poold.cfg.pool[POOL_LAYER].high == 0) {
		snprintf(poold.layer_error, sizeof(poold.layer_error), "layer pool off (high 0)");
		return;
	}
	if (layer_pool_open(&lc, &poold.layers, &err) < 0) {
		snprintf(poold.layer_error, sizeof(poold.layer_error), "%s", err.msg);
		qlog_warn("layer pool off: %s", err.msg);
		poold.layers = NULL;
		return;
	}
	if (strcmp(poold.cfg.layer_backend, "xfs") == 0 &&
	    strcmp(layer_pool_backend(poold.layers), "xfs-reflink") != 0)
		fatalx("layer pool: backend xfs asked for, but only %s is available",
		       layer_pool_backend(poold.layers));
	qlog_info("layer store: %s", layer_pool_backend(poold.layers));
}

/* Nothing claimed remains: take the layer store down too (its mount and
 * loop device would otherwise outlive us). */
static void close_layer_store(void)
{
	struct qerr err = {0};
	cleanup_close int dfd = openat(poold.statefd, "claims", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool claims = false;
	if (dfd >= 0) {
		DIR *d = fdopendir(dup(dfd));
		struct dirent *de;
		while (d && (de = readdir(d)))
			claims |= de->d_name[0] != '.';
		if (d)
			closedir(d);
	}
	if (!poold.layers)
		return;
	if (!claims && layer_pool_close_store(poold.layers, &err) < 0)
		qlog_warn("layer store: %s", err.msg);
	layer_pool_close(poold.layers);
	poold.layers = NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"config", required_argument, NULL, 'c'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"log", required_argument, NULL, 'l'},
	    {"debug", no_argument, NULL, 'd'},
	    {"metrics", required_argument, NULL, 'm'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *root = DEFAULT_ROOT, *config = NULL, *logpath = NULL, *metrics = NULL;
	enum qlog_level level = QLOG_INFO;
	bool foreground = false;
	int c, readyfd = -1;
	cleanup_close int lockfd = -1;
	char pidbuf[32];
	struct qerr err = {0};
	uint64_t ping_us;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			root = optarg;
			break;
		case 'c':
			config = optarg;
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
		case 'V':
			printf("quiver-poold %s\n", POOLD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	if (poold_config_load(config ? config : DEFAULT_CONFIG, config != NULL, &poold.cfg, &err) <
	    0) {
		fprintf(stderr, "quiver-poold: %s\n", err.msg);
		return 1;
	}
	if (daemon_mkdir_p(root, 0700) < 0 || !realpath(root, poold.root)) {
		fprintf(stderr, "quiver-poold: runtime directory %s: %s\n", root, strerror(errno));
		return 1;
	}
	if ((size_t)snprintf(poold.state, sizeof(poold.state), "%s/poold", poold.root) >=
	    sizeof(poold.state) - 64) {
		fprintf(stderr, "quiver-poold: runtime directory %s: too long\n", poold.root);
		return 1;
	}
	guest_path();
	ping_us = notify_init(foreground);
	if (!foreground)
		readyfd = daemon_detach();

	lockfd = daemon_claim_root(poold.root, "poold", &poold.rootfd, &readyfd);
	if (lockfd < 0)
		return 0;
	daemon_log_init("quiver-poold", poold.root, "poold", logpath, QLOG_TEXT, level);
	if (!foreground)
		daemon_stdio_to_null();
	static const char *const sub[] = {"", "/claims", "/warm", "/netns"};
	for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
		char d[PATH_MAX + 16];
		snprintf(d, sizeof(d), "%s%s", poold.state, sub[i]);
		if (daemon_mkdir_p(d, 0700) < 0)
			fatal("mkdir %s", d);
	}
	poold.statefd = open(poold.state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (poold.statefd < 0)
		fatal("open %s", poold.state);
	/* Warm supervisors outlive their launcher: they are ours to reap. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		fatal("prctl(PR_SET_CHILD_SUBREAPER)");
	for (int k = 0; k < POOL_NKINDS; k++)
		poold.pools[k].kind = (enum pool_kind)k;

	poold.loop = uv_default_loop();
	open_pools();
	if (claims_reclaim(&err) < 0)
		fatalx("reclaim: %s", err.msg);
	if (control_listen(&err) < 0)
		fatalx("control socket: %s", err.msg);
	if (metrics && poold_metrics_start(metrics, &err) < 0)
		fatalx("metrics on %s: %s", metrics, err.msg);
	snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int)getpid());
	if (statefile_write_mode(poold.rootfd, "poold.pid", pidbuf, strlen(pidbuf), 0644, &err) < 0)
		fatalx("%s", err.msg);
	uv_signal_init(poold.loop, &poold.sigterm);
	uv_signal_start(&poold.sigterm, on_signal, SIGTERM);
	uv_signal_init(poold.loop, &poold.sigint);
	uv_signal_start(&poold.sigint, on_signal, SIGINT);
	uv_signal_init(poold.loop, &poold.sigchld);
	uv_signal_start(&poold.sigchld, on_sigchld, SIGCHLD);
	uv_timer_init(poold.loop, &poold.refill_timer);
	uv_timer_start(&poold.refill_timer, on_tick, 0, REFILL_TICK_MS);
	if (ping_us) {
		uv_timer_init(poold.loop, &poold.watchdog_timer);
		uv_timer_start(&poold.watchdog_timer, on_watchdog, 0, ping_us / 1000 ?: 1);
	}

	qlog_info("serving %s (pid %d); refill %u/s", poold.root, (int)getpid(),
		  poold.cfg.refill_per_second);
	daemon_ready(&readyfd, 'R');
	notify_ready("serving %s", poold.root);
	uv_run(poold.loop, UV_RUN_DEFAULT);
	notify_stopping();

	qsp_close(poold.control);
	poold.control = NULL;
	unlinkat(poold.rootfd, "poold.sock", 0);
	claims_release_pending(true);
	pools_drain();
	warm_reap_children();
	close_layer_store();
	swap_area_stop(&poold.swap);
	cgroup_pool_close(poold.cg);
	netns_pool_close(poold.ns);
	poold_metrics_stop();
	unlinkat(poold.rootfd, "poold.pid", 0);
	unlinkat(poold.rootfd, "poold.metrics", 0);
	qlog_info("stopped");
	return 0;
}
