/* metrics.h: registry, exposition format, and a real HTTP scrape. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/metrics.h"

static char *render(struct qmetrics *reg)
{
	struct qerr err = {0};
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(qmetrics_render(reg, &text, &len, &err), 0);
	assert_int_equal(strlen(text), len);
	return text;
}

static void test_counter_gauge(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmetrics *reg = qmetrics_new(&err);
	const char *const lbl[] = {"op", NULL};
	struct qmetric *req, *g;
	struct qmetric_series *create, *kill, *live;
	cleanup_free char *text = NULL;

	req = qmetrics_counter(reg, "quiver_requests_total", "Requests served.", lbl, &err);
	assert_non_null(req);
	create = qmetric_series(req, (const char *const[]){"create"}, &err);
	kill = qmetric_series(req, (const char *const[]){"kill"}, &err);
	assert_ptr_equal(create, qmetric_series(req, (const char *const[]){"create"}, &err));
	qmetric_inc(create);
	qmetric_add(create, 2);
	qmetric_add(create, -5); /* counters never go down */
	qmetric_add(kill, 0.5);
	assert_true(qmetric_value(create) == 3);

	g = qmetrics_gauge(reg, "quiver_sandboxes", "Live sandboxes.", NULL, &err);
	live = qmetric_series(g, NULL, &err);
	qmetric_set(live, 10);
	qmetric_dec(live);
	qmetric_add(live, -2.5);
	qmetric_observe(live, 1); /* wrong type: ignored */

	text = render(reg);
	assert_string_equal(text, "# HELP quiver_requests_total Requests served.\n"
				  "# TYPE quiver_requests_total counter\n"
				  "quiver_requests_total{op=\"create\"} 3\n"
				  "quiver_requests_total{op=\"kill\"} 0.5\n"
				  "# HELP quiver_sandboxes Live sandboxes.\n"
				  "# TYPE quiver_sandboxes gauge\n"
				  "quiver_sandboxes 6.5\n");
	qmetrics_free(reg);
}

static void test_histogram(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmetrics *reg = qmetrics_new(&err);
	const double b[] = {0.1, 1, 2.5};
	const char *const lbl[] = {"path", NULL};
	struct qmetric *h;
	struct qmetric_series *s;
	cleanup_free char *text = NULL;

	h = qmetrics_histogram(reg, "quiver_start_seconds", "Start latency.", lbl, b, 3, &err);
	assert_non_null(h);
	s = qmetric_series(h, (const char *const[]){"warm"}, &err);
	qmetric_observe(s, 0.05);
	qmetric_observe(s, 0.1); /* le is inclusive */
	qmetric_observe(s, 2);
	qmetric_observe(s, 100);
	qmetric_observe(s, NAN);
	assert_true(qmetric_value(s) == 4);
	text = render(reg);
	assert_string_equal(text, "# HELP quiver_start_seconds Start latency.\n"
				  "# TYPE quiver_start_seconds histogram\n"
				  "quiver_start_seconds_bucket{path=\"warm\",le=\"0.1\"} 2\n"
				  "quiver_start_seconds_bucket{path=\"warm\",le=\"1\"} 2\n"
				  "quiver_start_seconds_bucket{path=\"warm\",le=\"2.5\"} 3\n"
				  "quiver_start_seconds_bucket{path=\"warm\",le=\"+Inf\"} 4\n"
				  "quiver_start_seconds_sum{path=\"warm\"} 102.15\n"
				  "quiver_start_seconds_count{path=\"warm\"} 4\n");
	free(steal_ptr(text));

	/* Unlabeled, default buckets: exported at zero from the start. */
	assert_non_null(qmetrics_histogram(reg, "quiver_x_seconds", "", NULL, NULL, 0, &err));
	text = render(reg);
	assert_non_null(strstr(text, "quiver_x_seconds_bucket{le=\"0.005\"} 0\n"));
	assert_non_null(strstr(text, "quiver_x_seconds_bucket{le=\"+Inf\"} 0\n"));
	assert_non_null(strstr(text, "quiver_x_seconds_count 0\n"));
	qmetrics_free(reg);
}

static void test_escaping_and_validation(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmetrics *reg = qmetrics_new(&err);
	const char *const lbl[] = {"id", NULL};
	const char *const bad_lbl[] = {"le", NULL};
	const char *const dup_lbl[] = {"a", "a", NULL};
	const double unsorted[] = {1, 0.5};
	struct qmetric *m;
	cleanup_free char *text = NULL;

	m = qmetrics_gauge(reg, "g", "line1\nback\\slash \"q\"", lbl, &err);
	qmetric_set(qmetric_series(m, (const char *const[]){"a\"b\\c\nd"}, &err), 1);
	text = render(reg);
	assert_non_null(strstr(text, "# HELP g line1\\nback\\\\slash \"q\"\n"));
	assert_non_null(strstr(text, "g{id=\"a\\\"b\\\\c\\nd\"} 1\n"));

	assert_null(qmetrics_counter(reg, "g", "", NULL, &err));
	assert_int_equal(err.code, EEXIST);
	assert_null(qmetrics_counter(reg, "9bad", "", NULL, &err));
	assert_int_equal(err.code, EINVAL);
	assert_null(qmetrics_counter(reg, "bad-name", "", NULL, &err));
	assert_null(qmetrics_counter(reg, "", "", NULL, &err));
	assert_null(qmetrics_histogram(reg, "h", "", bad_lbl, NULL, 0, &err));
	assert_null(qmetrics_counter(reg, "c", "", dup_lbl, &err));
	assert_null(qmetrics_histogram(reg, "h", "", NULL, unsorted, 2, &err));
	assert_non_null(strstr(err.msg, "increasing"));
	/* Missing label values. */
	assert_null(qmetric_series(m, NULL, &err));
	/* Updates through a failed registration are harmless no-ops. */
	qmetric_inc(NULL);
	qmetric_observe(NULL, 1);
	qmetrics_free(reg);
}

static void collect(struct qmetrics_writer *w, void *arg)
{
	int *calls = arg;
	const char *const names[] = {"sandbox", NULL};
	const char *const values[] = {"sb-1", NULL};

	(*calls)++;
	qmetrics_write_family(w, "quiver_sandbox_rss_bytes", "Resident memory.", QMETRIC_GAUGE);
	qmetrics_write_sample(w, "quiver_sandbox_rss_bytes", names, values, 12345678);
	qmetrics_write_sample(w, "bad name", NULL, NULL, 1);
	qmetrics_write_sample(w, "inf", NULL, NULL, INFINITY);
}

static void test_collector(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmetrics *reg = qmetrics_new(&err);
	cleanup_free char *text = NULL;
	int calls = 0;

	text = render(reg);
	assert_string_equal(text, "");
	free(steal_ptr(text));
	assert_int_equal(qmetrics_add_collector(reg, collect, &calls, &err), 0);
	text = render(reg);
	assert_int_equal(calls, 1);
	assert_non_null(strstr(text, "# TYPE quiver_sandbox_rss_bytes gauge\n"
				     "quiver_sandbox_rss_bytes{sandbox=\"sb-1\"} 12345678\n"));
	assert_null(strstr(text, "bad name"));
	assert_non_null(strstr(text, "inf +Inf\n"));
	assert_non_null(strstr(text, "quiver_metrics_dropped_samples_total 1\n"));
	qmetrics_free(reg);
}

/* One HTTP/1.1 request over a plain TCP socket; returns the response. */
static char *http_get(int port, const char *method, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char req[256];
	size_t cap = 1 << 16, len = 0;
	char *buf = calloc(1, cap);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n;

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req),
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method, path,
		 port);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	return buf;
}

struct hammer {
	struct qmetric_series *s;
	int n;
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < h->n; i++)
		qmetric_inc(h->s);
	return NULL;
}

static void test_http(void **state)
{
	(void)state;
	struct qerr err = {0};
	struct qmetrics *reg = qmetrics_new(&err);
	struct qmetrics_http *http = NULL, *http2 = NULL;
	struct qmetric_series *c;
	cleanup_free char *resp = NULL;
	char addr[64];
	int port;
	pthread_t th;
	struct hammer hm;

	c = qmetric_series(qmetrics_counter(reg, "quiver_scrapes_test_total", "Test.", NULL, &err),
			   NULL, &err);
	qmetric_add(c, 41);
	assert_int_equal(qmetrics_http_start(reg, NULL, &http, &err), 0);
	port = qmetrics_http_port(http);
	assert_true(port > 0);
	assert_int_equal(qmetrics_http_addr(http, addr, sizeof(addr), &err), 0);
	assert_true(strncmp(addr, "127.0.0.1:", 10) == 0);
	assert_int_equal(atoi(addr + 10), port);

	/* A second instance in the same process gets its own port. */
	assert_int_equal(qmetrics_http_start(reg, "127.0.0.1:0", &http2, &err), 0);
	assert_int_not_equal(qmetrics_http_port(http2), port);

	/* Scrape while another thread counts. */
	hm.s = c;
	hm.n = 100000;
	assert_int_equal(pthread_create(&th, NULL, hammer, &hm), 0);
	resp = http_get(port, "GET", "/metrics");
	pthread_join(th, NULL);
	assert_true(strncmp(resp, "HTTP/1.1 200", 12) == 0);
	assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
	assert_non_null(strstr(resp, "# TYPE quiver_scrapes_test_total counter\n"));
	assert_non_null(strstr(resp, "\r\n\r\n# HELP quiver_scrapes_test_total Test.\n"));
	free(steal_ptr(resp));

	resp = http_get(qmetrics_http_port(http2), "GET", "/metrics");
	assert_non_null(strstr(resp, "quiver_scrapes_test_total 100041\n"));
	free(steal_ptr(resp));

	resp = http_get(port, "GET", "/other");
	assert_true(strncmp(resp, "HTTP/1.1 404", 12) == 0);
	free(steal_ptr(resp));
	resp = http_get(port, "POST", "/metrics");
	assert_true(strncmp(resp, "HTTP/1.1 405", 12) == 0);

	qmetrics_http_stop(http);
	qmetrics_http_stop(http2);
	qmetrics_http_stop(NULL);

	/* A taken port is an error, not a silent second server. */
	assert_int_equal(qmetrics_http_start(reg, "127.0.0.1:0", &http, &err), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", qmetrics_http_port(http));
	assert_true(qmetrics_http_start(reg, addr, &http2, &err) < 0);
	assert_true(qmetrics_http_start(reg, "not an address", &http2, &err) < 0);
	assert_true(qmetrics_http_start(reg, "127.0.0.1:0/x", &http2, &err) < 0);
	/* ...and the failed attempts did not disturb the running server. */
	free(steal_ptr(resp));
	resp = http_get(qmetrics_http_port(http), "GET", "/metrics");
	assert_true(strncmp(resp, "HTTP/1.1 200", 12) == 0);
	qmetrics_http_stop(http);
	qmetrics_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_gauge),
	    cmocka_unit_test(test_histogram),
	    cmocka_unit_test(test_escaping_and_validation),
	    cmocka_unit_test(test_collector),
	    cmocka_unit_test(test_http),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
