/* The RDMA backend of netd's node-to-node transport (docs/netd-transport.md).
 *
 * Two layers:
 *
 *  - the ring protocol (transport_rdma_ring.c): a byte stream over one
 *    reliable-connection queue pair.  Each side registers a receive ring the
 *    peer may RDMA WRITE into and a send ring it stages its bytes in.  Bytes
 *    go out as RDMA WRITE WITH IMMEDIATE from our send ring into the peer's
 *    receive ring at the same offset, the immediate saying how many; the
 *    receiver rings a doorbell back (a zero-length WRITE WITH IMMEDIATE)
 *    saying how many bytes it consumed and how many RECVs it re-posted, which
 *    are the two credits the sender spends.  It sees the device only as
 *    "post work, poll completions" (struct qt_rdev_ops), so the unit tests
 *    run it over an in-memory fake device;
 *
 *  - the verbs layer (transport_rdma_verbs.c): rdma-core.  librdmacm sets
 *    the connection up (resolve address and route, connect / listen and
 *    accept, the rings' addresses and keys in the private data), libibverbs
 *    does the rest (protection domain, completion channel and queue, RC
 *    queue pair, two registered rings).  No RDMA device exists on the
 *    machines this was written on: that layer is compiled (-Werror) but has
 *    never run; see the docs.
 *
 * The peer may be compromised.  It can write anything anywhere in our
 * receive ring at any time (it holds the rkey), so the ring is read by our
 * own indices only, each byte copied out once before the frame parser sees
 * it, and every immediate is checked against what the peer could honestly
 * have sent: a violation breaks the ring (-EPROTO) and the connection with
 * it.
 */
#ifndef QUIVER_NETD_TRANSPORT_RDMA_H
#define QUIVER_NETD_TRANSPORT_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "libcommon/err.h"
#include "services/netd/transport.h"

/* Ring bytes per direction: a power of two in [MIN, MAX].  MAX keeps a
 * doorbell's byte count within its 21 bits. */
#define QT_RRING_SIZE_MIN  4096u
#define QT_RRING_SIZE_MAX  (1u << 20)
#define QT_RRING_DEPTH_MIN 4u	 /* RECVs posted; doorbells need >= 4 */
#define QT_RRING_DEPTH_MAX 1023u /* a doorbell carries 10 bits of them */

/* Immediate data (host order): bit 31 clear: DATA, the low 31 bits are the
 * byte count written; set: a doorbell, bits 0-20 bytes consumed, bits
 * 21-30 RECVs re-posted. */
#define QT_IMM_DOORBELL	   0x80000000u
#define QT_IMM_BYTES_MASK  0x001fffffu
#define QT_IMM_RECVS_SHIFT 21
#define QT_IMM_RECVS_MASK  0x3ffu

enum qt_wc_op {
	QT_WC_WRITE = 1, /* our WRITE WITH IMMEDIATE completed */
	QT_WC_RECV = 2,	 /* the peer's WRITE WITH IMMEDIATE arrived */
};

struct qt_rdev_wc {
	uint64_t wr_id; /* WRITE: what we posted it with */
	enum qt_wc_op op;
	int status; /* 0, or a negative errno: failed work, the link is gone */
	uint32_t imm;
};

/* The posted-work / completion device under the ring protocol. */
struct qt_rdev_ops {
	/* RDMA WRITE WITH IMMEDIATE of len bytes at off in our send ring to
	 * off in the peer's receive ring (len 0: only the immediate),
	 * signalled.  Negative errno if it cannot be posted. */
	int (*post_write_imm)(void *dev, uint64_t wr_id, uint32_t off, uint32_t len, uint32_t imm);
	/* Post one RECV (for a WRITE WITH IMMEDIATE: no buffer). */
	int (*post_recv)(void *dev);
	/* Up to max completions into wc: how many (0: none), or a negative
	 * errno. */
	int (*poll)(void *dev, struct qt_rdev_wc *wc, int max);
};

/* The rings and queue depths of one established connection. */
struct qt_rring_params {
	uint8_t *sbuf, *rbuf;	  /* ours: size bytes each, registered */
	uint32_t size;		  /* both sides use the same */
	uint32_t send_depth;	  /* WRITEs we may have in flight */
	uint32_t peer_recv_depth; /* RECVs the peer posted before connecting */
};

struct qt_rring {
	const struct qt_rdev_ops *ops;
	void *dev;
	uint8_t *sbuf, *rbuf;
	uint32_t size, mask, send_depth, peer_depth;
	/* Sending; all byte counts free-running. */
	uint64_t s_tail;      /* bytes posted */
	uint64_t s_done;      /* bytes whose WRITE completed (send ring reusable) */
	uint64_t s_peer_head; /* bytes the peer consumed (its doorbells) */
	uint32_t peer_recvs;  /* RECVs the peer has posted that we have not used */
	uint32_t inflight;    /* WRITEs posted and not completed */
	/* Receiving. */
	uint64_t r_tail;     /* bytes the peer wrote (its immediates) */
	uint64_t r_head;     /* bytes we consumed */
	uint64_t r_reported; /* r_head as last told to the peer */
	uint32_t recv_depth; /* RECVs we keep posted */
	uint32_t recvs_owed; /* RECVs re-posted and not yet told to the peer */
	/* Counters for tests and stats. */
	uint64_t doorbells_sent, doorbells_rcvd, writes_posted;
	int error; /* sticky negative errno once broken */
	struct qerr err;
};

/* Start the protocol on an established connection whose device has
 * already posted recv_depth RECVs (they must be there before the peer can
 * write).  -EINVAL for bad geometry. */
int qt_rring_init(struct qt_rring *r, const struct qt_rdev_ops *ops, void *dev,
		  const struct qt_rring_params *p, uint32_t recv_depth);
/* Stage and post up to len bytes: the count taken, -EAGAIN when the ring
 * or the credits are exhausted, the sticky error when broken. */
ssize_t qt_rring_send(struct qt_rring *r, const void *buf, size_t len);
/* Copy up to len received bytes out: the count, -EAGAIN, or the error. */
ssize_t qt_rring_recv(struct qt_rring *r, void *buf, size_t len);
/* Poll and act on every completion (re-post RECVs, take credits, ring a
 * doorbell when one is due).  0, or the (sticky) negative errno. */
int qt_rring_process(struct qt_rring *r);
/* Bytes received and not read yet. */
static inline uint64_t qt_rring_readable(const struct qt_rring *r)
{
	return r->r_tail - r->r_head;
}

/* ---- The backend over any device ------------------------------------------ */

enum qt_rdev_state { QT_RDEV_CONNECTING, QT_RDEV_UP, QT_RDEV_DOWN };

/* What the backend needs of a device beyond posting work. */
struct qt_rdev_conn_ops {
	const struct qt_rdev_ops *work;
	/* The fd to poll (POLLIN) for connection events and completions. */
	int (*fd)(const void *dev);
	/* Consume what made the fd readable (connection manager events,
	 * completion channel; re-arm it) and say where the connection is.
	 * A negative errno (err) when set-up failed. */
	int (*events)(void *dev, enum qt_rdev_state *state, struct qerr *err);
	/* Once UP: the rings and depths. */
	void (*params)(const void *dev, struct qt_rring_params *p, uint32_t *recv_depth);
	void (*describe)(const void *dev, char *buf, size_t len);
	void (*destroy)(void *dev);
};

/* A struct qt_backend over dev; it owns dev from here on (destroyed on
 * failure too). */
struct qt_backend *qt_rdma_backend_new(const struct qt_rdev_conn_ops *ops, void *dev,
				       struct qerr *err);
/* The ring of a backend made by qt_rdma_backend_new (tests), NULL before
 * the connection is up or for another backend. */
const struct qt_rring *qt_rdma_backend_ring(const struct qt_backend *b);

/* ---- rdma-core ------------------------------------------------------------ */

struct qt_rdma_params {
	uint32_t ring_size;  /* 0: 1 MiB */
	uint32_t recv_depth; /* 0: 256 */
	uint32_t send_depth; /* 0: 256 */
	int timeout_ms;	     /* address and route resolution; 0: 2000 */
};

/* 1 when at least one RDMA device is there, 0 when none, with msg saying
 * why in words for netd's start-up line. */
int qt_rdma_probe(char *msg, size_t len);

/* Dial over RDMA (librdmacm): the backend connects asynchronously. */
struct qt_backend *qt_rdma_dial(const struct sockaddr *addr, socklen_t len,
				const struct qt_rdma_params *p, struct qerr *err);
/* Listen over RDMA; accept() answers each connection request with the
 * rings' keys. */
struct qt_listener *qt_rdma_listen(const struct sockaddr *addr, socklen_t len,
				   const struct qt_rdma_params *p, struct qerr *err);

#endif
