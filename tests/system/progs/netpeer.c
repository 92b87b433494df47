/* TCP peers for tests/system/test_netd.py, run inside sandboxes (static).
 *
 *   netpeer serve PORT block|epoll|poll N [v6|v6only]
 *	listen on 0.0.0.0:PORT (v6: an AF_INET6 socket on [::]:PORT, dual
 *	stack; v6only: the same with IPV6_V6ONLY), print eth0's address
 *	("addr IP:0") and
 *	"listening", then serve N connections
 *	one after the other: print what accept and the socket calls say, echo
 *	every byte back until EOF.  block: a blocking accept; epoll/poll: a
 *	non-blocking listener (accept4 SOCK_NONBLOCK) behind epoll or poll.
 *   netpeer serve PORT fork N
 *	the same, but each of the N connections is echoed by a child of its
 *	own, all at once; prints "served N" when every child is done.
 *   netpeer connect IP PORT [nb] WORD...
 *	connect (an AF_INET6 socket if IP has a ':'; nb: non-blocking, then
 *	poll and SO_ERROR), print the
 *	addresses, then for each WORD send it and read it back ("echo WORD");
 *	a WORD "sleep:S" sleeps S seconds, "wait:FILE" waits for FILE to exist,
 *	"bulk:N" sends N bytes of a pattern while reading them back and checks
 *	them ("bulk N ok").
 *   netpeer many IP PORT K ROUNDS SIZE   (IP as for connect)
 *	K connections at once; in each of ROUNDS rounds, SIZE bytes of a
 *	pattern (its own per connection and round) on every connection,
 *	then every echo read back and checked: "many K x ROUNDS x SIZE ok".
 *   netpeer errors
 *	socket calls with bad arguments; one "case errno" line each, to be
 *	compared with the host kernel's answers.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* a.b.c.d:port, or [v6]:port */
static const char *fmt(const void *sa, char *buf, size_t len)
{
	const struct sockaddr_in *a = sa;
	const struct sockaddr_in6 *a6 = sa;
	char ip[INET6_ADDRSTRLEN];

	if (a->sin_family == AF_INET6) {
		inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a6->sin6_port));
	} else {
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
	}
	return buf;
}

/* An address and port for connect: sockaddr_in, or sockaddr_in6 if ip has
 * a ':'.  Its length. */
static socklen_t parse_addr(const char *ip, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, ip, &a6->sin6_addr);
		return sizeof(*a6);
	}
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &a->sin_addr);
	return sizeof(*a);
}

static void names(int fd, const char *what)
{
	struct sockaddr_storage l = {0}, p = {0};
	socklen_t ll = sizeof(l), pl = sizeof(p);
	char a[64], b[64];
	int one = 1, nodelay = -1, dom = -1;
	socklen_t il = sizeof(int);

	if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 ||
	    getpeername(fd, (struct sockaddr *)&p, &pl) < 0) {
		printf("%s names: %s\n", what, strerror(errno));
		return;
	}
	int so = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &il);
	il = sizeof(int);
	getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &il);
	/* domain: 1 if SO_DOMAIN is the family of the address */
	printf("%s local %s peer %s family %d len %u nodelay-set %d domain %d\n", what,
	       fmt(&l, a, sizeof(a)), fmt(&p, b, sizeof(b)), l.ss_family, (unsigned)pl, so,
	       dom == l.ss_family);
	fflush(stdout);
}

static void echo(int c)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = c, .events = POLLIN};
			poll(&p, 1, -1);
			continue;
		}
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(c, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EAGAIN) {
				struct pollfd p = {.fd = c, .events = POLLOUT};
				poll(&p, 1, -1);
				continue;
			}
			if (w <= 0)
				return;
			off += w;
		}
	}
}

static int serve(int port, const char *mode, int n, const char *family)
{
	bool v6 = strncmp(family, "v6", 2) == 0;
	int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	int v6only = strcmp(family, "v6only") == 0;
	struct sockaddr_storage a;
	socklen_t alen = parse_addr(v6 ? "::" : "0.0.0.0", port, &a);
	bool forking = strcmp(mode, "fork") == 0;
	bool nb = strcmp(mode, "block") != 0 && !forking;

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (v6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	if (bind(s, (struct sockaddr *)&a, alen) < 0 || listen(s, 16) < 0) {
		printf("listen: %s\n", strerror(errno));
		return 1;
	}
	if (nb)
		fcntl(s, F_SETFL, O_NONBLOCK);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN};
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	struct ifreq ifr = {0};
	int s4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	if (ioctl(s4, SIOCGIFADDR, &ifr) == 0) {
		char buf[64];
		printf("addr %s\n", fmt((struct sockaddr_in *)&ifr.ifr_addr, buf, sizeof(buf)));
	}
	close(s4);
	printf("listening\n");
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		char buf[64];
		int c;
		for (;;) {
			if (strcmp(mode, "epoll") == 0)
				epoll_wait(ep, &ev, 1, -1);
			else if (strcmp(mode, "poll") == 0) {
				struct pollfd p = {.fd = s, .events = POLLIN};
				poll(&p, 1, -1);
			}
			c = nb ? accept4(s, (struct sockaddr *)&peer, &pl,
					 SOCK_NONBLOCK | SOCK_CLOEXEC)
			       : accept(s, (struct sockaddr *)&peer, &pl);
			if (c >= 0 || errno != EAGAIN)
				break;
		}
		if (c < 0) {
			printf("accept: %s\n", strerror(errno));
			return 1;
		}
		if (forking) {
			pid_t pid = fork();
			if (pid == 0) {
				close(s);
				echo(c);
				_exit(0);
			}
			close(c);
			if (pid < 0) {
				printf("fork: %s\n", strerror(errno));
				return 1;
			}
			continue;
		}
		int fl = fcntl(c, F_GETFL), fd = fcntl(c, F_GETFD);
		printf("accepted %s len %u nonblock %d cloexec %d\n", fmt(&peer, buf, sizeof(buf)),
		       (unsigned)pl, !!(fl & O_NONBLOCK), !!(fd & FD_CLOEXEC));
		names(c, "server");
		echo(c);
		close(c);
		printf("closed\n");
		fflush(stdout);
	}
	if (forking) {
		while (wait(NULL) > 0)
			;
		printf("served %d\n", n);
	}
	return 0;
}

static unsigned char many_byte(int conn, int round, size_t j)
{
	return (unsigned char)(conn * 131 + round * 17 + (int)j * 7 + 1);
}

/* k connections at once, rounds of size bytes on each, echoed and checked. */
static int many(const char *ip, int port, int k, int rounds, size_t size)
{
	struct sockaddr_storage a;
	socklen_t alen = parse_addr(ip, port, &a);
	unsigned char buf[4096];
	int *s = calloc((size_t)k, sizeof(int));

	if (!s || size > sizeof(buf)) {
		printf("many: bad arguments\n");
		return 1;
	}
	for (int i = 0; i < k; i++) {
		s[i] = socket(a.ss_family, SOCK_STREAM, 0);
		if (connect(s[i], (struct sockaddr *)&a, alen) < 0) {
			printf("many: connect %d: %s\n", i, strerror(errno));
			return 1;
		}
	}
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < k; i++) {
			for (size_t j = 0; j < size; j++)
				buf[j] = many_byte(i, r, j);
			if (write(s[i], buf, size) != (ssize_t)size) {
				printf("many: write %d round %d: %s\n", i, r, strerror(errno));
				return 1;
			}
		}
		for (int i = 0; i < k; i++) {
			for (size_t got = 0; got < size;) {
				ssize_t n = read(s[i], buf + got, size - got);
				if (n <= 0) {
					printf("many: read %d round %d: %s\n", i, r,
					       n < 0 ? strerror(errno) : "EOF");
					return 1;
				}
				got += (size_t)n;
			}
			for (size_t j = 0; j < size; j++)
				if (buf[j] != many_byte(i, r, j)) {
					printf("many: connection %d round %d byte %zu differs\n", i,
					       r, j);
					return 1;
				}
		}
	}
	for (int i = 0; i < k; i++)
		close(s[i]);
	free(s);
	printf("many %d x %d x %zu ok\n", k, rounds, size);
	return 0;
}

/* Send n bytes of a pattern while reading the echo back, and check it. */
static int bulk(int s, size_t n)
{
	size_t sent = 0, got = 0;
	unsigned char buf[65536];

	fcntl(s, F_SETFL, O_NONBLOCK);
	while (got < n) {
		struct pollfd p = {.fd = s, .events = POLLIN | (sent < n ? POLLOUT : 0)};
		poll(&p, 1, 10000);
		if ((p.revents & POLLOUT) && sent < n) {
			size_t len = n - sent < sizeof(buf) ? n - sent : sizeof(buf);
			for (size_t j = 0; j < len; j++)
				buf[j] = (unsigned char)((sent + j) * 7 + 3);
			ssize_t w = write(s, buf, len);
			if (w > 0)
				sent += (size_t)w;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(s, buf, sizeof(buf));
			if (r <= 0 && !(r < 0 && errno == EAGAIN)) {
				printf("bulk: %s after %zu of %zu\n",
				       r < 0 ? strerror(errno) : "EOF", got, n);
				return -1;
			}
			for (ssize_t j = 0; j < r; j++)
				if (buf[j] != (unsigned char)((got + (size_t)j) * 7 + 3)) {
					printf("bulk: byte %zu differs\n", got + (size_t)j);
					return -1;
				}
			if (r > 0)
				got += (size_t)r;
		}
	}
	fcntl(s, F_SETFL, 0);
	printf("bulk %zu ok\n", n);
	return 0;
}

static int client(const char *ip, int port, int argc, char **argv)
{
	struct sockaddr_storage a;
	socklen_t alen = parse_addr(ip, port, &a);
	int s = socket(a.ss_family, SOCK_STREAM, 0);
	bool nb = argc > 0 && strcmp(argv[0], "nb") == 0;

	if (nb) {
		fcntl(s, F_SETFL, O_NONBLOCK);
		argc--;
		argv++;
	}
	int r = connect(s, (struct sockaddr *)&a, alen);
	if (r < 0 && !(nb && errno == EINPROGRESS)) {
		printf("connect: %s\n", strerror(errno));
		return 1;
	}
	if (r < 0) {
		struct pollfd p = {.fd = s, .events = POLLOUT};
		int e = 0;
		socklen_t el = sizeof(e);
		poll(&p, 1, 10000);
		getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
		if (e) {
			printf("connect: %s\n", strerror(e));
			return 1;
		}
	}
	if (nb)
		fcntl(s, F_SETFL, 0);
	names(s, "client");
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "sleep:", 6) == 0) {
			sleep((unsigned)atoi(argv[i] + 6));
			continue;
		}
		if (strncmp(argv[i], "bulk:", 5) == 0) {
			if (bulk(s, strtoul(argv[i] + 5, NULL, 10)) < 0)
				return 1;
			continue;
		}
		if (strncmp(argv[i], "wait:", 5) == 0) {
			struct stat st;
			while (stat(argv[i] + 5, &st) < 0)
				usleep(20000);
			continue;
		}
		size_t len = strlen(argv[i]), got = 0;
		char buf[4096];
		if (write(s, argv[i], len) != (ssize_t)len) {
			printf("write: %s\n", strerror(errno));
			return 1;
		}
		while (got < len) {
			ssize_t n = read(s, buf + got, len - got);
			if (n <= 0) {
				printf("read: %s\n", n < 0 ? strerror(errno) : "EOF");
				return 1;
			}
			got += (size_t)n;
		}
		buf[got] = '\0';
		printf("echo %s\n", buf);
		fflush(stdout);
	}
	shutdown(s, SHUT_WR);
	close(s);
	return 0;
}

static void report(const char *what, int r)
{
	printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

static int errors(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
	struct sockaddr_storage big;
	void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	socklen_t neg = (socklen_t)-1, sl = sizeof(a);
	int p[2];

	inet_pton(AF_INET, "10.255.255.1", &a.sin_addr);
	memset(&big, 0, sizeof(big));
	report("connect-len0", connect(s, (struct sockaddr *)&a, 0));
	report("connect-len1", connect(s, (struct sockaddr *)&a, 1));
	report("connect-len15", connect(s, (struct sockaddr *)&a, 15));
	report("connect-len200", connect(s, (struct sockaddr *)&big, 200));
	big.ss_family = 12345;
	report("connect-family", connect(s, (struct sockaddr *)&big, sizeof(big)));
	report("connect-null", connect(s, NULL, sizeof(a)));
	report("connect-unmapped", connect(s, unmapped, sizeof(a)));
	report("connect-badfd", connect(999, (struct sockaddr *)&a, sizeof(a)));
	pipe(p);
	report("connect-notsock", connect(p[0], (struct sockaddr *)&a, sizeof(a)));
	report("listen-notsock", listen(p[0], 1));
	report("listen-badfd", listen(999, 1));
	report("accept-notlistening", accept(s, NULL, NULL));
	report("accept4-badflags", accept4(s, NULL, NULL, 0x7));
	report("accept-notsock", accept(p[0], NULL, NULL));
	report("getsockname-neglen", getsockname(s, (struct sockaddr *)&a, &neg));
	report("getsockname-nulllen", getsockname(s, (struct sockaddr *)&a, NULL));
	report("getpeername-notconn", getpeername(s, (struct sockaddr *)&a, &sl));
	report("getsockname-unmapped", getsockname(s, unmapped, &sl));
	int v = 1;
	report("setsockopt-tcp-badlen", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, 1));
	report("setsockopt-unmapped", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, unmapped, 4));
	socklen_t il = sizeof(v);
	report("getsockopt-badlevel", getsockopt(s, 9999, 1, &v, &il));
	report("getsockopt-nulllen", getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, NULL));
	/* a real connect to a closed port of the sandbox's own loopback */
	struct sockaddr_storage lo;
	socklen_t lolen = parse_addr("127.0.0.1", 1, &lo);
	int s2 = socket(AF_INET, SOCK_STREAM, 0);
	report("connect-refused", connect(s2, (struct sockaddr *)&lo, lolen));
	/* IPv6 sockets, and IPv6 addresses on IPv4 ones */
	struct sockaddr_storage m6, native6, lo6, lo6m;
	parse_addr("::ffff:10.255.255.1", 9, &m6);
	parse_addr("2001:db8::1", 9, &native6);
	parse_addr("::1", 1, &lo6);
	parse_addr("::ffff:127.0.0.1", 1, &lo6m);
	int s6 = socket(AF_INET6, SOCK_STREAM, 0), only = 1;
	report("connect6-len23", connect(s6, (struct sockaddr *)&m6, 23));
	report("connect6-inet-addr", connect(s6, (struct sockaddr *)&a, sizeof(a)));
	memcpy(&big, &a, sizeof(a));
	report("connect6-inet-len28",
	       connect(s6, (struct sockaddr *)&big, sizeof(struct sockaddr_in6)));
	report("connect4-inet6-addr",
	       connect(s, (struct sockaddr *)&m6, sizeof(struct sockaddr_in6)));
	report("connect6-native",
	       connect(s6, (struct sockaddr *)&native6, sizeof(struct sockaddr_in6)));
	report("connect6-loopback",
	       connect(s6, (struct sockaddr *)&lo6, sizeof(struct sockaddr_in6)));
	int s7 = socket(AF_INET6, SOCK_STREAM, 0);
	report("connect6-mapped-loopback",
	       connect(s7, (struct sockaddr *)&lo6m, sizeof(struct sockaddr_in6)));
	int s8 = socket(AF_INET6, SOCK_STREAM, 0);
	setsockopt(s8, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof(only));
	report("connect6-v6only-mapped",
	       connect(s8, (struct sockaddr *)&m6, sizeof(struct sockaddr_in6)));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]), argv[3], atoi(argv[4]), argc == 6 ? argv[5] : "v4");
	if (argc >= 4 && strcmp(argv[1], "connect") == 0)
		return client(argv[2], atoi(argv[3]), argc - 4, argv + 4);
	if (argc == 7 && strcmp(argv[1], "many") == 0)
		return many(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
			    strtoul(argv[6], NULL, 10));
	if (argc == 2 && strcmp(argv[1], "errors") == 0)
		return errors();
	fprintf(
	    stderr,
	    "usage: netpeer serve PORT block|epoll|poll|fork N [v6|v6only] | connect IP PORT [nb] "
	    "WORD... | many IP PORT K ROUNDS SIZE | errors\n");
	return 2;
}
