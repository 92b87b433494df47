/* The shared-memory ring pair between a guest kernel and a host daemon
 * (iod, netd): a submission queue (guest -> daemon) and a completion queue
 * (daemon -> guest) of fixed-size entries in one sealed memfd, plus one
 * eventfd each way for wake-ups.  docs/ring.md has the byte layout, the
 * ordering rules and the wake-up protocol.
 *
 * The peer is hostile: it can write anything into the shared memory at any
 * time.  So the geometry is read from shared memory once, at attach, and
 * kept privately; our own index is kept privately and only ever stored to
 * shared memory; the peer's index is range-checked on every load; entries
 * are copied out before anything looks at them.  A peer index out of range
 * breaks the ring for good (-EPROTO); a malformed entry is consumed and
 * reported (-EBADMSG) without breaking it.
 *
 * Return values: >= 0 on success, a negative errno on failure (no struct
 * qerr: these are hot-path calls, and every failure has exactly one cause
 * per errno, listed at each function).
 */
#ifndef QUIVER_RING_H
#define QUIVER_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RING_MAGIC   0x474e5251u /* "QRNG" as little-endian bytes */
#define RING_VERSION 1u

#define RING_ENTRIES_MIN    2u /* per queue, a power of two */
#define RING_ENTRIES_MAX    4096u
#define RING_ENTRY_SIZE_MAX 4096u /* bytes, a multiple of 8 */

/* Byte offsets in the shared region (docs/ring.md).  Each index sits on its
 * own cache line so the producer and consumer do not bounce one line. */
#define RING_OFF_MAGIC	    0
#define RING_OFF_VERSION    4
#define RING_OFF_ENTRIES    8
#define RING_OFF_ENTRY_SIZE 12
#define RING_OFF_SIZE	    16 /* u64: total bytes of the region */
#define RING_OFF_SQ_TAIL    64
#define RING_OFF_SQ_HEAD    128
#define RING_OFF_SQ_FLAGS   132
#define RING_OFF_CQ_TAIL    192
#define RING_OFF_CQ_HEAD    256
#define RING_OFF_CQ_FLAGS   260
#define RING_OFF_SQ_ENTRIES 512 /* CQ entries follow the SQ's */
#define RING_REGION_ALIGN   4096

/* Bit in a queue's flags word, set by that queue's consumer before it
 * sleeps: the producer must write the eventfd after publishing. */
#define RING_NEED_WAKEUP 1u

/* The first bytes of every entry.  The ring itself checks only that len
 * fits in the entry; opcodes and flags are checked by the consumer's
 * validator. */
struct ring_entry_hdr {
	uint16_t opcode;
	uint16_t flags;
	uint32_t len;	    /* payload bytes following this header */
	uint64_t user_data; /* opaque; a completion echoes its request's */
};

#define RING_ENTRY_SIZE_MIN ((uint32_t)sizeof(struct ring_entry_hdr))

enum ring_side {
	RING_SUBMITTER, /* the guest kernel: produces the SQ, consumes the CQ */
	RING_SERVER,	/* the daemon: consumes the SQ, produces the CQ */
};

struct ring_params {
	uint32_t entries;    /* per queue: a power of two in [RING_ENTRIES_MIN, MAX] */
	uint32_t entry_size; /* a multiple of 8 in [RING_ENTRY_SIZE_MIN, MAX] */
	/* Where the free-running indices start.  0 normally; tests start near
	 * UINT32_MAX so the wrap is crossed in the first few entries. */
	uint32_t first_index;
};

/* Called on the private copy of an entry, after the ring has checked
 * hdr.len; returns true to accept it.  Never sees shared memory. */
typedef bool (*ring_validate_fn)(const void *entry, void *ctx);

/* One direction.  Fields are private to ring.c. */
struct ring_queue {
	_Atomic uint32_t *tail;	 /* shared: written by the producer */
	_Atomic uint32_t *head;	 /* shared: written by the consumer */
	_Atomic uint32_t *flags; /* shared: written by the consumer */
	unsigned char *slots;	 /* shared: entries * entry_size bytes */
	uint32_t own;		 /* our index: tail if we produce, head if we consume */
	uint32_t peer_cached;	 /* last validated value of the peer's index */
	bool armed;		 /* we set RING_NEED_WAKEUP and have not cleared it */
};

/* One side of a ring pair.  Fields are private to ring.c except the fds,
 * which the creator hands to the peer (SCM_RIGHTS). */
struct ring {
	int memfd;  /* creator only (to pass on); -1 after attach */
	int sq_efd; /* written by the submitter, read by the server */
	int cq_efd; /* written by the server, read by the submitter */

	enum ring_side side;
	bool broken; /* sticky: a peer index was out of range */
	uint32_t entries, mask, entry_size;
	void *mem;
	size_t mem_size;
	struct ring_queue sq, cq;
};

/* A shared region of size bytes other than a ring (offload-all's data
 * area), made and checked as the ring's own: a memfd sealed at its size
 * (shrink, grow, seal), so that no mapping of it can ever fault.
 * ring_shm_create maps it here and returns the memfd (to pass on) or
 * -errno.  ring_shm_map maps a peer's memfd that must be sealed and
 * exactly size bytes: 0, or -EINVAL (not a sealed memfd of that size),
 * -EBADF, or mmap's errno.  *mem is set on success (munmap it). */
int ring_shm_create(const char *name, size_t size, void **mem);
int ring_shm_map(int fd, size_t size, void **mem);

/* Size in bytes of the region for these parameters; 0 if they are invalid. */
size_t ring_region_size(uint32_t entries, uint32_t entry_size);

/* Create a ring pair: a memfd sealed against resizing (so the peer's
 * mapping can never SIGBUS), both eventfds, and our side's view.
 * -EINVAL for bad params, other negative errnos from the syscalls. */
int ring_create(struct ring *r, enum ring_side side, const struct ring_params *p);

/* Map a ring pair created by the peer.  Checks the fd's seals and size, the
 * header (magic, version, geometry, size) and the current indices; the
 * eventfds are checked to be eventfds and duplicated, so the caller keeps
 * (and closes) its own fds; memfd is not kept after mapping.
 * -EINVAL for a malformed region or fd, -EPROTO for indices out of range. */
int ring_attach(struct ring *r, enum ring_side side, int memfd, int sq_efd, int cq_efd);

/* Unmap and close; safe on a zeroed or already destroyed ring. */
void ring_destroy(struct ring *r);

/* Producer: copy one entry (entry_size bytes, starting with a struct
 * ring_entry_hdr) into the queue and publish it.  Does not wake the peer:
 * push a batch, then ring_notify_peer().
 * 0, -EAGAIN when full, -EINVAL for the wrong side or hdr.len too big,
 * -EPROTO when the ring is broken. */
int ring_sq_push(struct ring *r, const void *entry);
int ring_cq_push(struct ring *r, const void *entry);

/* Consumer: copy the next entry into out (entry_size bytes), release its
 * slot, then validate the copy (hdr.len bound, then validate if not NULL).
 * 0, -EAGAIN when empty, -EBADMSG when the entry was consumed but is
 * invalid (out holds the copy; only hdr.user_data is fit to address an
 * error reply), -EINVAL for the wrong side, -EPROTO when broken. */
int ring_sq_pop(struct ring *r, void *out, ring_validate_fn validate, void *ctx);
int ring_cq_pop(struct ring *r, void *out, ring_validate_fn validate, void *ctx);

/* Wake the consumer of the queue we produce, if it asked for it (its
 * RING_NEED_WAKEUP flag).  1 when the eventfd was written, 0 when not
 * needed, -EPROTO when the peer tampered with the eventfd. */
int ring_notify_peer(struct ring *r);

/* Sleeping until the queue we consume has entries.  For an event loop:
 *   n = ring_wait_prepare(r);   > 0: entries ready, do not sleep
 *                               0: armed, safe to sleep on ring_wait_fd(r)
 *   ...poll says the fd is readable...
 *   ring_wait_finish(r);        then pop until -EAGAIN, and prepare again.
 * ring_wait() does the three steps with poll(2). */
int ring_wait_prepare(struct ring *r);
void ring_wait_finish(struct ring *r);
int ring_wait_fd(const struct ring *r);
/* > 0 entries ready, 0 on timeout (timeout_ms < 0: none), -EINTR,
 * -EPROTO when broken.  Stale wake-ups are absorbed, not returned. */
int ring_wait(struct ring *r, int timeout_ms);

#endif
