/* The metadata cache: an open-addressed table keyed by the request
 * (meta_cache.h).  Single-threaded: only the supervisor's loop uses it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest/meta_cache.h"

struct entry {
	uint64_t hash; /* 0: empty */
	unsigned char *key;
	uint32_t key_len;
	int64_t res;
	struct statx *stx; /* a successful STAT's answer */
};

/* What of a request decides its answer.  The path follows it in the key. */
struct key_head {
	uint16_t op;
	uint16_t creds;
	uint32_t flags, at_flags, mode;
	uint64_t arg0;
};

static struct entry *table; /* META_CACHE_SLOTS, allocated at the first put */
static unsigned used;
static struct iod_creds creds[META_CREDS_MAX];
static unsigned ncreds;
static struct meta_cache_stats st;

/* umask is left out: it shapes what is created, and nothing is created
 * on a read-only root. */
static bool creds_equal(const struct iod_creds *a, const struct iod_creds *b)
{
	return a->fsuid == b->fsuid && a->fsgid == b->fsgid && a->cap_eff == b->cap_eff &&
	       a->ngroups == b->ngroups &&
	       memcmp(a->groups, b->groups, a->ngroups * sizeof(a->groups[0])) == 0;
}

/* The credentials' small number, made if add; -1 when unknown or full. */
static int creds_id(const struct iod_creds *c, bool add)
{
	for (unsigned i = 0; i < ncreds; i++)
		if (creds_equal(&creds[i], c))
			return (int)i;
	if (!add || ncreds == META_CREDS_MAX || c->ngroups > IOD_GROUPS_MAX)
		return -1;
	creds[ncreds] = *c;
	return (int)ncreds++;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}

/* The request's key in buf (sizeof(struct key_head) + its path): its
 * length, or 0 when it cannot be a key. */
static size_t make_key(const struct iod_req *req, bool add, unsigned char *buf, size_t size)
{
	struct key_head h;
	int id = creds_id(&req->creds, add);
	size_t n = req->path_len;

	if (id < 0 || !iod_op_cacheable(req->hdr.opcode) || sizeof(h) + n > size)
		return 0;
	memset(&h, 0, sizeof(h));
	h.op = req->hdr.opcode;
	h.creds = (uint16_t)id;
	h.flags = req->flags;
	h.at_flags = req->at_flags;
	h.mode = req->mode;
	h.arg0 = req->arg0;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), req->paths, n);
	return sizeof(h) + n;
}

static struct entry *find(const unsigned char *key, size_t len, uint64_t hash)
{
	for (unsigned i = (unsigned)hash & (META_CACHE_SLOTS - 1);;
	     i = (i + 1) & (META_CACHE_SLOTS - 1)) {
		struct entry *e = &table[i];
		if (e->hash == 0 ||
		    (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0))
			return e;
	}
}

bool meta_cache_get(const struct iod_req *req, int64_t *res, void *stx)
{
	unsigned char key[sizeof(struct key_head) + IOD_PATHS_MAX];
	size_t len;
	struct entry *e;

	if (!table || (len = make_key(req, false, key, sizeof(key))) == 0) {
		st.misses++;
		return false;
	}
	e = find(key, len, fnv1a(key, len));
	if (e->hash == 0) {
		st.misses++;
		return false;
	}
	*res = e->res;
	if (e->stx)
		memcpy(stx, e->stx, sizeof(*e->stx));
	st.hits++;
	return true;
}

void meta_cache_put(const struct iod_req *req, const struct iod_resp *resp)
{
	unsigned char key[sizeof(struct key_head) + IOD_PATHS_MAX];
	struct statx *x = NULL;
	struct entry *e;
	uint64_t hash;
	size_t len;

	if (!(resp->hdr.flags & IOD_RESP_CACHEABLE) || resp->hdr.opcode != req->hdr.opcode)
		return;
	if (req->hdr.opcode == IOD_OP_STAT && resp->res == 0 &&
	    resp->data_len < sizeof(struct statx))
		return;
	if (!table && !(table = calloc(META_CACHE_SLOTS, sizeof(*table))))
		return;
	if (used >= META_CACHE_SLOTS / 4 * 3) {
		meta_cache_clear();
		st.flushes++;
		if (!(table = calloc(META_CACHE_SLOTS, sizeof(*table))))
			return;
	}
	if ((len = make_key(req, true, key, sizeof(key))) == 0)
		return;
	hash = fnv1a(key, len);
	e = find(key, len, hash);
	if (e->hash != 0)
		return; /* two misses raced to iod: the first answer is kept */
	if (req->hdr.opcode == IOD_OP_STAT && resp->res == 0) {
		if (!(x = malloc(sizeof(*x))))
			return;
		memcpy(x, resp->data, sizeof(*x));
	}
	if (!(e->key = malloc(len))) {
		free(x);
		return;
	}
	memcpy(e->key, key, len);
	e->key_len = (uint32_t)len;
	e->res = resp->res;
	e->stx = x;
	e->hash = hash;
	used++;
	st.inserts++;
}

void meta_cache_clear(void)
{
	if (table) {
		for (unsigned i = 0; i < META_CACHE_SLOTS; i++) {
			free(table[i].key);
			free(table[i].stx);
		}
		free(table);
	}
	table = NULL;
	used = 0;
	ncreds = 0;
}

void meta_cache_stats(struct meta_cache_stats *s)
{
	*s = st;
	s->entries = used;
}
