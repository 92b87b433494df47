/* The shared-memory ring pair (ring.h, docs/ring.md). */
#include "libcommon/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RING_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static bool params_valid(uint32_t entries, uint32_t entry_size)
{
	return entries >= RING_ENTRIES_MIN && entries <= RING_ENTRIES_MAX &&
	       (entries & (entries - 1)) == 0 && entry_size >= RING_ENTRY_SIZE_MIN &&
	       entry_size <= RING_ENTRY_SIZE_MAX && entry_size % 8 == 0;
}

int ring_shm_create(const char *name, size_t size, void **mem)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), e;
	void *p;

	*mem = NULL;
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, RING_SEALS) < 0)
		goto fail;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	*mem = p;
	return fd;
fail:
	e = errno;
	close(fd);
	return -e;
}

/* A peer's region: sealed (without the seals the creator could shrink the
 * file under our mapping and turn every access into SIGBUS); its size in
 * *size.  0, -EBADF, or -EINVAL (not a memfd, or not sealed). */
static int sealed_size(int fd, size_t *size)
{
	int seals = fcntl(fd, F_GET_SEALS);
	struct stat st;

	if (seals < 0)
		return errno == EBADF ? -EBADF : -EINVAL; /* EINVAL: not a memfd */
	if ((seals & RING_SEALS) != RING_SEALS)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (size_t)st.st_size;
	return 0;
}

int ring_shm_map(int fd, size_t size, void **mem)
{
	size_t have = 0;
	int r = sealed_size(fd, &have);
	void *p;

	*mem = NULL;
	if (r < 0)
		return r;
	if (have != size)
		return -EINVAL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*mem = p;
	return 0;
}

size_t ring_region_size(uint32_t entries, uint32_t entry_size)
{
	if (!params_valid(entries, entry_size))
		return 0;
	size_t bytes = RING_OFF_SQ_ENTRIES + 2 * (size_t)entries * entry_size;
	return (bytes + RING_REGION_ALIGN - 1) & ~(size_t)(RING_REGION_ALIGN - 1);
}

static inline _Atomic uint32_t *shm_u32(void *mem, size_t off)
{
	return (_Atomic uint32_t *)((unsigned char *)mem + off);
}

/* Point the queues into the mapping.  Geometry comes from our own copy,
 * never from the shared header, which the peer can rewrite at any time. */
static void layout(struct ring *r)
{
	size_t qbytes = (size_t)r->entries * r->entry_size;

	r->mask = r->entries - 1;
	r->sq.tail = shm_u32(r->mem, RING_OFF_SQ_TAIL);
	r->sq.head = shm_u32(r->mem, RING_OFF_SQ_HEAD);
	r->sq.flags = shm_u32(r->mem, RING_OFF_SQ_FLAGS);
	r->sq.slots = (unsigned char *)r->mem + RING_OFF_SQ_ENTRIES;
	r->cq.tail = shm_u32(r->mem, RING_OFF_CQ_TAIL);
	r->cq.head = shm_u32(r->mem, RING_OFF_CQ_HEAD);
	r->cq.flags = shm_u32(r->mem, RING_OFF_CQ_FLAGS);
	r->cq.slots = r->sq.slots + qbytes;
}

/* The queue this side produces into / consumes from. */
static struct ring_queue *produced(struct ring *r)
{
	return r->side == RING_SUBMITTER ? &r->sq : &r->cq;
}

static struct ring_queue *consumed(struct ring *r)
{
	return r->side == RING_SUBMITTER ? &r->cq : &r->sq;
}

/* Our own indices start from what is in shared memory now (the creator
 * wrote first_index there); the peer's must be within range of them. */
static int load_indices(struct ring *r)
{
	struct ring_queue *p = produced(r), *c = consumed(r);

	p->own = atomic_load_explicit(p->tail, memory_order_acquire);
	p->peer_cached = atomic_load_explicit(p->head, memory_order_acquire);
	c->own = atomic_load_explicit(c->head, memory_order_acquire);
	c->peer_cached = atomic_load_explicit(c->tail, memory_order_acquire);
	if (p->own - p->peer_cached > r->entries || c->peer_cached - c->own > r->entries)
		return -EPROTO;
	return 0;
}

static void ring_init_fds(struct ring *r)
{
	memset(r, 0, sizeof(*r));
	r->memfd = r->sq_efd = r->cq_efd = -1;
}

int ring_create(struct ring *r, enum ring_side side, const struct ring_params *p)
{
	ring_init_fds(r);
	if (!p || (side != RING_SUBMITTER && side != RING_SERVER))
		return -EINVAL;
	size_t size = ring_region_size(p->entries, p->entry_size);
	if (!size)
		return -EINVAL;

	r->side = side;
	r->entries = p->entries;
	r->entry_size = p->entry_size;
	int ret = ring_shm_create("quiver-ring", size, &r->mem);
	if (ret < 0) {
		ring_destroy(r);
		return ret;
	}
	r->memfd = ret;
	r->mem_size = size;
	/* Non-blocking, so that a saturated counter makes write(2) fail rather
	 * than sleep (see ring_notify_peer). */
	r->sq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->cq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->sq_efd < 0 || r->cq_efd < 0)
		goto fail_errno;

	unsigned char *m = r->mem;
	uint32_t u32 = RING_MAGIC;
	memcpy(m + RING_OFF_MAGIC, &u32, 4);
	u32 = RING_VERSION;
	memcpy(m + RING_OFF_VERSION, &u32, 4);
	memcpy(m + RING_OFF_ENTRIES, &p->entries, 4);
	memcpy(m + RING_OFF_ENTRY_SIZE, &p->entry_size, 4);
	uint64_t u64 = size;
	memcpy(m + RING_OFF_SIZE, &u64, 8);
	layout(r);
	atomic_store_explicit(r->sq.tail, p->first_index, memory_order_relaxed);
	atomic_store_explicit(r->sq.head, p->first_index, memory_order_relaxed);
	atomic_store_explicit(r->cq.tail, p->first_index, memory_order_relaxed);
	atomic_store_explicit(r->cq.head, p->first_index, memory_order_relaxed);
	/* Nobody else has the fd yet: this cannot fail. */
	(void)load_indices(r);
	return 0;

fail_errno:
	ret = -errno;
	ring_destroy(r);
	return ret;
}

/* A hostile creator could hand us a pipe or socket whose write blocks, or a
 * file that always polls readable; only a real eventfd will do. */
static int check_eventfd(int fd)
{
	char path[64], target[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0 ? 0 : -EINVAL;
}

int ring_attach(struct ring *r, enum ring_side side, int memfd, int sq_efd, int cq_efd)
{
	ring_init_fds(r);
	if (side != RING_SUBMITTER && side != RING_SERVER)
		return -EINVAL;

	size_t size = 0;
	int ret = sealed_size(memfd, &size);
	if (ret < 0)
		return ret;
	if (size < RING_OFF_SQ_ENTRIES ||
	    size > ring_region_size(RING_ENTRIES_MAX, RING_ENTRY_SIZE_MAX))
		return -EINVAL;
	ret = check_eventfd(sq_efd);
	if (ret == 0)
		ret = check_eventfd(cq_efd);
	if (ret < 0)
		return ret;

	void *mem;
	ret = ring_shm_map(memfd, size, &mem);
	if (ret < 0)
		return ret;
	r->mem = mem;
	r->mem_size = size;
	r->side = side;

	/* Read the header once, into locals; after this it is never looked at
	 * again, whatever the peer writes there. */
	uint32_t magic, version, entries, entry_size;
	uint64_t hdr_size;
	const unsigned char *m = mem;
	memcpy(&magic, m + RING_OFF_MAGIC, 4);
	memcpy(&version, m + RING_OFF_VERSION, 4);
	memcpy(&entries, m + RING_OFF_ENTRIES, 4);
	memcpy(&entry_size, m + RING_OFF_ENTRY_SIZE, 4);
	memcpy(&hdr_size, m + RING_OFF_SIZE, 8);
	size_t want = ring_region_size(entries, entry_size);
	if (magic != RING_MAGIC || version != RING_VERSION || !want || hdr_size != want ||
	    size != want) {
		ret = -EINVAL;
		goto fail;
	}
	r->entries = entries;
	r->entry_size = entry_size;
	layout(r);
	ret = load_indices(r);
	if (ret < 0)
		goto fail;

	r->sq_efd = fcntl(sq_efd, F_DUPFD_CLOEXEC, 0);
	if (r->sq_efd < 0)
		goto fail_errno;
	r->cq_efd = fcntl(cq_efd, F_DUPFD_CLOEXEC, 0);
	if (r->cq_efd < 0)
		goto fail_errno;
	return 0;

fail_errno:
	ret = -errno;
fail:
	ring_destroy(r);
	return ret;
}

void ring_destroy(struct ring *r)
{
	if (r->mem)
		munmap(r->mem, r->mem_size);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->sq_efd >= 0)
		close(r->sq_efd);
	if (r->cq_efd >= 0)
		close(r->cq_efd);
	ring_init_fds(r);
}

static int ring_break(struct ring *r)
{
	r->broken = true;
	return -EPROTO;
}

/* Entries are moved 8 bytes at a time with single-copy-atomic accesses: the
 * peer may be writing the same slot, and each byte must be read exactly
 * once, into our copy, so what we validate is what we use. */
static void copy_in(unsigned char *slot, const void *src, uint32_t size)
{
	_Atomic uint64_t *dst = (_Atomic uint64_t *)slot;
	for (uint32_t i = 0; i < size / 8; i++) {
		uint64_t w;
		memcpy(&w, (const unsigned char *)src + 8 * (size_t)i, 8);
		atomic_store_explicit(&dst[i], w, memory_order_relaxed);
	}
}

static void copy_out(void *dst, const unsigned char *slot, uint32_t size)
{
	const _Atomic uint64_t *src = (const _Atomic uint64_t *)slot;
	for (uint32_t i = 0; i < size / 8; i++) {
		uint64_t w = atomic_load_explicit(&src[i], memory_order_relaxed);
		memcpy((unsigned char *)dst + 8 * (size_t)i, &w, 8);
	}
}

static bool len_ok(const struct ring *r, const void *entry)
{
	struct ring_entry_hdr hdr;
	memcpy(&hdr, entry, sizeof(hdr));
	return hdr.len <= r->entry_size - sizeof(hdr);
}

static int queue_push(struct ring *r, struct ring_queue *q, const void *entry)
{
	if (r->broken)
		return -EPROTO;
	if (!len_ok(r, entry))
		return -EINVAL;
	if (q->own - q->peer_cached == r->entries) {
		/* Acquire: the consumer's reads of the slot we are about to
		 * overwrite happened before it released the head. */
		uint32_t head = atomic_load_explicit(q->head, memory_order_acquire);
		if (q->own - head > r->entries)
			return ring_break(r);
		q->peer_cached = head;
		if (q->own - head == r->entries)
			return -EAGAIN;
	}
	copy_in(q->slots + (size_t)(q->own & r->mask) * r->entry_size, entry, r->entry_size);
	q->own++;
	/* Release: the entry's bytes are visible before the new tail. */
	atomic_store_explicit(q->tail, q->own, memory_order_release);
	return 0;
}

/* Entries ready in a consumed queue, or -EPROTO if the producer's tail is
 * out of range: tail - head > entries (also catches tail behind head). */
static int queue_ready(struct ring *r, struct ring_queue *q)
{
	if (r->broken)
		return -EPROTO;
	/* Acquire: pairs with the producer's release of the tail, so the
	 * entries' bytes are visible before we copy them. */
	uint32_t tail = atomic_load_explicit(q->tail, memory_order_acquire);
	if (tail - q->own > r->entries)
		return ring_break(r);
	q->peer_cached = tail;
	return (int)(tail - q->own);
}

static int queue_pop(struct ring *r, struct ring_queue *q, void *out, ring_validate_fn validate,
		     void *ctx)
{
	if (r->broken)
		return -EPROTO;
	if (q->peer_cached == q->own) {
		int n = queue_ready(r, q);
		if (n <= 0)
			return n < 0 ? n : -EAGAIN;
	}
	copy_out(out, q->slots + (size_t)(q->own & r->mask) * r->entry_size, r->entry_size);
	q->own++;
	/* Release: our reads of the slot complete before the producer may
	 * reuse it. */
	atomic_store_explicit(q->head, q->own, memory_order_release);
	if (!len_ok(r, out) || (validate && !validate(out, ctx)))
		return -EBADMSG;
	return 0;
}

int ring_sq_push(struct ring *r, const void *entry)
{
	return r->side == RING_SUBMITTER ? queue_push(r, &r->sq, entry) : -EINVAL;
}

int ring_cq_push(struct ring *r, const void *entry)
{
	return r->side == RING_SERVER ? queue_push(r, &r->cq, entry) : -EINVAL;
}

int ring_sq_pop(struct ring *r, void *out, ring_validate_fn validate, void *ctx)
{
	return r->side == RING_SERVER ? queue_pop(r, &r->sq, out, validate, ctx) : -EINVAL;
}

int ring_cq_pop(struct ring *r, void *out, ring_validate_fn validate, void *ctx)
{
	return r->side == RING_SUBMITTER ? queue_pop(r, &r->cq, out, validate, ctx) : -EINVAL;
}

static int notify_fd(const struct ring *r)
{
	return r->side == RING_SUBMITTER ? r->sq_efd : r->cq_efd;
}

int ring_wait_fd(const struct ring *r)
{
	return r->side == RING_SUBMITTER ? r->cq_efd : r->sq_efd;
}

int ring_notify_peer(struct ring *r)
{
	if (r->broken)
		return -EPROTO;
	struct ring_queue *q = produced(r);
	/* Full fence: our tail store must be globally visible before we read
	 * the consumer's flag (store->load order, which release/acquire do
	 * not give).  The consumer fences between setting the flag and
	 * re-reading the tail, so at least one of us sees the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!(atomic_load_explicit(q->flags, memory_order_relaxed) & RING_NEED_WAKEUP))
		return 0;

	int fd = notify_fd(r);
	/* The peer shares the eventfd's open file: it could clear O_NONBLOCK
	 * and saturate the counter to make our write sleep forever.  An honest
	 * peer never touches the flags, so refuse a ring where it did. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK))
		return ring_break(r);
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(one))
		return ring_break(r); /* EAGAIN: counter saturated by the peer */
	return 1;
}

/* Busy again: a producer need not write the eventfd until we sleep. */
static void disarm(struct ring_queue *q)
{
	atomic_store_explicit(q->flags, 0, memory_order_relaxed);
	q->armed = false;
}

int ring_wait_prepare(struct ring *r)
{
	struct ring_queue *q = consumed(r);
	int n = queue_ready(r, q);
	if (n != 0) {
		if (q->armed)
			disarm(q);
		return n;
	}
	atomic_store_explicit(q->flags, RING_NEED_WAKEUP, memory_order_relaxed);
	/* Full fence: the flag is visible before we re-read the tail; pairs
	 * with the fence in ring_notify_peer (no lost wake-up). */
	atomic_thread_fence(memory_order_seq_cst);
	q->armed = true;
	n = queue_ready(r, q);
	if (n != 0)
		disarm(q);
	return n;
}

void ring_wait_finish(struct ring *r)
{
	uint64_t count;
	struct iovec iov = {.iov_base = &count, .iov_len = sizeof(count)};

	/* RWF_NOWAIT: never sleep here, even if the peer cleared O_NONBLOCK on
	 * the shared file or drained the counter before us. */
	while (preadv2(ring_wait_fd(r), &iov, 1, -1, RWF_NOWAIT) < 0 && errno == EINTR)
		;
	disarm(consumed(r));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ring_wait(struct ring *r, int timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;

	for (;;) {
		int n = ring_wait_prepare(r);
		if (n != 0)
			return n;
		int left = -1;
		if (timeout_ms >= 0) {
			int64_t d = deadline - now_ms();
			left = d > 0 ? (int)d : 0;
		}
		struct pollfd pfd = {.fd = ring_wait_fd(r), .events = POLLIN};
		int pr = poll(&pfd, 1, left);
		int saved = errno;
		ring_wait_finish(r);
		if (pr < 0)
			return -saved;
		n = queue_ready(r, consumed(r));
		/* A wake-up with nothing to show is stale: the producer saw our
		 * flag from an earlier arm that found entries on re-check.
		 * Sleep again for what is left of the timeout. */
		if (n != 0 || pr == 0)
			return n;
	}
}
