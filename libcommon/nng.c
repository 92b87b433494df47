/* The nng side of control messages: REQ/REP and PUB/SUB sockets carrying
 * the msgpack messages of msg.c.  Kept apart from msg.c so that programs
 * which only speak msgpack over unix sockets (quiver-guest) do not link nng. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/close_range.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/msg.h"

int qnng_errno(int rv)
{
	static const int map[] = {
	    [NNG_EINTR] = EINTR,	   [NNG_ENOMEM] = ENOMEM,
	    [NNG_EINVAL] = EINVAL,	   [NNG_EBUSY] = EBUSY,
	    [NNG_ETIMEDOUT] = ETIMEDOUT,   [NNG_ECONNREFUSED] = ECONNREFUSED,
	    [NNG_ECLOSED] = EBADF,	   [NNG_EAGAIN] = EAGAIN,
	    [NNG_ENOTSUP] = ENOTSUP,	   [NNG_EADDRINUSE] = EADDRINUSE,
	    [NNG_ESTATE] = EPROTO,	   [NNG_ENOENT] = ENOENT,
	    [NNG_EPROTO] = EPROTO,	   [NNG_EUNREACHABLE] = EHOSTUNREACH,
	    [NNG_EADDRINVAL] = EINVAL,	   [NNG_EPERM] = EPERM,
	    [NNG_EMSGSIZE] = EMSGSIZE,	   [NNG_ECONNABORTED] = ECONNABORTED,
	    [NNG_ECONNRESET] = ECONNRESET, [NNG_ECANCELED] = ECANCELED,
	    [NNG_ENOFILES] = EMFILE,	   [NNG_ENOSPC] = ENOSPC,
	    [NNG_EEXIST] = EEXIST,	   [NNG_EREADONLY] = EROFS,
	    [NNG_EWRITEONLY] = EACCES,	   [NNG_ECRYPTO] = EIO,
	    [NNG_EPEERAUTH] = EACCES,	   [NNG_ENOARG] = EINVAL,
	    [NNG_EAMBIGUOUS] = EINVAL,	   [NNG_EBADTYPE] = EINVAL,
	    [NNG_ECONNSHUT] = ECONNRESET,
	};

	if (rv < 0)
		rv = -rv;
	if (rv == 0)
		return 0;
	if (rv & NNG_ESYSERR)
		return (rv & ~NNG_ESYSERR) ? (rv & ~NNG_ESYSERR) : EIO;
	if (rv > 0 && (size_t)rv < ARRAY_SIZE(map) && map[rv])
		return map[rv];
	return EIO;
}

static int nng_fail(struct qerr *err, int rv, const char *what, const char *url)
{
	int code = qnng_errno(rv);

	return qerr_set(err, code, "%s %s: %s", what, url ? url : "", nng_strerror(rv));
}

/* Control sockets carry root's requests: only a peer with our own uid may
 * talk on them, whatever the socket file's mode turns out to be. */
static void ipc_peer_check(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	uint64_t uid;

	(void)ev;
	(void)arg;
	/* Non-IPC transports have no peer uid; they are not control sockets. */
	if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) != 0)
		return;
	if (uid != (uint64_t)geteuid()) {
		qlog_warn("control socket: refusing a peer with uid %llu", (unsigned long long)uid);
		nng_pipe_close(p);
	}
}

static int set_common(nng_socket s, const char *url, struct qerr *err)
{
	int rv;

	/* nng drops a larger message before it reaches qmsg_parse. */
	if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, QMSG_MAX_BYTES)) != 0)
		return nng_fail(err, rv, "set recv-size-max on", url);
	if ((rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, ipc_peer_check, NULL)) != 0)
		return nng_fail(err, rv, "set pipe notification on", url);
	return 0;
}

static int listen_private(nng_socket s, const char *url, struct qerr *err)
{
	nng_listener l;
	int rv;

	if ((rv = nng_listener_create(&l, s, url)) != 0)
		return nng_fail(err, rv, "listen on", url);
	if (strncmp(url, "ipc://", 6) == 0 &&
	    (rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600)) != 0) {
		nng_listener_close(l);
		return nng_fail(err, rv, "set permissions of", url);
	}
	if ((rv = nng_listener_start(l, 0)) != 0) {
		nng_listener_close(l);
		return nng_fail(err, rv, "listen on", url);
	}
	return 0;
}

int qnng_req_dial(nng_socket *s, const char *url, int timeout_ms, struct qerr *err)
{
	nng_socket sock;
	int rv;

	if ((rv = nng_req0_open(&sock)) != 0)
		return nng_fail(err, rv, "open REQ socket for", url);
	if ((rv = set_common(sock, url, err)) < 0)
		goto fail_closed;
	if ((rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
	    /* Never resend a request on a timer: create and kill are not
	     * idempotent, and a slow daemon would run them twice. */
	    (rv = nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0) {
		rv = nng_fail(err, rv, "set options on", url);
		goto fail_closed;
	}
	/* A blocking dial, so "daemon not running" is reported now rather
	 * than as a timeout later. */
	if ((rv = nng_dial(sock, url, NULL, 0)) != 0) {
		rv = nng_fail(err, rv, "connect to", url);
		goto fail_closed;
	}
	*s = sock;
	return 0;
fail_closed:
	nng_close(sock);
	return rv;
}

/* A listening socket of the protocol open_fn makes (REP; events are
 * published without nng, pub.c). */
static int listen_with(int (*open_fn)(nng_socket *), const char *kind, nng_socket *s,
		       const char *url, struct qerr *err)
{
	nng_socket sock;
	int rv;

	if ((rv = open_fn(&sock)) != 0)
		return nng_fail(err, rv, kind, url);
	if ((rv = set_common(sock, url, err)) < 0 || (rv = listen_private(sock, url, err)) < 0) {
		nng_close(sock);
		return rv;
	}
	*s = sock;
	return 0;
}

int qnng_rep_listen(nng_socket *s, const char *url, struct qerr *err)
{
	return listen_with(nng_rep0_open, "open REP socket for", s, url, err);
}

int qnng_sub_dial(nng_socket *s, const char *url, struct qerr *err)
{
	nng_socket sock;
	int rv;

	if ((rv = nng_sub0_open(&sock)) != 0)
		return nng_fail(err, rv, "open SUB socket for", url);
	if ((rv = set_common(sock, url, err)) < 0)
		goto fail_closed;
	if ((rv = nng_socket_set(sock, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0) {
		rv = nng_fail(err, rv, "subscribe on", url);
		goto fail_closed;
	}
	/* Non-blocking: a subscriber may start before the publisher, and nng
	 * keeps redialling in the background. */
	if ((rv = nng_dial(sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		rv = nng_fail(err, rv, "connect to", url);
		goto fail_closed;
	}
	*s = sock;
	return 0;
fail_closed:
	nng_close(sock);
	return rv;
}

int qnng_send(nng_socket s, const struct qmsg_out *msg, struct qerr *err)
{
	int rv;

	if (qmsg_size(msg) == 0)
		return qerr_set(err, EINVAL, "send: empty message");
	if (qmsg_size(msg) > QMSG_MAX_BYTES)
		return qerr_set(err, EMSGSIZE, "send: message is %zu bytes (at most %u allowed)",
				qmsg_size(msg), QMSG_MAX_BYTES);
	/* nng_send copies the buffer when NNG_FLAG_ALLOC is not given. */
	if ((rv = nng_send(s, (void *)qmsg_data(msg), qmsg_size(msg), 0)) != 0)
		return qerr_set(err, qnng_errno(rv), "send: %s", nng_strerror(rv));
	return 0;
}

int qnng_recv(nng_socket s, struct qmsg_in *in, struct qerr *err)
{
	void *buf = NULL;
	size_t len = 0;
	int rv;

	msgpack_unpacked_init(&in->up);
	in->root = NULL;
	in->op[0] = '\0';
	if ((rv = nng_recv(s, &buf, &len, NNG_FLAG_ALLOC)) != 0)
		return qerr_set(err, qnng_errno(rv), "receive: %s", nng_strerror(rv));
	rv = qmsg_parse(in, buf, len, err);
	nng_free(buf, len);
	return rv;
}

int qnng_call(nng_socket req, const struct qmsg_out *msg, struct qmsg_in *reply, struct qerr *err)
{
	int r;

	msgpack_unpacked_init(&reply->up);
	reply->root = NULL;
	reply->op[0] = '\0';
	if ((r = qnng_send(req, msg, err)) < 0)
		return r;
	if ((r = qnng_recv(req, reply, err)) < 0)
		return r;
	if ((r = qmsg_reply_error(reply, err)) < 0) {
		qmsg_in_free(reply);
		return r;
	}
	return 0;
}

/* ---- the daemon's watch on its own control socket ----
 *
 * nng 1.5.2 (Debian 12's; nng issue #1518, fixed in 1.6) can leave a
 * listening socket that never answers again once a peer hangs up during
 * the SP handshake: a `connect` and `close`, a client killed while it
 * dials, a dial that gave up.  Seen here: vmmd and poold stopped
 * answering every request for good, their nng poll thread sometimes
 * spinning.  Nothing in the daemon notices: its loop runs, nng's threads
 * run.  So a thread asks the daemon's own socket for a ping every
 * WATCH_EVERY_MS, speaking nng's IPC framing on a plain unix socket (no
 * nng state shared with what it checks), and re-executes the daemon, in
 * the foreground with the same pid, when the socket is wedged: the restart
 * after a crash, which finds every sandbox and claim again.  Wedged means
 *   - no handshake within WATCH_HELLO_MS: nng's own threads answer it,
 *     in microseconds, however busy the daemon's loop is; or
 *   - no reply to the ping within WATCH_REPLY_MS: the loop answers a ping
 *     in well under a millisecond, and the longest a request holds it by
 *     design is vmmd's 10 s wait for a killed supervisor.
 * Neither counts time in which the whole daemon was stopped (io_until). */
#define WATCH_EVERY_MS 2000
#define WATCH_HELLO_MS 10000
#define WATCH_REPLY_MS 30000
#define WATCH_SLICE_MS 1000
#define SP_PROTO_REQ0  0x30

static atomic_bool watch_stopping;

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000L +
	       (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

static void add_ms(struct timespec *t, long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static void deadline_in(struct timespec *t, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, t);
	add_ms(t, ms);
}

/* Move n bytes through fd (send if out, else receive) before deadline: 0;
 * -ETIMEDOUT; -EPIPE on an error or end of file.  Time in which the watch
 * itself did not run does not count: the daemon was stopped (SIGSTOP, a
 * debugger) or starved, and its loop with it.  So the wait goes in slices
 * of WATCH_SLICE_MS, and a slice that took much longer than asked moves
 * the deadline by the difference. */
static int io_until(int fd, bool out, unsigned char *buf, size_t n, struct timespec *deadline)
{
	size_t done = 0;
	while (done < n) {
		ssize_t k = out ? send(fd, buf + done, n - done, MSG_NOSIGNAL)
				: recv(fd, buf + done, n - done, 0);
		if (k > 0) {
			done += (size_t)k;
			continue;
		}
		if (k == 0 || (errno != EAGAIN && errno != EINTR))
			return -EPIPE;
		long left = ms_left(deadline);
		if (left <= 0)
			return -ETIMEDOUT;
		int slice = left < WATCH_SLICE_MS ? (int)left : WATCH_SLICE_MS;
		struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (poll(&pfd, 1, slice) < 0 && errno != EINTR)
			return -EPIPE;
		long late = -ms_left(&t0) - slice; /* elapsed - slice */
		if (late > WATCH_SLICE_MS)
			add_ms(deadline, late);
	}
	return 0;
}

enum watch_result { W_ANSWERED, W_GONE, W_OTHER, W_NO_HELLO, W_NO_REPLY };

/* One ping, as a REQ peer: the 8-byte greeting each way, then a frame of
 * 0x01, a 64-bit big-endian length, the request id and the message. */
static enum watch_result watch_ping(const char *path, uint32_t id)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	unsigned char hello[8] = {0, 'S', 'P', 0, 0, SP_PROTO_REQ0, 0, 0}, got[9];
	unsigned char frame[64];
	struct qmsg_out m;
	struct timespec deadline;

	qmsg_out_init(&m);
	qmsg_begin(&m, "ping", 0);
	size_t body = qmsg_size(&m), len = 13 + body;
	if (len <= sizeof(frame)) {
		frame[0] = 1;
		for (int i = 0; i < 8; i++)
			frame[1 + i] = (unsigned char)((uint64_t)(4 + body) >> (56 - 8 * i));
		for (int i = 0; i < 4; i++)
			frame[9 + i] = (unsigned char)((id | 0x80000000u) >> (24 - 8 * i));
		memcpy(frame + 13, qmsg_data(&m), body);
	}
	qmsg_out_free(&m);
	if (len > sizeof(frame))
		return W_OTHER;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return W_OTHER;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EAGAIN) /* a full backlog: nobody accepts */
			return W_NO_HELLO;
		return errno == ENOENT || errno == ECONNREFUSED ? W_GONE : W_OTHER;
	}
	int r;
	deadline_in(&deadline, WATCH_HELLO_MS);
	if ((r = io_until(fd, true, hello, sizeof(hello), &deadline)) < 0 ||
	    (r = io_until(fd, false, got, 8, &deadline)) < 0)
		return r == -ETIMEDOUT ? W_NO_HELLO : W_OTHER;
	deadline_in(&deadline, WATCH_REPLY_MS);
	if ((r = io_until(fd, true, frame, len, &deadline)) < 0 ||
	    (r = io_until(fd, false, got, 9, &deadline)) < 0)
		return r == -ETIMEDOUT ? W_NO_REPLY : W_OTHER;
	return W_ANSWERED; /* a reply began: whatever it says, it was answered */
}

static _Noreturn void watch_reexec(char **argv)
{
	char *args[64];
	size_t n = 0;
	bool fg = false;

	for (; argv[n] && n < 62; n++) {
		args[n] = argv[n];
		fg = fg || strcmp(argv[n], "--foreground") == 0;
	}
	if (!fg)
		args[n++] = "--foreground";
	args[n] = NULL;
	/* the new image opens everything afresh (nng, the lock, the loop) */
	if (close_range(3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		qlog_warn("close_range: %s", strerror(errno));
	execv("/proc/self/exe", args);
	qlog_error("re-execute %s: %s; exiting", argv[0], strerror(errno));
	_exit(1);
}

struct watch_args {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char **argv;
};

static void *watch_main(void *arg)
{
	struct watch_args *w = arg;
	struct timespec every = {WATCH_EVERY_MS / 1000, (WATCH_EVERY_MS % 1000) * 1000000L};

	for (uint32_t id = 1;; id++) {
		nanosleep(&every, NULL);
		if (atomic_load(&watch_stopping))
			break;
		enum watch_result r = watch_ping(w->path, id);
		if (r == W_GONE || atomic_load(&watch_stopping))
			break;
		if (r == W_NO_HELLO || r == W_NO_REPLY) {
			qlog_error("%s is wedged: %s %d s (nng 1.5's stuck listener, its issue "
				   "#1518); re-executing",
				   w->path,
				   r == W_NO_HELLO ? "no SP handshake within"
						   : "a ping unanswered for",
				   (r == W_NO_HELLO ? WATCH_HELLO_MS : WATCH_REPLY_MS) / 1000);
			watch_reexec(w->argv);
		}
	}
	free(w);
	return NULL;
}

void qnng_watch_start(const char *url, char **argv)
{
	pthread_t t;
	pthread_attr_t attr;
	struct watch_args *w;

	if (strncmp(url, "ipc://", 6) != 0 || strlen(url + 6) >= sizeof(w->path) ||
	    !(w = calloc(1, sizeof(*w))))
		return;
	snprintf(w->path, sizeof(w->path), "%s", url + 6);
	w->argv = argv;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, watch_main, w);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		qlog_warn("no watch on %s: %s", url, strerror(rc));
		free(w);
	}
}

void qnng_watch_stop(void)
{
	atomic_store(&watch_stopping, true);
}
