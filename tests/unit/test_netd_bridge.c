/* bridge.h with real links, real nftables and real traffic.  Needs root
 * (skipped otherwise).
 *
 * The program first moves into a network namespace of its own
 * (unshare(CLONE_NEWNET)): the bridge, the nft table and the "uplink" live
 * there and vanish with it, and the host's network is never touched.
 * Sandboxes are child processes that unshare a netns each and wait on a
 * pipe; sockets "inside" them are made by netns_socket() (a thread that
 * setns()es), so traffic is driven from this one process.  An "internet"
 * netns behind a veth (uplink0, 198.51.100.1/24 here, .2 there) stands for
 * the world outside.
 *
 * In order: open; attach two sandboxes and check traffic (sandbox to
 * gateway, sandbox to sandbox, published ports from the host over the
 * gateway address and over another local address, UDP, hairpin, egress
 * masquerade, ingress through a published port, no ingress otherwise);
 * refusals that leave nothing behind; detach; a host name taken by
 * someone else's link; the monitor releasing the
 * lease of a sandbox whose netns died, and not the lease of one attached
 * again under the same name; restart and kill -9 followed by reconcile;
 * teardown; and what attach, detach and a table rebuild cost. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nftables/libnftables.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/netd/bridge.h"
#include "services/netd/netns_socket.h"
#include "services/netd/rtnl.h"
#include "services/netd/ruleset.h"

#define SUBNET	   "10.77.0.0/24"
#define GATEWAY	   "10.77.0.1"
#define UPLINK	   "uplink0"
#define UPLINK_IP  "198.51.100.1"
#define INET_IP	   "198.51.100.2"
#define LOCAL_IP   "203.0.113.7" /* another local address, on lo */
#define PORTS_B	   "8080:80," LOCAL_IP ":8081:80,5353:53/udp"
#define TIMING_N   20
#define OK_MS	   3000
#define REFUSED_MS 1000

struct sandbox {
	pid_t pid;
	int pipe_w; /* closing it ends the sandbox */
	int nsfd;
};

static const char *skip_why;
static char tmp[64];
static int state_dfd = -1;
static struct bridge *b;
static struct rtnl nl;
static struct ruleset *rs;
static struct sandbox inet, sa, sb;

static void skip_unless_ready(void)
{
	if (skip_why) {
		print_message("skipped: %s\n", skip_why);
		skip();
	}
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b2)
{
	double x = *(const double *)a, y = *(const double *)b2;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static struct in_addr addr_of(const char *s)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a;
}

static const char *ip(struct in_addr a)
{
	static char buf[4][INET_ADDRSTRLEN];
	static int k;

	k = (k + 1) % 4;
	return inet_ntop(AF_INET, &a, buf[k], sizeof(buf[k]));
}

/* A child in a new netns, waiting until pipe_w is closed.  It keeps no
 * other fd of ours: an inherited netns fd would keep another sandbox's
 * netns alive. */
static struct sandbox make_sandbox(void)
{
	struct sandbox s = {-1, -1, -1};
	int p[2], ready[2];
	char c, path[64];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	s.pid = fork();
	assert_true(s.pid >= 0);
	if (s.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		close_range(3, (unsigned)p[0] - 1, 0);
		close_range((unsigned)p[0] + 1, ~0u, 0);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	assert_int_equal(c, 'y');
	s.pipe_w = p[1];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)s.pid);
	s.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(s.nsfd >= 0);
	return s;
}

/* End the sandbox: its process exits, and with our fd closed its netns
 * is destroyed (asynchronously, by the kernel's cleanup_net). */
static void end_sandbox(struct sandbox *s)
{
	if (s->pid <= 0)
		return;
	close(s->pipe_w);
	close(s->nsfd);
	waitpid(s->pid, NULL, 0);
	s->pid = -1;
}

/* A socket in s's netns (NULL: ours). */
static int sock_in(const struct sandbox *s, int type)
{
	struct qerr err;
	int fd = s ? netns_socket(s->nsfd, AF_INET, type, 0, &err)
		   : socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail_msg("socket: %s", s ? err.msg : strerror(errno));
	return fd;
}

static int listen_in(const struct sandbox *s, const char *addr, unsigned port, int type)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = sock_in(s, type), one = 1;

	sin.sin_addr = addr_of(addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		fail_msg("bind %s:%u: %s", addr, port, strerror(errno));
	if (type == SOCK_STREAM)
		assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static bool wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = {fd, ev, 0};

	return poll(&p, 1, ms) == 1;
}

/* TCP from s (NULL: this netns) to addr:port, accepted on lfd, a byte
 * each way.  Returns 0 and the peer address lfd saw, or -errno (-ETIMEDOUT
 * when nothing answered within ms). */
static int tcp_check(const struct sandbox *s, const char *addr, unsigned port, int lfd, int ms,
		     char peer[INET_ADDRSTRLEN])
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	int c = sock_in(s, SOCK_STREAM), a, e = 0;
	socklen_t elen = sizeof(e);
	char x = 'x';

	sin.sin_addr = addr_of(addr);
	fcntl(c, F_SETFL, O_NONBLOCK);
	if (connect(c, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
		e = errno;
		close(c);
		return -e;
	}
	if (!wait_fd(c, POLLOUT, ms)) {
		close(c);
		return -ETIMEDOUT;
	}
	getsockopt(c, SOL_SOCKET, SO_ERROR, &e, &elen);
	if (e) {
		close(c);
		return -e;
	}
	assert_true(wait_fd(lfd, POLLIN, ms));
	a = accept4(lfd, (struct sockaddr *)&from, &flen, SOCK_CLOEXEC);
	assert_true(a >= 0);
	inet_ntop(AF_INET, &from.sin_addr, peer, INET_ADDRSTRLEN);
	assert_int_equal(write(c, &x, 1), 1);
	assert_true(wait_fd(a, POLLIN, ms));
	assert_int_equal(read(a, &x, 1), 1);
	x = 'y';
	assert_int_equal(write(a, &x, 1), 1);
	assert_true(wait_fd(c, POLLIN, ms));
	assert_int_equal(read(c, &x, 1), 1);
	assert_int_equal(x, 'y');
	close(a);
	close(c);
	return 0;
}

static void expect_tcp(const struct sandbox *s, const char *addr, unsigned port, int lfd,
		       const char *want_peer)
{
	char peer[INET_ADDRSTRLEN];
	int r = tcp_check(s, addr, port, lfd, OK_MS, peer);

	if (r < 0)
		fail_msg("tcp to %s:%u: %s", addr, port, strerror(-r));
	if (strcmp(peer, want_peer) != 0)
		fail_msg("tcp to %s:%u: accepted from %s, not %s", addr, port, peer, want_peer);
}

static void expect_no_tcp(const struct sandbox *s, const char *addr, unsigned port, int lfd)
{
	char peer[INET_ADDRSTRLEN];
	int r = tcp_check(s, addr, port, lfd, REFUSED_MS, peer);

	if (r == 0)
		fail_msg("tcp to %s:%u went through (from %s)", addr, port, peer);
	/* Nothing may be left waiting on the listener either. */
	assert_false(wait_fd(lfd, POLLIN, 0));
}

/* Run an nft script of the test's own; 0 or -1. */
static int nft(const char *script)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	int r;

	if (!ctx)
		return -1;
	nft_ctx_buffer_output(ctx);
	r = nft_run_cmd_from_buffer(ctx, script);
	nft_ctx_free(ctx);
	return r;
}

/* A datagram from s (bound to src, or not bound) to addr:port, received
 * in the internet netns from want_peer; want_peer NULL: not received. */
static void expect_udp(const struct sandbox *s, const char *src, const char *addr, unsigned port,
		       const char *want_peer)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	int l = listen_in(&inet, addr, port, SOCK_DGRAM), c = sock_in(s, SOCK_DGRAM);
	char got[8], peer[INET_ADDRSTRLEN];

	if (src) {
		struct sockaddr_in me = {.sin_family = AF_INET};

		me.sin_addr = addr_of(src);
		if (bind(c, (struct sockaddr *)&me, sizeof(me)) < 0)
			fail_msg("bind %s: %s", src, strerror(errno));
	}
	to.sin_addr = addr_of(addr);
	assert_int_equal(sendto(c, "u", 1, 0, (struct sockaddr *)&to, sizeof(to)), 1);
	if (!want_peer) {
		if (wait_fd(l, POLLIN, REFUSED_MS))
			fail_msg("a datagram from %s reached %s:%u", src, addr, port);
	} else {
		assert_true(wait_fd(l, POLLIN, OK_MS));
		assert_int_equal(recvfrom(l, got, sizeof(got), 0, (struct sockaddr *)&from, &flen),
				 1);
		inet_ntop(AF_INET, &from.sin_addr, peer, sizeof(peer));
		assert_string_equal(peer, want_peer);
	}
	close(l);
	close(c);
}

/* Does link name exist in our netns (s NULL) or in s's? */
static bool link_exists(const struct sandbox *s, const char *name)
{
	struct rtnl in;
	struct rtnl_link l;
	struct qerr err;
	int r;

	if (!s)
		return rtnl_link_get(&nl, name, &l, &err) == 0;
	assert_int_equal(rtnl_open(&in, s->nsfd, &err), 0);
	r = rtnl_link_get(&in, name, &l, &err);
	rtnl_close(&in);
	return r == 0;
}

/* Links named like a sandbox's host veth, in our netns. */
static size_t count_qv_links(void)
{
	struct rtnl_link *v;
	struct qerr err;
	size_t n, cnt = 0;

	assert_int_equal(rtnl_link_list(&nl, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		cnt += ipam_ifname_ok(v[i].name);
	free(v);
	return cnt;
}

/* The nft table as nft lists it; NULL when there is none. */
static char *table_text(void)
{
	struct qerr err;
	char *text;
	int r = ruleset_list(rs, &text, &err);

	if (r == -ENOENT)
		return NULL;
	if (r < 0)
		fail_msg("%s", err.msg);
	return text;
}

static bool lease_file(const char *addr)
{
	char path[64];

	snprintf(path, sizeof(path), BRIDGE_LEASES_DIR "/%s", addr);
	return faccessat(state_dfd, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static int attach_peers(const char *id, const struct sandbox *s, const char *ports,
			const char *peers, struct bridge_lease *out, struct qerr *err)
{
	struct port_set ps;

	assert_int_equal(ports_parse(ports, &ps, err), 0);
	return bridge_attach(b, id, s->nsfd, &ps, peers, out, err);
}

/* The traffic tests' sandboxes may reach anything ("*"); test_policy's
 * are granted less. */
static int attach(const char *id, const struct sandbox *s, const char *ports,
		  struct bridge_lease *out, struct qerr *err)
{
	return attach_peers(id, s, ports, "*", out, err);
}

static void must_attach(const char *id, const struct sandbox *s, const char *ports,
			struct bridge_lease *out)
{
	struct qerr err;

	if (attach(id, s, ports, out, &err) < 0)
		fail_msg("%s", err.msg);
}

static void open_bridge(void)
{
	struct bridge_config cfg = {NULL, SUBNET, state_dfd};
	struct qerr err;

	if (bridge_open(&cfg, &b, &err) < 0)
		fail_msg("bridge_open: %s", err.msg);
}

/* A library call that must succeed, and what it said if not. */
#define OK(call)                                                                                   \
	do {                                                                                       \
		if ((call) < 0)                                                                    \
			fail_msg("%s: %s", #call, err.msg);                                        \
	} while (0)

static void set_up_inet(void)
{
	struct rtnl in;
	struct rtnl_link l, lo;
	struct qerr err;

	inet = make_sandbox();
	OK(rtnl_veth_add(&nl, UPLINK, 0, "wan0", inet.nsfd, &err));
	OK(rtnl_link_get(&nl, UPLINK, &l, &err));
	OK(rtnl_addr_add(&nl, l.index, addr_of(UPLINK_IP), 24, &err));
	OK(rtnl_open(&in, inet.nsfd, &err));
	OK(rtnl_link_get(&in, "wan0", &l, &err));
	OK(rtnl_addr_add(&in, l.index, addr_of(INET_IP), 24, &err));
	OK(rtnl_link_set(&in, l.index, true, -1, &err));
	OK(rtnl_link_get(&in, "lo", &lo, &err));
	OK(rtnl_link_set(&in, lo.index, true, -1, &err));
	/* The world routes to us only for what we publish (and, to check
	 * that is all it reaches, for the sandboxes' subnet too). */
	OK(rtnl_route_add_default(&in, addr_of(UPLINK_IP), l.index, &err));
	rtnl_close(&in);
}

static int group_setup(void **state)
{
	struct rtnl_link lo;
	struct qerr err;

	(void)state;
	if (geteuid() != 0) {
		skip_why = "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for network namespaces)";
		return 0;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		skip_why = "cannot create network namespaces here";
		return 0;
	}
	qlog_init("test_netd_bridge", NULL, QLOG_TEXT, QLOG_INFO, NULL);
	if (rtnl_open(&nl, -1, &err) < 0 || rtnl_link_get(&nl, "lo", &lo, &err) < 0 ||
	    rtnl_link_set(&nl, lo.index, true, -1, &err) < 0 ||
	    rtnl_addr_add(&nl, lo.index, addr_of(LOCAL_IP), 32, &err) < 0 ||
	    ruleset_open(&rs, &err) < 0) {
		print_error("%s\n", err.msg);
		return -1;
	}
	/* Someone else's table, which netd must leave alone. */
	if (nft("table ip other {\n chain c {\n type filter hook input priority 0; policy accept;\n"
		" counter\n }\n}\n") < 0)
		return -1;
	snprintf(tmp, sizeof(tmp), "/tmp/quiver-test-bridge-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	state_dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state_dfd < 0)
		return -1;
	set_up_inet();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[sizeof(tmp) + 16];
	struct qerr err;

	(void)state;
	if (skip_why)
		return 0;
	if (b && bridge_close(b, true, &err) < 0)
		print_error("teardown: %s\n", err.msg);
	end_sandbox(&sa);
	end_sandbox(&sb);
	end_sandbox(&inet);
	ruleset_close(rs);
	rtnl_close(&nl);
	close(state_dfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static struct sandbox sc, sd, se, sk;
static struct bridge_lease la, lb, lagain, lweb;
static int gw_l = -1, b_l = -1, web_l = -1;

static size_t count_lease_files(void)
{
	int fd = openat(state_dfd, BRIDGE_LEASES_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	size_t n = 0;

	if (fd < 0)
		return 0;
	cleanup_dir DIR *d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	return n;
}

static size_t lease_count(void)
{
	struct bridge_info info;

	bridge_get_info(b, &info);
	return info.leases;
}

static void put_lease_file(const char *name, const char *text)
{
	char path[64];

	snprintf(path, sizeof(path), BRIDGE_LEASES_DIR "/%s", name);
	cleanup_close int fd =
	    openat(state_dfd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void wait_link_gone(const char *name)
{
	for (int i = 0; i < 500 && link_exists(NULL, name); i++)
		usleep(10000);
	assert_false(link_exists(NULL, name));
}

static void test_open(void **state)
{
	struct bridge_config cfg;
	struct bridge_info info;
	struct rtnl_addr *addrs;
	struct rtnl_link l;
	struct qerr err;
	char fwd[4] = "";
	size_t n;
	int index;

	(void)state;
	skip_unless_ready();
	/* Refused before anything is made. */
	cfg = (struct bridge_config){"qtest1", "198.51.100.0/24", state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "overlaps the route to 198.51.100.0/24 on " UPLINK));
	assert_null(b);
	cfg = (struct bridge_config){"qtest1", "198.51.0.0/16", state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EADDRINUSE);
	cfg = (struct bridge_config){"qtest1", "10.77.0.1/24", state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "host bits are set"));
	cfg = (struct bridge_config){"br\"0", SUBNET, state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EINVAL);
	cfg = (struct bridge_config){"qv0123456789", SUBNET, state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EINVAL);
	cfg = (struct bridge_config){UPLINK, SUBNET, state_dfd};
	assert_int_equal(bridge_open(&cfg, &b, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "exists and is a veth"));
	assert_false(link_exists(NULL, "qtest1"));
	assert_null(table_text());

	open_bridge();
	assert_int_equal(rtnl_link_get(&nl, BRIDGE_DEFAULT_NAME, &l, &err), 0);
	assert_string_equal(l.kind, "bridge");
	assert_true(l.flags & IFF_UP);
	index = l.index;
	assert_int_equal(rtnl_addr_list(&nl, l.index, &addrs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ip(addrs[0].addr), GATEWAY);
	assert_int_equal(addrs[0].prefix, 24);
	free(addrs);
	cleanup_close int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
	assert_int_equal(read(fd, fwd, 1), 1);
	assert_string_equal(fwd, "1");
	cleanup_free char *text = table_text();
	assert_non_null(text);
	assert_non_null(strstr(text, "ip saddr 10.77.0.0/24 oifname != \"quiver0\" counter name "
				     "\"gateway_out\" masquerade"));
	assert_non_null(strstr(text, "chain published"));
	bridge_get_info(b, &info);
	assert_string_equal(info.name, BRIDGE_DEFAULT_NAME);
	assert_string_equal(info.subnet, SUBNET);
	assert_string_equal(ip(info.gateway), GATEWAY);
	assert_int_equal(info.leases, 0);
	assert_int_equal(info.capacity, 253);

	/* Opening again finds the bridge: the same link, one address. */
	assert_int_equal(bridge_close(b, false, &err), 0);
	b = NULL;
	open_bridge();
	assert_int_equal(rtnl_link_get(&nl, BRIDGE_DEFAULT_NAME, &l, &err), 0);
	assert_int_equal(l.index, index);
	assert_int_equal(rtnl_addr_list(&nl, l.index, &addrs, &n, &err), 0);
	assert_int_equal(n, 1);
	free(addrs);
}

static void test_attach_and_traffic(void **state)
{
	struct rtnl_link l, br, eth;
	struct rtnl_addr *addrs;
	struct rtnl_route *rt;
	struct rtnl in;
	struct qerr err;
	char ifname[IFNAMSIZ], got[8];
	double t0, ta, tb;
	size_t n;

	(void)state;
	skip_unless_ready();
	sa = make_sandbox();
	sb = make_sandbox();
	t0 = now_us();
	must_attach("sandbox-a", &sa, "", &la);
	ta = now_us() - t0;
	t0 = now_us();
	must_attach("sandbox-b", &sb, PORTS_B, &lb);
	tb = now_us() - t0;
	print_message("attach: %.0f us (first), %.0f us (second, 3 published ports)\n", ta, tb);

	assert_string_equal(la.id, "sandbox-a");
	assert_string_equal(ip(la.addr), "10.77.0.2");
	assert_string_equal(ip(lb.addr), "10.77.0.3");
	assert_int_equal(la.prefix, 24);
	assert_string_equal(ip(la.gateway), GATEWAY);
	ipam_ifname_for("sandbox-a", 0, ifname);
	assert_string_equal(la.host_ifname, ifname);
	assert_string_equal(la.sandbox_ifname, "eth0");
	assert_int_equal(lb.ports.n, 3);
	assert_true(lease_file("10.77.0.2"));
	assert_true(lease_file("10.77.0.3"));

	/* The host end: a port of the bridge, up. */
	assert_int_equal(rtnl_link_get(&nl, BRIDGE_DEFAULT_NAME, &br, &err), 0);
	assert_int_equal(rtnl_link_get(&nl, la.host_ifname, &l, &err), 0);
	assert_string_equal(l.kind, "veth");
	assert_int_equal(l.master, br.index);
	assert_true(l.flags & IFF_UP);
	/* The sandbox's end: eth0 with the address, up; lo up; the default
	 * route on eth0. */
	assert_int_equal(rtnl_open(&in, sa.nsfd, &err), 0);
	assert_int_equal(rtnl_link_get(&in, "eth0", &eth, &err), 0);
	assert_true(eth.flags & IFF_UP);
	assert_int_equal(rtnl_addr_list(&in, eth.index, &addrs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ip(addrs[0].addr), "10.77.0.2");
	assert_int_equal(addrs[0].prefix, 24);
	free(addrs);
	assert_int_equal(rtnl_link_get(&in, "lo", &l, &err), 0);
	assert_true(l.flags & IFF_UP);
	/* No IPv6 on eth0 (not even link-local): the policy is IPv4's. */
	char path[64], v6[4096] = "";
	snprintf(path, sizeof(path), "/proc/%d/net/if_inet6", (int)sa.pid);
	FILE *f = fopen(path, "re");
	if (f) {
		size_t got6 = fread(v6, 1, sizeof(v6) - 1, f);
		v6[got6] = '\0';
		fclose(f);
	}
	assert_null(strstr(v6, "eth0"));
	/* Nor on the host's end: the bridge speaks no IPv6. */
	f = fopen("/proc/sys/net/ipv6/conf/" BRIDGE_DEFAULT_NAME "/disable_ipv6", "re");
	assert_non_null(f);
	assert_int_equal(fgetc(f), '1');
	fclose(f);
	assert_int_equal(rtnl_route_list(&in, &rt, &n, &err), 0);
	bool dflt = false;
	for (size_t i = 0; i < n; i++)
		dflt |= rt[i].dst_len == 0 && rt[i].oif == eth.index;
	assert_true(dflt);
	free(rt);
	rtnl_close(&in);

	cleanup_free char *text = table_text();
	assert_non_null(strstr(text, "tcp dport 8080 counter name \"gateway_in\" dnat to "
				     "10.77.0.3:80 comment \"sandbox-b\""));
	assert_non_null(strstr(
	    text, "ip daddr " LOCAL_IP
		  " tcp dport 8081 counter name \"gateway_in\" dnat to 10.77.0.3:80 comment"));
	assert_non_null(
	    strstr(text, "udp dport 5353 counter name \"gateway_in\" dnat to 10.77.0.3:53"));

	/* Sandbox to the gateway, and to the other sandbox over the bridge. */
	gw_l = listen_in(NULL, GATEWAY, 9000, SOCK_STREAM);
	expect_tcp(&sa, GATEWAY, 9000, gw_l, "10.77.0.2");
	b_l = listen_in(&sb, "0.0.0.0", 80, SOCK_STREAM);
	expect_tcp(&sa, "10.77.0.3", 80, b_l, "10.77.0.2");
	/* Published ports from the host itself (DNAT in output): over the
	 * gateway's address and another local one; 8081 only on that one. */
	expect_tcp(NULL, GATEWAY, 8080, b_l, GATEWAY);
	expect_tcp(NULL, LOCAL_IP, 8080, b_l, LOCAL_IP);
	expect_tcp(NULL, LOCAL_IP, 8081, b_l, LOCAL_IP);
	expect_no_tcp(NULL, GATEWAY, 8081, b_l);
	/* Hairpin: a sandbox to a published port comes in masqueraded. */
	expect_tcp(&sa, GATEWAY, 8080, b_l, GATEWAY);
	/* Egress is masqueraded behind the uplink's address. */
	int inet_l = listen_in(&inet, INET_IP, 7000, SOCK_STREAM);
	expect_tcp(&sa, INET_IP, 7000, inet_l, UPLINK_IP);
	close(inet_l);
	/* A sandbox forging a source outside the subnet does not get out. */
	expect_udp(&sa, NULL, INET_IP, 7001, UPLINK_IP);
	OK(rtnl_open(&in, sa.nsfd, &err));
	OK(rtnl_addr_add(&in, eth.index, addr_of("10.99.0.5"), 32, &err));
	rtnl_close(&in);
	expect_udp(&sa, "10.99.0.5", INET_IP, 7001, NULL);

	/* From outside: a published port (DNAT in prerouting) shows the real
	 * client; a port not published is dropped even though the outside
	 * routes the subnet to us. */
	expect_tcp(&inet, UPLINK_IP, 8080, b_l, INET_IP);
	int a_l = listen_in(&sa, "0.0.0.0", 9001, SOCK_STREAM);
	expect_no_tcp(&inet, "10.77.0.2", 9001, a_l);
	close(a_l);

	/* UDP, published. */
	int u = listen_in(&sb, "0.0.0.0", 53, SOCK_DGRAM), c = sock_in(NULL, SOCK_DGRAM);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(5353)};
	to.sin_addr = addr_of(GATEWAY);
	assert_int_equal(sendto(c, "q", 1, 0, (struct sockaddr *)&to, sizeof(to)), 1);
	assert_true(wait_fd(u, POLLIN, OK_MS));
	assert_int_equal(recv(u, got, sizeof(got), 0), 1);
	assert_int_equal(got[0], 'q');
	close(u);
	close(c);

	/* The gateway counters (netd's metrics): six connections in through
	 * published ports above (three from the host, the hairpin, the
	 * outside, the datagram), and at least the two flows out to the
	 * uplink. */
	struct ruleset *counters;
	uint64_t gin, gout;
	OK(ruleset_open(&counters, &err));
	OK(ruleset_gateway(counters, &gin, &gout, &err));
	ruleset_close(counters);
	print_message("gateway counters: in %llu, out %llu\n", (unsigned long long)gin,
		      (unsigned long long)gout);
	assert_true(gin >= 6);
	assert_true(gout >= 2);
}

/* Refusals: nothing of them is left (links, leases, lease files, rules). */
static void test_attach_refusals(void **state)
{
	size_t links = count_qv_links(), leases = lease_count(), files = count_lease_files();
	struct sandbox self = {.nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)};
	struct sandbox notns = {.nsfd = state_dfd};
	struct qerr err;

	(void)state;
	skip_unless_ready();
	cleanup_free char *before = table_text();
	sc = make_sandbox();

	assert_int_equal(attach("sandbox-a", &sc, "", NULL, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "attached already (10.77.0.2 on qv"));
	assert_int_equal(attach("sandbox-c", &sc, "9090:90,8080:80", NULL, &err), -EADDRINUSE);
	assert_string_equal(err.msg, "attach sandbox-c: host port 8080/tcp: already published by "
				     "sandbox sandbox-b (as 8080:80/tcp)");
	assert_int_equal(attach("sandbox-c", &sc, LOCAL_IP ":8081:1", NULL, &err), -EADDRINUSE);
	assert_int_equal(attach("sandbox-c", &self, "", NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "netd's own"));
	close(self.nsfd);
	assert_int_equal(attach("sandbox-c", &notns, "", NULL, &err), -EINVAL);
	assert_int_equal(attach("../c", &sc, "", NULL, &err), -EINVAL);
	/* Fails late, at the veth (sandbox-a's netns has an eth0): undone. */
	assert_int_equal(attach("sandbox-c", &sa, "9090:90", NULL, &err), -EEXIST);
	print_message("refused: %s\n", err.msg);

	assert_int_equal(count_qv_links(), links);
	assert_int_equal(lease_count(), leases);
	assert_int_equal(count_lease_files(), files);
	cleanup_free char *after = table_text();
	assert_string_equal(before, after);
	assert_false(link_exists(&sc, "eth0"));
	end_sandbox(&sc);
}

static void test_detach(void **state)
{
	struct bridge_lease l;
	struct qerr err;
	double t0, t;

	(void)state;
	skip_unless_ready();
	t0 = now_us();
	assert_int_equal(bridge_detach(b, "sandbox-b", &err), 1);
	t = now_us() - t0;
	print_message("detach: %.0f us\n", t);
	assert_false(link_exists(NULL, lb.host_ifname));
	assert_false(link_exists(&sb, "eth0"));
	assert_int_equal(bridge_lookup(b, "sandbox-b", &l), -ENOENT);
	assert_false(lease_file("10.77.0.3"));
	cleanup_free char *text = table_text();
	assert_null(strstr(text, "10.77.0.3"));
	assert_null(strstr(text, "sandbox-b"));
	assert_null(strstr(text, "dport"));
	assert_non_null(strstr(text, "masquerade"));
	expect_no_tcp(NULL, GATEWAY, 8080, b_l);
	/* Idempotent. */
	assert_int_equal(bridge_detach(b, "sandbox-b", &err), 0);
	assert_int_equal(bridge_detach(b, "never-attached", &err), 0);
	assert_int_equal(bridge_lookup(b, "sandbox-a", &l), 0);
	close(b_l);
	b_l = -1;
	end_sandbox(&sb);
}

/* io.quiver.net.peers in bridge mode: whatever a sandbox starts towards
 * another, the host or the outside goes through the forward or input
 * chain and its grants.  Refused in the subnet: ECONNREFUSED (a reset);
 * beyond it: ENETUNREACH.  A published port stays open to every sandbox
 * (a hairpin through the host). */
static void policy_checks(void)
{
	struct sandbox pc, pd;
	struct bridge_lease lc, ld;
	struct qerr err;
	char peer[INET_ADDRSTRLEN];

	pc = make_sandbox();
	pd = make_sandbox();
	if (attach_peers("pol-c", &pc, "", "", &lc, &err) < 0 ||
	    attach_peers("pol-d", &pd, "8090:80", "pol-c:80," INET_IP ":7002", &ld, &err) < 0)
		fail_msg("%s", err.msg);
	int c80 = listen_in(&pc, "0.0.0.0", 80, SOCK_STREAM);
	int c81 = listen_in(&pc, "0.0.0.0", 81, SOCK_STREAM);
	int d80 = listen_in(&pd, "0.0.0.0", 80, SOCK_STREAM);
	int gw = listen_in(NULL, GATEWAY, 9001, SOCK_STREAM);
	int in2 = listen_in(&inet, INET_IP, 7002, SOCK_STREAM);
	int in3 = listen_in(&inet, INET_IP, 7003, SOCK_STREAM);
	char cip[INET_ADDRSTRLEN], dip[INET_ADDRSTRLEN];
	snprintf(cip, sizeof(cip), "%s", ip(lc.addr));
	snprintf(dip, sizeof(dip), "%s", ip(ld.addr));

	/* Granted: d to c's port 80, to one outside address and port; the
	 * replies come back. */
	expect_tcp(&pd, cip, 80, c80, dip);
	expect_tcp(&pd, INET_IP, 7002, in2, UPLINK_IP);
	/* Not granted. */
	assert_int_equal(tcp_check(&pd, cip, 81, c81, OK_MS, peer), -ECONNREFUSED);
	assert_int_equal(tcp_check(&pc, dip, 80, d80, OK_MS, peer), -ECONNREFUSED);
	assert_int_equal(tcp_check(&pc, GATEWAY, 9001, gw, OK_MS, peer), -ECONNREFUSED);
	assert_int_equal(tcp_check(&pd, GATEWAY, 9001, gw, OK_MS, peer), -ECONNREFUSED);
	assert_int_equal(tcp_check(&pc, INET_IP, 7002, in2, OK_MS, peer), -ENETUNREACH);
	assert_int_equal(tcp_check(&pd, INET_IP, 7003, in3, OK_MS, peer), -ENETUNREACH);
	/* UDP too: nothing reaches the outside. */
	expect_udp(&pc, NULL, INET_IP, 7004, NULL);
	/* d's published port, from c, which was granted nothing. */
	expect_tcp(&pc, GATEWAY, 8090, d80, GATEWAY);
	/* The host still reaches a sandbox directly. */
	expect_tcp(NULL, cip, 81, c81, GATEWAY);

	close(c80);
	close(c81);
	close(d80);
	close(gw);
	close(in2);
	close(in3);
	assert_int_equal(bridge_detach(b, "pol-c", &err), 1);
	assert_int_equal(bridge_detach(b, "pol-d", &err), 1);
	end_sandbox(&pc);
	end_sandbox(&pd);
}

static void reopen_bridge(enum bridge_path path)
{
	struct bridge_config cfg = {NULL, SUBNET, state_dfd, path};
	struct qerr err;

	assert_int_equal(bridge_close(b, false, &err), 0);
	b = NULL;
	if (bridge_open(&cfg, &b, &err) < 0)
		fail_msg("bridge_open: %s", err.msg);
}

static void set_bridge_nf(const char *v)
{
	int fd = open("/proc/sys/net/bridge/bridge-nf-call-iptables", O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, v, 1), 1);
	close(fd);
}

/* Through br_netfilter (this kernel has it): the frames between two
 * sandboxes are bridged, and the ip hooks see them. */
static void test_policy(void **state)
{
	(void)state;
	skip_unless_ready();
	policy_checks();
}

/* The path for a kernel without br_netfilter: the sandboxes' ports are
 * isolated and the host routes between them.  Here br_netfilter is off
 * for this test's netns (its sysctl) and the bridge's own setting. */
static void test_policy_isolated(void **state)
{
	struct rtnl_link l;
	struct qerr err;

	(void)state;
	skip_unless_ready();
	set_bridge_nf("0");
	reopen_bridge(BRIDGE_PATH_ISOLATE);
	/* The ports attached before were isolated by the reconcile. */
	assert_int_equal(rtnl_link_get(&nl, la.host_ifname, &l, &err), 0);
	policy_checks();
	set_bridge_nf("1");
	reopen_bridge(BRIDGE_PATH_AUTO);
}

/* A link (not ours) already has a sandbox's first host name: the next
 * candidate is taken, and the link is left alone. */
static void test_name_collision(void **state)
{
	static const unsigned char mac[6] = {0x02, 0, 0, 0, 0, 0x42};
	struct bridge_lease l;
	struct rtnl_link other;
	char first[IFNAMSIZ], second[IFNAMSIZ];
	struct qerr err;

	(void)state;
	skip_unless_ready();
	ipam_ifname_for("collide", 0, first);
	ipam_ifname_for("collide", 1, second);
	OK(rtnl_bridge_add(&nl, first, mac, &err));
	sc = make_sandbox();
	must_attach("collide", &sc, "", &l);
	assert_string_equal(l.host_ifname, second);
	assert_true(link_exists(NULL, first));
	assert_int_equal(bridge_detach(b, "collide", &err), 1);
	assert_false(link_exists(NULL, second));
	OK(rtnl_link_get(&nl, first, &other, &err));
	assert_string_equal(other.kind, "bridge");
	OK(rtnl_link_del(&nl, other.index, &err));
	end_sandbox(&sc);
}

struct released {
	char ids[8][SANDBOX_ID_MAX + 1];
	int n;
};

static void on_released(const char *id, void *arg)
{
	struct released *r = arg;

	assert_true(r->n < 8);
	snprintf(r->ids[r->n++], sizeof(r->ids[0]), "%s", id);
}

/* Handle link events until want is released or none came for ms. */
static void pump_monitor(struct released *rel, const char *want, int ms)
{
	struct qerr err;

	for (;;) {
		bool found = false;

		for (int i = 0; i < rel->n; i++)
			found |= want && strcmp(rel->ids[i], want) == 0;
		if (found || !wait_fd(bridge_monitor_fd(b), POLLIN, ms))
			return;
		if (bridge_monitor_handle(b, on_released, rel, &err) < 0)
			fail_msg("monitor: %s", err.msg);
	}
}

static void test_monitor(void **state)
{
	struct released rel = {0};
	struct bridge_lease l;
	struct qerr err;

	(void)state;
	skip_unless_ready();
	/* The same id detached and attached again gets the same host name;
	 * the old veth's event must not release the new lease. */
	sc = make_sandbox();
	sd = make_sandbox();
	must_attach("again", &sc, "", &l);
	assert_int_equal(bridge_detach(b, "again", &err), 1);
	must_attach("again", &sd, "", &lagain);
	assert_string_equal(l.host_ifname, lagain.host_ifname);
	end_sandbox(&sc);
	pump_monitor(&rel, NULL, 300);
	assert_int_equal(rel.n, 0);
	assert_int_equal(bridge_lookup(b, "again", &l), 0);

	/* sandbox-a's netns dies without a detach. */
	end_sandbox(&sa);
	pump_monitor(&rel, "sandbox-a", 5000);
	assert_int_equal(rel.n, 1);
	assert_string_equal(rel.ids[0], "sandbox-a");
	assert_int_equal(bridge_lookup(b, "sandbox-a", &l), -ENOENT);
	assert_false(lease_file("10.77.0.2"));
	assert_false(link_exists(NULL, la.host_ifname));
	assert_int_equal(lease_count(), 1);
}

static void test_restart_reconcile(void **state)
{
	struct bridge_lease l;
	struct rtnl_link br;
	struct qerr err;

	(void)state;
	skip_unless_ready();
	se = make_sandbox();
	must_attach("web", &se, "8080:80", &lweb);
	web_l = listen_in(&se, "0.0.0.0", 80, SOCK_STREAM);

	/* netd stops without teardown: the sandboxes keep their network. */
	assert_int_equal(bridge_close(b, false, &err), 0);
	b = NULL;
	assert_true(link_exists(NULL, BRIDGE_DEFAULT_NAME));
	assert_true(link_exists(NULL, lweb.host_ifname));
	assert_true(lease_file(ip(lweb.addr)));
	expect_tcp(NULL, GATEWAY, 8080, web_l, GATEWAY);
	expect_tcp(&se, GATEWAY, 9000, gw_l, ip(lweb.addr));

	/* While it is down: a sandbox's netns dies; a veth of ours appears
	 * that no lease holds (a crash after a detach deleted the lease...);
	 * a lease without a veth (a crash between the lease and the veth);
	 * half a lease; and someone deletes the table. */
	end_sandbox(&sd);
	wait_link_gone(lagain.host_ifname);
	assert_int_equal(rtnl_link_get(&nl, BRIDGE_DEFAULT_NAME, &br, &err), 0);
	assert_int_equal(rtnl_veth_add(&nl, "qv0123456789", br.index, "strayp", -1, &err), 0);
	put_lease_file("10.77.0.200", "quiver-netd-lease 1\nid ghost\naddr 10.77.0.200\n"
				      "ifname qvffffffffff\nports 7070:70/tcp\nend\n");
	put_lease_file("10.77.0.201", "quiver-netd-lease 1\nid torn\naddr 10.7");
	assert_int_equal(nft("delete table ip quiver"), 0);
	assert_null(table_text());

	open_bridge();
	assert_int_equal(bridge_lookup(b, "again", &l), -ENOENT);
	assert_false(lease_file(ip(lagain.addr)));
	assert_int_equal(bridge_lookup(b, "ghost", &l), -ENOENT);
	assert_false(lease_file("10.77.0.200"));
	assert_false(lease_file("10.77.0.201"));
	assert_false(link_exists(NULL, "qv0123456789"));
	assert_false(link_exists(NULL, "strayp"));
	assert_int_equal(bridge_lookup(b, "web", &l), 0);
	assert_memory_equal(&l, &lweb, sizeof(l));
	assert_int_equal(lease_count(), 1);
	cleanup_free char *text = table_text();
	assert_non_null(text);
	char want[64];
	snprintf(want, sizeof(want), "tcp dport 8080 counter name \"gateway_in\" dnat to %s:80",
		 ip(lweb.addr));
	assert_non_null(strstr(text, want));
	assert_null(strstr(text, "7070"));
	expect_tcp(NULL, GATEWAY, 8080, web_l, GATEWAY);
	expect_tcp(&se, GATEWAY, 9000, gw_l, ip(lweb.addr));
}

/* netd killed with SIGKILL right after an attach; the next netd
 * reconciles and monitors what the dead one made. */
static void test_kill9(void **state)
{
	struct released rel = {0};
	struct bridge_lease l;
	struct qerr err;
	int p[2], st;
	char c;

	(void)state;
	skip_unless_ready();
	assert_int_equal(bridge_close(b, false, &err), 0);
	b = NULL;
	sk = make_sandbox();
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bridge_config cfg = {NULL, SUBNET, state_dfd};
		struct port_set ps;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (bridge_open(&cfg, &b, &err) < 0 || ports_parse("9999:99", &ps, &err) < 0 ||
		    bridge_attach(b, "k9", sk.nsfd, &ps, "*", NULL, &err) < 0) {
			fprintf(stderr, "child: %s\n", err.msg);
			_exit(1);
		}
		c = 'y';
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));

	open_bridge();
	assert_int_equal(bridge_lookup(b, "k9", &l), 0);
	assert_true(link_exists(&sk, "eth0"));
	cleanup_free char *text = table_text();
	assert_non_null(strstr(text, "tcp dport 9999"));
	expect_tcp(&sk, GATEWAY, 9000, gw_l, ip(l.addr));

	end_sandbox(&sk);
	pump_monitor(&rel, "k9", 5000);
	assert_int_equal(rel.n, 1);
	assert_int_equal(bridge_lookup(b, "k9", &l), -ENOENT);
	cleanup_free char *after = table_text();
	assert_null(strstr(after, "9999"));
}

static void test_teardown(void **state)
{
	struct qerr err;

	(void)state;
	skip_unless_ready();
	assert_int_equal(bridge_close(b, true, &err), 0);
	b = NULL;
	assert_false(link_exists(NULL, BRIDGE_DEFAULT_NAME));
	assert_int_equal(count_qv_links(), 0);
	assert_false(link_exists(&se, "eth0"));
	assert_null(table_text());
	assert_int_equal(faccessat(state_dfd, BRIDGE_LEASES_DIR, F_OK, 0), -1);
	/* Not ours: left as they were. */
	assert_int_equal(nft("list table ip other"), 0);
	assert_true(link_exists(NULL, UPLINK));
	close(web_l);
	end_sandbox(&se);
}

static void test_timing(void **state)
{
	double t_att[TIMING_N], t_det[TIMING_N], t_rs[4];
	static const size_t sizes[] = {1, 10, 100, 1000};
	struct sandbox s[TIMING_N];
	struct ipam_subnet sn;
	struct qerr err;

	(void)state;
	skip_unless_ready();
	open_bridge();
	for (int i = 0; i < TIMING_N; i++)
		s[i] = make_sandbox();
	for (int i = 0; i < TIMING_N; i++) {
		char id[16], ports[16];
		double t0 = now_us();

		snprintf(id, sizeof(id), "t%d", i);
		snprintf(ports, sizeof(ports), "%d:80", 20000 + i);
		must_attach(id, &s[i], ports, NULL);
		t_att[i] = now_us() - t0;
	}
	for (int i = 0; i < TIMING_N; i++) {
		char id[16];
		double t0 = now_us();

		snprintf(id, sizeof(id), "t%d", i);
		assert_int_equal(bridge_detach(b, id, &err), 1);
		t_det[i] = now_us() - t0;
		end_sandbox(&s[i]);
	}
	assert_int_equal(bridge_close(b, true, &err), 0);
	b = NULL;

	/* The table alone, for many sandboxes with a published port each. */
	assert_int_equal(ipam_subnet_parse("10.76.0.0/16", &sn, &err), 0);
	struct ipam_lease *v = calloc(1000, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < 1000; i++) {
		snprintf(v[i].id, sizeof(v[i].id), "s%zu", i);
		v[i].addr.s_addr = htonl(sn.net + 2 + (uint32_t)i);
		v[i].ports.n = 1;
		v[i].ports.map[0] = (struct port_map){{0}, (uint16_t)(10000 + i), 80, PORT_TCP};
	}
	for (size_t k = 0; k < 4; k++) {
		double t[5];

		for (int rep = 0; rep < 5; rep++) {
			double t0 = now_us();

			if (ruleset_apply(rs, BRIDGE_DEFAULT_NAME, &sn, v, sizes[k], &err) < 0)
				fail_msg("%s", err.msg);
			t[rep] = now_us() - t0;
		}
		t_rs[k] = median(t, 5);
	}
	free(v);
	assert_int_equal(ruleset_delete(rs, &err), 0);
	assert_null(table_text());

	print_message("bridge mode, %d sandboxes in turn, median (us):\n", TIMING_N);
	print_message("  %8.0f  attach (lease, veth, netns side, table)\n",
		      median(t_att, TIMING_N));
	print_message("  %8.0f  detach (veth, lease, table)\n", median(t_det, TIMING_N));
	print_message(
	    "table rebuild (ruleset_apply), one published port per sandbox, median of 5 (us):\n");
	for (size_t k = 0; k < 4; k++)
		print_message("  %8.0f  %zu sandboxes\n", t_rs[k], sizes[k]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open),
	    cmocka_unit_test(test_attach_and_traffic),
	    cmocka_unit_test(test_attach_refusals),
	    cmocka_unit_test(test_detach),
	    cmocka_unit_test(test_name_collision),
	    cmocka_unit_test(test_policy),
	    cmocka_unit_test(test_policy_isolated),
	    cmocka_unit_test(test_monitor),
	    cmocka_unit_test(test_restart_reconcile),
	    cmocka_unit_test(test_kill9),
	    cmocka_unit_test(test_teardown),
	    cmocka_unit_test(test_timing),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
