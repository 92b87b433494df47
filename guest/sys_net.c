/* netd's client in the supervisor, and the socket service of quiver mode
 * (net_client.h; docs/netd.md).
 *
 * Quiver mode traps connect, listen, accept/accept4, getsockname,
 * getpeername, setsockopt and getsockopt.  What is not a TCP socket
 * (AF_INET or AF_INET6) of the workload's, or not a case the service
 * handles, is given back to the kernel (CONTINUE): none of these calls
 * takes a path the supervisor would have to resolve, and the network
 * namespace confines them as it did before.
 *
 * Sandbox networks are IPv4.  An AF_INET6 socket is served for the IPv4
 * addresses it can reach, as the kernel maps them (::ffff:a.b.c.d): a
 * connect to a mapped address, and a listener on "::" (dual-stack) or on a
 * mapped address; its channels show mapped sockaddr_in6 addresses.
 *
 * connect   to ip:port (IPv4 or v4-mapped, not loopback): netd decides,
 *           with the sandbox's io.quiver.net.peers.  Not granted: refused (the
 *           errno netd says).  A sandbox of this node listens there: netd
 *           makes an AF_UNIX stream pair and gives one end to each
 *           supervisor; ours replaces the workload's socket at the same fd
 *           number (ADDFD with SETFD) and the connect returns 0.  Reads and
 *           writes then go straight through the kernel, on a unix socket:
 *           no TCP/IP stack.  A sandbox of a peer node: the same, netd
 *           relaying the pair to the node transport.  Anything else
 *           granted: the supervisor connects the workload's socket itself,
 *           to the address it copied (never CONTINUE: the workload's memory
 *           could have changed since netd checked it).
 * listen    is made here on the workload's socket (pidfd_getfd), and the
 *           address reported to netd.
 * incoming  (from netd) a channel for one of our listeners: it is queued,
 *           and a "doorbell" TCP connection from the supervisor (which
 *           lives in the sandbox's network namespace) to the listener makes
 *           the listening socket readable, so that the workload's poll,
 *           epoll or blocking accept wakes as for any client.
 * accept    is made here on the workload's listener: a doorbell's
 *           connection is swapped for its channel (the workload gets the
 *           unix end, its sockaddr the connecting sandbox's address); any
 *           other connection (an ordinary TCP client) is handed over as
 *           it is.  A blocking accept with nothing queued waits in the
 *           supervisor's loop.
 * getsockname, getpeername on a channel answer with the TCP addresses
 *           both sides believe in; TCP-level socket options on a channel
 *           are accepted and read back as 0.  Channels are known by their
 *           socket cookie (SO_COOKIE, never reused).
 *
 * Not handled (the kernel's answer stands): addresses of IPv6 itself (and
 * IPV6_V6ONLY sockets), connects to the sandbox's own loopback, sockets
 * connected or bound in unusual ways. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "guest/guest.h"
#include "guest/net_client.h"
#include "guest/oci_config.h"
#include "guest/policy.h"
#include "guest/trap.h"
#include "libcommon/cleanup.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"
#include "libcommon/net_proto.h"
#include "libcommon/unix_connect.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define MAX_WAITS    64	 /* parked connects and accepts, each */
#define MAX_CHANNELS 256 /* channels queued on our listeners, not yet accepted */
#define MAX_LISTENS  64
#define COOKIE_SLOTS 4096 /* channels whose addresses we answer for */
#define RETRY_MS     500  /* reconnects to a netd that went away */

/* A TCP address as a socket of the workload's family shows it.  Sandbox
 * networks are IPv4; an AF_INET6 socket reaches them through v4-mapped
 * addresses (::ffff:a.b.c.d), as it reaches IPv4 peers in the kernel. */
union tcp_addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

struct conn_wait {
	uint32_t seq; /* 0: free */
	int listener;
	uint64_t id;
	pid_t tid;
	int fd;
	bool cloexec, nonblock;
	union tcp_addr dst; /* as the workload gave it */
};

/* A connect netd allowed to an address that is no sandbox's: made here,
 * waiting to complete (the workload's socket blocks). */
struct kconn_wait {
	int sock; /* our dup of the workload's socket; -1: free */
	int listener;
	uint64_t id;
};

struct accept_wait {
	int sock; /* our dup of the listener; -1: free */
	int listener;
	uint64_t id;
	pid_t tid;
	uint64_t uaddr, ulen;
	int flags;
	int family; /* the listener's */
};

struct queued_channel {
	int bell; /* our doorbell connection; -1: free */
	uint16_t bell_port;
	int chan;
	struct sockaddr_in local, peer; /* shown in the family of the accepting socket */
};

struct listen_reg {
	pid_t tgid; /* 0: free */
	int fd;
	uint64_t cookie;
	struct sockaddr_in addr; /* the IPv4 address it takes connections on */
};

struct chan_addrs {
	uint64_t cookie;	    /* 0: free */
	union tcp_addr local, peer; /* in the family of the workload's socket */
};

struct net_client {
	int rundir; /* O_PATH: the runtime root, where netd.sock is */
	int conn;   /* -1: detached (netd went away) */
	int retry;  /* timerfd: while detached, try to reconnect */
	char id[128];
	enum net_mode mode;
	char ports[1024];
	char peers[2048];
	struct in_addr addr, gateway;
	int prefix;
	uint32_t seq;
	net_watch_fn watch;
	void *watch_arg;
	struct conn_wait conns[MAX_WAITS];
	struct accept_wait accepts[MAX_WAITS];
	struct kconn_wait kconns[MAX_WAITS];
	struct queued_channel chans[MAX_CHANNELS];
	struct listen_reg listens[MAX_LISTENS];
	struct chan_addrs addrs[COOKIE_SLOTS];
	unsigned addr_next;
};

/* sys_net is called from trap_serve through the context's pointer. */

static void watch(struct net_client *c, int fd, uint32_t events, bool add)
{
	if (c->watch && fd >= 0)
		c->watch(c->watch_arg, fd, events, add);
}

/* ---- the connection to netd ---- */

static int send_msg(struct net_client *c, struct qmsg_out *m, int fd)
{
	if (c->conn < 0)
		return -ENOTCONN;
	if (send_with_fds(c->conn, qmsg_data(m), qmsg_size(m), &fd, fd >= 0 ? 1 : 0) < 0)
		return -errno;
	return 0;
}

/* hello, and wait for its answer.  The namespace is the one our sockets
 * are made in (SIOCGSKNS: no /proc needed). */
static int hello(struct net_client *c, bool resume, struct qerr *err)
{
	cleanup_close int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cleanup_close int ns = probe >= 0 ? ioctl(probe, SIOCGSKNS) : -1;
	struct qmsg_out m;
	char buf[NETP_MAX_MSG];
	struct qmsg_in in;
	int r;

	if (ns < 0)
		return qerr_sys(err, errno, "netd: our network namespace (SIOCGSKNS)");
	/* non-blocking: the loop reads what is there and goes back to epoll */
	c->conn = unix_connect_at(c->rundir, NETD_SOCK_NAME, SOCK_NONBLOCK);
	if (c->conn < 0) {
		r = c->conn;
		c->conn = -1;
		return qerr_sys(err, -r, "netd: not running (connect to %s): start quiver-netd",
				NETD_SOCK_NAME);
	}
	qmsg_out_init(&m);
	qmsg_begin(&m, "hello", 5);
	qmsg_put_str(&m, "id", c->id);
	qmsg_put_str(&m, "peers", c->peers[0] ? c->peers : NULL);
	qmsg_put_str(&m, "mode", c->mode == NET_MODE_QUIVER ? "quiver" : "bridge");
	qmsg_put_str(&m, "ports", c->ports[0] ? c->ports : NULL);
	qmsg_put_bool(&m, "resume", resume);
	r = send_msg(c, &m, ns);
	qmsg_out_free(&m);
	if (r < 0)
		goto fail_sys;
	struct pollfd p = {.fd = c->conn, .events = POLLIN};
	do
		r = poll(&p, 1, NETP_HELLO_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		r = -ETIMEDOUT;
		goto fail_sys;
	}
	ssize_t n = recv(c->conn, buf, sizeof(buf), 0);
	if (n <= 0) {
		r = n < 0 ? -errno : -ECONNRESET;
		goto fail_sys;
	}
	if ((r = qmsg_parse(&in, buf, (size_t)n, err)) < 0)
		goto fail;
	if ((r = qmsg_reply_error(&in, err)) < 0 || strcmp(in.op, "ok") != 0 ||
	    netp_get_addr(in.root, "ip", &c->addr, err) < 0 ||
	    netp_get_addr(in.root, "gateway", &c->gateway, err) < 0) {
		qmsg_in_free(&in);
		if (r == 0)
			r = err->code ? -err->code : -EPROTO;
		goto fail;
	}
	int64_t prefix = 0;
	qmsg_get_int(in.root, "prefix", 0, 32, &prefix, NULL);
	c->prefix = (int)prefix;
	qmsg_in_free(&in);
	return 0;
fail_sys:
	qerr_sys(err, -r, "netd: hello");
fail:
	qerr_prefix(err, "netd");
	close(c->conn);
	c->conn = -1;
	return r;
}

static void fail_connects(struct net_client *c);

/* netd went away: what waits on it goes to the kernel; listeners are
 * registered again with the next hello. */
static void detach(struct net_client *c)
{
	if (c->conn < 0)
		return;
	watch(c, c->conn, 0, false);
	close(c->conn);
	c->conn = -1;
	fail_connects(c);
	qlog_warn("netd: connection lost; TCP connects fail (ENETUNREACH) until it is back");
	struct itimerspec t = {.it_interval = {0, RETRY_MS * 1000000L},
			       .it_value = {0, RETRY_MS * 1000000L}};
	timerfd_settime(c->retry, 0, &t, NULL);
}

static void send_listen(struct net_client *c, const struct listen_reg *l, bool on)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, on ? "listen" : "unlisten", 2);
	netp_put_addr(&m, "ip", l->addr.sin_addr);
	qmsg_put_int(&m, "port", ntohs(l->addr.sin_port));
	if (send_msg(c, &m, -1) < 0)
		detach(c);
	qmsg_out_free(&m);
}

/* A netd that restarted: hello again (resume), listeners again. */
static bool attached(struct net_client *c)
{
	struct qerr err = {0};

	if (c->conn >= 0)
		return true;
	if (hello(c, true, &err) < 0)
		return false;
	qlog_info("netd: reconnected");
	struct itimerspec off = {{0, 0}, {0, 0}};
	timerfd_settime(c->retry, 0, &off, NULL);
	watch(c, c->conn, EPOLLIN, true);
	for (int i = 0; i < MAX_LISTENS; i++)
		if (c->listens[i].tgid)
			send_listen(c, &c->listens[i], true);
	return c->conn >= 0;
}

/* ---- the workload's sockets ---- */

static int task_fd(pid_t tid, int fd)
{
	int pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD), got;

	if (pidfd < 0)
		return -ESRCH;
	got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	got = got < 0 ? -errno : got;
	close(pidfd);
	return got;
}

static int sockopt_int(int s, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	return getsockopt(s, level, name, &v, &len) < 0 ? -1 : v;
}

static uint64_t cookie_of(int s)
{
	uint64_t v = 0;
	socklen_t len = sizeof(v);
	return getsockopt(s, SOL_SOCKET, SO_COOKIE, &v, &len) < 0 ? 0 : v;
}

/* AF_INET or AF_INET6 for a TCP socket, 0 for anything else. */
static int tcp_family(int s)
{
	int dom = sockopt_int(s, SOL_SOCKET, SO_DOMAIN);
	if ((dom != AF_INET && dom != AF_INET6) ||
	    sockopt_int(s, SOL_SOCKET, SO_TYPE) != SOCK_STREAM ||
	    sockopt_int(s, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP)
		return 0;
	return dom;
}

/* The workload's fd flags (close-on-exec) and its thread group, from its
 * /proc (the sandbox's, which is ours). */
static bool fd_cloexec(pid_t tid, int fd)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)tid, fd);
	cleanup_close int f = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = f >= 0 ? read(f, buf, sizeof(buf) - 1) : -1;
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = strstr(buf, "flags:");
	return p && (strtoul(p + 6, NULL, 8) & O_CLOEXEC);
}

static pid_t tgid_of(pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	cleanup_close int f = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = f >= 0 ? read(f, buf, sizeof(buf) - 1) : -1;
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strstr(buf, "\nTgid:");
	return p ? (pid_t)strtol(p + 6, NULL, 10) : 0;
}

static struct chan_addrs *addrs_find(struct net_client *c, uint64_t cookie)
{
	if (!cookie)
		return NULL;
	for (unsigned i = 0; i < COOKIE_SLOTS; i++)
		if (c->addrs[i].cookie == cookie)
			return &c->addrs[i];
	return NULL;
}

/* Remember a channel's addresses.  A channel the workload closed is not
 * noticed (we hold no reference): slots are reused round robin, so the
 * oldest of COOKIE_SLOTS channels is forgotten first (it then reads back
 * as the unix socket it is). */
static void addrs_keep(struct net_client *c, int s, const union tcp_addr *local,
		       const union tcp_addr *peer)
{
	struct chan_addrs *a = &c->addrs[c->addr_next++ % COOKIE_SLOTS];
	a->cookie = cookie_of(s);
	a->local = *local;
	a->peer = *peer;
}

static struct sockaddr_in sin4(struct in_addr ip, uint16_t port)
{
	return (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = ip, .sin_port = htons(port)};
}

/* ip:port as a socket of family shows it: a sockaddr_in, or for AF_INET6
 * the v4-mapped sockaddr_in6. */
static union tcp_addr tcp_addr_of(int family, const struct sockaddr_in *a)
{
	union tcp_addr t = {.v4 = *a};

	if (family == AF_INET6) {
		t.v6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = a->sin_port};
		t.v6.sin6_addr.s6_addr[10] = t.v6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&t.v6.sin6_addr.s6_addr[12], &a->sin_addr, 4);
	}
	return t;
}

static size_t tcp_addr_len(const union tcp_addr *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->v6) : sizeof(a->v4);
}

/* The IPv4 address a sockaddr names (its own, or the one an IPv6 address
 * maps); false for an address of IPv6 itself. */
static bool tcp_addr_v4(const union tcp_addr *a, struct sockaddr_in *v4)
{
	if (a->sa.sa_family == AF_INET) {
		*v4 = a->v4;
		return true;
	}
	if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr))
		return false;
	*v4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = a->v6.sin6_port};
	memcpy(&v4->sin_addr, &a->v6.sin6_addr.s6_addr[12], 4);
	return true;
}

/* Write a sockaddr the way the kernel does: truncated to the caller's
 * length, the full length written back. */
static int put_sockaddr(const struct policy_call *call, uint64_t uaddr, uint64_t ulen,
			const union tcp_addr *sa)
{
	size_t full = tcp_addr_len(sa);
	int len;
	int r;

	if (!uaddr)
		return 0;
	if ((r = sys_copy_from_user(call, &len, ulen, sizeof(len))) < 0)
		return r;
	if (len < 0)
		return -EINVAL;
	size_t n = (size_t)len < full ? (size_t)len : full;
	if ((r = sys_copy_to_user(call, uaddr, sa, n)) < 0)
		return r;
	len = (int)full;
	return sys_copy_to_user(call, ulen, &len, sizeof(len));
}

/* ---- connect ---- */

static struct conn_wait *conn_wait_find(struct net_client *c, uint32_t seq)
{
	for (int i = 0; i < MAX_WAITS; i++)
		if (c->conns[i].seq && c->conns[i].seq == seq)
			return &c->conns[i];
	return NULL;
}

static void fail_connects(struct net_client *c)
{
	for (int i = 0; i < MAX_WAITS; i++) {
		if (c->conns[i].seq) {
			trap_respond(c->conns[i].listener, c->conns[i].id, ENETUNREACH, 0, false);
			c->conns[i].seq = 0;
		}
	}
}

static int net_connect(struct net_client *c, const struct policy_call *call)
{
	int fd = (int)call->args[0];
	int len = (int)call->args[2];
	union tcp_addr dst = {0};
	struct sockaddr_in dst4;
	struct conn_wait *w = NULL;

	if (len < (int)sizeof(dst.v4))
		return POLICY_RC_CONTINUE;
	if (sys_copy_from_user(call, &dst, call->args[1],
			       (size_t)len < sizeof(dst) ? (size_t)len : sizeof(dst)) < 0)
		return POLICY_RC_CONTINUE;
	/* IPv4, or an IPv4 address mapped into IPv6 (the length the kernel
	 * takes for one is RFC 2133's, without sin6_scope_id); an address of
	 * IPv6 itself is the kernel's (the sandbox network has none) */
	if ((dst.sa.sa_family == AF_INET6 &&
	     len < (int)offsetof(struct sockaddr_in6, sin6_scope_id)) ||
	    !tcp_addr_v4(&dst, &dst4))
		return POLICY_RC_CONTINUE;
	/* the sandbox's own loopback, and 0.0.0.0 (which means it too) */
	uint32_t ip = ntohl(dst4.sin_addr.s_addr);
	if ((ip >> 24) == 127 || ip == 0 || dst4.sin_port == 0)
		return POLICY_RC_CONTINUE;
	for (int i = 0; i < MAX_WAITS && !w; i++)
		if (!c->conns[i].seq)
			w = &c->conns[i];
	cleanup_close int s = task_fd(call->pid, fd);
	/* A second connect on a channel (hiredis and others call it again to
	 * learn that a non-blocking connect completed): what TCP says. */
	if (s >= 0 && addrs_find(c, cookie_of(s)))
		return -EISCONN;
	/* the family must be the socket's; a v4-mapped address on a socket
	 * that is IPv6 only is the kernel's ENETUNREACH */
	if (s < 0 || tcp_family(s) != dst.sa.sa_family ||
	    sockopt_int(s, SOL_SOCKET, SO_ACCEPTCONN) != 0 ||
	    (dst.sa.sa_family == AF_INET6 && sockopt_int(s, IPPROTO_IPV6, IPV6_V6ONLY) != 0))
		return POLICY_RC_CONTINUE;
	/* netd decides where a TCP connection may go: without it, nowhere
	 * (the policy fails closed) */
	if (!attached(c))
		return -ENETUNREACH;
	if (!w)
		return -EAGAIN;
	union tcp_addr peer;
	socklen_t plen = sizeof(peer);
	if (getpeername(s, &peer.sa, &plen) == 0 || errno != ENOTCONN)
		return POLICY_RC_CONTINUE;
	int fl = fcntl(s, F_GETFL);
	*w = (struct conn_wait){.seq = ++c->seq ? c->seq : ++c->seq,
				.listener = call->listener,
				.id = call->id,
				.tid = call->pid,
				.fd = fd,
				.cloexec = fd_cloexec(call->pid, fd),
				.nonblock = fl >= 0 && (fl & O_NONBLOCK),
				.dst = dst};
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "connect", 3);
	qmsg_put_uint(&m, "seq", w->seq);
	netp_put_addr(&m, "ip", dst4.sin_addr);
	qmsg_put_int(&m, "port", ntohs(dst4.sin_port));
	int r = send_msg(c, &m, -1);
	qmsg_out_free(&m);
	if (r < 0) {
		w->seq = 0;
		detach(c);
		return -ENETUNREACH;
	}
	return POLICY_RC_ANSWERED;
}

/* netd allows the address and it is no sandbox's: the kernel's TCP
 * connection, made here on the workload's socket with the address netd
 * checked (the workload's memory is not read again).  A blocking socket
 * is made non-blocking for the call and waited on in the loop. */
static void kernel_connect(struct net_client *c, const struct conn_wait *cw)
{
	struct kconn_wait *k = NULL;
	int s = task_fd(cw->tid, cw->fd);

	if (s < 0) {
		trap_respond(cw->listener, cw->id, s == -EBADF ? EBADF : ECONNABORTED, 0, false);
		return;
	}
	int fl = fcntl(s, F_GETFL);
	if (!cw->nonblock && fl >= 0)
		fcntl(s, F_SETFL, fl | O_NONBLOCK);
	int e = connect(s, &cw->dst.sa, (socklen_t)tcp_addr_len(&cw->dst)) < 0 ? errno : 0;
	if (!cw->nonblock && fl >= 0)
		fcntl(s, F_SETFL, fl);
	for (int i = 0; i < MAX_WAITS && !k; i++)
		if (c->kconns[i].sock < 0)
			k = &c->kconns[i];
	if (e != EINPROGRESS || cw->nonblock || !k) {
		close(s);
		trap_respond(cw->listener, cw->id, e == EINPROGRESS && !cw->nonblock ? EAGAIN : e,
			     0, false);
		return;
	}
	*k = (struct kconn_wait){.sock = s, .listener = cw->listener, .id = cw->id};
	watch(c, s, EPOLLOUT, true);
}

static void kernel_connected(struct net_client *c, struct kconn_wait *k)
{
	int e = sockopt_int(k->sock, SOL_SOCKET, SO_ERROR);
	trap_respond(k->listener, k->id, e < 0 ? EIO : e, 0, false);
	watch(c, k->sock, 0, false);
	close(k->sock);
	k->sock = -1;
}

/* netd's answer to a connect: the channel goes where the socket was. */
static void connected(struct net_client *c, const struct qmsg_in *in, int chan)
{
	struct qerr err = {0};
	int64_t seq = 0;
	uint16_t lport = 0, pport = 0;
	struct in_addr pip;

	if (qmsg_get_int(in->root, "seq", 1, UINT32_MAX, &seq, &err) < 0)
		return;
	struct conn_wait *w = conn_wait_find(c, (uint32_t)seq);
	if (!w)
		return;
	struct conn_wait cw = *w;
	w->seq = 0;
	if (strcmp(in->op, "kernel") == 0) {
		kernel_connect(c, &cw);
		return;
	}
	if (strcmp(in->op, "connected") != 0 || chan < 0 ||
	    netp_get_port(in->root, "lport", &lport, &err) < 0 ||
	    netp_get_addr(in->root, "pip", &pip, &err) < 0 ||
	    netp_get_port(in->root, "pport", &pport, &err) < 0) {
		int64_t code = ECONNREFUSED;
		if (strcmp(in->op, "connected") == 0)
			qlog_warn("netd: bad connected message: %s", err.msg);
		else
			qmsg_get_int(in->root, "code", 1, 4095, &code, NULL);
		/* refused: by the policy, or by the listener's node */
		trap_respond(cw.listener, cw.id, (int)code, 0, false);
		return;
	}
	if (cw.nonblock)
		fcntl(chan, F_SETFL, O_NONBLOCK);
	struct seccomp_notif_addfd a = {.id = cw.id,
					.flags = SECCOMP_ADDFD_FLAG_SETFD,
					.srcfd = (uint32_t)chan,
					.newfd = (uint32_t)cw.fd,
					.newfd_flags = cw.cloexec ? O_CLOEXEC : 0};
	if (ioctl(cw.listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a) < 0) {
		/* the task is gone or its call was interrupted: dropping our
		 * end tells the listener's side */
		int e = errno;
		if (e != ENOENT)
			qlog_warn("netd: channel for fd %d: ADDFD: %s", cw.fd, strerror(e));
		trap_respond(cw.listener, cw.id, e == ENOENT ? EINTR : ECONNREFUSED, 0, false);
		return;
	}
	struct sockaddr_in local4 = sin4(c->addr, lport), peer4 = sin4(pip, pport);
	union tcp_addr local = tcp_addr_of(cw.dst.sa.sa_family, &local4),
		       peer = tcp_addr_of(cw.dst.sa.sa_family, &peer4);
	addrs_keep(c, chan, &local, &peer);
	trap_respond(cw.listener, cw.id, 0, 0, false);
}

/* ---- listen ---- */

/* The IPv4 address a listening socket takes connections on: its own, or
 * for AF_INET6 the one it maps, or 0.0.0.0 for a dual-stack "::".  False:
 * a socket no IPv4 connection reaches (IPv6 only), so no channel does. */
static bool listen_v4(int s, struct sockaddr_in *v4)
{
	union tcp_addr sa;
	socklen_t len = sizeof(sa);

	if (getsockname(s, &sa.sa, &len) < 0)
		return false;
	if (sa.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sa.v6.sin6_addr)) {
		if (sockopt_int(s, IPPROTO_IPV6, IPV6_V6ONLY) != 0)
			return false;
		*v4 = sin4((struct in_addr){INADDR_ANY}, ntohs(sa.v6.sin6_port));
		return true;
	}
	return tcp_addr_v4(&sa, v4);
}

static int net_listen(struct net_client *c, const struct policy_call *call)
{
	int fd = (int)call->args[0];
	cleanup_close int s = task_fd(call->pid, fd);
	struct sockaddr_in sa;
	struct listen_reg *l = NULL;

	if (s < 0 || !tcp_family(s))
		return POLICY_RC_CONTINUE;
	if (listen(s, (int)call->args[1]) < 0)
		return -errno;
	if (!listen_v4(s, &sa))
		return 0;
	uint64_t cookie = cookie_of(s);
	for (int i = 0; i < MAX_LISTENS; i++) {
		if (c->listens[i].tgid && c->listens[i].cookie == cookie)
			return 0; /* listen again (a new backlog) */
		if (!l && !c->listens[i].tgid)
			l = &c->listens[i];
	}
	if (!l) {
		qlog_warn("netd: more than %d listening sockets: port %u is reached over TCP only",
			  MAX_LISTENS, ntohs(sa.sin_port));
		return 0;
	}
	*l =
	    (struct listen_reg){.tgid = tgid_of(call->pid), .fd = fd, .cookie = cookie, .addr = sa};
	if (!l->tgid) {
		l->tgid = 0;
		return 0;
	}
	if (attached(c))
		send_listen(c, l, true);
	return 0;
}

/* Is l still the workload's listening socket? */
static bool listen_alive(const struct listen_reg *l)
{
	cleanup_close int s = task_fd(l->tgid, l->fd);
	return s >= 0 && cookie_of(s) == l->cookie &&
	       sockopt_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 1;
}

static void drop_listen(struct net_client *c, struct listen_reg *l)
{
	send_listen(c, l, false);
	l->tgid = 0;
}

/* ---- incoming channels ---- */

static void answer_incoming(struct net_client *c, int64_t seq, int code)
{
	struct qmsg_out m;
	qmsg_out_init(&m);
	qmsg_begin(&m, "accepted", 2);
	qmsg_put_int(&m, "seq", seq);
	qmsg_put_int(&m, "code", code);
	if (send_msg(c, &m, -1) < 0)
		detach(c);
	qmsg_out_free(&m);
}

static void drop_channel(struct net_client *c, struct queued_channel *q)
{
	watch(c, q->bell, 0, false);
	close(q->bell);
	close(q->chan);
	q->bell = q->chan = -1;
}

static void incoming(struct net_client *c, const struct qmsg_in *in, int chan)
{
	struct qerr err = {0};
	int64_t seq = 0;
	struct in_addr ip, pip;
	uint16_t port = 0, pport = 0;
	struct listen_reg *l = NULL;
	struct queued_channel *q = NULL;

	if (qmsg_get_int(in->root, "seq", 1, INT64_MAX, &seq, &err) < 0)
		goto bad;
	if (chan < 0 || netp_get_addr(in->root, "ip", &ip, &err) < 0 ||
	    netp_get_port(in->root, "port", &port, &err) < 0 ||
	    netp_get_addr(in->root, "pip", &pip, &err) < 0 ||
	    netp_get_port(in->root, "pport", &pport, &err) < 0)
		goto refuse;
	for (int i = 0; i < MAX_LISTENS && !l; i++) {
		struct listen_reg *r = &c->listens[i];
		if (r->tgid && ntohs(r->addr.sin_port) == port &&
		    (r->addr.sin_addr.s_addr == INADDR_ANY ||
		     r->addr.sin_addr.s_addr == ip.s_addr)) {
			if (listen_alive(r))
				l = r;
			else
				drop_listen(c, r);
		}
	}
	for (int i = 0; i < MAX_CHANNELS && !q; i++)
		if (c->chans[i].bell < 0)
			q = &c->chans[i];
	if (!l || !q) {
		if (!q)
			qlog_warn("netd: %d channels wait for accept: refusing more", MAX_CHANNELS);
		goto refuse;
	}
	/* The doorbell: a real connection to the listener, from here (we
	 * live in the sandbox's network namespace). */
	struct sockaddr_in to = l->addr;
	if (to.sin_addr.s_addr == INADDR_ANY)
		to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int bell = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	if (bell < 0 ||
	    (connect(bell, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS) ||
	    getsockname(bell, (struct sockaddr *)&me, &mlen) < 0) {
		qlog_warn("netd: doorbell to port %u: %s", port, strerror(errno));
		if (bell >= 0)
			close(bell);
		goto refuse;
	}
	*q = (struct queued_channel){.bell = bell,
				     .bell_port = ntohs(me.sin_port),
				     .chan = chan,
				     .local = sin4(ip, port),
				     .peer = sin4(pip, pport)};
	watch(c, bell, EPOLLRDHUP, true);
	answer_incoming(c, seq, 0);
	return;
refuse:
	if (chan >= 0)
		close(chan);
	answer_incoming(c, seq, ECONNREFUSED);
	return;
bad:
	if (chan >= 0)
		close(chan);
	qlog_warn("netd: bad incoming message: %s", err.msg);
}

/* ---- accept ---- */

static struct queued_channel *doorbell(struct net_client *c, const union tcp_addr *from)
{
	struct sockaddr_in v4;

	if (!tcp_addr_v4(from, &v4))
		return NULL;
	struct in_addr ip = v4.sin_addr;
	uint16_t port = ntohs(v4.sin_port);
	for (int i = 0; i < MAX_CHANNELS; i++) {
		struct queued_channel *q = &c->chans[i];
		struct sockaddr_in me;
		socklen_t mlen = sizeof(me);
		/* the connection must come from our own socket, not from a
		 * client elsewhere that happens to use the same port */
		if (q->bell >= 0 && q->bell_port == port &&
		    getsockname(q->bell, (struct sockaddr *)&me, &mlen) == 0 &&
		    me.sin_addr.s_addr == ip.s_addr && ntohs(me.sin_port) == port)
			return q;
	}
	return NULL;
}

/* One try on listener s of family: 0 when answered (or an errno to
 * answer), 1 when nothing is queued and the caller blocks. */
static int accept_once(struct net_client *c, const struct policy_call *call, int s, int family,
		       int flags, uint64_t uaddr, uint64_t ulen, int *answer)
{
	struct pollfd p = {.fd = s, .events = POLLIN};
	union tcp_addr from;
	socklen_t flen = sizeof(from);
	union tcp_addr fake;
	const void *sa = &from;
	size_t salen;

	/* Every accept on this socket is made here, one at a time, so what
	 * poll saw is still there for accept4 (which blocks if the workload's
	 * socket does). */
	if (poll(&p, 1, 0) <= 0) {
		int fl = fcntl(s, F_GETFL);
		if (fl >= 0 && (fl & O_NONBLOCK)) {
			*answer = EAGAIN;
			return 0;
		}
		return 1;
	}
	int conn = accept4(s, &from.sa, &flen, SOCK_CLOEXEC);
	if (conn < 0) {
		*answer = errno;
		return 0;
	}
	salen = flen;
	struct queued_channel *q = doorbell(c, &from);
	if (q) {
		close(conn);
		conn = q->chan;
		q->chan = -1;
		watch(c, q->bell, 0, false);
		close(q->bell);
		q->bell = -1;
		union tcp_addr local = tcp_addr_of(family, &q->local);
		fake = tcp_addr_of(family, &q->peer);
		addrs_keep(c, conn, &local, &fake);
		sa = &fake;
		salen = tcp_addr_len(&fake);
	}
	if (flags & SOCK_NONBLOCK)
		fcntl(conn, F_SETFL, O_NONBLOCK);
	int r = 0;
	if (uaddr) {
		int len;
		r = sys_copy_from_user(call, &len, ulen, sizeof(len));
		if (r == 0 && len < 0)
			r = -EINVAL;
		if (r == 0)
			r = sys_copy_to_user(call, uaddr, sa,
					     (size_t)len < salen ? (size_t)len : salen);
		len = (int)salen;
		if (r == 0)
			r = sys_copy_to_user(call, ulen, &len, sizeof(len));
	}
	if (r == 0) {
		int got = trap_inject_fd(call->listener, call->id, conn, flags & SOCK_CLOEXEC);
		if (got < 0)
			r = got;
	}
	close(conn);
	/* The connection is lost if the task cannot take it, as the kernel
	 * loses one accepted into a bad sockaddr pointer. */
	*answer = r < 0 ? -r : -1; /* -1: answered by ADDFD */
	return 0;
}

static int net_accept(struct net_client *c, const struct policy_call *call)
{
	int flags = call->nr == SYS_accept4 ? (int)call->args[3] : 0;
	int s, answer;
	struct accept_wait *w = NULL;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return POLICY_RC_CONTINUE;
	s = task_fd(call->pid, (int)call->args[0]);
	if (s < 0)
		return POLICY_RC_CONTINUE;
	int dom = sockopt_int(s, SOL_SOCKET, SO_DOMAIN);
	if ((dom != AF_INET && dom != AF_INET6) || sockopt_int(s, SOL_SOCKET, SO_ACCEPTCONN) != 1) {
		close(s);
		return POLICY_RC_CONTINUE;
	}
	if (accept_once(c, call, s, dom, flags, call->args[1], call->args[2], &answer) == 0) {
		close(s);
		return answer < 0 ? POLICY_RC_ANSWERED : -answer;
	}
	for (int i = 0; i < MAX_WAITS && !w; i++)
		if (c->accepts[i].sock < 0)
			w = &c->accepts[i];
	if (!w) {
		/* more blocked accepts than we park: the kernel blocks this
		 * one; the channels it misses wait for the next accept */
		close(s);
		return POLICY_RC_CONTINUE;
	}
	*w = (struct accept_wait){.sock = s,
				  .listener = call->listener,
				  .id = call->id,
				  .tid = call->pid,
				  .uaddr = call->args[1],
				  .ulen = call->args[2],
				  .flags = flags,
				  .family = dom};
	watch(c, s, EPOLLIN, true);
	return POLICY_RC_ANSWERED;
}

static void accept_ready(struct net_client *c, struct accept_wait *w)
{
	struct policy_call call = {
	    .listener = w->listener, .id = w->id, .pid = w->tid, .nr = SYS_accept4};
	int answer;

	if (sys_notif_valid(&call) < 0)
		goto done; /* interrupted or gone */
	if (accept_once(c, &call, w->sock, w->family, w->flags, w->uaddr, w->ulen, &answer) == 1)
		return; /* someone else's: wait on */
	if (answer >= 0)
		trap_respond(w->listener, w->id, answer, 0, false);
done:
	watch(c, w->sock, 0, false);
	close(w->sock);
	w->sock = -1;
}

/* ---- names and options of channels ---- */

static int net_name(struct net_client *c, const struct policy_call *call)
{
	cleanup_close int s = task_fd(call->pid, (int)call->args[0]);
	struct chan_addrs *a = s >= 0 ? addrs_find(c, cookie_of(s)) : NULL;

	if (!a)
		return POLICY_RC_CONTINUE;
	int r = put_sockaddr(call, call->args[1], call->args[2],
			     call->nr == SYS_getsockname ? &a->local : &a->peer);
	return r < 0 ? r : 0;
}

static int net_sockopt(struct net_client *c, const struct policy_call *call, int64_t *val)
{
	int level = (int)call->args[1], name = (int)call->args[2];
	bool get = call->nr == SYS_getsockopt;

	if (level != IPPROTO_TCP &&
	    !(get && level == SOL_SOCKET && (name == SO_DOMAIN || name == SO_PROTOCOL)))
		return POLICY_RC_CONTINUE;
	cleanup_close int s = task_fd(call->pid, (int)call->args[0]);
	struct chan_addrs *a = s >= 0 ? addrs_find(c, cookie_of(s)) : NULL;
	if (!a)
		return POLICY_RC_CONTINUE;
	*val = 0;
	if (!get)
		return 0; /* TCP options mean nothing on a channel */
	unsigned char zero[256] = {0};
	int len,
	    v = level == SOL_SOCKET ? (name == SO_DOMAIN ? a->local.sa.sa_family : IPPROTO_TCP) : 0;
	int r = sys_copy_from_user(call, &len, call->args[4], sizeof(len));
	if (r < 0)
		return r;
	if (len < 0)
		return -EINVAL;
	/* an int for the usual options; TCP_INFO and the like read as zeros */
	size_t n = (size_t)len < sizeof(zero) ? (size_t)len : sizeof(zero);
	if (n >= sizeof(int) && name != TCP_INFO) {
		memcpy(zero, &v, sizeof(v));
		n = sizeof(int);
	}
	if ((r = sys_copy_to_user(call, call->args[3], zero, n)) < 0)
		return r;
	len = (int)n;
	r = sys_copy_to_user(call, call->args[4], &len, sizeof(len));
	return r < 0 ? r : 0;
}

/* ---- the trap side ---- */

bool sys_net_serves(int nr)
{
	switch (nr) {
	case SYS_connect:
	case SYS_listen:
	case SYS_accept:
	case SYS_accept4:
	case SYS_getsockname:
	case SYS_getpeername:
	case SYS_setsockopt:
	case SYS_getsockopt:
		return true;
	}
	return false;
}

int sys_net(const struct policy_call *call, int64_t *val)
{
	struct net_client *c = call->ctx->net;

	*val = 0;
	switch (call->nr) {
	case SYS_connect:
		return net_connect(c, call);
	case SYS_listen:
		return net_listen(c, call);
	case SYS_accept:
	case SYS_accept4:
		return net_accept(c, call);
	case SYS_getsockname:
	case SYS_getpeername:
		return net_name(c, call);
	case SYS_setsockopt:
	case SYS_getsockopt:
		return net_sockopt(c, call, val);
	}
	return POLICY_RC_CONTINUE;
}

/* ---- the loop's side ---- */

static void conn_readable(struct net_client *c)
{
	for (;;) {
		char buf[NETP_MAX_MSG];
		int fd = -1;
		ssize_t n = recv_fd(c->conn, buf, sizeof(buf), &fd);
		struct qerr err = {0};
		struct qmsg_in in;

		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			if (fd >= 0)
				close(fd);
			detach(c);
			return;
		}
		if (qmsg_parse(&in, buf, (size_t)n, &err) < 0) {
			qlog_warn("netd: bad message: %s", err.msg);
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (strcmp(in.op, "incoming") == 0) {
			incoming(c, &in, fd);
		} else if (strcmp(in.op, "connected") == 0 || strcmp(in.op, "refused") == 0 ||
			   strcmp(in.op, "kernel") == 0) {
			connected(c, &in, fd);
			if (fd >= 0)
				close(fd);
		} else {
			qlog_warn("netd: unexpected message \"%s\"", in.op);
			if (fd >= 0)
				close(fd);
		}
		qmsg_in_free(&in);
	}
}

void net_client_event(struct net_client *c, int fd, uint32_t events)
{
	if (fd == c->retry) {
		uint64_t n;
		if (read(c->retry, &n, sizeof(n)) == sizeof(n))
			attached(c);
		return;
	}
	if (fd == c->conn) {
		if (events & EPOLLIN)
			conn_readable(c);
		else
			detach(c);
		return;
	}
	for (int i = 0; i < MAX_WAITS; i++) {
		if (c->accepts[i].sock == fd) {
			accept_ready(c, &c->accepts[i]);
			return;
		}
		if (c->kconns[i].sock == fd) {
			kernel_connected(c, &c->kconns[i]);
			return;
		}
	}
	for (int i = 0; i < MAX_CHANNELS; i++)
		if (c->chans[i].bell == fd) {
			/* the listener is gone (reset) before accepting it */
			drop_channel(c, &c->chans[i]);
			return;
		}
}

void net_client_set_watch(struct net_client *c, net_watch_fn fn, void *arg)
{
	c->watch = fn;
	c->watch_arg = arg;
	watch(c, c->retry, EPOLLIN, true);
	if (c->conn >= 0)
		watch(c, c->conn, EPOLLIN, true);
}

int net_mode_from_config(const struct guest_config *cfg, struct qerr *err)
{
	const char *v = NULL;
	int mode;

	for (size_t i = 0; i < cfg->n_annotations; i++)
		if (strcmp(cfg->annotations[i].key, NET_ANNOTATION) == 0)
			v = cfg->annotations[i].value;
	if (!v || strcmp(v, "none") == 0)
		return NET_MODE_NONE;
	if (strcmp(v, "bridge") == 0)
		mode = NET_MODE_BRIDGE;
	else if (strcmp(v, "quiver") == 0)
		mode = NET_MODE_QUIVER;
	else
		return qerr_set(err, EINVAL,
				"annotation %s: \"%s\" is not \"none\", \"bridge\" or \"quiver\"",
				NET_ANNOTATION, v);
	if (!(cfg->clone_flags & CLONE_NEWNET))
		return qerr_set(err, EINVAL,
				"annotation %s: \"%s\" needs the sandbox's own network namespace "
				"(linux.namespaces has no \"network\" entry without a path)",
				NET_ANNOTATION, v);
	if (cfg->clone_flags & CLONE_NEWUSER)
		return qerr_set(err, ENOTSUP,
				"annotation %s: sandboxes with a user namespace are not served by "
				"netd yet",
				NET_ANNOTATION);
	if (mode == NET_MODE_QUIVER && access("/proc/self/status", R_OK) < 0)
		return qerr_set(err, EINVAL, "annotation %s: quiver mode needs /proc mounted",
				NET_ANNOTATION);
	return mode;
}

int net_client_open(struct net_client **out, int state_dirfd, const char *id,
		    const struct guest_config *cfg, enum net_mode mode, struct qerr *err)
{
	struct net_client *c = calloc(1, sizeof(*c));
	int r;

	*out = NULL;
	if (!c)
		return qerr_set(err, ENOMEM, "netd: out of memory");
	c->conn = -1;
	c->mode = mode;
	snprintf(c->id, sizeof(c->id), "%s", id);
	for (size_t i = 0; i < cfg->n_annotations; i++) {
		const char *k = cfg->annotations[i].key, *v = cfg->annotations[i].value;
		char *dst = strcmp(k, NET_PORTS_ANNOTATION) == 0   ? c->ports
			    : strcmp(k, NET_PEERS_ANNOTATION) == 0 ? c->peers
								   : NULL;
		size_t max = dst == c->ports ? sizeof(c->ports) : sizeof(c->peers);
		if (dst && snprintf(dst, max, "%s", v) >= (int)max) {
			free(c);
			return qerr_set(err, EINVAL, "annotation %s: longer than %zu bytes", k,
					max - 1);
		}
	}
	for (int i = 0; i < MAX_WAITS; i++)
		c->accepts[i].sock = c->kconns[i].sock = -1;
	for (int i = 0; i < MAX_CHANNELS; i++)
		c->chans[i].bell = c->chans[i].chan = -1;
	c->rundir = openat(state_dirfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	c->retry = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (c->rundir < 0 || c->retry < 0) {
		r = qerr_sys(err, errno, "netd: runtime directory");
		goto fail;
	}
	if ((r = hello(c, false, err)) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	if (c->rundir >= 0)
		close(c->rundir);
	if (c->retry >= 0)
		close(c->retry);
	free(c);
	return r;
}
