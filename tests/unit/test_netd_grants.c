/* grants.h: io.quiver.net.peers, good and hostile specs, and what a set
 * allows. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "services/netd/grants.h"

static struct in_addr ip(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a;
}

static void test_parse_good(void **state)
{
	struct grant_set g;
	struct qerr err = {0};
	(void)state;

	assert_int_equal(grants_parse(NULL, &g, &err), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(grants_parse("", &g, &err), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(grants_parse("*", &g, &err), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.g[0].kind, GRANT_ANY);
	assert_int_equal(grants_parse("db,web:8080,10.1.2.3,10.0.0.0/8:53,0.0.0.0/0", &g, &err), 0);
	assert_int_equal(g.n, 5);
	assert_int_equal(g.g[0].kind, GRANT_ID);
	assert_string_equal(g.g[0].id, "db");
	assert_int_equal(g.g[0].port, 0);
	assert_int_equal(g.g[1].kind, GRANT_ID);
	assert_int_equal(g.g[1].port, 8080);
	assert_int_equal(g.g[2].kind, GRANT_NET);
	assert_int_equal(g.g[2].mask, 0xffffffffu);
	assert_int_equal(g.g[3].net, 0x0a000000u);
	assert_int_equal(g.g[3].mask, 0xff000000u);
	assert_int_equal(g.g[3].port, 53);
	assert_int_equal(g.g[4].mask, 0);
	/* host bits of a network are ignored, as a route's would be */
	assert_int_equal(grants_parse("10.1.2.3/16", &g, &err), 0);
	assert_int_equal(g.g[0].net, 0x0a010000u);
}

static void test_parse_bad(void **state)
{
	static const char *const bad[] = {
	    ",",	  "a,",		 ",a",
	    "a,,b",	  "10.0.0.0/33", "10.0.0.0/",
	    "10.0.0.0/x", "1.2.3.4:0",	 "1.2.3.4:65536",
	    "1.2.3.4:08", "host:",	 ":80",
	    "a b",	  "a\tb",	 "a\x01",
	    "é",	  "256.1.1.1/8", "a/b",
	    "-a",	  "..",
	};
	struct grant_set g;
	char big[GRANTS_SPEC_MAX + 2], many[4096] = "";
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct qerr err = {0};
		int r = grants_parse(bad[i], &g, &err);
		if (r != -EINVAL)
			fail_msg("\"%s\": %d", bad[i], r);
		assert_int_equal(g.n, 0);
		for (const char *p = err.msg; *p; p++)
			assert_true(*p >= 0x20 && *p <= 0x7e);
	}
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct qerr err = {0};
	assert_int_equal(grants_parse(big, &g, &err), -EINVAL);
	for (int i = 0; i <= GRANTS_MAX; i++)
		strcat(many, i ? ",a" : "a");
	assert_int_equal(grants_parse(many, &g, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "more than"));
	many[strlen(many) - 2] = '\0'; /* exactly GRANTS_MAX */
	assert_int_equal(grants_parse(many, &g, &err), 0);
	assert_int_equal(g.n, GRANTS_MAX);
}

static void test_allow(void **state)
{
	struct grant_set g;
	struct qerr err = {0};
	(void)state;

	assert_int_equal(grants_parse(NULL, &g, &err), 0);
	assert_false(grants_allow(&g, ip("10.0.0.2"), 80, "db"));

	assert_int_equal(grants_parse("db,web:8080,192.0.2.0/24:443", &g, &err), 0);
	assert_true(grants_allow(&g, ip("10.0.0.2"), 6379, "db"));
	assert_false(grants_allow(&g, ip("10.0.0.2"), 6379, NULL));
	assert_false(grants_allow(&g, ip("10.0.0.3"), 80, "web"));
	assert_true(grants_allow(&g, ip("10.0.0.3"), 8080, "web"));
	assert_true(grants_allow(&g, ip("192.0.2.77"), 443, NULL));
	assert_false(grants_allow(&g, ip("192.0.2.77"), 80, NULL));
	assert_false(grants_allow(&g, ip("192.0.3.1"), 443, NULL));

	assert_int_equal(grants_parse("*", &g, &err), 0);
	assert_true(grants_allow(&g, ip("8.8.8.8"), 53, NULL));
	assert_int_equal(grants_parse("*:53", &g, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good),
	    cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_allow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
