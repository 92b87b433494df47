/* log.h and err.h: formats, levels, escaping, fatal(), qerr helpers. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/err.h"
#include "libcommon/log.h"

static char tmpdir[] = "/tmp/quiver-test-log-XXXXXX";
static char logpath[256];

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	qlog_init("quiver", NULL, QLOG_TEXT, QLOG_INFO, NULL);
	unlink(logpath);
	rmdir(tmpdir);
	return 0;
}

/* The whole log file as a string; the file is truncated for the next test. */
static char *slurp(void)
{
	FILE *f = fopen(logpath, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	assert_int_equal(truncate(logpath, 0), 0);
	return buf;
}

static void test_text_levels(void **state)
{
	(void)state;
	cleanup_free char *out = NULL;
	struct qerr err = {0};

	assert_int_equal(qlog_init("vmmd", logpath, QLOG_TEXT, QLOG_INFO, &err), 0);
	qlog_debug("hidden %d", 1);
	qlog_info("shown %d", 2);
	qlog_error("bad\nforged line");
	out = slurp();
	assert_null(strstr(out, "hidden"));
	assert_non_null(strstr(out, "vmmd["));
	assert_non_null(strstr(out, "info: shown 2\n"));
	/* A newline in a message cannot start a second line. */
	assert_non_null(strstr(out, "error: bad?forged line\n"));
	assert_non_null(strchr(out, '\n'));
	assert_int_equal(strchr(strstr(out, "bad?"), '\n')[1], '\0');
}

static void test_json(void **state)
{
	(void)state;
	cleanup_free char *out = NULL;
	struct qerr err = {0};

	assert_int_equal(qlog_init("qctl", logpath, QLOG_JSON, QLOG_DEBUG, &err), 0);
	qlog_warn("path \"%s\" has \\ and \x01", "a\nb");
	out = slurp();
	assert_non_null(strstr(out, "{\"level\":\"warning\",\"msg\":\"path \\\"a\\nb\\\" has "
				    "\\\\ and \\u0001\",\"time\":\""));
	assert_non_null(strstr(out, "Z\"}\n"));
	/* One line only. */
	assert_int_equal(strchr(out, '\n')[1], '\0');
}

static void test_json_truncation_stays_valid(void **state)
{
	(void)state;
	cleanup_free char *out = NULL;
	cleanup_free char *big = malloc(10000);
	struct qerr err = {0};

	memset(big, '"', 9999);
	big[9999] = '\0';
	assert_int_equal(qlog_init("qctl", logpath, QLOG_JSON, QLOG_DEBUG, &err), 0);
	qlog_error("%s", big);
	out = slurp();
	assert_true(strlen(out) <= 4096);
	assert_non_null(strstr(out, "\",\"time\":\""));
	assert_non_null(strstr(out, "Z\"}\n"));
	/* The message part is a run of escaped quotes: no lone backslash. */
	assert_null(strstr(out, "\\\",\"time\""));
}

static void test_parse(void **state)
{
	(void)state;
	enum qlog_format f = QLOG_TEXT;
	enum qlog_level l = QLOG_DEBUG;

	assert_int_equal(qlog_parse_format("json", &f), 0);
	assert_int_equal(f, QLOG_JSON);
	assert_int_equal(qlog_parse_format("xml", &f), -EINVAL);
	assert_int_equal(qlog_parse_format(NULL, &f), -EINVAL);
	assert_int_equal(qlog_parse_level("warning", &l), 0);
	assert_int_equal(l, QLOG_WARN);
	assert_int_equal(qlog_parse_level("error", &l), 0);
	assert_int_equal(l, QLOG_ERROR);
	assert_int_equal(qlog_parse_level("loud", &l), -EINVAL);
	assert_int_equal(l, QLOG_ERROR);
}

static void test_init_errors(void **state)
{
	(void)state;
	struct qerr err = {0};

	assert_int_equal(qlog_init("x", "/nonexistent/dir/log", QLOG_TEXT, QLOG_INFO, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/dir/log"));
	assert_int_equal(qlog_init("x", NULL, (enum qlog_format)7, QLOG_INFO, &err), -EINVAL);
}

static void test_fatal(void **state)
{
	(void)state;
	cleanup_free char *out = NULL;
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		qlog_init("child", logpath, QLOG_TEXT, QLOG_ERROR, NULL);
		errno = EACCES;
		fatal("open %s", "/x");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	out = slurp();
	assert_non_null(strstr(out, "error: open /x: Permission denied\n"));

	pid = fork();
	if (pid == 0) {
		qlog_init("child", logpath, QLOG_TEXT, QLOG_ERROR, NULL);
		errno = EACCES;
		fatalx("bad config");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 1);
	free(out);
	out = slurp();
	assert_non_null(strstr(out, "error: bad config\n"));
}

static void test_qerr(void **state)
{
	(void)state;
	struct qerr err = {0};
	char big[QERR_MSG_MAX * 2];

	assert_int_equal(qerr_set(&err, EINVAL, "field %s", "x"), -EINVAL);
	assert_int_equal(err.code, EINVAL);
	assert_string_equal(err.msg, "field x");
	assert_int_equal(qerr_prefix(&err, "config.json"), -EINVAL);
	assert_string_equal(err.msg, "config.json: field x");
	assert_int_equal(qerr_sys(&err, ENOENT, "open %s", "/a"), -ENOENT);
	assert_string_equal(err.msg, "open /a: No such file or directory");
	/* A NULL qerr is allowed; a zero or negative code still fails. */
	assert_int_equal(qerr_set(NULL, EPERM, "x"), -EPERM);
	assert_int_equal(qerr_set(&err, 0, "x"), -EIO);
	assert_int_equal(qerr_set(&err, -EBUSY, "x"), -EBUSY);
	/* Overlong messages truncate, never overflow. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	qerr_set(&err, E2BIG, "%s", big);
	assert_int_equal(strlen(err.msg), QERR_MSG_MAX - 1);
	assert_int_equal(qerr_prefix(&err, "%s", big), -E2BIG);
	assert_int_equal(strlen(err.msg), QERR_MSG_MAX - 1);
	qerr_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	assert_int_equal(qerr_prefix(&err, "ctx"), -EIO);
	assert_string_equal(err.msg, "ctx");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_levels),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_json_truncation_stays_valid),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_init_errors),
	    cmocka_unit_test(test_fatal),
	    cmocka_unit_test(test_qerr),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
