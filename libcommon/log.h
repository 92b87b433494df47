/* Logging with levels, to stderr or a file, as text or as runc's JSON lines
 * ({"level":"error","msg":"...","time":"2026-11-22T14:00:00Z"}), because
 * containerd and podman read the last error of a failed runtime call from the
 * --log file in that format. */
#ifndef QUIVER_LOG_H
#define QUIVER_LOG_H

#include "libcommon/err.h"

enum qlog_level { QLOG_DEBUG, QLOG_INFO, QLOG_WARN, QLOG_ERROR };
enum qlog_format { QLOG_TEXT, QLOG_JSON };

/* prog names the process in text lines; path NULL means stderr.  The file
 * is opened O_APPEND|O_CLOEXEC.  May be called again to change settings. */
int qlog_init(const char *prog, const char *path, enum qlog_format format, enum qlog_level min,
	      struct qerr *err);
/* The descriptor of the log file qlog_init opened, -1 when logging to
 * stderr: what a process that closes every other fd must keep. */
int qlog_file_fd(void);
/* Parse "text"/"json" and "debug"/"info"/"warn"/"error". */
int qlog_parse_format(const char *s, enum qlog_format *out);
int qlog_parse_level(const char *s, enum qlog_level *out);

void qlog(enum qlog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define qlog_debug(...) qlog(QLOG_DEBUG, __VA_ARGS__)
#define qlog_info(...)	qlog(QLOG_INFO, __VA_ARGS__)
#define qlog_warn(...)	qlog(QLOG_WARN, __VA_ARGS__)
#define qlog_error(...) qlog(QLOG_ERROR, __VA_ARGS__)

/* Unrecoverable: log at error level and exit(1).  fatal() appends
 * strerror(errno); fatalx() does not (OpenBSD's naming). */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
