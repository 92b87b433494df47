/* Control messages: one msgpack map per message, {"v": QMSG_VERSION, "op":
 * "...", ...fields}, carried over nng REQ/REP and PUB/SUB sockets (and over
 * the guest's unix sync sockets).  See docs/wire-formats.md.
 *
 * Everything received is hostile.  qmsg_parse() bounds the whole message
 * before anything reads it (size, nesting depth, map and array lengths, key
 * and string lengths, string contents), and the typed getters check the type
 * and range of each field; a message that fails is answered with an error,
 * never acted on, never allowed to crash the receiver.
 */
#ifndef QUIVER_MSG_H
#define QUIVER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "libcommon/err.h"

#define QMSG_VERSION	 1
#define QMSG_MAX_BYTES	 (1u << 20) /* a whole message */
#define QMSG_MAX_DEPTH	 4	    /* root map = depth 1 */
#define QMSG_MAX_ENTRIES 4096	    /* map pairs or array items, per container */
#define QMSG_MAX_KEY	 64	    /* bytes in a map key */
#define QMSG_MAX_STR	 4096	    /* bytes in a string value */
#define QMSG_MAX_OP	 32

/* ---- building ---- */

/* A message being built.  msgpack maps carry their length up front, so the
 * caller says how many fields follow the v/op pair. */
struct qmsg_out {
	msgpack_sbuffer buf;
	msgpack_packer pk;
};

void qmsg_out_init(struct qmsg_out *m);
void qmsg_out_free(struct qmsg_out *m);
/* Start the root map: writes v and op; nfields more key/value pairs follow. */
void qmsg_begin(struct qmsg_out *m, const char *op, uint32_t nfields);
/* key/value helpers for the common types */
void qmsg_put_str(struct qmsg_out *m, const char *key, const char *val); /* NULL packs nil */
void qmsg_put_int(struct qmsg_out *m, const char *key, int64_t val);
void qmsg_put_uint(struct qmsg_out *m, const char *key, uint64_t val);
void qmsg_put_bool(struct qmsg_out *m, const char *key, bool val);
/* For nested values: pack the key, then use m->pk directly (msgpack_pack_map,
 * msgpack_pack_array, qmsg_pack_cstr, ...). */
void qmsg_put_key(struct qmsg_out *m, const char *key);
void qmsg_pack_cstr(msgpack_packer *pk, const char *s);
/* The standard error reply: {v, op:"error", code: errno, msg: "..."} */
void qmsg_error_reply(struct qmsg_out *m, const struct qerr *err);
static inline const void *qmsg_data(const struct qmsg_out *m)
{
	return m->buf.data;
}
static inline size_t qmsg_size(const struct qmsg_out *m)
{
	return m->buf.size;
}

/* ---- parsing ---- */

/* A parsed, validated message.  Owns its memory; root is the top-level map. */
struct qmsg_in {
	msgpack_unpacked up;
	const msgpack_object *root;
	char op[QMSG_MAX_OP + 1];
};

/* Unpack and validate buf (bounds above, root is a map, v == QMSG_VERSION,
 * op a non-empty string of at most QMSG_MAX_OP printable bytes, no trailing
 * bytes).  On success the caller must qmsg_in_free(). */
int qmsg_parse(struct qmsg_in *in, const void *buf, size_t len, struct qerr *err);
void qmsg_in_free(struct qmsg_in *in);
/* An "error" reply turned back into a qerr: returns -code (or 0 if in is
 * not an error reply). */
int qmsg_reply_error(const struct qmsg_in *in, struct qerr *err);

/* Typed getters on a map object (the root or a nested map).  They return 0,
 * -ENOENT when the key is absent (and leave *out untouched, so callers can
 * pre-set defaults), -EINVAL when the value has the wrong type or range, and
 * fill err with "field KEY: ..." messages. */
const msgpack_object *qmsg_find(const msgpack_object *map, const char *key);
/* Copies into dst (NUL-terminated); rejects embedded NULs and values that do
 * not fit dstlen - 1. */
int qmsg_get_str(const msgpack_object *map, const char *key, char *dst, size_t dstlen,
		 struct qerr *err);
int qmsg_get_int(const msgpack_object *map, const char *key, int64_t min, int64_t max, int64_t *out,
		 struct qerr *err);
int qmsg_get_bool(const msgpack_object *map, const char *key, bool *out, struct qerr *err);
/* A nested map / array, with its length bounded by max. */
int qmsg_get_map(const msgpack_object *map, const char *key, uint32_t max,
		 const msgpack_object **out, struct qerr *err);
int qmsg_get_array(const msgpack_object *map, const char *key, uint32_t max,
		   const msgpack_object **out, struct qerr *err);
/* Copy a string object (e.g. an array item) with the same checks. */
int qmsg_obj_str(const msgpack_object *o, char *dst, size_t dstlen, struct qerr *err);

/* ---- nng transport ---- */

#include <nng/nng.h>

/* One request/reply round trip on a REQ socket: send req, wait up to
 * timeout_ms for the reply, parse it into *reply.  An "error" reply is
 * returned as its negative code with err filled. */
int qnng_call(nng_socket req, const struct qmsg_out *msg, struct qmsg_in *reply, struct qerr *err);
/* Dial a REQ socket (send/recv timeouts set to timeout_ms). */
int qnng_req_dial(nng_socket *s, const char *url, int timeout_ms, struct qerr *err);
int qnng_sub_dial(nng_socket *s, const char *url, struct qerr *err);
/* Send a built message on any socket. */
int qnng_send(nng_socket s, const struct qmsg_out *msg, struct qerr *err);
/* Receive one message and parse it; a malformed one is reported, not returned. */
int qnng_recv(nng_socket s, struct qmsg_in *in, struct qerr *err);
/* An nng error code (NNG_E*, possibly negated) as a positive errno. */
int qnng_errno(int nng_rv);

#endif
