/* Per-sandbox syscall counters, shared between the supervisor (the only
 * writer) and vmmd (a reader, for /metrics and `qctl inspect`).
 *
 * The file STATE_DIR/counters is created by the launcher before the sandbox
 * exists, mapped MAP_SHARED by the supervisor, and survives the supervisor so
 * that vmmd can still read the final counts of a stopped sandbox.  Readers
 * check magic, version and size before trusting anything in it. */
#ifndef QUIVER_GUEST_COUNTERS_H
#define QUIVER_GUEST_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "libcommon/err.h"

#define GUEST_COUNTERS_MAGIC   0x51564354u /* "QVCT" */
#define GUEST_COUNTERS_VERSION 1u
#define GUEST_NR_MAX	       512u /* x86-64 syscall numbers are below this */

struct guest_counters {
	uint32_t magic;
	uint32_t version;
	uint32_t nr_max;
	uint32_t reserved;
	_Atomic uint64_t trapped[GUEST_NR_MAX]; /* notifications received, by syscall nr */
	_Atomic uint64_t denied[GUEST_NR_MAX];	/* of those, answered with an error by policy */
	_Atomic uint64_t trapped_other;		/* nr >= GUEST_NR_MAX (x32 or garbage) */
};

/* Create (O_EXCL) and map the file for writing; used by the launcher. */
int guest_counters_create(int dirfd, const char *name, struct guest_counters **out,
			  struct qerr *err);
/* Map an existing counters file read-only, validating its header. */
int guest_counters_open(const char *path, const struct guest_counters **out, struct qerr *err);
void guest_counters_unmap(const struct guest_counters *c);

#endif
