/* The nng side of control messages: the dialing sockets (REQ, SUB) that
 * carry the msgpack messages of msg.c.  The daemons' listening sockets are
 * not nng's (sp.c says why).  Kept apart from msg.c so that programs which
 * only speak msgpack over unix sockets (quiver-guest) do not link nng. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
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
