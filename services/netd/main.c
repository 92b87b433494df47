/* quiver-netd start-up and loop.
 *
 *	quiver-netd [--root DIR] [--subnet CIDR] [--bridge NAME] [--foreground]
 *		    [--log FILE|-] [--debug] [--metrics ADDR] [--teardown]
 *
 * ROOT is vmmd's (default /run/quiver): netd serves ROOT/netd.sock
 * (libcommon/net_proto.h) and keeps its leases in ROOT/netd/.  Each
 * sandbox with io.quiver.net "bridge" or "quiver" holds one connection for
 * its life: the hello brings its network namespace, which netd joins to
 * the bridge (bridge.h), and in quiver mode the connection then carries
 * the socket service (broker.c).  A connection that closes is a sandbox
 * that ended: its veth and lease go.  A netd that stops (or is killed)
 * leaves every sandbox's network as it is; the next one reconciles the
 * leases with the links it finds.  --teardown removes the bridge, netd's
 * nftables table and every lease, then exits (no sandbox may be left). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/daemon.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/net_proto.h"
#include "libcommon/notify.h"
#include "libcommon/statefile.h"
#include "libcommon/unix_connect.h"
#include "services/netd/bridge.h"
#include "services/netd/ipam.h"
#include "services/netd/ports.h"
#include "services/netd/ruleset.h"
#include "services/netd/netd.h"

#define DEFAULT_ROOT "/run/quiver"
#define SWEEP_MS     500

struct netd netd = {.rootfd = -1, .statefd = -1, .lfd = -1, .monitor_fd = -1};

static _Noreturn void usage(void)
{
	fprintf(
	    stderr,
	    "usage: quiver-netd [--root DIR] [--subnet CIDR] [--bridge NAME] "
	    "[--foreground] [--log FILE|-] [--debug] [--metrics ADDR] [--teardown]\n"
	    "                   [--node-id N --node-listen IP:PORT --peer ID,IP:PORT,CIDR...]\n");
	exit(2);
}

/* ---- connections ---- */

static void conn_closed(uv_handle_t *h)
{
	free(h->data);
}

static void conn_close(struct nsbx *s)
{
	struct qerr err = {0};

	if (s->closing)
		return;
	s->closing = true;
	for (struct nsbx **pp = &netd.sandboxes; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	broker_forget(s);
	nodes_forget(s);
	if ((s->mode == NSBX_BRIDGE || s->mode == NSBX_QUIVER) && !netd.stopping) {
		if (bridge_detach(netd.bridge, s->id, &err) < 0)
			qlog_warn("%s: detach: %s", s->id, err.msg);
		else
			qlog_info("%s: gone; its network is removed", s->id);
	}
	uv_poll_stop(&s->poll);
	close(s->fd);
	s->fd = -1;
	s->poll.data = s;
	uv_close((uv_handle_t *)&s->poll, conn_closed);
}

int nsbx_send(struct nsbx *s, struct qmsg_out *m, int fd)
{
	if (s->closing || s->fd < 0)
		return -EPIPE;
	if (send_with_fds(s->fd, qmsg_data(m), qmsg_size(m), &fd, fd >= 0 ? 1 : 0) < 0) {
		int e = errno;
		/* a supervisor that does not read is dropped rather than
		 * allowed to hold netd up */
		qlog_warn("%s: send: %s", s->id[0] ? s->id : "client", strerror(e));
		conn_close(s);
		return -e;
	}
	return 0;
}

static void reply_error(struct nsbx *s, const struct qerr *err)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_error_reply(&m, err);
	nsbx_send(s, &m, -1);
	qmsg_out_free(&m);
}

/* hello: the sandbox's network, then its address in the answer. */
static int hello(struct nsbx *s, const struct qmsg_in *in, int nsfd, struct qerr *err)
{
	char mode[16], ports[1024] = "", peers[GRANTS_SPEC_MAX + 1] = "";
	bool resume = false;
	struct bridge_lease lease;
	struct port_set set = {0};
	int r;

	if ((r = qmsg_get_str(in->root, "id", s->id, sizeof(s->id), err)) < 0 ||
	    (r = qmsg_get_str(in->root, "mode", mode, sizeof(mode), err)) < 0)
		return r;
	if ((r = sandbox_id_check(s->id, err)) < 0)
		return qerr_prefix(err, "hello");
	r = qmsg_get_str(in->root, "ports", ports, sizeof(ports), err);
	if (r < 0 && r != -ENOENT &&
	    !(qmsg_find(in->root, "ports") &&
	      qmsg_find(in->root, "ports")->type == MSGPACK_OBJECT_NIL))
		return r;
	if ((r = qmsg_get_bool(in->root, "resume", &resume, err)) < 0 && r != -ENOENT)
		return r;
	r = qmsg_get_str(in->root, "peers", peers, sizeof(peers), err);
	if (r < 0 && r != -ENOENT &&
	    !(qmsg_find(in->root, "peers") &&
	      qmsg_find(in->root, "peers")->type == MSGPACK_OBJECT_NIL))
		return r;
	if ((r = grants_parse(peers, &s->grants, err)) < 0)
		return qerr_prefix(err, "annotation " NET_PEERS_ANNOTATION);
	if (strcmp(mode, "bridge") == 0)
		s->mode = NSBX_BRIDGE;
	else if (strcmp(mode, "quiver") == 0)
		s->mode = NSBX_QUIVER;
	else
		return qerr_set(err, EINVAL, "hello: mode \"%s\" is not bridge or quiver", mode);
	for (struct nsbx *o = netd.sandboxes; o; o = o->next)
		if (o != s && o->mode != NSBX_NEW && strcmp(o->id, s->id) == 0)
			return qerr_set(err, EEXIST, "hello: sandbox %s is connected already",
					s->id);
	if (resume) {
		r = bridge_lookup(netd.bridge, s->id, &lease);
		if (r < 0)
			qerr_set(err, -r,
				 "hello: sandbox %s has no network here (was it reconciled away?)",
				 s->id);
	} else if (nsfd < 0) {
		r = qerr_set(err, EINVAL, "hello: no network namespace attached");
	} else if (ports[0] && (r = ports_parse(ports, &set, err)) < 0) {
		qerr_prefix(err, "annotation " NET_PORTS_ANNOTATION);
	} else {
		r = bridge_attach(netd.bridge, s->id, nsfd, &set, peers, &lease, err);
	}
	if (r < 0) {
		s->mode = NSBX_NEW;
		return r;
	}
	s->ip = lease.addr;
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "ok", 3);
	netp_put_addr(&m, "ip", lease.addr);
	qmsg_put_int(&m, "prefix", lease.prefix);
	netp_put_addr(&m, "gateway", lease.gateway);
	r = nsbx_send(s, &m, -1);
	qmsg_out_free(&m);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &lease.addr, ip, sizeof(ip));
	qlog_info("%s: %s %s mode, %s%s%s", s->id, resume ? "back in" : "in", mode, ip,
		  ports[0] ? ", ports " : "", ports);
	return 0;
}

static void handle(struct nsbx *s, const struct qmsg_in *in, int fd)
{
	struct qerr err = {0};

	if (s->mode == NSBX_NEW) {
		if (strcmp(in->op, "hello") == 0) {
			if (hello(s, in, fd, &err) < 0) {
				qlog_warn("%s: %s", s->id[0] ? s->id : "hello", err.msg);
				reply_error(s, &err);
			}
		} else {
			qerr_set(&err, EPROTO, "\"%s\" before hello", in->op);
			reply_error(s, &err);
			conn_close(s);
		}
		return;
	}
	if (strcmp(in->op, "listen") == 0 || strcmp(in->op, "unlisten") == 0)
		broker_listen(s, in, in->op[0] == 'l');
	else if (s->mode == NSBX_QUIVER && strcmp(in->op, "connect") == 0)
		broker_connect(s, in);
	else if (s->mode == NSBX_QUIVER && strcmp(in->op, "accepted") == 0)
		broker_accepted(s, in);
	else {
		qlog_warn("%s: unexpected \"%s\"", s->id, in->op);
		qmetric_inc(netd.m_errors);
	}
}

static void conn_readable(uv_poll_t *h, int status_, int events)
{
	struct nsbx *s = h->data;

	if (status_ < 0 || (events & UV_DISCONNECT)) {
		conn_close(s);
		return;
	}
	for (int i = 0; i < 32 && !s->closing; i++) {
		char buf[NETP_MAX_MSG];
		int fd = -1;
		ssize_t n = recv_fd(s->fd, buf, sizeof(buf), &fd);
		cleanup_close int passed = fd;
		struct qerr err = {0};
		struct qmsg_in in;

		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			conn_close(s);
			return;
		}
		if (qmsg_parse(&in, buf, (size_t)n, &err) < 0) {
			/* hostile or broken: the sandbox loses the service */
			qlog_warn("%s: bad message: %s", s->id[0] ? s->id : "client", err.msg);
			qmetric_inc(netd.m_errors);
			conn_close(s);
			return;
		}
		handle(s, &in, passed);
		qmsg_in_free(&in);
	}
}

static void listen_readable(uv_poll_t *h, int status_, int events)
{
	(void)h;
	(void)status_;
	(void)events;
	for (int i = 0; i < 64; i++) {
		int c = accept4(netd.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			return;
		struct ucred cr;
		socklen_t len = sizeof(cr);
		/* supervisors run as host root, as do qctl and the daemons */
		if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != 0) {
			qlog_warn("refused a connection from uid %u", (unsigned)cr.uid);
			close(c);
			continue;
		}
		struct nsbx *s = calloc(1, sizeof(*s));
		if (!s) {
			close(c);
			continue;
		}
		s->fd = c;
		s->poll.data = s;
		uv_poll_init(netd.loop, &s->poll, c);
		uv_poll_start(&s->poll, UV_READABLE | UV_DISCONNECT, conn_readable);
		s->next = netd.sandboxes;
		netd.sandboxes = s;
	}
}

/* ---- start-up ---- */

static bool ifname_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= IFNAMSIZ)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
			return false;
	return true;
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	qlog_info("signal %d: stopping", sig);
	netd.stopping = true;
	uv_stop(netd.loop);
}

static void on_sweep(uv_timer_t *t)
{
	(void)t;
	broker_sweep();
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	notify_watchdog();
}

static void released(const char *id, void *arg)
{
	(void)arg;
	qlog_info("%s: its network namespace is gone; lease released", id);
}

static void monitor_readable(uv_poll_t *h, int status_, int events)
{
	struct qerr err = {0};
	(void)h;
	(void)status_;
	(void)events;
	if (bridge_monitor_handle(netd.bridge, released, NULL, &err) < 0)
		qlog_warn("link monitor: %s", err.msg);
}

/* Connections through the kernel's gateways, from the nftables table's
 * counters (ruleset.h), with a libnftables context of the metrics
 * threads' own. */
static void metrics_gateway(struct qmetrics_writer *w)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct ruleset *rs;
	static const char *const dir[] = {"direction", NULL};
	uint64_t in = 0, out = 0;
	struct qerr err;
	int r;

	pthread_mutex_lock(&lock);
	r = rs || ruleset_open(&rs, &err) == 0 ? ruleset_gateway(rs, &in, &out, &err) : -1;
	pthread_mutex_unlock(&lock);
	if (r < 0)
		return;
	qmetrics_write_family(
	    w, "quiver_netd_gateway_connections_total",
	    "Connections (and UDP flows) through the kernel's gateways: in through "
	    "a published port, out of the host through the masquerade.",
	    QMETRIC_COUNTER);
	qmetrics_write_sample(w, "quiver_netd_gateway_connections_total", dir,
			      (const char *const[]){"in"}, (double)in);
	qmetrics_write_sample(w, "quiver_netd_gateway_connections_total", dir,
			      (const char *const[]){"out"}, (double)out);
}

static void metrics_collect(struct qmetrics_writer *w, void *arg)
{
	static const char *const lbl[] = {"mode", NULL};
	size_t bridge = 0, quiver = 0;
	(void)arg;

	for (struct nsbx *s = netd.sandboxes; s; s = s->next) {
		bridge += s->mode == NSBX_BRIDGE;
		quiver += s->mode == NSBX_QUIVER;
	}
	qmetrics_write_family(w, "quiver_netd_sandboxes", "Sandboxes connected, by network mode.",
			      QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_netd_sandboxes", lbl, (const char *const[]){"bridge"},
			      (double)bridge);
	qmetrics_write_sample(w, "quiver_netd_sandboxes", lbl, (const char *const[]){"quiver"},
			      (double)quiver);
	struct nodes_stats ns;
	nodes_stats(&ns);
	static const char *const dir[] = {"direction", NULL};
	qmetrics_write_family(
	    w, "quiver_netd_transport_bytes_total",
	    "Bytes on the node transport's connections (frames included), by "
	    "direction.  Direct channels inside a node pass no byte through netd.",
	    QMETRIC_COUNTER);
	qmetrics_write_sample(w, "quiver_netd_transport_bytes_total", dir,
			      (const char *const[]){"in"}, (double)(ns.bytes_in + ns.gone_in));
	qmetrics_write_sample(w, "quiver_netd_transport_bytes_total", dir,
			      (const char *const[]){"out"}, (double)(ns.bytes_out + ns.gone_out));
	qmetrics_write_family(w, "quiver_netd_transport_frames_sent_total",
			      "Frames queued on the node transport's connections.",
			      QMETRIC_COUNTER);
	qmetrics_write_sample(w, "quiver_netd_transport_frames_sent_total", NULL, NULL,
			      (double)ns.frames_out);
	qmetrics_write_family(w, "quiver_netd_transport_sends_total",
			      "Writes to the transport's sockets that took bytes: the frames of a "
			      "loop turn, of every channel, go out together.",
			      QMETRIC_COUNTER);
	qmetrics_write_sample(w, "quiver_netd_transport_sends_total", NULL, NULL, (double)ns.sends);
	qmetrics_write_family(w, "quiver_netd_transport_connections",
			      "Connections to peer nodes (one per peer when all is well).",
			      QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_netd_transport_connections", NULL, NULL, (double)ns.conns);
	qmetrics_write_family(w, "quiver_netd_transport_channels",
			      "Channels open on the node transport.", QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_netd_transport_channels", NULL, NULL, (double)ns.channels);
	qmetrics_write_family(w, "quiver_netd_pending_connections",
			      "Direct connections waiting for the listener's supervisor.",
			      QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_netd_pending_connections", NULL, NULL,
			      (double)broker_pending());
	metrics_gateway(w);
}

static int metrics_start(const char *addr, struct qerr *err)
{
	static const char *const path_lbl[] = {"path", NULL};
	char bound[128], url[160];
	struct qmetric *conns, *errs, *stalls;
	int r;

	netd.metrics = qmetrics_new(err);
	if (!netd.metrics)
		return -err->code;
	conns =
	    qmetrics_counter(netd.metrics, "quiver_netd_connections_total",
			     "Connects of quiver-mode sandboxes, by path: direct (a stream pair "
			     "to a sandbox of this node), kernel (handed back: not a sandbox "
			     "here), refused (the listener was gone).",
			     path_lbl, err);
	errs = qmetrics_counter(netd.metrics, "quiver_netd_errors_total",
				"Bad messages from supervisors and failed operations.", NULL, err);
	stalls = qmetrics_counter(netd.metrics, "quiver_netd_credit_stalls_total",
				  "Times a relay to another node had bytes to send and no credit "
				  "(the peer's reader is slower).",
				  NULL, err);
	if (!conns || !errs || !stalls)
		return -err->code;
	netd.m_direct = qmetric_series(conns, (const char *const[]){"direct"}, err);
	netd.m_kernel = qmetric_series(conns, (const char *const[]){"kernel"}, err);
	netd.m_refused = qmetric_series(conns, (const char *const[]){"refused"}, err);
	netd.m_transport = qmetric_series(conns, (const char *const[]){"transport"}, err);
	netd.m_transport_in = qmetric_series(conns, (const char *const[]){"transport-in"}, err);
	netd.m_errors = qmetric_series(errs, NULL, err);
	netd.m_stalls = qmetric_series(stalls, NULL, err);
	netd.m_denied = qmetric_series(conns, (const char *const[]){"denied"}, err);
	if (!netd.m_direct || !netd.m_kernel || !netd.m_refused || !netd.m_errors ||
	    !netd.m_transport || !netd.m_transport_in || !netd.m_stalls || !netd.m_denied)
		return -err->code;
	if ((r = qmetrics_add_collector(netd.metrics, metrics_collect, NULL, err)) < 0)
		return r;
	if (!addr)
		return 0;
	if ((r = qmetrics_http_start(netd.metrics, addr, &netd.metrics_http, err)) < 0 ||
	    (r = qmetrics_http_addr(netd.metrics_http, bound, sizeof(bound), err)) < 0)
		return r;
	snprintf(url, sizeof(url), "http://%s/metrics\n", bound);
	if ((r = statefile_write_mode(netd.rootfd, "netd.metrics", url, strlen(url), 0644, err)) <
	    0)
		return r;
	qlog_info("metrics on %s", bound);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"root", required_argument, NULL, 'r'},
	    {"subnet", required_argument, NULL, 's'},
	    {"bridge", required_argument, NULL, 'b'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"log", required_argument, NULL, 'l'},
	    {"debug", no_argument, NULL, 'd'},
	    {"metrics", required_argument, NULL, 'm'},
	    {"teardown", no_argument, NULL, 't'},
	    {"node-id", required_argument, NULL, 'n'},
	    {"node-listen", required_argument, NULL, 'L'},
	    {"peer", required_argument, NULL, 'p'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *root = DEFAULT_ROOT, *logpath = NULL, *metrics = NULL;
	struct bridge_config bcfg = {.name = BRIDGE_DEFAULT_NAME, .subnet = BRIDGE_DEFAULT_SUBNET};
	struct ipam_subnet sn;
	enum qlog_level level = QLOG_INFO;
	bool foreground = false, teardown = false;
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
		case 's':
			bcfg.subnet = optarg;
			break;
		case 'b':
			bcfg.name = optarg;
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
		case 't':
			teardown = true;
			break;
		case 'n':
		case 'L':
		case 'p':
			if ((c == 'n'	? nodes_set_id(optarg, &err)
			     : c == 'L' ? nodes_set_listen(optarg, &err)
					: nodes_add_peer(optarg, &err)) < 0) {
				fprintf(stderr, "quiver-netd: %s\n", err.msg);
				return 1;
			}
			break;
		case 'V':
			printf("quiver-netd %s\n", NETD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	/* checked before detaching: a bad value is said on the terminal */
	if (ipam_subnet_parse(bcfg.subnet, &sn, &err) < 0) {
		fprintf(stderr, "quiver-netd: --subnet: %s\n", err.msg);
		return 1;
	}
	if (!ifname_ok(bcfg.name)) {
		fprintf(stderr,
			"quiver-netd: --bridge: \"%s\" is not an interface name (1 to %d of "
			"[A-Za-z0-9_.-])\n",
			bcfg.name, IFNAMSIZ - 1);
		return 1;
	}
	if (daemon_mkdir_p(root, 0700) < 0 || !realpath(root, netd.root)) {
		fprintf(stderr, "quiver-netd: runtime directory %s: %s\n", root, strerror(errno));
		return 1;
	}
	ping_us = notify_init(foreground);
	if (!foreground && !teardown)
		readyfd = daemon_detach();
	lockfd = daemon_claim_root(netd.root, "netd", &netd.rootfd, &readyfd);
	if (lockfd < 0) {
		if (teardown)
			fprintf(stderr, "quiver-netd: --teardown: a netd serves %s\n", netd.root);
		return teardown ? 1 : 0;
	}
	daemon_log_init("quiver-netd", netd.root, "netd", logpath, QLOG_TEXT, level);
	if (!foreground && !teardown)
		daemon_stdio_to_null();
	if (mkdirat(netd.rootfd, "netd", 0700) < 0 && errno != EEXIST)
		fatal("mkdir %s/netd", netd.root);
	netd.statefd = openat(netd.rootfd, "netd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (netd.statefd < 0)
		fatal("open %s/netd", netd.root);
	bcfg.state_dirfd = netd.statefd;
	if (bridge_open(&bcfg, &netd.bridge, &err) < 0)
		fatalx("bridge %s: %s", bcfg.name, err.msg);
	netd.subnet = sn;
	if (teardown) {
		if (bridge_close(netd.bridge, true, &err) < 0)
			fatalx("--teardown: %s", err.msg);
		unlinkat(netd.rootfd, "netd.pid", 0);
		qlog_info("torn down: bridge %s, its nftables table and every lease", bcfg.name);
		return 0;
	}

	netd.loop = uv_default_loop();
	if (metrics_start(metrics, &err) < 0)
		fatalx("metrics: %s", err.msg);
	if (nodes_start(&err) < 0)
		fatalx("%s", err.msg);
	netd.lfd = unix_listen_seqpacket(netd.root, NETD_SOCK_NAME, &err);
	if (netd.lfd < 0)
		fatalx("%s", err.msg);
	uv_poll_init(netd.loop, &netd.lpoll, netd.lfd);
	uv_poll_start(&netd.lpoll, UV_READABLE, listen_readable);
	netd.monitor_fd = bridge_monitor_fd(netd.bridge);
	if (netd.monitor_fd >= 0) {
		uv_poll_init(netd.loop, &netd.monitor_poll, netd.monitor_fd);
		uv_poll_start(&netd.monitor_poll, UV_READABLE, monitor_readable);
	}
	snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int)getpid());
	if (statefile_write_mode(netd.rootfd, "netd.pid", pidbuf, strlen(pidbuf), 0644, &err) < 0)
		fatalx("%s", err.msg);
	uv_signal_init(netd.loop, &netd.sigterm);
	uv_signal_start(&netd.sigterm, on_signal, SIGTERM);
	uv_signal_init(netd.loop, &netd.sigint);
	uv_signal_start(&netd.sigint, on_signal, SIGINT);
	uv_timer_init(netd.loop, &netd.wake_timer);
	uv_timer_init(netd.loop, &netd.sweep_timer);
	uv_timer_start(&netd.sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
	if (ping_us) {
		uv_timer_init(netd.loop, &netd.watchdog_timer);
		uv_timer_start(&netd.watchdog_timer, on_watchdog, 0, ping_us / 1000 ?: 1);
	}
	qlog_info("serving %s (pid %d); bridge %s, subnet %s", netd.root, (int)getpid(), bcfg.name,
		  bcfg.subnet);
	daemon_ready(&readyfd, 'R');
	notify_ready("serving %s", netd.root);
	uv_run(netd.loop, UV_RUN_DEFAULT);
	notify_stopping();

	/* Sandboxes keep their network: only our side of the connections
	 * goes (a restarted netd is greeted again by quiver-mode sandboxes). */
	uv_poll_stop(&netd.lpoll);
	close(netd.lfd);
	unlinkat(netd.rootfd, NETD_SOCK_NAME, 0);
	while (netd.sandboxes)
		conn_close(netd.sandboxes);
	nodes_stop();
	uv_run(netd.loop, UV_RUN_NOWAIT);
	if (netd.monitor_fd >= 0)
		uv_poll_stop(&netd.monitor_poll);
	if (bridge_close(netd.bridge, false, &err) < 0)
		qlog_warn("bridge: %s", err.msg);
	qmetrics_http_stop(netd.metrics_http);
	if (netd.metrics)
		qmetrics_free(netd.metrics);
	unlinkat(netd.rootfd, "netd.pid", 0);
	unlinkat(netd.rootfd, "netd.metrics", 0);
	qlog_info("stopped");
	return 0;
}
