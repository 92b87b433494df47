/* The frames of netd's node-to-node transport (docs/netd-transport.md).
 *
 * Every frame is a 16-byte header followed by `len` payload bytes, all
 * integers big-endian (the peer is another machine).  The decoder is the
 * first thing that touches bytes from the peer node, which may be
 * compromised: it checks the header (version, type, flags, channel id,
 * length bound per type, credit) before anyone looks at the payload, and the
 * payload parsers copy fields out and check each one.  Nothing here keeps
 * state: which frame is acceptable when is the connection's business
 * (transport.c).
 *
 * Return values follow docs/error-handling.md: >= 0 on success, a negative
 * errno on failure with the struct qerr filled.
 */
#ifndef QUIVER_NETD_TRANSPORT_FRAME_H
#define QUIVER_NETD_TRANSPORT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "libcommon/err.h"

#define QT_FRAME_VERSION 1u	/* the header's first byte */
#define QT_PROTO_VERSION 1u	/* HELLO's protocol version */
#define QT_HDR_SIZE	 16u	/* bytes */
#define QT_DATA_MAX	 65536u /* payload bytes of one DATA frame */
#define QT_FRAME_MAX	 (QT_HDR_SIZE + QT_DATA_MAX)
#define QT_CHAN_SIDE_BIT 0x80000000u /* set in ids allocated by the higher node id */

/* Bounds on the per-channel receive window a node announces in HELLO. */
#define QT_WINDOW_MIN 4096u
#define QT_WINDOW_MAX (16u << 20)

enum qt_frame_type {
	QT_HELLO = 1,	  /* conn: node id, protocol version, window */
	QT_OPEN = 2,	  /* chan: destination and source addresses */
	QT_OPEN_OK = 3,	  /* chan */
	QT_OPEN_FAIL = 4, /* chan: errno */
	QT_DATA = 5,	  /* chan: bytes (credit may carry a window update) */
	QT_CREDIT = 6,	  /* chan: window update in the header's credit */
	QT_FIN = 7,	  /* chan: the sender will send no more DATA */
	QT_RST = 8,	  /* chan: abort, errno */
	QT_PING = 9,	  /* conn: 8 opaque bytes */
	QT_PONG = 10,	  /* conn: the PING's 8 bytes */
	QT_GOAWAY = 11,	  /* conn: errno; the sender closes the connection */
};
#define QT_TYPE_MAX QT_GOAWAY

/* HELLO flags. */
#define QT_HELLO_DIALER 0x0001u /* the sender dialed this connection */

struct qt_frame_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;	 /* must be 0 in version 1 */
	uint32_t chan;	 /* 0 for connection frames, non-zero for channel frames */
	uint32_t len;	 /* payload bytes after the header */
	uint32_t credit; /* CREDIT: > 0; DATA: 0 or a piggybacked update; else 0 */
};

struct qt_hello {
	uint64_t node_id;
	uint16_t proto_version;
	uint16_t flags;
	uint32_t window;
};
#define QT_HELLO_LEN 16u

/* An endpoint of the stream a channel carries: AF_INET or AF_INET6, port in
 * host order, the address in network order (4 or 16 bytes used). */
struct qt_endpoint {
	sa_family_t family;
	uint16_t port;
	uint8_t addr[16];
};
#define QT_ENDPOINT_LEN 20u
#define QT_OPEN_LEN	(2 * QT_ENDPOINT_LEN)

struct qt_open {
	struct qt_endpoint dst; /* where the opener wants to connect */
	struct qt_endpoint src; /* the opener's source (the sandbox's socket) */
};

#define QT_ERRNO_LEN 4u
#define QT_PING_LEN  8u

const char *qt_frame_type_name(unsigned type);

/* Decode and check a header from the first QT_HDR_SIZE bytes of buf.
 * 0 when buf holds fewer than QT_HDR_SIZE bytes (need more), else the whole
 * frame's size (header + payload), which may be more than len; -EPROTO
 * for a header no honest peer sends (err names what is wrong). */
int qt_frame_decode_hdr(const uint8_t *buf, size_t len, struct qt_frame_hdr *out, struct qerr *err);

/* Payload parsers; len is the header's len, already checked against the
 * type's bound.  -EPROTO on a malformed payload. */
int qt_frame_parse_hello(const uint8_t *p, size_t len, struct qt_hello *out, struct qerr *err);
int qt_frame_parse_open(const uint8_t *p, size_t len, struct qt_open *out, struct qerr *err);
/* OPEN_FAIL, RST, GOAWAY: an errno from the short list netd forwards
 * (qt_errno_ok); anything else is a protocol error. */
int qt_frame_parse_errno(const uint8_t *p, size_t len, int *out, struct qerr *err);

/* Whether an errno may travel in OPEN_FAIL, RST or GOAWAY.  The receiver
 * hands it to a sandbox's connect() or recv(), so it must be one those
 * calls can return for a network reason. */
bool qt_errno_ok(int e);

/* Encoders: write the whole frame at out, which must have room for
 * QT_HDR_SIZE + the payload; return the frame's size. */
size_t qt_frame_put_hdr(uint8_t *out, unsigned type, uint32_t chan, uint32_t len, uint32_t credit);
size_t qt_frame_put_hello(uint8_t *out, const struct qt_hello *h);
size_t qt_frame_put_open(uint8_t *out, uint32_t chan, const struct qt_open *o);
size_t qt_frame_put_errno(uint8_t *out, unsigned type, uint32_t chan, int e);
size_t qt_frame_put_ping(uint8_t *out, unsigned type, uint64_t opaque);

/* struct sockaddr (AF_INET/AF_INET6) <-> endpoint.  -EAFNOSUPPORT for
 * another family, -EINVAL when len is short. */
int qt_endpoint_from_sockaddr(struct qt_endpoint *ep, const struct sockaddr *sa, socklen_t len);
socklen_t qt_endpoint_to_sockaddr(const struct qt_endpoint *ep, struct sockaddr_storage *ss);

#endif
