/* netd_transport: throughput and round-trip latency of one channel of
 * netd's node-to-node transport over its TCP backend on 127.0.0.1, against
 * a plain TCP socket doing the same, in the same run.
 *
 *   netd_transport [--rounds 15] [--mib 256] [--pings 2000] [--size 64]
 *
 * Two processes for each side of the comparison, as two nodes would be: a
 * server (a transport node that accepts channels, or a plain TCP server)
 * forked once, and this process as the client.  Rounds interleave
 * transport and plain TCP (BENCHMARKING.md), each round:
 *   throughput: send --mib MiB on a fresh channel (a fresh TCP connection
 *     for plain TCP) in 64 KiB writes, half-close, and wait for the
 *     server's end of stream, which it sends after reading everything;
 *     MB/s = bytes / that time;
 *   latency: --pings ping-pongs of --size bytes on one channel (one
 *     connection), the server echoing; the median round trip of the round.
 * Prints min/median/max of each and the median of the per-round ratios.
 * Numbers only: nothing is asserted. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "services/netd/transport.h"

#define CHUNK	  (64 * 1024)
#define PORT_SINK 1
#define PORT_ECHO 2

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "netd_transport: %s\n", what);
	exit(1);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

/* ---- a node and its one connection, driven by poll ---------------------- */

struct loop {
	struct qt_node *n;
	struct qt_listener *l;
	struct qt_conn *conns[8];
	unsigned ev[8];
	int nconns;
	/* client side */
	struct qt_channel *ch;
	bool opened, eof, fin_seen;
	int open_err;
	uint64_t rx;
};

static void cb_poll_update(struct qt_conn *c, unsigned events, void *ctx)
{
	struct loop *lp = ctx;
	for (int i = 0; i < lp->nconns; i++)
		if (lp->conns[i] == c) {
			lp->ev[i] = events;
			return;
		}
	if (lp->nconns < 8) {
		lp->conns[lp->nconns] = c;
		lp->ev[lp->nconns++] = events;
	}
}

static void cb_conn_down(struct qt_conn *c, uint64_t peer, int err, const char *why, void *ctx)
{
	struct loop *lp = ctx;
	(void)peer;
	(void)err;
	for (int i = 0; i < lp->nconns; i++)
		if (lp->conns[i] == c) {
			lp->conns[i] = lp->conns[--lp->nconns];
			lp->ev[i] = lp->ev[lp->nconns];
		}
	if (!lp->l) {
		fprintf(stderr, "netd_transport: connection down: %s\n", why);
		exit(1);
	}
}

/* Server: sink (discard, FIN back at FIN) or echo, by destination port. */
static void server_io(struct qt_channel *ch)
{
	static uint8_t buf[CHUNK];
	intptr_t port = (intptr_t)qt_channel_user(ch);
	for (;;) {
		ssize_t n = qt_channel_recv(ch, buf, sizeof(buf));
		if (n == 0) {
			qt_channel_shutdown(ch);
			qt_channel_close(ch);
			return;
		}
		if (n < 0)
			return;
		if (port == PORT_ECHO && qt_channel_send(ch, buf, (size_t)n) != n)
			die("echo: the channel did not take a small reply");
	}
}

static void s_open_request(struct qt_channel *ch, const struct qt_open_req *req, void *ctx)
{
	(void)ctx;
	intptr_t port = ntohs(((const struct sockaddr_in *)&req->dst)->sin_port);
	qt_channel_set_user(ch, (void *)port);
	qt_channel_accept(ch);
}

static void s_readable(struct qt_channel *ch, void *ctx)
{
	(void)ctx;
	server_io(ch);
}

static void s_rst(struct qt_channel *ch, int err, void *ctx)
{
	(void)err;
	(void)ctx;
	qt_channel_close(ch);
}

static void c_open_result(struct qt_channel *ch, int err, void *ctx)
{
	struct loop *lp = ctx;
	(void)ch;
	lp->opened = true;
	lp->open_err = err;
}

static void c_fin(struct qt_channel *ch, void *ctx)
{
	(void)ch;
	((struct loop *)ctx)->fin_seen = true;
}

static const struct qt_callbacks server_cb = {
    .poll_update = cb_poll_update,
    .conn_down = cb_conn_down,
    .open_request = s_open_request,
    .readable = s_readable,
    .fin = s_readable,
    .rst = s_rst,
};

static const struct qt_callbacks client_cb = {
    .poll_update = cb_poll_update,
    .conn_down = cb_conn_down,
    .open_result = c_open_result,
    .fin = c_fin,
};

static void loop_once(struct loop *lp, int timeout_ms)
{
	struct pollfd pfd[9];
	struct qt_conn *who[9];
	int np = 0;
	if (lp->l) {
		pfd[np] = (struct pollfd){.fd = qt_listener_fd(lp->l), .events = POLLIN};
		who[np++] = NULL;
	}
	for (int i = 0; i < lp->nconns; i++) {
		pfd[np] =
		    (struct pollfd){.fd = qt_conn_fd(lp->conns[i]), .events = (short)lp->ev[i]};
		who[np++] = lp->conns[i];
	}
	if (poll(pfd, (nfds_t)np, timeout_ms) <= 0)
		return;
	for (int i = 0; i < np; i++) {
		if (!pfd[i].revents)
			continue;
		if (!who[i]) {
			qt_node_accept(lp->n, lp->l, NULL);
			continue;
		}
		bool alive = false;
		for (int j = 0; j < lp->nconns; j++)
			alive |= lp->conns[j] == who[i];
		if (!alive)
			continue;
		if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
			qt_conn_on_readable(who[i]);
		if (pfd[i].revents & POLLOUT)
			qt_conn_on_writable(who[i]);
	}
}

static pid_t transport_server(int *port)
{
	int p[2];
	if (pipe(p))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct loop lp = {0};
		struct qt_config cfg = {.node_id = 2};
		struct qerr err = {0};
		lp.n = qt_node_new(&cfg, &server_cb, &lp, &err);
		struct sockaddr_in sin = loopback(0);
		lp.l = qt_tcp_listen((struct sockaddr *)&sin, sizeof(sin), &err);
		if (!lp.n || !lp.l)
			die(err.msg);
		int port_l = qt_tcp_listener_port(lp.l);
		if (write(p[1], &port_l, sizeof(port_l)) != sizeof(port_l))
			_exit(1);
		for (;;)
			loop_once(&lp, 1000);
	}
	close(p[1]);
	if (read(p[0], port, sizeof(*port)) != sizeof(*port))
		die("transport server did not start");
	close(p[0]);
	return pid;
}

static void client_connect(struct loop *lp, int port)
{
	struct qt_config cfg = {.node_id = 1};
	struct qerr err = {0};
	lp->n = qt_node_new(&cfg, &client_cb, lp, &err);
	if (!lp->n)
		die(err.msg);
	struct sockaddr_in sin = loopback(port);
	struct qt_backend *be = qt_tcp_dial((struct sockaddr *)&sin, sizeof(sin), &err);
	if (!be || !qt_node_attach(lp->n, be, 2, &err))
		die(err.msg);
	while (!qt_node_connected(lp->n, 2))
		loop_once(lp, 100);
}

static struct qt_channel *client_open(struct loop *lp, int port)
{
	struct qerr err = {0};
	struct sockaddr_in dst = loopback(port), src = loopback(40000);
	lp->opened = lp->eof = lp->fin_seen = false;
	lp->ch = qt_channel_open(lp->n, 2, (struct sockaddr *)&dst, sizeof(dst),
				 (struct sockaddr *)&src, sizeof(src), NULL, &err);
	if (!lp->ch)
		die(err.msg);
	while (!lp->opened)
		loop_once(lp, 100);
	if (lp->open_err)
		die("open refused");
	return lp->ch;
}

static double transport_throughput(struct loop *lp, uint64_t bytes)
{
	static uint8_t buf[CHUNK];
	memset(buf, 0xa5, sizeof(buf));
	struct qt_channel *ch = client_open(lp, PORT_SINK);
	double t0 = now_s();
	uint64_t sent = 0;
	bool fin = false;
	for (;;) {
		while (sent < bytes) {
			size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
			ssize_t r = qt_channel_send(ch, buf, n);
			if (r <= 0)
				break;
			sent += (uint64_t)r;
		}
		if (sent == bytes && !fin) {
			qt_channel_shutdown(ch);
			fin = true;
		}
		if (lp->fin_seen)
			break;
		loop_once(lp, 100);
	}
	double dt = now_s() - t0;
	qt_channel_close(ch);
	return (double)bytes / dt / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double transport_rtt(struct loop *lp, int pings, size_t size)
{
	uint8_t buf[4096];
	double *rtt = malloc((size_t)pings * sizeof(double));
	if (!rtt)
		die("out of memory");
	memset(buf, 0x3c, sizeof(buf));
	struct qt_channel *ch = client_open(lp, PORT_ECHO);
	for (int i = 0; i < pings; i++) {
		double t0 = now_s();
		if (qt_channel_send(ch, buf, size) != (ssize_t)size)
			die("ping did not fit");
		size_t got = 0;
		while (got < size) {
			ssize_t r = qt_channel_recv(ch, buf, sizeof(buf));
			if (r > 0) {
				got += (size_t)r;
				continue;
			}
			loop_once(lp, 100);
		}
		rtt[i] = (now_s() - t0) * 1e6;
	}
	qt_channel_shutdown(ch);
	qt_channel_close(ch);
	double m = median(rtt, pings);
	free(rtt);
	return m;
}

/* ---- plain TCP ---------------------------------------------------------- */

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static pid_t plain_server(int *port)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = loopback(0);
	socklen_t len = sizeof(sin);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len))
		die("plain server: listen");
	*port = ntohs(sin.sin_port);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid) {
		close(lfd);
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	static uint8_t buf[CHUNK];
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		nodelay(fd);
		char mode;
		if (read(fd, &mode, 1) != 1) {
			close(fd);
			continue;
		}
		for (;;) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (mode == 'E' && write(fd, buf, (size_t)n) != n)
				break;
		}
		close(fd);
	}
}

static int plain_connect(int port, char mode)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = loopback(port);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
		die("plain connect");
	nodelay(fd);
	if (write(fd, &mode, 1) != 1)
		die("plain write");
	return fd;
}

static double plain_throughput(int port, uint64_t bytes)
{
	static uint8_t buf[CHUNK];
	memset(buf, 0xa5, sizeof(buf));
	int fd = plain_connect(port, 'S');
	double t0 = now_s();
	uint64_t sent = 0;
	while (sent < bytes) {
		size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
		ssize_t r = write(fd, buf, n);
		if (r <= 0)
			die("plain send");
		sent += (uint64_t)r;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
	double dt = now_s() - t0;
	close(fd);
	return (double)bytes / dt / 1e6;
}

static double plain_rtt(int port, int pings, size_t size)
{
	uint8_t buf[4096];
	double *rtt = malloc((size_t)pings * sizeof(double));
	if (!rtt)
		die("out of memory");
	memset(buf, 0x3c, sizeof(buf));
	int fd = plain_connect(port, 'E');
	for (int i = 0; i < pings; i++) {
		double t0 = now_s();
		if (write(fd, buf, size) != (ssize_t)size)
			die("plain ping");
		size_t got = 0;
		while (got < size) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0)
				die("plain pong");
			got += (size_t)r;
		}
		rtt[i] = (now_s() - t0) * 1e6;
	}
	close(fd);
	double m = median(rtt, pings);
	free(rtt);
	return m;
}

/* ---- main ---------------------------------------------------------------- */

static void row(const char *name, double *v, int n, const char *unit)
{
	double s[256];
	memcpy(s, v, (size_t)n * sizeof(double));
	double med = median(s, n);
	printf("%-26s %10.1f %10.1f %10.1f  %s\n", name, s[0], med, s[n - 1], unit);
}

int main(int argc, char **argv)
{
	int rounds = 15, mib = 256, pings = 2000;
	size_t size = 64;
	static const struct option opts[] = {
	    {"rounds", required_argument, NULL, 'r'},
	    {"mib", required_argument, NULL, 'm'},
	    {"pings", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 's'},
	    {0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'm':
			mib = atoi(optarg);
			break;
		case 'p':
			pings = atoi(optarg);
			break;
		case 's':
			size = (size_t)atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: netd_transport [--rounds N] [--mib M] [--pings P] "
					"[--size B]\n");
			return 2;
		}
	}
	if (rounds < 1 || rounds > 256 || mib < 1 || pings < 1 || size < 1 || size > 4096)
		die("bad arguments");
	signal(SIGPIPE, SIG_IGN);

	int tport, pport;
	pid_t ts = transport_server(&tport), ps = plain_server(&pport);
	struct loop lp = {0};
	client_connect(&lp, tport);
	uint64_t bytes = (uint64_t)mib << 20;

	/* Warm-up, unrecorded. */
	transport_throughput(&lp, bytes / 8);
	plain_throughput(pport, bytes / 8);
	transport_rtt(&lp, pings / 10 + 1, size);
	plain_rtt(pport, pings / 10 + 1, size);

	double tt[256], pt[256], tr[256], pr[256], rt[256], rr[256];
	for (int i = 0; i < rounds; i++) {
		tt[i] = transport_throughput(&lp, bytes);
		pt[i] = plain_throughput(pport, bytes);
		tr[i] = transport_rtt(&lp, pings, size);
		pr[i] = plain_rtt(pport, pings, size);
		rt[i] = tt[i] / pt[i];
		rr[i] = tr[i] / pr[i];
	}
	printf("netd transport (TCP backend) vs plain TCP, 127.0.0.1, %d interleaved rounds\n",
	       rounds);
	printf("throughput: %d MiB per run in 64 KiB sends; latency: median of %d ping-pongs "
	       "of %zu B\n\n",
	       mib, pings, size);
	printf("%-26s %10s %10s %10s\n", "", "min", "median", "max");
	row("throughput transport", tt, rounds, "MB/s");
	row("throughput plain TCP", pt, rounds, "MB/s");
	row("round trip transport", tr, rounds, "us");
	row("round trip plain TCP", pr, rounds, "us");
	printf("\nper-round ratio transport/plain, median: throughput %.2f, round trip %.2f\n",
	       median(rt, rounds), median(rr, rounds));

	qt_node_free(lp.n);
	kill(ts, SIGKILL);
	kill(ps, SIGKILL);
	waitpid(ts, NULL, 0);
	waitpid(ps, NULL, 0);
	return 0;
}
