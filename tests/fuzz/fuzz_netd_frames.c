/* libFuzzer target for the receive side of a netd transport connection
 * (services/netd/transport.h): the input is the byte stream a compromised
 * peer node sends, fed to a real node through an in-memory backend.
 *
 * Byte 0 picks the set-up:
 *   bit 0    the connection is one we dialed (to node 99) or accepted
 *   bit 1    prepend a valid HELLO from node 99, so the fuzzer starts past
 *            the handshake (the seeds also carry their own)
 *   bits 2-3 how the stream is cut into recv() results: 1 byte, 7 bytes,
 *            4 KiB, or all at once
 *   bit 4    the backend's send takes only 100 bytes a call, then
 *            -EAGAIN every other call (back-pressure)
 *   bit 5    refuse incoming opens (else accept them)
 *   bit 6    the application does not read (credit is not returned)
 *   bit 7    open three channels of our own first (ids 1, 2, 3: node 1 is
 *            the lower id, so they carry no side bit)
 * The rest is the peer's bytes; after them, the end of the stream.
 *
 * The invariants: no crash, no leak, no undefined behaviour (ASan/UBSan);
 * a channel never holds more unread bytes than its window; the payload
 * parsers agree with the header decoder. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/netd/transport.h"
#include "services/netd/transport_frame.h"

#define WINDOW	 QT_WINDOW_MIN
#define PEER_ID	 99u
#define LOCAL_ID 1u

struct mem_backend {
	struct qt_backend base;
	const uint8_t *data;
	size_t len, off, chunk;
	bool slow_send;
	unsigned calls;
	uint64_t sent;
};

static int mb_connect_step(struct qt_backend *b, struct qerr *err)
{
	(void)b;
	(void)err;
	return 1;
}

static ssize_t mb_send(struct qt_backend *b, const void *buf, size_t len, struct qerr *err)
{
	struct mem_backend *m = (struct mem_backend *)b;
	(void)buf;
	(void)err;
	if (m->slow_send) {
		if (m->calls++ % 2)
			return -EAGAIN;
		if (len > 100)
			len = 100;
	}
	m->sent += len;
	return (ssize_t)len;
}

static ssize_t mb_recv(struct qt_backend *b, void *buf, size_t len, struct qerr *err)
{
	struct mem_backend *m = (struct mem_backend *)b;
	(void)err;
	if (m->off == m->len)
		return 0;
	size_t n = m->len - m->off;
	if (n > m->chunk)
		n = m->chunk;
	if (n > len)
		n = len;
	memcpy(buf, m->data + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static int mb_fd(const struct qt_backend *b)
{
	(void)b;
	return -1;
}

static unsigned mb_events(const struct qt_backend *b, bool want_read, bool want_send)
{
	(void)b;
	return (want_read ? POLLIN : 0u) | (want_send ? POLLOUT : 0u);
}

static int mb_process(struct qt_backend *b, struct qerr *err)
{
	(void)b;
	(void)err;
	return 0;
}

static void mb_describe(const struct qt_backend *b, char *buf, size_t len)
{
	(void)b;
	if (len)
		buf[0] = '\0';
}

static void mb_destroy(struct qt_backend *b)
{
	free(b);
}

static const struct qt_backend_ops mem_ops = {
    .name = "mem",
    .connect_step = mb_connect_step,
    .send = mb_send,
    .recv = mb_recv,
    .fd = mb_fd,
    .events = mb_events,
    .process = mb_process,
    .describe = mb_describe,
    .destroy = mb_destroy,
};

struct app {
	bool refuse, no_read;
	bool conn_dead;
	unsigned events;
};

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void drain(struct qt_channel *ch, struct app *a)
{
	uint8_t buf[1500];
	check(qt_channel_pending(ch) <= WINDOW);
	if (a->no_read)
		return;
	for (int i = 0; i < 64; i++) {
		ssize_t n = qt_channel_recv(ch, buf, sizeof(buf));
		if (n <= 0)
			break;
		/* Answer some of it: the peer's credit and our send path. */
		qt_channel_send(ch, buf, (size_t)n / 2);
	}
}

static void cb_poll_update(struct qt_conn *c, unsigned ev, void *ctx)
{
	(void)c;
	((struct app *)ctx)->events = ev;
}

static void cb_conn_down(struct qt_conn *c, uint64_t peer, int err, const char *why, void *ctx)
{
	(void)c;
	(void)peer;
	check(err > 0 && why && why[0]);
	((struct app *)ctx)->conn_dead = true;
}

static void cb_open_request(struct qt_channel *ch, const struct qt_open_req *req, void *ctx)
{
	struct app *a = ctx;
	check(req->peer == PEER_ID);
	check(req->dst.ss_family == AF_INET || req->dst.ss_family == AF_INET6);
	if (a->refuse)
		qt_channel_refuse(ch, ECONNREFUSED);
	else
		check(qt_channel_accept(ch) == 0);
}

static void cb_open_result(struct qt_channel *ch, int err, void *ctx)
{
	(void)ctx;
	if (err)
		qt_channel_close(ch);
	else
		qt_channel_send(ch, "hello", 5);
}

static void cb_readable(struct qt_channel *ch, void *ctx)
{
	drain(ch, ctx);
}

static void cb_fin(struct qt_channel *ch, void *ctx)
{
	drain(ch, ctx);
	qt_channel_shutdown(ch);
}

static void cb_rst(struct qt_channel *ch, int err, void *ctx)
{
	(void)ctx;
	check(qt_errno_ok(err) || err == ETIMEDOUT);
	qt_channel_close(ch);
}

static void cb_writable(struct qt_channel *ch, void *ctx)
{
	(void)ctx;
	qt_channel_send(ch, "more", 4);
}

static const struct qt_callbacks callbacks = {
    .poll_update = cb_poll_update,
    .conn_down = cb_conn_down,
    .open_request = cb_open_request,
    .open_result = cb_open_result,
    .readable = cb_readable,
    .fin = cb_fin,
    .rst = cb_rst,
    .writable = cb_writable,
};

/* The stateless parsers alone, on the same bytes. */
static void parse_all(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (size - off >= QT_HDR_SIZE) {
		struct qt_frame_hdr h;
		struct qerr err;
		int r = qt_frame_decode_hdr(data + off, size - off, &h, &err);
		if (r < 0) {
			check(err.code == EPROTO && err.msg[0]);
			return;
		}
		check(r >= (int)QT_HDR_SIZE && (uint32_t)r == QT_HDR_SIZE + h.len);
		if ((size_t)r > size - off)
			return;
		const uint8_t *p = data + off + QT_HDR_SIZE;
		struct qt_hello hello;
		struct qt_open open;
		int e;
		if (h.type == QT_HELLO)
			qt_frame_parse_hello(p, h.len, &hello, &err);
		else if (h.type == QT_OPEN)
			qt_frame_parse_open(p, h.len, &open, &err);
		else if (h.type == QT_OPEN_FAIL || h.type == QT_RST || h.type == QT_GOAWAY)
			if (qt_frame_parse_errno(p, h.len, &e, &err) == 0)
				check(qt_errno_ok(e));
		off += (size_t)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	parse_all(data, size);

	static const size_t chunks[] = {1, 7, 4096, SIZE_MAX};
	uint8_t *stream = malloc(size + 64);
	if (!stream)
		return 0;
	size_t len = 0;
	bool dialed = mode & 1;
	if (mode & 2) {
		struct qt_hello h = {.node_id = PEER_ID,
				     .proto_version = QT_PROTO_VERSION,
				     .flags = dialed ? 0 : QT_HELLO_DIALER,
				     .window = 65536};
		len = qt_frame_put_hello(stream, &h);
	}
	memcpy(stream + len, data, size);
	len += size;

	struct app a = {.refuse = mode & 0x20, .no_read = mode & 0x40};
	struct qt_config cfg = {
	    .node_id = LOCAL_ID, .window = WINDOW, .max_channels = 64, .send_queue = 8192};
	struct qt_node *n = qt_node_new(&cfg, &callbacks, &a, NULL);
	check(n != NULL);
	if (mode & 0x80) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
		for (int i = 0; i < 3; i++)
			check(qt_channel_open(n, PEER_ID, (struct sockaddr *)&sin, sizeof(sin),
					      (struct sockaddr *)&sin, sizeof(sin), NULL,
					      NULL) != NULL);
	}
	struct mem_backend *m = calloc(1, sizeof(*m));
	check(m != NULL);
	m->base.ops = &mem_ops;
	m->data = stream;
	m->len = len;
	m->chunk = chunks[(mode >> 2) & 3];
	m->slow_send = mode & 0x10;
	struct qt_conn *c = qt_node_attach(n, &m->base, dialed ? PEER_ID : 0, NULL);
	check(c != NULL);
	/* The loop: readable and writable until the connection is gone or
	 * nothing moves any more. */
	for (int round = 0; round < 100000 && !a.conn_dead; round++) {
		size_t off = m->off;
		uint64_t sent = m->sent;
		if (a.events & POLLIN)
			qt_conn_on_readable(c);
		if (!a.conn_dead && (a.events & POLLOUT))
			qt_conn_on_writable(c);
		if (!a.conn_dead && m->off == off && m->sent == sent) {
			qt_node_tick(n);
			if (m->off == off && m->sent == sent)
				break;
		}
	}
	qt_node_free(n);
	free(stream);
	return 0;
}
