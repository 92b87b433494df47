/* The publishing side of nng's pub0 over IPC, on a libuv loop (pub.h).
 *
 * Why not nng's own PUB socket: Debian 12's nng (1.5.2; its issue #1518,
 * fixed in 1.6) breaks a listener when a peer hangs up during the SP
 * handshake.  On vmmd's events.sock three bare connect/close were enough:
 * no later subscriber got another event, and nng's poll thread spun at a
 * full CPU for good.  The REP sockets have a watch that restarts the daemon
 * (nng.c); a publisher needs no nng at all, so it has none.
 *
 * The protocol, as nng speaks it on ipc://:
 *   - each side sends an 8-byte greeting: 00 'S' 'P' 00, its protocol id
 *     (16 bits, big-endian; PUB0 0x20, SUB0 0x21), 00 00;
 *   - then the publisher sends each message as a frame: the byte 0x01, the
 *     length as 64 bits big-endian, the message (pub0 adds no header);
 *   - a subscriber sends nothing after its greeting (it filters topics
 *     itself).
 * A subscriber gets messages once its greeting came, whole and in order;
 * one whose queue is full loses new ones rather than stalling the loop. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/log.h"
#include "libcommon/pub.h"

#define SP_PROTO_PUB0 0x20
#define SP_PROTO_SUB0 0x21
#define FRAME_HEAD    9
#define MAX_PEERS     1024

static const unsigned char pub_hello[8] = {0, 'S', 'P', 0, 0, SP_PROTO_PUB0, 0, 0};
static const unsigned char sub_hello[8] = {0, 'S', 'P', 0, 0, SP_PROTO_SUB0, 0, 0};

struct frame {
	unsigned refs;
	unsigned char data[];
};

struct peer {
	uv_pipe_t pipe;
	uv_timer_t timer; /* the greeting's deadline */
	struct qpub *pub;
	struct peer *next, **pprev;
	unsigned char hello[8];
	size_t got;
	bool greeted, warned; /* warned: of its full queue */
	unsigned queued;
	int handles; /* open of pipe and timer */
};

struct send_req {
	uv_write_t req;
	struct frame *frame; /* NULL for our greeting */
};

struct qpub {
	uv_pipe_t server;
	struct qpub_opts opts;
	struct peer *peers;
	size_t npeers;
	uint64_t dropped;
	bool closing, server_open, warned_full;
};

static void pub_free_if_done(struct qpub *pub)
{
	if (pub->closing && !pub->server_open && pub->npeers == 0)
		free(pub);
}

static void peer_handle_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct qpub *pub = p->pub;

	if (--p->handles > 0)
		return;
	free(p);
	pub->npeers--;
	pub_free_if_done(pub);
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
		peer_close(p); /* EPIPE: the subscriber went away */
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

static void hello_late(uv_timer_t *t)
{
	struct peer *p = t->data;

	qlog_debug("pub: a peer sent no greeting in %u ms; closing it", p->pub->opts.hello_ms);
	peer_close(p);
}

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char discard[256];
	struct peer *p = h->data;

	(void)hint;
	if (p->greeted) /* a subscriber has nothing to say; whatever comes is dropped */
		*buf = uv_buf_init(discard, sizeof(discard));
	else /* read no further than the greeting */
		*buf =
		    uv_buf_init((char *)p->hello + p->got, (unsigned)(sizeof(p->hello) - p->got));
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct peer *p = s->data;

	(void)buf;
	if (n < 0) { /* UV_EOF, or an error: gone either way */
		peer_close(p);
		return;
	}
	if (p->greeted || n == 0)
		return;
	p->got += (size_t)n;
	if (p->got < sizeof(p->hello))
		return;
	if (memcmp(p->hello, sub_hello, sizeof(sub_hello)) != 0) {
		qlog_debug(
		    "pub: a peer that is not an SP SUB0 (greeting %02x%02x%02x%02x %02x%02x); "
		    "closing it",
		    p->hello[0], p->hello[1], p->hello[2], p->hello[3], p->hello[4], p->hello[5]);
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
		qlog_warn("pub: refusing a peer with uid %u", (unsigned)cr.uid);
		return false;
	}
	return true;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct qpub *pub = server->data;
	struct peer *p;

	if (status < 0) {
		qlog_warn("pub: accept: %s", uv_strerror(status));
		return;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		qlog_warn("pub: accept: out of memory");
		return;
	}
	p->pub = pub;
	p->handles = 2;
	uv_pipe_init(server->loop, &p->pipe, 0);
	uv_timer_init(server->loop, &p->timer);
	p->pipe.data = p->timer.data = p;
	p->next = pub->peers;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &pub->peers;
	pub->peers = p;
	pub->npeers++;

	int rc = uv_accept(server, (uv_stream_t *)&p->pipe);
	if (rc < 0) {
		qlog_warn("pub: accept: %s", uv_strerror(rc));
		peer_close(p);
		return;
	}
	if (pub->npeers > MAX_PEERS) {
		if (!pub->warned_full)
			qlog_warn("pub: %d subscribers already; closing new ones", MAX_PEERS);
		pub->warned_full = true;
		peer_close(p);
		return;
	}
	if (!peer_is_us(p) ||
	    (rc = uv_read_start((uv_stream_t *)&p->pipe, peer_alloc, peer_read)) < 0 ||
	    (rc = peer_write(p, NULL, pub_hello, sizeof(pub_hello))) < 0) {
		peer_close(p);
		return;
	}
	uv_timer_start(&p->timer, hello_late, pub->opts.hello_ms, 0);
}

static void server_closed(uv_handle_t *h)
{
	struct qpub *pub = h->data;

	pub->server_open = false;
	pub_free_if_done(pub);
}

int qpub_listen(uv_loop_t *loop, const char *path, const struct qpub_opts *opts, struct qpub **out,
		struct qerr *err)
{
	struct qpub *pub = calloc(1, sizeof(*pub));
	int rc;

	if (!pub)
		return qerr_set(err, ENOMEM, "listen on %s: out of memory", path);
	pub->opts = *opts;
	uv_pipe_init(loop, &pub->server, 0);
	pub->server.data = pub;
	pub->server_open = true;
	/* As nng does for its listeners: the file's mode 0600 after the bind,
	 * and a peer of another uid closed at accept whatever the mode was. */
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		rc = UV_ENAMETOOLONG;
	else
		rc = uv_pipe_bind(&pub->server, path);
	if (rc == 0 && chmod(path, 0600) < 0)
		rc = -errno;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&pub->server, 128, on_connection);
	if (rc < 0) {
		pub->closing = true;
		uv_close((uv_handle_t *)&pub->server, server_closed);
		return qerr_set(err, -rc, "listen on %s: %s", path, uv_strerror(rc));
	}
	*out = pub;
	return 0;
}

void qpub_send(struct qpub *pub, const void *data, size_t len)
{
	struct frame *f = NULL;
	struct peer *next;

	if (len > UINT32_MAX - FRAME_HEAD) { /* a libuv buffer's limit; no event comes near */
		qlog_warn("pub: a message of %zu bytes is too big to send", len);
		return;
	}
	for (struct peer *p = pub->peers; p; p = next) {
		next = p->next;
		if (!p->greeted)
			continue;
		if (p->queued >= pub->opts.queue_max) {
			if (!p->warned)
				qlog_warn(
				    "pub: a subscriber has %u messages waiting: it loses new ones",
				    p->queued);
			p->warned = true;
			pub->dropped++;
			continue;
		}
		if (!f) {
			if (!(f = malloc(sizeof(*f) + FRAME_HEAD + len))) {
				pub->dropped++;
				continue;
			}
			f->refs = 0;
			f->data[0] = 1;
			for (int i = 0; i < 8; i++)
				f->data[1 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
			memcpy(f->data + FRAME_HEAD, data, len);
		}
		if (peer_write(p, f, f->data, FRAME_HEAD + len) < 0) {
			pub->dropped++;
			peer_close(p);
		}
	}
	if (f && f->refs == 0)
		free(f);
}

size_t qpub_peers(const struct qpub *pub)
{
	return pub->npeers;
}

uint64_t qpub_dropped(const struct qpub *pub)
{
	return pub->dropped;
}

void qpub_close(struct qpub *pub)
{
	if (!pub || pub->closing)
		return;
	pub->closing = true;
	while (pub->peers)
		peer_close(pub->peers);
	uv_close((uv_handle_t *)&pub->server, server_closed);
}
