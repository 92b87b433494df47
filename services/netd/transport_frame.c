/* Frames of netd's node-to-node transport (transport_frame.h). */
#include "services/netd/transport_frame.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static const char *const type_names[] = {
    [QT_HELLO] = "HELLO",     [QT_OPEN] = "OPEN",
    [QT_OPEN_OK] = "OPEN_OK", [QT_OPEN_FAIL] = "OPEN_FAIL",
    [QT_DATA] = "DATA",	      [QT_CREDIT] = "CREDIT",
    [QT_FIN] = "FIN",	      [QT_RST] = "RST",
    [QT_PING] = "PING",	      [QT_PONG] = "PONG",
    [QT_GOAWAY] = "GOAWAY",
};

const char *qt_frame_type_name(unsigned type)
{
	if (type == 0 || type > QT_TYPE_MAX)
		return "unknown";
	return type_names[type];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static bool is_conn_frame(unsigned type)
{
	return type == QT_HELLO || type == QT_PING || type == QT_PONG || type == QT_GOAWAY;
}

/* The payload length each type must have; DATA is the one variable one. */
static bool len_ok(unsigned type, uint32_t len)
{
	switch (type) {
	case QT_HELLO:
		return len == QT_HELLO_LEN;
	case QT_OPEN:
		return len == QT_OPEN_LEN;
	case QT_OPEN_OK:
	case QT_CREDIT:
	case QT_FIN:
		return len == 0;
	case QT_OPEN_FAIL:
	case QT_RST:
	case QT_GOAWAY:
		return len == QT_ERRNO_LEN;
	case QT_DATA:
		return len >= 1 && len <= QT_DATA_MAX;
	case QT_PING:
	case QT_PONG:
		return len == QT_PING_LEN;
	}
	return false;
}

int qt_frame_decode_hdr(const uint8_t *buf, size_t len, struct qt_frame_hdr *out, struct qerr *err)
{
	if (len < QT_HDR_SIZE)
		return 0;
	struct qt_frame_hdr h = {
	    .version = buf[0],
	    .type = buf[1],
	    .flags = get16(buf + 2),
	    .chan = get32(buf + 4),
	    .len = get32(buf + 8),
	    .credit = get32(buf + 12),
	};
	if (h.version != QT_FRAME_VERSION)
		return qerr_set(err, EPROTO, "frame version %u (we speak %u)", h.version,
				QT_FRAME_VERSION);
	if (h.type == 0 || h.type > QT_TYPE_MAX)
		return qerr_set(err, EPROTO, "unknown frame type %u", h.type);
	const char *name = qt_frame_type_name(h.type);
	if (h.flags)
		return qerr_set(err, EPROTO, "%s: reserved flags 0x%x", name, h.flags);
	if (is_conn_frame(h.type) != (h.chan == 0))
		return qerr_set(err, EPROTO, "%s on channel %u", name, h.chan);
	if (!len_ok(h.type, h.len))
		return qerr_set(err, EPROTO, "%s with a payload of %u bytes", name, h.len);
	if (h.type == QT_CREDIT ? h.credit == 0 || h.credit > QT_WINDOW_MAX
				: (h.type == QT_DATA ? h.credit > QT_WINDOW_MAX : h.credit != 0))
		return qerr_set(err, EPROTO, "%s with a credit of %u", name, h.credit);
	*out = h;
	return (int)(QT_HDR_SIZE + h.len);
}

int qt_frame_parse_hello(const uint8_t *p, size_t len, struct qt_hello *out, struct qerr *err)
{
	if (len != QT_HELLO_LEN)
		return qerr_set(err, EPROTO, "HELLO of %zu bytes", len);
	struct qt_hello h = {
	    .node_id = get64(p),
	    .proto_version = get16(p + 8),
	    .flags = get16(p + 10),
	    .window = get32(p + 12),
	};
	if (h.node_id == 0)
		return qerr_set(err, EPROTO, "HELLO: node id 0");
	if (h.flags & ~QT_HELLO_DIALER)
		return qerr_set(err, EPROTO, "HELLO: unknown flags 0x%x", h.flags);
	/* The protocol version is checked by the caller, which says which
	 * versions it speaks; the window only when the version is ours. */
	*out = h;
	return 0;
}

static int parse_endpoint(const uint8_t *p, struct qt_endpoint *ep, bool need_port,
			  const char *what, struct qerr *err)
{
	memset(ep, 0, sizeof(*ep));
	if (p[1] != 0)
		return qerr_set(err, EPROTO, "OPEN: %s: reserved byte 0x%x", what, p[1]);
	ep->port = get16(p + 2);
	if (need_port && ep->port == 0)
		return qerr_set(err, EPROTO, "OPEN: %s: port 0", what);
	switch (p[0]) {
	case 4:
		ep->family = AF_INET;
		for (int i = 8; i < 20; i++)
			if (p[i])
				return qerr_set(err, EPROTO, "OPEN: %s: IPv4 with trailing bytes",
						what);
		memcpy(ep->addr, p + 4, 4);
		return 0;
	case 6:
		ep->family = AF_INET6;
		memcpy(ep->addr, p + 4, 16);
		return 0;
	}
	return qerr_set(err, EPROTO, "OPEN: %s: address family %u", what, p[0]);
}

int qt_frame_parse_open(const uint8_t *p, size_t len, struct qt_open *out, struct qerr *err)
{
	if (len != QT_OPEN_LEN)
		return qerr_set(err, EPROTO, "OPEN of %zu bytes", len);
	int r = parse_endpoint(p, &out->dst, true, "destination", err);
	if (r == 0)
		r = parse_endpoint(p + QT_ENDPOINT_LEN, &out->src, false, "source", err);
	return r;
}

bool qt_errno_ok(int e)
{
	switch (e) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case ENETUNREACH:
	case ENETDOWN:
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ETIMEDOUT:
	case EACCES:
	case EPERM:
	case EADDRNOTAVAIL:
	case EADDRINUSE:
	case EAFNOSUPPORT:
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
	case EPIPE:
	case EPROTO:
	case EPROTONOSUPPORT:
	case EEXIST:
	case ESHUTDOWN:
	case EINVAL:
		return true;
	}
	return false;
}

int qt_frame_parse_errno(const uint8_t *p, size_t len, int *out, struct qerr *err)
{
	if (len != QT_ERRNO_LEN)
		return qerr_set(err, EPROTO, "errno payload of %zu bytes", len);
	uint32_t e = get32(p);
	if (e > 4095 || !qt_errno_ok((int)e))
		return qerr_set(err, EPROTO, "errno %u is not one the transport carries", e);
	*out = (int)e;
	return 0;
}

size_t qt_frame_put_hdr(uint8_t *out, unsigned type, uint32_t chan, uint32_t len, uint32_t credit)
{
	out[0] = QT_FRAME_VERSION;
	out[1] = (uint8_t)type;
	put16(out + 2, 0);
	put32(out + 4, chan);
	put32(out + 8, len);
	put32(out + 12, credit);
	return QT_HDR_SIZE + len;
}

size_t qt_frame_put_hello(uint8_t *out, const struct qt_hello *h)
{
	uint8_t *p = out + QT_HDR_SIZE;
	put64(p, h->node_id);
	put16(p + 8, h->proto_version);
	put16(p + 10, h->flags);
	put32(p + 12, h->window);
	return qt_frame_put_hdr(out, QT_HELLO, 0, QT_HELLO_LEN, 0);
}

static void put_endpoint(uint8_t *p, const struct qt_endpoint *ep)
{
	memset(p, 0, QT_ENDPOINT_LEN);
	p[0] = ep->family == AF_INET6 ? 6 : 4;
	put16(p + 2, ep->port);
	memcpy(p + 4, ep->addr, ep->family == AF_INET6 ? 16 : 4);
}

size_t qt_frame_put_open(uint8_t *out, uint32_t chan, const struct qt_open *o)
{
	put_endpoint(out + QT_HDR_SIZE, &o->dst);
	put_endpoint(out + QT_HDR_SIZE + QT_ENDPOINT_LEN, &o->src);
	return qt_frame_put_hdr(out, QT_OPEN, chan, QT_OPEN_LEN, 0);
}

size_t qt_frame_put_errno(uint8_t *out, unsigned type, uint32_t chan, int e)
{
	put32(out + QT_HDR_SIZE, (uint32_t)e);
	return qt_frame_put_hdr(out, type, chan, QT_ERRNO_LEN, 0);
}

size_t qt_frame_put_ping(uint8_t *out, unsigned type, uint64_t opaque)
{
	put64(out + QT_HDR_SIZE, opaque);
	return qt_frame_put_hdr(out, type, 0, QT_PING_LEN, 0);
}

int qt_endpoint_from_sockaddr(struct qt_endpoint *ep, const struct sockaddr *sa, socklen_t len)
{
	memset(ep, 0, sizeof(*ep));
	if (!sa || len < (socklen_t)sizeof(sa_family_t))
		return -EINVAL;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;
		if (len < (socklen_t)sizeof(sin))
			return -EINVAL;
		memcpy(&sin, sa, sizeof(sin));
		ep->family = AF_INET;
		ep->port = ntohs(sin.sin_port);
		memcpy(ep->addr, &sin.sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		if (len < (socklen_t)sizeof(sin6))
			return -EINVAL;
		memcpy(&sin6, sa, sizeof(sin6));
		ep->family = AF_INET6;
		ep->port = ntohs(sin6.sin6_port);
		memcpy(ep->addr, &sin6.sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

socklen_t qt_endpoint_to_sockaddr(const struct qt_endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(ep->port);
		memcpy(&sin6->sin6_addr, ep->addr, 16);
		return sizeof(*sin6);
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(ep->port);
	memcpy(&sin->sin_addr, ep->addr, 4);
	return sizeof(*sin);
}
