/* The error convention of err.h: negative errno returned, message in qerr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "libcommon/err.h"

static void vset(struct qerr *err, int code, const char *fmt, va_list ap)
{
	err->code = code;
	/* A message longer than QERR_MSG_MAX is truncated, never an error of
	 * its own: the code is what callers act on. */
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

/* Callers pass errno values; a caller that passes 0 or a negative value has
 * a bug, but must still return failure, so normalise to a positive code. */
static int normalise(int code)
{
	if (code < 0)
		code = -code;
	return code ? code : EIO;
}

int qerr_set(struct qerr *err, int code, const char *fmt, ...)
{
	va_list ap;

	code = normalise(code);
	if (err) {
		va_start(ap, fmt);
		vset(err, code, fmt, ap);
		va_end(ap);
	}
	return -code;
}

int qerr_sys(struct qerr *err, int code, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	code = normalise(code);
	if (err) {
		va_start(ap, fmt);
		vset(err, code, fmt, ap);
		va_end(ap);
		n = strlen(err->msg);
		if (n < sizeof(err->msg) - 1)
			snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(code));
	}
	return -code;
}

/* Copy s into msg at pos, truncating at QERR_MSG_MAX - 1; returns the new end. */
static size_t append(char *msg, size_t pos, const char *s)
{
	size_t n = strlen(s);

	if (n > QERR_MSG_MAX - 1 - pos)
		n = QERR_MSG_MAX - 1 - pos;
	memcpy(msg + pos, s, n);
	msg[pos + n] = '\0';
	return pos + n;
}

int qerr_prefix(struct qerr *err, const char *fmt, ...)
{
	char prefix[QERR_MSG_MAX];
	char old[QERR_MSG_MAX];
	va_list ap;
	size_t n;

	if (!err)
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	old[sizeof(old) - 1] = '\0';
	/* Assembled by hand: "%s: %s" into a buffer of the same size as each
	 * part trips -Wformat-truncation, and truncation is intended here. */
	n = append(err->msg, 0, prefix);
	if (old[0]) {
		n = append(err->msg, n, ": ");
		append(err->msg, n, old);
	}
	/* Prefixing a qerr nobody set still has to report failure. */
	if (err->code <= 0)
		err->code = EIO;
	return -err->code;
}
