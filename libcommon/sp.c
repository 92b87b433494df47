/* The listening side of nng's pub0 and rep0 over IPC, on a libuv loop
 * (sp.h).
 *
 * Why not nng's own sockets: Debian 12's nng (1.5.2; its issue #1518,
 * fixed in 1.6) breaks a listener when a peer hangs up during the SP
 * handshake.  Three bare connect/close were enough: on vmmd.sock and
 * poold.sock no request was answered again, on events.sock no subscriber
 * got another event, and nng's poll thread often spun a full CPU for good.
 * Any client killed while it dials, or a dial that gives up, does that.
 * A listener needs little of nng, so the daemons' listeners have none; the
 * daemons still dial with nng (vmmd → poold), and serve /metrics with it.
 *
 * The protocol, as nng speaks it on ipc://:
 *   - each side sends an 8-byte greeting: 00 'S' 'P' 00, its protocol id
 *     (16 bits, big-endian; PUB0 0x20, SUB0 0x21, REQ0 0x30, REP0 0x31),
 *     00 00;
 *   - then each message is a frame: the byte 0x01, the length as 64 bits
 *     big-endian, the message;
 *   - pub0 adds no header, and a subscriber sends nothing after its
 *     greeting (it filters topics itself);
 *   - a req0 message starts with its backtrace: 32-bit big-endian words,
 *     the last (the request id) with its top bit set; the reply starts with
 *     the same words.
 * A subscriber gets messages once its greeting came, whole and in order;
 * one whose queue is full loses new ones rather than stalling the loop.
 * A client gets its replies in the order of its requests; one that leaves
 * queue_max of them unread is dropped. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/sp.h"

#define SP_PROTO_PUB0 0x20
#define SP_PROTO_SUB0 0x21
#define SP_PROTO_REQ0 0x30
#define SP_PROTO_REP0 0x31
#define FRAME_HEAD    9
#define MAX_HOPS      8 /* nng's limit on a backtrace (its max TTL) */
#define MAX_PEERS     1024
#define READ_CHUNK    65536

struct frame {
	unsigned refs;
	unsigned char data[];
};

struct peer {
	uv_pipe_t pipe;
	uv_timer_t timer; /* the greeting's deadline */
	struct qsp *sp;
	struct peer *next, **pprev;
	unsigned char hello[8];
	size_t got;
	bool greeted, warned; /* warned: of its full queue */
	unsigned queued;
	int handles; /* open of pipe and timer */
	/* REP: what has come in of the next requests */
	unsigned char *in;
	size_t in_len, in_cap;
};

struct send_req {
	uv_write_t req;
	struct frame *frame; /* NULL for our greeting */
};

struct qsp {
	uv_pipe_t server;
	struct qsp_opts opts;
	const char *what; /* for the log: "pub", "rep" */
	struct peer *peers;
	size_t npeers;
	uint64_t dropped;
	bool closing, server_open, warned_full;
};

static void sp_free_if_done(struct qsp *sp)
{
	if (sp->closing && !sp->server_open && sp->npeers == 0)
		free(sp);
}

static void peer_handle_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct qsp *sp = p->sp;

	if (--p->handles > 0)
		return;
	free(p->in);
	free(p);
	sp->npeers--;
	sp_free_if_done(sp);
}

static void peer_close(struct peer *p)
{
	if (uv_is_closing((uv_handle_t *)&p->pipe))
		return;
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
	p->next = NULL;
	p->pprev = &p->next;
	uv_close((uv_handle_t *)&p->pipe, peer_handle_closed);
	uv_close((uv_handle_t *)&p->timer, peer_handle_closed);
}

static void sent(uv_write_t *req, int status)
{
	struct send_req *r = (struct send_req *)req;
	struct peer *p = req->handle->data;

	if (r->frame) {
		p->queued--;
		if (--r->frame->refs == 0)
			free(r->frame);
	}
	free(r);
	if (status < 0 && status != UV_ECANCELED)
		peer_close(p); /* EPIPE: the peer went away */
}

static int peer_write(struct peer *p, struct frame *f, const void *data, size_t len)
{
	struct send_req *r = malloc(sizeof(*r));
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);

	if (!r)
		return -ENOMEM;
	r->frame = f;
	int rc = uv_write(&r->req, (uv_stream_t *)&p->pipe, &b, 1, sent);
	if (rc < 0) {
		free(r);
		return rc;
	}
	if (f) {
		f->refs++;
		p->queued++;
	}
	return 0;
}

/* A frame of head (hlen bytes) then body: refs 0, for peer_write. */
static struct frame *frame_new(const void *head, size_t hlen, const void *body, size_t blen)
{
	size_t len = hlen + blen;
	struct frame *f = malloc(sizeof(*f) + FRAME_HEAD + len);

	if (!f)
		return NULL;
	f->refs = 0;
	f->data[0] = 1;
	for (int i = 0; i < 8; i++)
		f->data[1 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	if (hlen)
		memcpy(f->data + FRAME_HEAD, head, hlen);
	if (blen)
		memcpy(f->data + FRAME_HEAD + hlen, body, blen);
	return f;
}

static void hello_late(uv_timer_t *t)
{
	struct peer *p = t->data;

	qlog_debug("%s: a peer sent no greeting in %u ms; closing it", p->sp->what,
		   p->sp->opts.hello_ms);
	peer_close(p);
}

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char discard[256];
	struct peer *p = h->data;

	(void)hint;
	if (!p->greeted) { /* read no further than the greeting */
		*buf =
		    uv_buf_init((char *)p->hello + p->got, (unsigned)(sizeof(p->hello) - p->got));
		return;
	}
	if (p->sp->opts.role == QSP_PUB) { /* a subscriber has nothing to say */
		*buf = uv_buf_init(discard, sizeof(discard));
		return;
	}
	if (p->in_cap - p->in_len < READ_CHUNK / 4) {
		size_t cap = p->in_cap ? p->in_cap * 2 : READ_CHUNK;
		unsigned char *in = realloc(p->in, cap);
		if (in) {
			p->in = in;
			p->in_cap = cap;
		}
	}
	/* out of memory: an empty buffer, which libuv reports as ENOBUFS */
	*buf = uv_buf_init((char *)p->in + p->in_len, (unsigned)(p->in_cap - p->in_len));
}

int qsp_scan_request(const unsigned char *buf, size_t len, size_t max_request, size_t *frame_len,
		     size_t *hlen)
{
	uint64_t mlen = 0;

	*frame_len = *hlen = 0;
	if (len < FRAME_HEAD)
		return 0;
	if (buf[0] != 1)
		return -EPROTO;
	for (int i = 1; i < FRAME_HEAD; i++)
		mlen = mlen << 8 | buf[i];
	if (mlen > max_request)
		return -EMSGSIZE;
	*frame_len = FRAME_HEAD + (size_t)mlen;
	if (len < *frame_len)
		return 0;
	/* the backtrace: words until the one with the top bit (the id) */
	for (size_t h = 4; h <= mlen && h <= 4 * MAX_HOPS; h += 4)
		if (buf[FRAME_HEAD + h - 4] & 0x80) {
			*hlen = h;
			return 1;
		}
	return -EBADMSG;
}

/* One request (its backtrace hlen bytes of msg): answer it.  False: the
 * peer is gone (closed by the handler, or its reply could not be queued). */
static bool serve_request(struct peer *p, const unsigned char *msg, size_t len, size_t hlen)
{
	struct qsp *sp = p->sp;
	struct qmsg_out reply;

	qmsg_out_init(&reply);
	sp->opts.on_request(sp->opts.arg, msg + hlen, len - hlen, &reply);
	if (uv_is_closing((uv_handle_t *)&p->pipe)) { /* closed by the handler */
		qmsg_out_free(&reply);
		return false;
	}
	size_t blen = qmsg_size(&reply);
	struct frame *f = frame_new(msg, hlen, qmsg_data(&reply), blen);
	qmsg_out_free(&reply);
	if (p->queued >= sp->opts.queue_max) {
		qlog_warn("%s: a client left %u replies unread; dropping it", sp->what, p->queued);
		free(f);
		peer_close(p);
		return false;
	}
	if (!f || peer_write(p, f, f->data, FRAME_HEAD + hlen + blen) < 0) {
		qlog_warn("%s: reply not sent; dropping the client", sp->what);
		free(f);
		peer_close(p);
		return false;
	}
	return true;
}

/* Serve every whole request that has come in; make room for the rest of
 * one that has begun. */
static void serve_frames(struct peer *p)
{
	size_t off = 0, flen, hlen;
	int r;

	while ((r = qsp_scan_request(p->in + off, p->in_len - off, p->sp->opts.max_request, &flen,
				     &hlen)) > 0) {
		if (!serve_request(p, p->in + off + FRAME_HEAD, flen - FRAME_HEAD, hlen))
			return;
		off += flen;
	}
	if (r < 0) {
		qlog_warn("%s: %s; dropping the client", p->sp->what,
			  r == -EPROTO	   ? "a frame of an unknown type"
			  : r == -EMSGSIZE ? "a request too big"
					   : "a request without a request id");
		peer_close(p);
		return;
	}
	memmove(p->in, p->in + off, p->in_len - off);
	p->in_len -= off;
	/* A big request served: its buffer goes back to the usual size, or
	 * each client would keep the largest it ever sent (up to 1 MiB). */
	if (p->in_cap > READ_CHUNK && p->in_len <= READ_CHUNK / 2 && flen <= READ_CHUNK / 2) {
		unsigned char *in = realloc(p->in, READ_CHUNK);
		if (in) {
			p->in = in;
			p->in_cap = READ_CHUNK;
		}
	}
	if (flen > p->in_cap) {
		unsigned char *in = realloc(p->in, flen);
		if (!in) {
			qlog_warn("%s: no memory for a request of %zu bytes; dropping the client",
				  p->sp->what, flen);
			peer_close(p);
			return;
		}
		p->in = in;
		p->in_cap = flen;
	}
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct peer *p = s->data;
	const unsigned char *want;

	(void)buf;
	if (n < 0) { /* UV_EOF, or an error: gone either way */
		peer_close(p);
		return;
	}
	if (n == 0)
		return;
	if (p->greeted) {
		if (p->sp->opts.role == QSP_REP) {
			p->in_len += (size_t)n;
			serve_frames(p);
		}
		return;
	}
	p->got += (size_t)n;
	if (p->got < sizeof(p->hello))
		return;
	want = (const unsigned char[]){
	    0, 'S', 'P', 0, 0, p->sp->opts.role == QSP_PUB ? SP_PROTO_SUB0 : SP_PROTO_REQ0, 0, 0};
	if (memcmp(p->hello, want, sizeof(p->hello)) != 0) {
		qlog_debug("%s: a peer of another protocol (greeting %02x%02x%02x%02x %02x%02x); "
			   "closing it",
			   p->sp->what, p->hello[0], p->hello[1], p->hello[2], p->hello[3],
			   p->hello[4], p->hello[5]);
		peer_close(p);
		return;
	}
	p->greeted = true;
	uv_timer_stop(&p->timer);
}

static bool peer_is_us(struct peer *p)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&p->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	if (cr.uid != geteuid()) {
		qlog_warn("%s: refusing a peer with uid %u", p->sp->what, (unsigned)cr.uid);
		return false;
	}
	return true;
}

static void on_connection(uv_stream_t *server, int status)
{
	static const unsigned char pub_hello[8] = {0, 'S', 'P', 0, 0, SP_PROTO_PUB0, 0, 0};
	static const unsigned char rep_hello[8] = {0, 'S', 'P', 0, 0, SP_PROTO_REP0, 0, 0};
	struct qsp *sp = server->data;
	struct peer *p;

	if (status < 0) {
		qlog_warn("%s: accept: %s", sp->what, uv_strerror(status));
		return;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		qlog_warn("%s: accept: out of memory", sp->what);
		return;
	}
	p->sp = sp;
	p->handles = 2;
	uv_pipe_init(server->loop, &p->pipe, 0);
	uv_timer_init(server->loop, &p->timer);
	p->pipe.data = p->timer.data = p;
	p->next = sp->peers;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &sp->peers;
	sp->peers = p;
	sp->npeers++;

	int rc = uv_accept(server, (uv_stream_t *)&p->pipe);
	if (rc < 0) {
		qlog_warn("%s: accept: %s", sp->what, uv_strerror(rc));
		peer_close(p);
		return;
	}
	if (sp->npeers > MAX_PEERS) {
		if (!sp->warned_full)
			qlog_warn("%s: %d peers already; closing new ones", sp->what, MAX_PEERS);
		sp->warned_full = true;
		peer_close(p);
		return;
	}
	const unsigned char *hello = sp->opts.role == QSP_PUB ? pub_hello : rep_hello;
	if (!peer_is_us(p) || uv_read_start((uv_stream_t *)&p->pipe, peer_alloc, peer_read) < 0 ||
	    peer_write(p, NULL, hello, 8) < 0) {
		peer_close(p);
		return;
	}
	uv_timer_start(&p->timer, hello_late, sp->opts.hello_ms, 0);
}

static void server_closed(uv_handle_t *h)
{
	struct qsp *sp = h->data;

	sp->server_open = false;
	sp_free_if_done(sp);
}

int qsp_listen(uv_loop_t *loop, const char *path, const struct qsp_opts *opts, struct qsp **out,
	       struct qerr *err)
{
	struct qsp *sp;
	int rc;

	if (opts->role == QSP_REP && !opts->on_request)
		return qerr_set(err, EINVAL, "listen on %s: a REP socket needs a handler", path);
	if (!(sp = calloc(1, sizeof(*sp))))
		return qerr_set(err, ENOMEM, "listen on %s: out of memory", path);
	sp->opts = *opts;
	sp->what = opts->role == QSP_PUB ? "pub" : "rep";
	uv_pipe_init(loop, &sp->server, 0);
	sp->server.data = sp;
	sp->server_open = true;
	/* As nng does for its listeners: the file's mode 0600 after the bind,
	 * and a peer of another uid closed at accept whatever the mode was. */
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		rc = UV_ENAMETOOLONG;
	else
		rc = uv_pipe_bind(&sp->server, path);
	if (rc == 0 && chmod(path, 0600) < 0)
		rc = -errno;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&sp->server, 128, on_connection);
	if (rc < 0) {
		sp->closing = true;
		uv_close((uv_handle_t *)&sp->server, server_closed);
		return qerr_set(err, -rc, "listen on %s: %s", path, uv_strerror(rc));
	}
	*out = sp;
	return 0;
}

void qsp_publish(struct qsp *sp, const void *data, size_t len)
{
	struct frame *f = NULL;
	struct peer *next;

	if (len > UINT32_MAX - FRAME_HEAD) { /* a libuv buffer's limit; no event comes near */
		qlog_warn("%s: a message of %zu bytes is too big to send", sp->what, len);
		return;
	}
	for (struct peer *p = sp->peers; p; p = next) {
		next = p->next;
		if (!p->greeted)
			continue;
		if (p->queued >= sp->opts.queue_max) {
			if (!p->warned)
				qlog_warn(
				    "%s: a subscriber has %u messages waiting: it loses new ones",
				    sp->what, p->queued);
			p->warned = true;
			sp->dropped++;
			continue;
		}
		if (!f && !(f = frame_new(NULL, 0, data, len))) {
			sp->dropped++;
			continue;
		}
		if (peer_write(p, f, f->data, FRAME_HEAD + len) < 0) {
			sp->dropped++;
			peer_close(p);
		}
	}
	if (f && f->refs == 0)
		free(f);
}

bool qsp_request_waiting(const struct qsp *sp)
{
	for (const struct peer *p = sp->peers; p; p = p->next) {
		uv_os_fd_t fd;
		if (uv_fileno((const uv_handle_t *)&p->pipe, &fd) < 0)
			continue;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 0) > 0)
			return true;
	}
	return false;
}

size_t qsp_peers(const struct qsp *sp)
{
	return sp->npeers;
}

size_t qsp_buffered(const struct qsp *sp)
{
	size_t n = 0;
	for (const struct peer *p = sp->peers; p; p = p->next)
		n += p->in_cap;
	return n;
}

uint64_t qsp_dropped(const struct qsp *sp)
{
	return sp->dropped;
}

void qsp_close(struct qsp *sp)
{
	if (!sp || sp->closing)
		return;
	sp->closing = true;
	while (sp->peers)
		peer_close(sp->peers);
	uv_close((uv_handle_t *)&sp->server, server_closed);
}
