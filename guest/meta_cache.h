/* The guest kernel's metadata cache for iod (docs/iod.md, "The metadata
 * cache"): answers of stat, access and failed opens that iod marked
 * IOD_RESP_CACHEABLE, that is, whose path walk never left the sandbox's
 * read-only root mount.  Nothing in the sandbox can change what is there
 * (no writable layer, no mounts), so the same question with the same
 * credentials gets the same answer, and the cache answers it without a
 * trip to iod.  Interpreters' start-up (a stat or a failed open for every
 * directory on the module path) is what it is for.
 *
 * Keys are the request itself: op, flags, at_flags, mode, arg0, the path
 * as sent (absolute in the sandbox) and the credentials it was sent with
 * (interned: a few distinct sets per sandbox; past META_CREDS_MAX nothing
 * new is cached).  When full it is emptied, not aged: what a start-up
 * asks, it asks again soon. */
#ifndef QUIVER_GUEST_META_CACHE_H
#define QUIVER_GUEST_META_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/iod_proto.h"

#define META_CACHE_SLOTS 4096u /* power of two; emptied at 3/4 */
#define META_CREDS_MAX	 8u

struct meta_cache_stats {
	uint64_t hits, misses, inserts, flushes;
	unsigned entries;
};

/* Look up the request (its paths filled in): true with *res and, for a
 * successful STAT, the statx in *stx (a struct statx's bytes). */
bool meta_cache_get(const struct iod_req *req, int64_t *res, void *stx);
/* Keep the answer to req (resp carries IOD_RESP_CACHEABLE). */
void meta_cache_put(const struct iod_req *req, const struct iod_resp *resp);
/* Drop everything (the root changed: a reconnect to an iod with another
 * idea of it, say). */
void meta_cache_clear(void);
void meta_cache_stats(struct meta_cache_stats *s);

#endif
