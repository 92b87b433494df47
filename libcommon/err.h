/* Quiver's one error convention (docs/error-handling.md).
 *
 * Every fallible function returns an int: >= 0 on success, a negative errno
 * on failure.  When it fails it also fills the caller's struct qerr with a
 * one-line message that names the problem ("config.json: process.args: must
 * be a non-empty array").  Functions that return pointers return NULL and
 * fill the qerr the same way.  A caller that adds context prefixes the
 * message (qerr_prefix) and passes the negative code up unchanged.
 */
#ifndef QUIVER_ERR_H
#define QUIVER_ERR_H

#include <stddef.h>

#define QERR_MSG_MAX 512

struct qerr {
	int code; /* positive errno; 0 when no error was recorded */
	char msg[QERR_MSG_MAX];
};

/* Record an error and return -code, so that `return qerr_set(err, EINVAL,
 * "...")` reads as one statement.  err may be NULL. */
int qerr_set(struct qerr *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like qerr_set, appending ": strerror(code)". */
int qerr_sys(struct qerr *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend "context: " to an error already recorded; returns -err->code. */
int qerr_prefix(struct qerr *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void qerr_clear(struct qerr *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

#endif
