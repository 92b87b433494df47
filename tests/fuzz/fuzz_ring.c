/* libFuzzer target for the ring consumer (libcommon/ring.h).
 *
 * The fuzzer plays the hostile peer.  Byte 0 picks a mode:
 *   even: a live ring (8 entries x 32 bytes, indices starting near the
 *         wrap); the rest of the input is a script of peer writes into the
 *         shared region (indices, flags, entries, header) interleaved with
 *         our side's operations (pop, push, wait_prepare/finish, notify).
 *         Bit 1 of byte 0 picks which side we play.
 *   odd:  the input is a whole region handed to ring_attach.
 * Whatever the bytes, the ring must only return the documented errors and
 * never touch memory outside its region (ASan), and a broken ring must stay
 * broken. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libcommon/ring.h"

#define ENTRIES	   8u
#define ENTRY_SIZE 32u

static bool accept_small_opcodes(const void *entry, void *ctx)
{
	struct ring_entry_hdr h;
	(void)ctx;
	memcpy(&h, entry, sizeof(h));
	return h.opcode < 4 && h.flags == 0;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void run_live(struct ring *r, const uint8_t *data, size_t size)
{
	unsigned char *m = mmap(NULL, r->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	check(m != MAP_FAILED);
	size_t i = 0;
	while (i < size) {
		uint8_t op = data[i++];
		int ret;
		unsigned char entry[ENTRY_SIZE];
		switch (op % 6) {
		case 0: { /* peer write: u16 offset, u8 len, bytes */
			if (size - i < 3)
				goto out;
			size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8) % r->mem_size;
			size_t len = data[i + 2];
			i += 3;
			if (len > size - i)
				len = size - i;
			if (len > r->mem_size - off)
				len = r->mem_size - off;
			memcpy(m + off, data + i, len);
			i += len;
			break;
		}
		case 1: /* peer publishes a tail relative to our head: u8 delta */
			if (i >= size)
				goto out;
			{
				size_t t =
				    r->side == RING_SERVER ? RING_OFF_SQ_TAIL : RING_OFF_CQ_TAIL;
				size_t h =
				    r->side == RING_SERVER ? RING_OFF_SQ_HEAD : RING_OFF_CQ_HEAD;
				uint32_t head;
				memcpy(&head, m + h, 4);
				head += (uint32_t)(int8_t)data[i++];
				memcpy(m + t, &head, 4);
			}
			break;
		case 2:
			ret = r->side == RING_SERVER
				  ? ring_sq_pop(r, entry, accept_small_opcodes, NULL)
				  : ring_cq_pop(r, entry, accept_small_opcodes, NULL);
			check(ret == 0 || ret == -EAGAIN || ret == -EBADMSG || ret == -EPROTO);
			if (ret == 0) {
				struct ring_entry_hdr h;
				memcpy(&h, entry, sizeof(h));
				check(h.len <= ENTRY_SIZE - sizeof(h) && h.opcode < 4);
			}
			break;
		case 3:
			memset(entry, 0, sizeof(entry));
			entry[0] = op;
			ret = r->side == RING_SERVER ? ring_cq_push(r, entry)
						     : ring_sq_push(r, entry);
			check(ret == 0 || ret == -EAGAIN || ret == -EPROTO);
			break;
		case 4:
			ret = ring_wait_prepare(r);
			check(ret == -EPROTO || (ret >= 0 && ret <= (int)ENTRIES));
			ring_wait_finish(r);
			break;
		default:
			ret = ring_notify_peer(r);
			check(ret == 0 || ret == 1 || ret == -EPROTO);
			break;
		}
		if (r->broken) {
			check(ring_wait_prepare(r) == -EPROTO);
			check(ring_sq_push(r, entry) == -EPROTO || r->side == RING_SERVER);
		}
	}
out:
	munmap(m, r->mem_size);
}

static void run_attach(const uint8_t *data, size_t size)
{
	static int efd = -1;
	if (efd < 0)
		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int fd = memfd_create("fuzz-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	check(fd >= 0);
	/* The region is the input, padded to a page so small inputs can pass
	 * the size check when their header says 8 x 64. */
	size_t len = size < 4096 ? 4096 : size;
	check(ftruncate(fd, (off_t)len) == 0);
	check(pwrite(fd, data, size, 0) == (ssize_t)size);
	check(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
	struct ring r;
	int ret = ring_attach(&r, RING_SERVER, fd, efd, efd);
	check(ret == 0 || ret == -EINVAL || ret == -EPROTO);
	if (ret == 0) {
		unsigned char entry[RING_ENTRY_SIZE_MAX];
		for (int i = 0; i < 2 * (int)RING_ENTRIES_MAX && ret != -EAGAIN && ret != -EPROTO;
		     i++)
			ret = ring_sq_pop(&r, entry, NULL, NULL);
		ring_destroy(&r);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 64 * 1024)
		return 0;
	if (data[0] & 1) {
		run_attach(data + 1, size - 1);
		return 0;
	}
	struct ring r;
	struct ring_params p = {
	    .entries = ENTRIES, .entry_size = ENTRY_SIZE, .first_index = UINT32_MAX - 3};
	check(ring_create(&r, (data[0] & 2) ? RING_SUBMITTER : RING_SERVER, &p) == 0);
	run_live(&r, data + 1, size - 1);
	ring_destroy(&r);
	return 0;
}
