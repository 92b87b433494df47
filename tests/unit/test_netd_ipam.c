/* ipam.h: subnets (good and bad CIDRs, with the messages that name the bad
 * value), host interface names, next-fit allocation, release and reuse,
 * exhaustion, reload from disk, and crash recovery: every truncation of a
 * lease file, garbage, temporary files, a second lease for one sandbox,
 * and a lease from another subnet. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/netd/ipam.h"

static char dir[64];
static int dfd = -1;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/quiver-test-ipam-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	close(dfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct ipam_subnet subnet(const char *cidr)
{
	struct ipam_subnet sn;
	struct qerr err;

	if (ipam_subnet_parse(cidr, &sn, &err) < 0)
		fail_msg("%s: %s", cidr, err.msg);
	return sn;
}

static const char *ip(struct in_addr a)
{
	static char buf[4][INET_ADDRSTRLEN];
	static int k;

	k = (k + 1) % 4;
	return inet_ntop(AF_INET, &a, buf[k], sizeof(buf[k]));
}

static bool exists(const char *name)
{
	return faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static void put_file(const char *name, const char *text, size_t len)
{
	cleanup_close int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
}

static size_t get_file(const char *name, char *buf, size_t len)
{
	cleanup_close int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, len - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	return (size_t)n;
}

static size_t lease_text(char *buf, const char *id, const char *addr, const char *ifname,
			 const char *ports)
{
	return (size_t)sprintf(buf,
			       "quiver-netd-lease 1\nid %s\naddr %s\nifname %s\nports %s\nend\n",
			       id, addr, ifname, ports);
}

static struct ipam_lease *alloc_peers(struct ipam *ipam, const char *id, const char *ports,
				      const char *peers)
{
	struct ipam_lease *l;
	struct port_set ps;
	char ifname[IFNAMSIZ];
	struct qerr err;

	ipam_ifname_for(id, 0, ifname);
	assert_int_equal(ports_parse(ports, &ps, &err), 0);
	if (ipam_alloc(ipam, id, ifname, &ps, peers, &l, &err) < 0)
		fail_msg("alloc %s: %s", id, err.msg);
	return l;
}

static struct ipam_lease *alloc(struct ipam *ipam, const char *id, const char *ports)
{
	return alloc_peers(ipam, id, ports, NULL);
}

static void test_subnet_good(void **state)
{
	struct ipam_subnet sn;
	char buf[IPAM_CIDR_LEN];

	(void)state;
	sn = subnet("10.88.0.0/16");
	assert_int_equal(sn.net, 0x0a580000);
	assert_int_equal(sn.prefix, 16);
	assert_string_equal(ip(ipam_subnet_gateway(&sn)), "10.88.0.1");
	assert_int_equal(ipam_subnet_hosts(&sn), 65536 - 3);
	ipam_subnet_format(&sn, buf);
	assert_string_equal(buf, "10.88.0.0/16");
	assert_true(ipam_subnet_contains(&sn, (struct in_addr){htonl(0x0a58ffff)}));
	assert_false(ipam_subnet_contains(&sn, (struct in_addr){htonl(0x0a590000)}));

	sn = subnet("10.0.0.0/8");
	assert_int_equal(ipam_subnet_hosts(&sn), (1u << 24) - 3);
	sn = subnet("192.168.7.4/30");
	assert_int_equal(ipam_subnet_hosts(&sn), 1);
	assert_string_equal(ip(ipam_subnet_gateway(&sn)), "192.168.7.5");
	subnet("172.16.0.0/12");
	subnet("100.64.0.0/10");
}

static void expect_bad(const char *cidr, const char *needle)
{
	struct ipam_subnet sn;
	struct qerr err = {0};

	if (ipam_subnet_parse(cidr, &sn, &err) != -EINVAL)
		fail_msg("\"%s\" was accepted", cidr);
	if (!strstr(err.msg, needle))
		fail_msg("\"%s\": message \"%s\" lacks \"%s\"", cidr, err.msg, needle);
	for (const char *p = err.msg; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

static void test_subnet_bad(void **state)
{
	(void)state;
	expect_bad("", "need ADDRESS/PREFIX");
	expect_bad("10.88.0.0", "subnet \"10.88.0.0\": need ADDRESS/PREFIX");
	expect_bad("10.88.0.0/", "prefix must be 8 to 30");
	expect_bad("10.88.0.0/7", "prefix /7: must be 8 to 30");
	expect_bad("10.88.0.0/31", "prefix /31");
	expect_bad("10.88.0.0/32", "prefix /32");
	expect_bad("10.88.0.0/016", "prefix must be");
	expect_bad("10.88.0.0/08", "prefix must be");
	expect_bad("10.88.0.0/1a", "prefix must be");
	expect_bad("10.88.0.0/-8", "prefix must be");
	expect_bad("10.88.0.1/16", "subnet \"10.88.0.1/16\": host bits are set (the network is "
				   "10.88.0.0/16)");
	expect_bad("10.88.0.0/8", "the network is 10.0.0.0/8");
	expect_bad("10.88.0/16", "\"10.88.0\" is not an IPv4 address");
	expect_bad("010.88.0.0/16", "\"010.88.0.0\" is not an IPv4 address");
	expect_bad("10.88.0.0.0/16", "not an IPv4 address");
	expect_bad("fd00::/64", "not an IPv4 address");
	expect_bad("127.0.0.0/8", "overlaps 127.0.0.0/8 (loopback)");
	expect_bad("0.0.0.0/8", "overlaps 0.0.0.0/8");
	expect_bad("169.254.0.0/16", "169.254.0.0/16 (link-local");
	expect_bad("169.0.0.0/8", "169.254.0.0/16");
	expect_bad("224.0.0.0/8", "multicast");
	expect_bad("250.0.0.0/8", "multicast and reserved");
	expect_bad("10.88.0.0/16 ", "prefix must be");
	expect_bad("10.88.0.0/16\n", "\"10.88.0.0/16?\": prefix must be");
	expect_bad("1\x01.0.0.0/8", "\"1?.0.0.0/8\"");
	expect_bad("255.255.255.255/30xxxxxxxxxxxxxxxxxxxx", "too long");
}

static void test_ifname(void **state)
{
	char a[IFNAMSIZ], b[IFNAMSIZ], c[IFNAMSIZ];

	(void)state;
	ipam_ifname_for("web-1", 0, a);
	ipam_ifname_for("web-1", 0, b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), 12);
	assert_true(ipam_ifname_ok(a));
	ipam_ifname_for("web-1", 1, c);
	assert_true(ipam_ifname_ok(c));
	assert_string_not_equal(a, c);
	ipam_ifname_for("web-2", 0, c);
	assert_string_not_equal(a, c);

	assert_false(ipam_ifname_ok("eth0"));
	assert_false(ipam_ifname_ok("qv0123"));
	assert_false(ipam_ifname_ok("qv0123456789a"));
	assert_false(ipam_ifname_ok("qvABCDEF0123"));
	assert_false(ipam_ifname_ok("qw0123456789"));
	assert_true(ipam_ifname_ok("qv0123456789"));
}

static void test_alloc_order_and_exhaustion(void **state)
{
	struct ipam_subnet sn = subnet("10.9.0.0/29"); /* hosts .2 to .6 */
	struct ipam *ipam;
	struct ipam_lease *l;
	char ifname[IFNAMSIZ];
	struct qerr err;

	(void)state;
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	assert_string_equal(ip(alloc(ipam, "a", "")->addr), "10.9.0.2");
	assert_string_equal(ip(alloc(ipam, "b", "")->addr), "10.9.0.3");
	assert_string_equal(ip(alloc(ipam, "c", "")->addr), "10.9.0.4");
	assert_true(exists("10.9.0.3"));

	/* Next-fit: a released address is handed out last. */
	assert_int_equal(ipam_release(ipam, "b", &err), 1);
	assert_false(exists("10.9.0.3"));
	assert_int_equal(ipam_release(ipam, "b", &err), 0);
	assert_null(ipam_find(ipam, "b"));
	assert_string_equal(ip(alloc(ipam, "d", "")->addr), "10.9.0.5");
	assert_string_equal(ip(alloc(ipam, "e", "")->addr), "10.9.0.6");
	assert_string_equal(ip(alloc(ipam, "f", "")->addr), "10.9.0.3");

	ipam_ifname_for("g", 0, ifname);
	assert_int_equal(ipam_alloc(ipam, "g", ifname, NULL, NULL, &l, &err), -ENOSPC);
	assert_null(l);
	assert_string_equal(err.msg, "subnet 10.9.0.0/29 is full: all 5 addresses are leased");

	/* Refusals change nothing. */
	ipam_ifname_for("a", 0, ifname);
	assert_int_equal(ipam_alloc(ipam, "a", ifname, NULL, NULL, &l, &err), -EEXIST);
	assert_string_equal(err.msg, "sandbox a already holds lease 10.9.0.2");
	assert_int_equal(ipam_release(ipam, "c", &err), 1);
	assert_int_equal(ipam_alloc(ipam, "x", ifname, NULL, NULL, &l, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "already belongs to sandbox a"));
	assert_int_equal(ipam_alloc(ipam, "../x", "qv0000000000", NULL, NULL, &l, &err), -EINVAL);
	assert_int_equal(ipam_alloc(ipam, "x", "eth0", NULL, NULL, &l, &err), -EINVAL);
	ipam_ifname_for("y", 0, ifname);
	assert_int_equal(ipam_alloc(ipam, "y", ifname, NULL, "a:b:c", &l, &err), -EINVAL);
	assert_int_equal(ipam_alloc(ipam, "y", ifname, NULL, "*\nend", &l, &err), -EINVAL);
	assert_string_equal(ip(alloc(ipam, "g", "")->addr), "10.9.0.4");

	size_t n;
	struct ipam_lease *v = ipam_leases(ipam, &n);
	assert_int_equal(n, 5);
	for (size_t i = 1; i < n; i++)
		assert_true(ntohl(v[i - 1].addr.s_addr) < ntohl(v[i].addr.s_addr));
	ipam_close(ipam);
}

static void test_reload(void **state)
{
	struct ipam_subnet sn = subnet("10.9.0.0/24");
	struct ipam_lease before[3];
	struct ipam *ipam;
	struct qerr err;
	char text[4096];
	size_t n;

	(void)state;
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	alloc_peers(ipam, "web-1", "8080:80,127.0.0.1:5353:53/udp", "db:6379,10.1.0.0/16");
	alloc(ipam, "db", "");
	alloc(ipam, "x.y_z-0", "10.1.1.1:443:8443/tcp");
	assert_int_equal(ipam_release(ipam, "db", &err), 1);
	alloc(ipam, "db", "");
	memcpy(before, ipam_leases(ipam, &n), sizeof(before));
	assert_int_equal(n, 3);
	ipam_close(ipam);

	get_file("10.9.0.2", text, sizeof(text));
	/* The format of ipam.c's comment; the hash is ipam_ifname_for's. */
	static const char head[] = "quiver-netd-lease 1\nid web-1\naddr 10.9.0.2\nifname qv";
	assert_int_equal(strncmp(text, head, strlen(head)), 0);
	assert_non_null(strstr(
	    text, "\nports 8080:80/tcp,127.0.0.1:5353:53/udp\npeers db:6379,10.1.0.0/16\nend\n"));

	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	struct ipam_lease *after = ipam_leases(ipam, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(before, after, sizeof(before));
	/* Next-fit goes on after the highest lease. */
	assert_string_equal(ip(alloc(ipam, "new", "")->addr), "10.9.0.6");
	ipam_close(ipam);
}

/* Every prefix of a complete lease file, down to empty, is not a lease:
 * it is dropped at load, and the file removed. */
static void test_truncated_leases(void **state)
{
	struct ipam_subnet sn = subnet("10.9.0.0/24");
	struct ipam *ipam;
	struct qerr err;
	char text[4096];
	size_t len, n;

	(void)state;
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	alloc(ipam, "web-1", "8080:80,53:53/udp");
	ipam_close(ipam);
	len = get_file("10.9.0.2", text, sizeof(text));

	for (size_t cut = 0; cut < len; cut++) {
		put_file("10.9.0.2", text, cut);
		assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
		ipam_leases(ipam, &n);
		if (n != 0)
			fail_msg("a lease cut at %zu of %zu bytes was loaded", cut, len);
		assert_false(exists("10.9.0.2"));
		ipam_close(ipam);
	}
	put_file("10.9.0.2", text, len);
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	ipam_leases(ipam, &n);
	assert_int_equal(n, 1);
	ipam_close(ipam);
}

static void test_garbage(void **state)
{
	struct ipam_subnet sn = subnet("10.9.0.0/24");
	struct ipam *ipam;
	struct ipam_lease *v;
	struct qerr err;
	char text[4096], other[4096];
	size_t len, n;

	(void)state;
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	alloc(ipam, "a", "80:80");
	alloc(ipam, "b", "");
	ipam_close(ipam);
	len = get_file("10.9.0.2", text, sizeof(text));

	/* A second lease for a: the one at the higher address is dropped. */
	put_file("10.9.0.9", other, lease_text(other, "a", "10.9.0.9", "qv0000000009", ""));
	/* Its address line does not match its name. */
	put_file("10.9.0.10", text, len);
	/* Good, but data after the end line. */
	n = lease_text(other, "c", "10.9.0.11", "qv0000000011", "");
	memcpy(other + n, "x\n", 3);
	put_file("10.9.0.11", other, n + 2);
	/* A good lease for e, and a second lease for its interface. */
	put_file("10.9.0.8", other, lease_text(other, "e", "10.9.0.8", "qv0000000008", "1:1"));
	put_file("10.9.0.12", other, lease_text(other, "d", "10.9.0.12", "qv0000000008", ""));
	/* Not lease names, not sandbox addresses, not regular files. */
	put_file("hello", "quiver-netd-lease 1\n", 20);
	put_file("010.9.0.20", "", 0);
	put_file("10.9.0.1", text, len);
	put_file("10.9.0.255", text, len);
	put_file("10.9.0.0", text, len);
	assert_int_equal(mkdirat(dfd, "10.9.0.13", 0700), 0);
	/* A NUL inside, a huge one, and what a crash leaves. */
	put_file("10.9.0.14", "quiver-netd-lease 1\n\0id a\n", 26);
	char *huge = calloc(1, 1 << 16);
	memset(huge, 'x', 1 << 16);
	put_file("10.9.0.15", huge, 1 << 16);
	free(huge);
	put_file(".10.9.0.16.tmp.abc123", text, len);
	/* Peers that are no spec: the whole lease is not one. */
	static const char bad_peers[] = "quiver-netd-lease 1\nid f\naddr 10.9.0.17\nifname "
					"qv0000000017\nports \npeers a:b:c\nend\n";
	put_file("10.9.0.17", bad_peers, sizeof(bad_peers) - 1);

	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	v = ipam_leases(ipam, &n);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].id, "a");
	assert_string_equal(v[1].id, "b");
	assert_string_equal(v[2].id, "e");
	assert_int_equal(v[0].ports.n, 1);
	ipam_close(ipam);
	assert_true(exists("10.9.0.2"));
	assert_true(exists("10.9.0.3"));
	static const char *const gone[] = {
	    "10.9.0.9",	  "10.9.0.10", "10.9.0.11", "hello",
	    "010.9.0.20", "10.9.0.12", "10.9.0.1",  "10.9.0.255",
	    "10.9.0.0",	  "10.9.0.14", "10.9.0.15", ".10.9.0.16.tmp.abc123",
	};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (exists(gone[i]))
			fail_msg("%s was not removed", gone[i]);
	/* A directory is left alone (logged), not removed recursively. */
	assert_true(exists("10.9.0.13"));
	unlinkat(dfd, "10.9.0.13", AT_REMOVEDIR);
}

/* A lease outside the subnet: the subnet was changed under running
 * sandboxes.  Refused, naming it, and nothing is removed. */
static void test_outside_subnet(void **state)
{
	struct ipam_subnet old = subnet("10.9.0.0/24"), sn = subnet("10.10.0.0/24");
	struct ipam *ipam;
	struct qerr err;

	(void)state;
	assert_int_equal(ipam_open(dfd, &old, &ipam, &err), 0);
	alloc(ipam, "a", "");
	ipam_close(ipam);
	put_file("junk", "x", 1);
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), -EINVAL);
	assert_null(ipam);
	assert_non_null(strstr(err.msg, "lease 10.9.0.2 is outside subnet 10.10.0.0/24"));
	assert_true(exists("10.9.0.2"));
	assert_true(exists("junk"));
}

static void test_stray_file_skipped(void **state)
{
	struct ipam_subnet sn = subnet("10.9.0.0/24");
	struct ipam *ipam;
	struct qerr err;

	(void)state;
	assert_int_equal(ipam_open(dfd, &sn, &ipam, &err), 0);
	/* Appeared after the load (another writer): never overwritten. */
	put_file("10.9.0.2", "mine", 4);
	assert_string_equal(ip(alloc(ipam, "a", "")->addr), "10.9.0.3");
	char text[16];
	get_file("10.9.0.2", text, sizeof(text));
	assert_string_equal(text, "mine");
	ipam_close(ipam);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_subnet_good),
	    cmocka_unit_test(test_subnet_bad),
	    cmocka_unit_test(test_ifname),
	    cmocka_unit_test_setup_teardown(test_alloc_order_and_exhaustion, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_leases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outside_subnet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stray_file_skipped, setup, teardown),
	};
	/* The drops are logged; only warnings and up, to keep the output
	 * readable. */
	qlog_init("test_netd_ipam", NULL, QLOG_TEXT, QLOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
