/* ports.h: the published-ports spec (good and hostile input, bounds,
 * canonical form and round trip) and the overlap rule between sandboxes. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "services/netd/ports.h"

static void assert_map(const struct port_map *m, const char *ip, unsigned hp, unsigned sp,
		       enum port_proto proto)
{
	char got[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &m->host_ip, got, sizeof(got));
	assert_string_equal(got, ip);
	assert_int_equal(m->host_port, hp);
	assert_int_equal(m->sandbox_port, sp);
	assert_int_equal(m->proto, proto);
}

static void test_good(void **state)
{
	struct port_set s;
	struct qerr err;

	(void)state;
	assert_int_equal(ports_parse("", &s, &err), 0);
	assert_int_equal(s.n, 0);

	assert_int_equal(ports_parse("8080:80", &s, &err), 0);
	assert_int_equal(s.n, 1);
	assert_map(&s.map[0], "0.0.0.0", 8080, 80, PORT_TCP);

	assert_int_equal(ports_parse("8080:80/tcp,127.0.0.1:5353:53/udp,1:65535/udp", &s, &err), 0);
	assert_int_equal(s.n, 3);
	assert_map(&s.map[0], "0.0.0.0", 8080, 80, PORT_TCP);
	assert_map(&s.map[1], "127.0.0.1", 5353, 53, PORT_UDP);
	assert_map(&s.map[2], "0.0.0.0", 1, 65535, PORT_UDP);

	/* One port over tcp and udp, and two host addresses, are distinct. */
	assert_int_equal(ports_parse("53:53/tcp,53:53/udp,10.0.0.1:80:80,10.0.0.2:80:81", &s, &err),
			 0);
	assert_int_equal(s.n, 4);
	/* Two host ports to one sandbox port are fine. */
	assert_int_equal(ports_parse("80:80,8080:80", &s, &err), 0);
}

static void expect_bad(const char *spec, const char *needle)
{
	struct port_set s;
	struct qerr err = {0};

	if (ports_parse(spec, &s, &err) != -EINVAL)
		fail_msg("\"%s\" was accepted", spec);
	assert_int_equal(err.code, EINVAL);
	assert_int_equal(s.n, 0);
	if (!strstr(err.msg, needle))
		fail_msg("\"%s\": message \"%s\" lacks \"%s\"", spec, err.msg, needle);
	/* Messages quote input, but never a control byte. */
	for (const char *p = err.msg; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

static void test_bad(void **state)
{
	(void)state;
	expect_bad("80", "HOST_PORT:SANDBOX_PORT");
	expect_bad("0:80", "host port \"0\"");
	expect_bad("80:0", "sandbox port \"0\"");
	expect_bad("65536:80", "host port \"65536\"");
	expect_bad("80:99999", "sandbox port \"99999\"");
	expect_bad("080:80", "host port \"080\"");
	expect_bad("+80:80", "host port \"+80\"");
	expect_bad("-1:80", "host port \"-1\"");
	expect_bad(" 80:80", "host port \" 80\"");
	expect_bad("80 :80", "host port \"80 \"");
	expect_bad("80:80/sctp", "protocol \"sctp\"");
	expect_bad("80:80/TCP", "protocol \"TCP\"");
	expect_bad("80:80/", "protocol \"\"");
	expect_bad("80:80/tcp/udp", "protocol \"tcp/udp\"");
	expect_bad("80:80,", "mapping 2 is empty");
	expect_bad(",80:80", "mapping 1 is empty");
	expect_bad("80:80,,81:81", "mapping 2 is empty");
	expect_bad("1.2.3:80:80", "host \"1.2.3\"");
	expect_bad("1.2.3.4.5:80:80", "host \"1.2.3.4.5\"");
	expect_bad("01.2.3.4:80:80", "host \"01.2.3.4\"");
	expect_bad("256.1.1.1:80:80", "host \"256.1.1.1\"");
	expect_bad("224.0.0.1:80:80", "not a unicast address");
	expect_bad("255.255.255.255:80:80", "not a unicast address");
	expect_bad(":80:80", "host \"\"");
	expect_bad("[::1]:80:80", "IPv6 is not supported");
	expect_bad("::1:80:80", "IPv6 is not supported");
	expect_bad("80:80:80:80", "IPv6 is not supported");
	expect_bad("\x01\x02:80", "host port \"??\"");
	expect_bad("80:8\n0", "sandbox port \"8?0\"");
	expect_bad("255.255.255.255:65535:65535/tcpx", "longer than 31 bytes");
	/* One host port twice, also through 0.0.0.0. */
	expect_bad("80:80,80:81", "host port 80/tcp is published twice (mappings 1 and 2)");
	expect_bad("10.0.0.1:80:80,80:81", "published twice");
	expect_bad("0.0.0.0:80:80,10.0.0.1:80:81", "published twice");
}

static void test_bounds(void **state)
{
	char spec[PORTS_SPEC_MAX + 64];
	struct port_set s;
	struct qerr err;
	size_t off = 0;

	(void)state;
	/* PORTS_MAX of the longest mapping: exactly PORTS_SPEC_MAX bytes. */
	for (int i = 0; i < PORTS_MAX; i++)
		off += (size_t)snprintf(spec + off, sizeof(spec) - off,
					"%s255.255.255.%d:%d:65535/udp", i ? "," : "", 100 + i,
					10000 + i);
	assert_int_equal(off, PORTS_SPEC_MAX);
	assert_int_equal(ports_parse(spec, &s, &err), 0);
	assert_int_equal(s.n, PORTS_MAX);

	/* One mapping more is refused by count... */
	off = 0;
	for (int i = 1; i <= PORTS_MAX + 1; i++)
		off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%s%d:80", i > 1 ? "," : "",
					i);
	assert_int_equal(ports_parse(spec, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "more than 64 mappings"));
	assert_int_equal(s.n, 0);

	/* ...and a spec over PORTS_SPEC_MAX by length, before parsing. */
	memset(spec, '1', sizeof(spec) - 1);
	spec[sizeof(spec) - 1] = '\0';
	assert_int_equal(ports_parse(spec, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
}

static void test_format_round_trip(void **state)
{
	static const char *const specs[] = {
	    "",
	    "8080:80",
	    "0.0.0.0:8080:80/tcp",
	    "8080:80/tcp,127.0.0.1:5353:53/udp,10.1.2.3:1:65535",
	};
	static const char *const canonical[] = {
	    "",
	    "8080:80/tcp",
	    "8080:80/tcp",
	    "8080:80/tcp,127.0.0.1:5353:53/udp,10.1.2.3:1:65535/tcp",
	};
	char buf[PORTS_SPEC_MAX + 1], small[8];
	struct port_set a, b;
	struct qerr err;

	(void)state;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		assert_int_equal(ports_parse(specs[i], &a, &err), 0);
		assert_int_equal(ports_format(&a, buf, sizeof(buf), &err),
				 (int)strlen(canonical[i]));
		assert_string_equal(buf, canonical[i]);
		assert_int_equal(ports_parse(buf, &b, &err), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
	assert_int_equal(ports_format(&a, small, sizeof(small), &err), -ENOBUFS);
	assert_string_equal(small, "");
}

static void test_conflicts(void **state)
{
	struct port_set web, dns, mine;
	struct qerr err;

	(void)state;
	assert_int_equal(ports_parse("8080:80,10.0.0.1:443:443,53:53/udp", &web, &err), 0);
	assert_int_equal(ports_parse("10.0.0.2:53:53", &dns, &err), 0);
	assert_int_equal(ports_check_conflict(&dns, &web, "web", &err), 0);

	/* Same port, same protocol, any address on either side. */
	assert_int_equal(ports_parse("10.0.0.9:8080:81", &mine, &err), 0);
	assert_int_equal(ports_check_conflict(&mine, &web, "web", &err), -EADDRINUSE);
	assert_int_equal(err.code, EADDRINUSE);
	assert_string_equal(err.msg,
			    "host port 10.0.0.9:8080/tcp: already published by sandbox web "
			    "(as 8080:80/tcp)");
	assert_int_equal(ports_parse("443:443", &mine, &err), 0);
	assert_int_equal(ports_check_conflict(&mine, &web, "web", &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "(as 10.0.0.1:443:443/tcp)"));
	assert_int_equal(ports_parse("10.0.0.1:443:8443", &mine, &err), 0);
	assert_int_equal(ports_check_conflict(&mine, &web, "web", &err), -EADDRINUSE);

	/* Another address, another protocol, another port: no conflict. */
	assert_int_equal(ports_parse("10.0.0.2:443:443,53:53/tcp,8081:80/tcp", &mine, &err), 0);
	assert_int_equal(ports_check_conflict(&mine, &web, "web", &err), 0);
	assert_int_equal(ports_parse("", &mine, &err), 0);
	assert_int_equal(ports_check_conflict(&mine, &web, "web", &err), 0);
}

static void test_validate(void **state)
{
	struct port_set s;
	struct qerr err;

	(void)state;
	assert_int_equal(ports_parse("8080:80,127.0.0.1:5353:53/udp", &s, &err), 0);
	assert_int_equal(ports_validate(&s, &err), 0);
	s.n = PORTS_MAX + 1;
	assert_int_equal(ports_validate(&s, &err), -EINVAL);
	s.n = 2;
	s.map[1].sandbox_port = 0;
	assert_int_equal(ports_validate(&s, &err), -EINVAL);
	assert_string_equal(err.msg, "ports: mapping 2: port 0");
	s.map[1].sandbox_port = 53;
	s.map[1].proto = (enum port_proto)7;
	assert_int_equal(ports_validate(&s, &err), -EINVAL);
	s.map[1].proto = PORT_TCP;
	s.map[1].host_port = 8080;
	assert_int_equal(ports_validate(&s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "published twice"));
	s.map[1].host_port = 8081;
	s.map[1].host_ip.s_addr = htonl(0xe0000001);
	assert_int_equal(ports_validate(&s, &err), -EINVAL);
	s.map[1].host_ip.s_addr = htonl(0x7f000001);
	assert_int_equal(ports_validate(&s, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),      cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_bounds),    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_conflicts), cmocka_unit_test(test_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
