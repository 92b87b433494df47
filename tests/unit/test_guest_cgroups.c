/* guest/cgroups.h: path rules, layout detection from fake mountinfo, limit
 * files against a fake cgroup root, and one real cgroup on this host. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/cgroups.h"
#include "libcommon/cleanup.h"

static char root[] = "/tmp/quiver-test-cgroups-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void mkdirs(const char *rel)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", root, rel);
	assert_int_equal(system(cmd), 0);
}

/* Contents of root/rel without the trailing newline; "" if absent. */
static const char *get(const char *rel)
{
	static char buf[4096];
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	buf[0] = '\0';
	f = fopen(path, "re");
	if (!f)
		return "<absent>";
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return buf;
}

/* ---- path rules ---- */

static void test_path_rules(void **state)
{
	static const struct {
		const char *path, *id;
		bool systemd;
		const char *want; /* NULL: an error, whose message is err_want */
		bool absolute;
		const char *err_want;
	} cases[] = {
	    {NULL, "abc", false, "quiver/abc", false, NULL},
	    {"", "abc", false, "quiver/abc", false, NULL},
	    {"/a//b/", "abc", false, "/a/b", true, NULL},
	    {"a/./b", "abc", false, "a/b", false, NULL},
	    {"/kubepods/burstable/pod1/c1", "c1", false, "/kubepods/burstable/pod1/c1", true, NULL},
	    {"/a/../b", "abc", false, NULL, false,
	     "linux.cgroupsPath: \"/a/../b\": \"..\" not allowed"},
	    {"/", "abc", false, NULL, false, "linux.cgroupsPath: \"/\": names a hierarchy's root"},
	    {"system.slice:docker:abc", "abc", true, "/system.slice/docker-abc.scope", true, NULL},
	    {"user-1000-app.slice:quiver:x", "x", true,
	     "/user.slice/user-1000.slice/user-1000-app.slice/quiver-x.scope", true, NULL},
	    {NULL, "abc", true, "/system.slice/quiver-abc.scope", true, NULL},
	    {"-.slice:p:n", "n", true, "/p-n.scope", true, NULL},
	    {":p:n", "n", true, "/system.slice/p-n.scope", true, NULL},
	    {"machine.slice::vm1.slice", "n", true, "/machine.slice/vm1.slice", true, NULL},
	    {"system.slice:docker", "abc", true, NULL, false,
	     "linux.cgroupsPath: \"system.slice:docker\": expected \"slice:prefix:name\" with the "
	     "systemd cgroup driver"},
	    {"system:docker:abc", "abc", true, NULL, false,
	     "linux.cgroupsPath: \"system:docker:abc\": bad slice \"system\""},
	    {"a/b", "../x", false, NULL, false, "cgroups: invalid container id \"../x\""},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct qerr err = {0};
		cleanup_free char *rel = NULL;
		bool absolute = !cases[i].absolute;
		int r = cgroups_path_rel(cases[i].path, cases[i].id, cases[i].systemd, &rel,
					 &absolute, &err);

		if (cases[i].want) {
			if (r != 0)
				fail_msg("case %zu: %s", i, err.msg);
			assert_string_equal(rel, cases[i].want);
			assert_int_equal(absolute, cases[i].absolute);
		} else {
			assert_int_equal(r, -EINVAL);
			assert_string_equal(err.msg, cases[i].err_want);
		}
	}
}

/* ---- layout detection ---- */

static struct cgroups_host *detect(const char *mountinfo, const char *self)
{
	struct cgroups_host *host = NULL;
	struct qerr err = {0};
	char mi[512], sc[512];

	put("mountinfo", mountinfo);
	put("self-cgroup", self);
	snprintf(mi, sizeof(mi), "%s/mountinfo", root);
	snprintf(sc, sizeof(sc), "%s/self-cgroup", root);
	if (cgroups_host_parse(mi, sc, CGROUPS_HOST_FAKE_FILES, &host, &err) < 0)
		fail_msg("%s", err.msg);
	return host;
}

static const struct cgroups_hierarchy *find(const struct cgroups_host *h, const char *ctrl)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->h[i].controllers, ctrl) == 0)
			return &h->h[i];
	return NULL;
}

static void test_layout_detection(void **state)
{
	struct cgroups_host *h;
	char mi[4096], mp[512];
	struct qerr err = {0};

	(void)state;
	/* Hybrid, as on this host, with the unified mount under the fake root
	 * so that its cgroup.controllers can be given. */
	mkdirs("unified");
	put("unified/cgroup.controllers", "hugetlb\n");
	snprintf(mi, sizeof(mi),
		 "22 1 0:20 / /sys rw - sysfs sysfs rw\n"
		 "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
		 "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
		 "32 30 0:29 / /sys/fs/cgroup/cpu\\040acct rw,relatime - cgroup cgroup rw,cpuacct\n"
		 "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
		 "35 30 0:40 / /sys/fs/cgroup/perf_event rw - cgroup cgroup rw,perf_event\n"
		 "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
		 "rw,xattr,name=systemd\n"
		 "40 30 0:37 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n",
		 root);
	h = detect(mi, "9:name=systemd:/init.scope\n8:perf_event:/\n4:memory:/a/b\n"
		       "2:cpuacct:/\n1:cpu:/\n0::/u\n");
	assert_int_equal(h->layout, CGROUPS_LAYOUT_HYBRID);
	assert_string_equal(cgroups_layout_name(h->layout), "hybrid");
	assert_int_equal(h->n, 5); /* perf_event is not used */
	assert_string_equal(find(h, "memory")->own, "/a/b");
	assert_string_equal(find(h, "cpuacct")->mountpoint, "/sys/fs/cgroup/cpu acct");
	assert_string_equal(find(h, "name=systemd")->own, "/init.scope");
	assert_true(find(h, "hugetlb")->v2);
	assert_string_equal(find(h, "hugetlb")->own, "/u");
	assert_null(find(h, "perf_event"));
	cgroups_host_free(h);

	/* Pure v1, a combined cpu,cpuacct hierarchy, and a mount whose root
	 * is a sub-cgroup (a container's view). */
	h = detect("31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
		   "34 30 0:31 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
		   "4:memory:/docker/x/sub\n2:cpu,cpuacct:/docker/x\n0::/\n");
	assert_int_equal(h->layout, CGROUPS_LAYOUT_V1);
	assert_int_equal(h->n, 2);
	assert_string_equal(find(h, "memory")->own, "/sub");
	assert_string_equal(find(h, "cpu,cpuacct")->own, "/docker/x");
	cgroups_host_free(h);

	/* Pure v2. */
	mkdirs("v2");
	put("v2/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	snprintf(mp, sizeof(mp), "%s/v2", root);
	snprintf(mi, sizeof(mi),
		 "30 22 0:27 / %s rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 "
		 "rw,nsdelegate,memory_recursiveprot\n",
		 mp);
	h = detect(mi, "0::/user.slice/user-0.slice/session-1.scope\n");
	assert_int_equal(h->layout, CGROUPS_LAYOUT_V2);
	assert_int_equal(h->n, 1);
	assert_true(h->h[0].v2);
	assert_string_equal(h->h[0].controllers, "cpuset cpu io memory hugetlb pids rdma misc");
	assert_string_equal(h->h[0].own, "/user.slice/user-0.slice/session-1.scope");
	cgroups_host_free(h);

	/* No cgroup filesystem at all. */
	put("mountinfo", "22 1 0:20 / /sys rw - sysfs sysfs rw\n");
	snprintf(mi, sizeof(mi), "%s/mountinfo", root);
	snprintf(mp, sizeof(mp), "%s/self-cgroup", root);
	h = NULL;
	assert_int_equal(cgroups_host_parse(mi, mp, 0, &h, &err), -ENOENT);
	assert_null(h);
	assert_non_null(strstr(err.msg, "no cgroup filesystem mounted"));
}

/* ---- a fake v1 root ---- */

static const struct cgroups_write *find_write(const struct cgroups *cg,
					      const struct cgroups_write *w, size_t n,
					      const char *file, size_t nth)
{
	(void)cg;
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i].file, file) == 0 && nth-- == 0)
			return &w[i];
	return NULL;
}

static void test_fake_v1(void **state)
{
	static const char *const hier[] = {"cpu", "cpuset", "memory", "pids", "devices", "freezer"};
	struct guest_resources res = {0};
	struct guest_device_rule rule = {
	    .allow = true, .type = 'c', .major = 1, .minor = 3, .access = "rw"};
	struct cgroups_host *h;
	struct cgroups *cg = NULL, *cg2 = NULL;
	cleanup_free struct cgroups_write *w = NULL;
	struct qerr err = {0};
	char mi[4096] = "", line[512], want[512];
	size_t n;

	(void)state;
	mkdirs("v1");
	for (size_t i = 0; i < ARRAY_SIZE(hier); i++) {
		snprintf(line, sizeof(line), "v1/%s/parent", hier[i]);
		mkdirs(line);
		snprintf(line, sizeof(line), "%zu 30 0:%zu / %s/v1/%s rw - cgroup cgroup rw,%s\n",
			 40 + i, 40 + i, root, hier[i], hier[i]);
		strcat(mi, line);
	}
	put("v1/cpuset/cpuset.cpus", "0-3\n");
	put("v1/cpuset/cpuset.mems", "0\n");
	put("v1/cpuset/parent/cpuset.cpus", "0-3\n");
	put("v1/cpuset/parent/cpuset.mems", "0\n");
	put("v1/memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
	h = detect(mi, "6:freezer:/parent\n5:devices:/parent\n4:pids:/parent\n3:memory:/parent\n"
		       "2:cpuset:/parent\n1:cpu:/parent\n0::/\n");
	assert_int_equal(h->layout, CGROUPS_LAYOUT_V1);
	assert_int_equal(cgroups_resolve(h, NULL, "c1", false, &cg, &err), 0);
	assert_int_equal(cg->n, 6);
	snprintf(want, sizeof(want), "%s/v1/memory/parent/quiver/c1", root);
	for (size_t i = 0; i < cg->n; i++)
		if (strcmp(cg->controllers[i], "memory") == 0)
			assert_string_equal(cg->dirs[i], want);

	assert_int_equal(cgroups_create(cg, &err), 0);
	/* Copied down through the new intermediate "quiver" cpuset. */
	assert_string_equal(get("v1/cpuset/parent/quiver/cpuset.cpus"), "0-3");
	assert_string_equal(get("v1/cpuset/parent/quiver/c1/cpuset.cpus"), "0-3");
	assert_string_equal(get("v1/cpuset/parent/quiver/c1/cpuset.mems"), "0");

	res.has_memory_limit = true;
	res.memory_limit = 256 << 20;
	res.has_memory_swap = true;
	res.memory_swap = 512 << 20;
	res.has_memory_reservation = true;
	res.memory_reservation = 128 << 20;
	res.has_cpu_shares = true;
	res.cpu_shares = 512;
	res.has_cpu_quota = true;
	res.cpu_quota = 50000;
	res.has_cpu_period = true;
	res.cpu_period = 100000;
	res.cpu_cpus = "1";
	res.has_pids_limit = true;
	res.pids_limit = 50;
	res.has_devices = true;
	res.devices = &rule;
	res.n_devices = 1;

	assert_int_equal(cgroups_render(cg, &res, &w, &n, &err), 0);
	/* deny all, the config's rule, then runc's default list */
	assert_string_equal(find_write(cg, w, n, "devices.deny", 0)->value, "a");
	assert_string_equal(find_write(cg, w, n, "devices.allow", 0)->value, "c 1:3 rw");
	assert_string_equal(find_write(cg, w, n, "devices.allow", 1)->value, "c *:* m");
	assert_string_equal(find_write(cg, w, n, "devices.allow", 3)->value, "c 1:3 rwm");
	assert_string_equal(find_write(cg, w, n, "devices.allow", 11)->value, "c 136:* rwm");
	assert_null(find_write(cg, w, n, "devices.allow", 12));
	assert_true(find_write(cg, w, n, "memory.memsw.limit_in_bytes", 0)->optional);
	/* the period is written before the quota */
	assert_true(find_write(cg, w, n, "cpu.cfs_period_us", 0) <
		    find_write(cg, w, n, "cpu.cfs_quota_us", 0));

	assert_int_equal(cgroups_apply(cg, &res, &err), 0);
	assert_string_equal(get("v1/memory/parent/quiver/c1/memory.limit_in_bytes"), "268435456");
	assert_string_equal(get("v1/memory/parent/quiver/c1/memory.soft_limit_in_bytes"),
			    "134217728");
	/* memsw is optional: the fake new cgroup has no such file, so it is skipped */
	assert_string_equal(get("v1/memory/parent/quiver/c1/memory.memsw.limit_in_bytes"),
			    "<absent>");
	assert_string_equal(get("v1/cpu/parent/quiver/c1/cpu.shares"), "512");
	assert_string_equal(get("v1/cpu/parent/quiver/c1/cpu.cfs_quota_us"), "50000");
	assert_string_equal(get("v1/cpu/parent/quiver/c1/cpu.cfs_period_us"), "100000");
	assert_string_equal(get("v1/cpuset/parent/quiver/c1/cpuset.cpus"), "1");
	assert_string_equal(get("v1/pids/parent/quiver/c1/pids.max"), "50");
	assert_string_equal(get("v1/devices/parent/quiver/c1/devices.deny"), "a");

	/* No hugetlb anywhere: a clear error. */
	{
		struct guest_hugepage_limit hp = {.page_size = "2MB", .limit = 1 << 21};
		struct guest_resources r2 = {.hugepage_limits = &hp, .n_hugepage_limits = 1};
		assert_int_equal(cgroups_apply(cg, &r2, &err), -EOPNOTSUPP);
		assert_string_equal(err.msg, "linux.resources.hugepageLimits: no hugetlb cgroup "
					     "controller on this host");
	}

	assert_int_equal(cgroups_join(cg, 4242, &err), 0);
	assert_string_equal(get("v1/freezer/parent/quiver/c1/cgroup.procs"), "4242");

	/* The same id again: EEXIST, naming the directory, and the first
	 * sandbox's directories are left alone. */
	assert_int_equal(cgroups_resolve(h, NULL, "c1", false, &cg2, &err), 0);
	assert_int_equal(cgroups_create(cg2, &err), -EEXIST);
	snprintf(
	    want, sizeof(want),
	    "cgroups: %s/v1/freezer/parent/quiver/c1 already exists (left over from an earlier "
	    "sandbox, or the id is in use)",
	    root);
	assert_string_equal(err.msg, want);
	assert_string_equal(get("v1/pids/parent/quiver/c1/pids.max"), "50");
	cgroups_free(cg2);

	/* A fake root is not a cgroup filesystem: removal refuses it. */
	assert_int_equal(cgroups_remove(cg->dirs, cg->n, &err), -EINVAL);
	snprintf(want, sizeof(want), "cgroups: %s: not a cgroup directory", cg->dirs[0]);
	assert_string_equal(err.msg, want);
	cgroups_free(cg);
	cgroups_host_free(h);
}

/* ---- a fake v2 root ---- */

static void test_fake_v2(void **state)
{
	struct guest_hugepage_limit hp = {.page_size = "2MB", .limit = 4 << 20};
	struct guest_device_rule rule = {
	    .allow = true, .type = 'c', .major = 1, .minor = 3, .access = "rwm"};
	struct guest_resources res = {0};
	struct cgroups_host *h;
	struct cgroups *cg = NULL;
	struct qerr err = {0};
	cleanup_free struct cgroups_write *w = NULL;
	char mi[1024];
	size_t n;

	(void)state;
	mkdirs("u2/k8s");
	put("u2/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
	snprintf(mi, sizeof(mi), "30 22 0:27 / %s/u2 rw - cgroup2 cgroup2 rw,nsdelegate\n", root);
	h = detect(mi, "0::/init.scope\n");
	assert_int_equal(cgroups_resolve(h, "/k8s/pod1", "c1", false, &cg, &err), 0);
	assert_int_equal(cgroups_create(cg, &err), 0);

	res.has_memory_limit = true;
	res.memory_limit = 256 << 20;
	res.has_memory_swap = true;
	res.memory_swap = 384 << 20;
	res.has_memory_reservation = true;
	res.memory_reservation = -1;
	res.has_cpu_shares = true;
	res.cpu_shares = 1024;
	res.has_cpu_quota = true;
	res.cpu_quota = 50000;
	res.has_pids_limit = true;
	res.pids_limit = 0;
	res.hugepage_limits = &hp;
	res.n_hugepage_limits = 1;
	res.has_devices = true;
	res.devices = &rule;
	res.n_devices = 1;

	assert_int_equal(cgroups_render(cg, &res, &w, &n, &err), 0);
	/* v2 has no devices files (eBPF, not implemented): nothing rendered */
	assert_null(find_write(cg, w, n, "devices.allow", 0));
	assert_null(find_write(cg, w, n, "devices.deny", 0));

	assert_int_equal(cgroups_apply(cg, &res, &err), 0);
	assert_string_equal(get("u2/k8s/pod1/memory.max"), "268435456");
	assert_string_equal(get("u2/k8s/pod1/memory.swap.max"), "<absent>"); /* optional */
	assert_string_equal(get("u2/k8s/pod1/memory.low"), "0");
	assert_string_equal(get("u2/k8s/pod1/cpu.weight"), "39");
	assert_string_equal(get("u2/k8s/pod1/cpu.max"), "50000 100000");
	assert_string_equal(get("u2/k8s/pod1/pids.max"), "max");
	assert_string_equal(get("u2/k8s/pod1/hugetlb.2MB.max"), "4194304");
	/* controllers enabled in every ancestor, not in the sandbox itself */
	assert_string_not_equal(get("u2/cgroup.subtree_control"), "<absent>");
	assert_string_not_equal(get("u2/k8s/cgroup.subtree_control"), "<absent>");
	assert_string_equal(get("u2/k8s/pod1/cgroup.subtree_control"), "<absent>");

	{
		const struct cgroups_write *sw;
		cleanup_free struct cgroups_write *w2 = NULL;
		size_t n2;
		res.has_memory_limit = false;
		assert_int_equal(cgroups_render(cg, &res, &w2, &n2, &err), -EINVAL);
		assert_string_equal(err.msg,
				    "linux.resources.memory.swap: needs memory.limit on cgroup v2");
		res.has_memory_limit = true;
		free(w2);
		w2 = NULL;
		assert_int_equal(cgroups_render(cg, &res, &w2, &n2, &err), 0);
		sw = find_write(cg, w2, n2, "memory.swap.max", 0);
		assert_non_null(sw);
		assert_string_equal(sw->value, "134217728"); /* swap alone, not memory+swap */
	}
	cgroups_free(cg);
	cgroups_host_free(h);

	/* A v2 root without pids: a clear error. */
	put("u2/cgroup.controllers", "cpu memory\n");
	h = detect(mi, "0::/\n");
	assert_int_equal(cgroups_resolve(h, "/k8s/pod2", "c2", false, &cg, &err), 0);
	{
		struct guest_resources r2 = {.has_pids_limit = true, .pids_limit = 5};
		assert_int_equal(cgroups_apply(cg, &r2, &err), -EOPNOTSUPP);
		assert_string_equal(err.msg,
				    "linux.resources.pids: no pids cgroup controller on this host");
	}
	cgroups_free(cg);
	cgroups_host_free(h);
}

/* ---- this host, for real ---- */

static bool dir_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_real_host(void **state)
{
	struct guest_resources res = {0};
	struct cgroups_host *h = NULL;
	struct cgroups *cg = NULL;
	struct qerr err = {0};
	char id[64], buf[256], path[4200];
	cleanup_free pid_t *pids = NULL;
	size_t n_pids = 0;
	int status, fds[2];
	pid_t child;
	char *bogus[] = {"/sys/fs/cgroup/memory", "/tmp", NULL};

	(void)state;
	if (geteuid() != 0 || !dir_exists("/sys/fs/cgroup/memory"))
		skip();
	assert_int_equal(cgroups_host_detect(&h, &err), 0);
	/* Relative to our own cgroup, without the shared "quiver/" parent, so
	 * that removal leaves nothing at all behind. */
	snprintf(id, sizeof(id), "quiver-test-%d", (int)getpid());
	assert_int_equal(cgroups_resolve(h, id, id, false, &cg, &err), 0);
	assert_true(cg->n >= 2);
	if (cgroups_create(cg, &err) < 0)
		fail_msg("%s", err.msg);

	res.has_memory_limit = true;
	res.memory_limit = 64 << 20;
	res.has_pids_limit = true;
	res.pids_limit = 32;
	if (cgroups_apply(cg, &res, &err) < 0) {
		(void)cgroups_remove(cg->dirs, cg->n, NULL);
		fail_msg("%s", err.msg);
	}
	for (size_t i = 0; i < cg->n; i++) {
		assert_true(dir_exists(cg->dirs[i]));
		if (strcmp(cg->controllers[i], "memory") == 0) {
			snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", cg->dirs[i]);
			FILE *f = fopen(path, "re");
			assert_non_null(f);
			assert_non_null(fgets(buf, sizeof(buf), f));
			fclose(f);
			assert_string_equal(buf, "67108864\n");
		}
		if (strcmp(cg->controllers[i], "pids") == 0) {
			snprintf(path, sizeof(path), "%s/pids.max", cg->dirs[i]);
			FILE *f = fopen(path, "re");
			assert_non_null(f);
			assert_non_null(fgets(buf, sizeof(buf), f));
			fclose(f);
			assert_string_equal(buf, "32\n");
		}
	}

	/* A child that waits until it has been moved, then sleeps forever. */
	assert_int_equal(pipe(fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char c;
		close(fds[1]);
		if (read(fds[0], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[0]);
	if (cgroups_join(cg, child, &err) < 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		(void)cgroups_remove(cg->dirs, cg->n, NULL);
		fail_msg("%s", err.msg);
	}
	assert_int_equal(write(fds[1], "x", 1), 1);
	close(fds[1]);

	assert_int_equal(cgroups_list_pids(cg->dirs, cg->n, &pids, &n_pids, &err), 0);
	assert_int_equal(n_pids, 1);
	assert_int_equal(pids[0], child);
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)child);
	{
		FILE *f = fopen(path, "re");
		bool found = false;
		assert_non_null(f);
		while (fgets(buf, sizeof(buf), f))
			found |= strstr(buf, id) != NULL;
		fclose(f);
		assert_true(found);
	}

	/* The safety checks: a hierarchy root and a non-cgroup directory. */
	assert_int_equal(cgroups_remove(bogus, 1, &err), -EINVAL);
	assert_string_equal(err.msg, "cgroups: /sys/fs/cgroup/memory: not a cgroup directory");
	assert_int_equal(cgroups_remove(bogus + 1, 1, &err), -EINVAL);

	/* Removal kills the straggler and removes every directory. */
	if (cgroups_remove(cg->dirs, cg->n, &err) < 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		fail_msg("%s", err.msg);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	for (size_t i = 0; i < cg->n; i++)
		assert_false(dir_exists(cg->dirs[i]));
	/* Idempotent. */
	assert_int_equal(cgroups_remove(cg->dirs, cg->n, &err), 0);
	cgroups_free(cg);
	cgroups_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_path_rules), cmocka_unit_test(test_layout_detection),
	    cmocka_unit_test(test_fake_v1),    cmocka_unit_test(test_fake_v2),
	    cmocka_unit_test(test_real_host),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
