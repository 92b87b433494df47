/* Levelled logging, text or runc-style JSON lines.
 *
 * Each line is formatted into one buffer and written with a single write(2)
 * on an O_APPEND descriptor, so lines from several threads or processes
 * sharing a log file never interleave mid-line. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/log.h"

#define LOG_LINE_MAX 4096
#define LOG_PROG_MAX 64

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static bool log_own_fd;
static enum qlog_format log_format = QLOG_TEXT;
static enum qlog_level log_min = QLOG_INFO;
static char log_prog[LOG_PROG_MAX] = "quiver";

/* Text names, and the JSON ones: containerd reads runc's logrus output,
 * whose warning level is spelled "warning". */
static const char *const text_names[] = {"debug", "info", "warn", "error"};
static const char *const json_names[] = {"debug", "info", "warning", "error"};

int qlog_init(const char *prog, const char *path, enum qlog_format format, enum qlog_level min,
	      struct qerr *err)
{
	int fd = STDERR_FILENO;

	if (format != QLOG_TEXT && format != QLOG_JSON)
		return qerr_set(err, EINVAL, "log format %d unknown", (int)format);
	if (min < QLOG_DEBUG || min > QLOG_ERROR)
		return qerr_set(err, EINVAL, "log level %d unknown", (int)min);
	if (path) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd < 0)
			return qerr_sys(err, errno, "open log file %s", path);
	}
	pthread_mutex_lock(&log_lock);
	if (log_own_fd)
		close(log_fd);
	log_fd = fd;
	log_own_fd = path != NULL;
	log_format = format;
	log_min = min;
	if (prog)
		snprintf(log_prog, sizeof(log_prog), "%s", prog);
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int qlog_file_fd(void)
{
	pthread_mutex_lock(&log_lock);
	int fd = log_own_fd ? log_fd : -1;
	pthread_mutex_unlock(&log_lock);
	return fd;
}

int qlog_parse_format(const char *s, enum qlog_format *out)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "text") == 0)
		*out = QLOG_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = QLOG_JSON;
	else
		return -EINVAL;
	return 0;
}

int qlog_parse_level(const char *s, enum qlog_level *out)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "debug") == 0)
		*out = QLOG_DEBUG;
	else if (strcmp(s, "info") == 0)
		*out = QLOG_INFO;
	else if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0)
		*out = QLOG_WARN;
	else if (strcmp(s, "error") == 0)
		*out = QLOG_ERROR;
	else
		return -EINVAL;
	return 0;
}

struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
	/* Keep one byte for the final newline. */
	size_t room = sizeof(l->buf) - 1 - l->len;

	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_str(struct line *l, const char *s)
{
	put_raw(l, s, strlen(s));
}

/* JSON string body: quotes, backslashes and control bytes escaped.  Bytes
 * >= 0x80 pass through; Go's decoder replaces invalid UTF-8 rather than
 * rejecting the line.  Stops before limit with whole escapes only, so a
 * truncated message is still a valid JSON string. */
static void put_json_escaped(struct line *l, const char *s, size_t limit)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6];

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		size_t n = 2;

		esc[0] = '\\';
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
		} else if (c == '\n') {
			esc[1] = 'n';
		} else if (c == '\t') {
			esc[1] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (l->len + n > limit)
			return;
		put_raw(l, esc, n);
	}
}

/* Text lines are one line each: a message with a newline in it (a hostile
 * path, say) must not forge a second log line. */
static void put_text_sanitised(struct line *l, const char *s)
{
	for (; *s; s++) {
		char c = *s;

		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = '?';
		put_raw(l, &c, 1);
	}
}

static void emit(enum qlog_level level, const char *msg)
{
	struct line l = {.len = 0};
	char ts[32];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);

	pthread_mutex_lock(&log_lock);
	if (log_format == QLOG_JSON) {
		put_str(&l, "{\"level\":\"");
		put_str(&l, json_names[level]);
		put_str(&l, "\",\"msg\":\"");
		/* Room is kept for the closing of the object: a cut-off last
		 * line (the one containerd reports) must still parse. */
		put_json_escaped(&l, msg, sizeof(l.buf) - 64);
		put_str(&l, "\",\"time\":\"");
		put_str(&l, ts);
		put_str(&l, "\"}");
	} else {
		char pid[32];

		snprintf(pid, sizeof(pid), "[%d]: ", (int)getpid());
		put_str(&l, ts);
		put_str(&l, " ");
		put_str(&l, log_prog);
		put_str(&l, pid);
		put_str(&l, text_names[level]);
		put_str(&l, ": ");
		put_text_sanitised(&l, msg);
	}
	l.buf[l.len++] = '\n';
	/* Best effort: there is nowhere to report a failure to log. */
	while (write(log_fd, l.buf, l.len) < 0 && errno == EINTR)
		;
	pthread_mutex_unlock(&log_lock);
}

static void vlog(enum qlog_level level, const char *fmt, va_list ap, const char *suffix)
{
	char msg[LOG_LINE_MAX];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (suffix) {
		n = strlen(msg);
		if (n < sizeof(msg) - 1)
			snprintf(msg + n, sizeof(msg) - n, ": %s", suffix);
	}
	emit(level, msg);
}

void qlog(enum qlog_level level, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (level < QLOG_DEBUG || level > QLOG_ERROR)
		level = QLOG_ERROR;
	/* Racy read on purpose: a stale level only lets one line through or
	 * drops one, and the check must stay cheap for debug calls. */
	if (level < __atomic_load_n(&log_min, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	vlog(level, fmt, ap, NULL);
	va_end(ap);
	errno = saved;
}

_Noreturn void fatal(const char *fmt, ...)
{
	va_list ap;
	char why[256];
	int saved = errno;

	/* strerror_r (GNU) may return a static string instead of filling why. */
	const char *s = strerror_r(saved, why, sizeof(why));

	va_start(ap, fmt);
	vlog(QLOG_ERROR, fmt, ap, s);
	va_end(ap);
	exit(1);
}

_Noreturn void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(QLOG_ERROR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
