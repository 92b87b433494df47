/* guest/oci_config.h: the config `runc spec` writes loads with the right
 * values; a table of broken configs each fails with its exact one-line
 * message. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/guest.h"
#include "guest/oci_config.h"
#include "guest/trap.h"
#include "libcommon/cleanup.h"

/* `runc spec` (runc 1.1), verbatim. */
static const char runc_spec[] =
    "{\"ociVersion\":\"1.0.2-dev\",\"process\":{\"terminal\":true,\"user\":{\"uid\":0,"
    "\"gid\":0},\"args\":[\"sh\"],\"env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
    "/usr/bin:/sbin:/bin\",\"TERM=xterm\"],\"cwd\":\"/\",\"capabilities\":{\"bounding\":["
    "\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],\"effective\":["
    "\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],\"permitted\":["
    "\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"],\"ambient\":["
    "\"CAP_AUDIT_WRITE\",\"CAP_KILL\",\"CAP_NET_BIND_SERVICE\"]},\"rlimits\":[{\"type\":"
    "\"RLIMIT_NOFILE\",\"hard\":1024,\"soft\":1024}],\"noNewPrivileges\":true},\"root\":{"
    "\"path\":\"rootfs\",\"readonly\":true},\"hostname\":\"runc\",\"mounts\":[{"
    "\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},{\"destination\":"
    "\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\",\"options\":[\"nosuid\","
    "\"strictatime\",\"mode=755\",\"size=65536k\"]},{\"destination\":\"/dev/pts\",\"type\":"
    "\"devpts\",\"source\":\"devpts\",\"options\":[\"nosuid\",\"noexec\",\"newinstance\","
    "\"ptmxmode=0666\",\"mode=0620\",\"gid=5\"]},{\"destination\":\"/dev/shm\",\"type\":"
    "\"tmpfs\",\"source\":\"shm\",\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\","
    "\"size=65536k\"]},{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":"
    "\"mqueue\",\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},{\"destination\":\"/sys\","
    "\"type\":\"sysfs\",\"source\":\"sysfs\",\"options\":[\"nosuid\",\"noexec\",\"nodev\","
    "\"ro\"]},{\"destination\":\"/sys/fs/cgroup\",\"type\":\"cgroup\",\"source\":\"cgroup\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"relatime\",\"ro\"]}],\"linux\":{"
    "\"resources\":{\"devices\":[{\"allow\":false,\"access\":\"rwm\"}]},\"namespaces\":[{"
    "\"type\":\"pid\"},{\"type\":\"network\"},{\"type\":\"ipc\"},{\"type\":\"uts\"},{"
    "\"type\":\"mount\"}],\"maskedPaths\":[\"/proc/acpi\",\"/proc/asound\",\"/proc/kcore\","
    "\"/proc/keys\",\"/proc/latency_stats\",\"/proc/timer_list\",\"/proc/timer_stats\","
    "\"/proc/sched_debug\",\"/sys/firmware\",\"/proc/scsi\"],\"readonlyPaths\":["
    "\"/proc/bus\",\"/proc/fs\",\"/proc/irq\",\"/proc/sys\",\"/proc/sysrq-trigger\"]}}";

static char bundle[] = "/tmp/quiver-test-config-XXXXXX";

static int setup(void **state)
{
	char path[256];
	int fd;

	(void)state;
	if (!mkdtemp(bundle))
		return -1;
	snprintf(path, sizeof(path), "%s/rootfs", bundle);
	if (mkdir(path, 0755) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/file", bundle);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bundle);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_config(const char *text, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.json", bundle);
	f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	assert_non_null(s);
	write_config(s, strlen(s));
	free(s);
}

static uint64_t capbit(const char *name)
{
	cap_value_t c;

	assert_int_equal(cap_from_name(name, &c), 0);
	return 1ULL << c;
}

static void check_runc_spec(const struct guest_config *g)
{
	char root[300];
	uint64_t three =
	    capbit("CAP_AUDIT_WRITE") | capbit("CAP_KILL") | capbit("CAP_NET_BIND_SERVICE");
	const struct guest_mount *m;

	snprintf(root, sizeof(root), "%s/rootfs", bundle);
	assert_string_equal(g->root_path, root);
	assert_true(g->root_readonly);
	assert_string_equal(g->bundle_dir, bundle);
	assert_true(g->has_process);
	assert_true(g->process.terminal);
	assert_false(g->process.has_console_size);
	assert_int_equal(g->process.user.uid, 0);
	assert_int_equal(g->process.user.gid, 0);
	assert_false(g->process.user.has_umask);
	assert_int_equal(g->process.user.n_additional_gids, 0);
	assert_int_equal(g->process.n_args, 1);
	assert_string_equal(g->process.args[0], "sh");
	assert_null(g->process.args[1]);
	assert_int_equal(g->process.n_env, 2);
	assert_string_equal(g->process.env[1], "TERM=xterm");
	assert_null(g->process.env[2]);
	assert_string_equal(g->process.cwd, "/");
	assert_true(g->process.has_capabilities);
	assert_int_equal(g->process.caps.bounding, three);
	assert_int_equal(g->process.caps.effective, three);
	assert_int_equal(g->process.caps.permitted, three);
	assert_int_equal(g->process.caps.ambient, three);
	assert_int_equal(g->process.caps.inheritable, 0);
	assert_int_equal(g->process.n_rlimits, 1);
	assert_int_equal(g->process.rlimits[0].type, RLIMIT_NOFILE);
	assert_int_equal(g->process.rlimits[0].soft, 1024);
	assert_int_equal(g->process.rlimits[0].hard, 1024);
	assert_true(g->process.no_new_privileges);
	assert_false(g->process.has_oom_score_adj);
	assert_string_equal(g->hostname, "runc");

	assert_int_equal(g->n_mounts, 7);
	m = &g->mounts[0];
	assert_string_equal(m->destination, "/proc");
	assert_string_equal(m->type, "proc");
	assert_string_equal(m->source, "proc");
	assert_int_equal(m->flags, 0);
	assert_string_equal(m->data, "");
	m = &g->mounts[1];
	assert_int_equal(m->flags, MS_NOSUID | MS_STRICTATIME);
	assert_string_equal(m->data, "mode=755,size=65536k");
	assert_int_equal(m->n_options, 4);
	m = &g->mounts[2];
	assert_int_equal(m->flags, MS_NOSUID | MS_NOEXEC);
	assert_string_equal(m->data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	m = &g->mounts[6];
	assert_string_equal(m->destination, "/sys/fs/cgroup");
	assert_int_equal(m->flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY);
	assert_int_equal(m->propagation, 0);
	assert_false(m->is_bind);

	assert_int_equal(g->n_namespaces, 5);
	assert_int_equal(g->namespaces[0].type, GUEST_NS_PID);
	assert_null(g->namespaces[0].path);
	assert_int_equal(g->clone_flags,
			 CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS);
	assert_true(g->ns_present[GUEST_NS_UTS]);
	assert_false(g->ns_present[GUEST_NS_USER]);
	assert_int_equal(g->n_uid_mappings, 0);

	assert_true(g->has_resources);
	assert_false(g->resources.has_memory_limit);
	assert_true(g->resources.has_devices);
	assert_int_equal(g->resources.n_devices, 1);
	assert_false(g->resources.devices[0].allow);
	assert_int_equal(g->resources.devices[0].type, 'a');
	assert_int_equal(g->resources.devices[0].major, -1);
	assert_int_equal(g->resources.devices[0].minor, -1);
	assert_string_equal(g->resources.devices[0].access, "rwm");

	assert_int_equal(g->n_masked_paths, 10);
	assert_string_equal(g->masked_paths[9], "/proc/scsi");
	assert_null(g->masked_paths[10]);
	assert_int_equal(g->n_readonly_paths, 5);
	assert_null(g->cgroups_path);
	assert_null(g->seccomp);
	assert_int_equal(g->n_annotations, 0);
	assert_int_equal(g->hooks.prestart.n, 0);
}

static void test_runc_spec_loads(void **state)
{
	struct qerr err = {0};
	cleanup_config struct guest_config *g = NULL;

	(void)state;
	write_config(runc_spec, strlen(runc_spec));
	assert_int_equal(guest_config_load(bundle, &g, &err), 0);
	assert_int_equal(err.code, 0);
	check_runc_spec(g);
}

/* The real `runc spec`, when runc is installed (it is on the dev hosts). */
static void test_runc_spec_from_runc(void **state)
{
	struct qerr err = {0};
	cleanup_config struct guest_config *g = NULL;
	char cmd[256], path[256];

	(void)state;
	if (access("/usr/sbin/runc", X_OK) != 0 && access("/usr/bin/runc", X_OK) != 0)
		skip();
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	unlink(path);
	snprintf(cmd, sizeof(cmd), "runc spec --bundle '%s'", bundle);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(guest_config_load(bundle, &g, &err), 0);
	check_runc_spec(g);
}

/* runc_spec with one substring replaced (each must be there once) */
static char *spec_with(const char *from, const char *to)
{
	const char *at = strstr(runc_spec, from);
	assert_non_null(at);
	assert_null(strstr(at + 1, from));
	size_t n = strlen(runc_spec) - strlen(from) + strlen(to);
	char *out = malloc(n + 1);
	assert_non_null(out);
	snprintf(out, n + 1, "%.*s%s%s", (int)(at - runc_spec), runc_spec, to, at + strlen(from));
	return out;
}

static bool fits(const char *json, bool (*check)(const struct guest_config *))
{
	struct qerr err = {0};
	cleanup_config struct guest_config *g = NULL;
	write_config(json, strlen(json));
	assert_int_equal(guest_config_load(bundle, &g, &err), 0);
	return check(g);
}

static bool dev_fits(const char *json)
{
	return fits(json, rootfs_dev_fits);
}

static bool proc_fits(const char *json)
{
	return fits(json, rootfs_proc_fits);
}

/* guest/mounts.c: a warm supervisor's prebuilt /dev stands in for the
 * config's only when the config's /dev mounts are runc's defaults, as the
 * parser reads them; anything else at or under /dev (or a destination not
 * plainly spelled) and the sandbox makes its own. */
static void test_warm_dev_fits_runc_spec_only(void **state)
{
	static const char dev[] = "{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":"
				  "\"tmpfs\",\"options\":[\"nosuid\",\"strictatime\",\"mode=755\","
				  "\"size=65536k\"]},";
	static const char pts_opts[] = "\"ptmxmode=0666\",\"mode=0620\",\"gid=5\"]},";
	static const char mq[] = ",{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":"
				 "\"mqueue\",\"options\":[\"nosuid\",\"noexec\",\"nodev\"]}";
	static const char ns[] = "\"namespaces\":[";
	const char *bad[][2] = {
	    {"\"mode=755\",\"size=65536k\"", "\"mode=755\",\"size=1m\""},
	    {"\"strictatime\",\"mode=755\"", "\"mode=755\""},
	    {"\"source\":\"shm\"", "\"source\":\"tmpfs\""},
	    {pts_opts, "\"ptmxmode=0666\",\"mode=0620\",\"gid=5\",\"rprivate\"]},"},
	    {mq, ""},
	    {mq, ",{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":\"mqueue\","
		 "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},{\"destination\":\"/dev/fuse\","
		 "\"type\":\"bind\",\"source\":\"/dev/null\",\"options\":[\"bind\"]}"},
	    {mq, ",{\"destination\":\"//dev/mqueue\",\"type\":\"tmpfs\",\"source\":\"tmpfs\"}"},
	    {ns, "\"devices\":[{\"path\":\"/dev/null\",\"type\":\"c\",\"major\":1,\"minor\":3}],"
		 "\"namespaces\":["},
	    {dev, ""},
	};

	(void)state;
	assert_true(dev_fits(runc_spec));
	/* another device is fine: make_devices adds it after, either way */
	cleanup_free char *fuse =
	    spec_with(ns, "\"devices\":[{\"path\":\"/dev/fuse\",\"type\":\"c\",\"major\":10,"
			  "\"minor\":229}],\"namespaces\":[");
	assert_true(dev_fits(fuse));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cleanup_free char *j = spec_with(bad[i][0], bad[i][1]);
		if (dev_fits(j))
			fail_msg("case %zu fits: %s -> %s", i, bad[i][0], bad[i][1]);
	}
	/* /dev/pts before /dev */
	cleanup_free char *nodev = spec_with(dev, "");
	cleanup_free char *late = NULL;
	{
		const char *mqs = strstr(nodev, mq);
		assert_non_null(mqs);
		size_t n = strlen(nodev) + strlen(dev) + 2;
		late = malloc(n);
		assert_non_null(late);
		snprintf(late, n, "%.*s,%.*s%s", (int)(mqs - nodev), nodev, (int)strlen(dev) - 1,
			 dev, mqs);
	}
	assert_false(dev_fits(late));
}

/* ... and the prebuilt /proc when the config's /proc paths are runc's
 * (containerd adds paths elsewhere, which the sandbox applies itself) and
 * no sysctl is written before they go read-only. */
static void test_warm_proc_fits_runc_spec_only(void **state)
{
	static const char masked[] = "\"/sys/firmware\",";
	static const char ro[] = "\"/proc/sys\",";
	const char *good[][2] = {
	    {masked, "\"/sys/firmware\",\"/sys/devices/virtual/powercap\","},
	    {"\"/proc/bus\",\"/proc/fs\"", "\"/proc/fs\",\"/proc/bus\""},
	};
	const char *bad[][2] = {
	    {"\"/proc/kcore\",", ""},
	    {ro, "\"/proc/sys\",\"/proc/sys/kernel\","},
	    {ro, "\"/proc/sys\",\"/proc/sys\","},
	    {ro, "\"/proc//sys\","},
	    {masked, "\"/sys/firmware\",\"/proc/self\","},
	    {"\"namespaces\":[", "\"sysctl\":{\"kernel.shm_rmid_forced\":\"1\"},\"namespaces\":["},
	    {"\"mode=1777\"", "\"mode=1770\""},
	    {"{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"}",
	     "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\",\"options\":["
	     "\"nosuid\"]}"},
	};

	(void)state;
	assert_true(proc_fits(runc_spec));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cleanup_free char *j = spec_with(good[i][0], good[i][1]);
		if (!proc_fits(j))
			fail_msg("good case %zu does not fit", i);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cleanup_free char *j = spec_with(bad[i][0], bad[i][1]);
		if (proc_fits(j))
			fail_msg("case %zu fits: %s -> %s", i, bad[i][0], bad[i][1]);
	}
}

static const char rich_config[] =
    "{\"ociVersion\":\"1.1.0\",\"root\":{\"path\":\"ROOTFS\"},"
    "\"process\":{\"user\":{\"uid\":1000,\"gid\":1001,\"umask\":18,\"additionalGids\":[5,"
    "6]},\"args\":[\"/bin/app\",\"--flag\"],\"cwd\":\"/srv\",\"consoleSize\":{\"height\":"
    "24,\"width\":80},\"oomScoreAdj\":-500,\"rlimits\":[{\"type\":\"RLIMIT_NPROC\","
    "\"soft\":10,\"hard\":20},{\"type\":\"RLIMIT_CORE\",\"soft\":0,\"hard\":0}],"
    "\"capabilities\":{\"bounding\":[\"CAP_SYS_ADMIN\"]}},"
    "\"hostname\":\"h\",\"mounts\":[{\"destination\":\"/data\",\"source\":\"/srv/data\","
    "\"options\":[\"rbind\",\"rprivate\",\"ro\",\"rw\",\"nosuid\",\"rro\",\"uid=3\"]},"
    "{\"destination\":\"/tmp\",\"type\":\"tmpfs\",\"options\":[\"tmpcopyup\",\"remount\","
    "\"noatime\",\"rshared\",\"slave\"]}],"
    "\"linux\":{\"namespaces\":[{\"type\":\"user\"},{\"type\":\"uts\"},{\"type\":"
    "\"network\",\"path\":\"/run/netns/x\"},{\"type\":\"cgroup\"},{\"type\":\"time\"}],"
    "\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"
    "\"gidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"
    "\"resources\":{\"memory\":{\"limit\":268435456,\"reservation\":134217728,\"swap\":"
    "536870912},\"cpu\":{\"shares\":512,\"quota\":50000,\"period\":100000,\"cpus\":\"0-1\","
    "\"mems\":\"0\"},\"pids\":{\"limit\":100},\"hugepageLimits\":[{\"pageSize\":\"2MB\","
    "\"limit\":4194304}],\"devices\":[{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":"
    "3,\"access\":\"rw\"}]},\"cgroupsPath\":\"/quiver/x\",\"sysctl\":{\"net.ipv4.ip_"
    "forward\":\"1\"},\"devices\":[{\"path\":\"/dev/fuse\",\"type\":\"c\",\"major\":10,"
    "\"minor\":229,\"fileMode\":438}],\"rootfsPropagation\":\"rslave\",\"seccomp\":{"
    "\"defaultAction\":\"SCMP_ACT_ALLOW\"}},"
    "\"annotations\":{\"a\":\"1\",\"b\":\"two\"},"
    "\"hooks\":{\"prestart\":[{\"path\":\"/bin/true\",\"args\":[\"true\",\"x\"],\"env\":["
    "\"A=1\"],\"timeout\":5}],\"poststop\":[{\"path\":\"/bin/false\"}]}}";

static void test_rich_config(void **state)
{
	struct qerr err = {0};
	cleanup_config struct guest_config *g = NULL;
	cleanup_free char *text = strdup(rich_config);
	char rootfs[300], *p;
	const struct guest_mount *m;

	(void)state;
	/* Absolute root.path: the bundle's rootfs spelled out. */
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", bundle);
	p = strstr(text, "ROOTFS");
	assert_non_null(p);
	*p = '\0';
	{
		char buf[sizeof(rich_config) + 300];
		snprintf(buf, sizeof(buf), "%s%s%s", text, rootfs, p + strlen("ROOTFS"));
		write_config(buf, strlen(buf));
	}
	assert_int_equal(guest_config_load(bundle, &g, &err), 0);
	assert_string_equal(g->root_path, rootfs);
	assert_false(g->root_readonly);
	assert_int_equal(g->process.user.uid, 1000);
	assert_int_equal(g->process.user.gid, 1001);
	assert_true(g->process.user.has_umask);
	assert_int_equal(g->process.user.umask, 022);
	assert_int_equal(g->process.user.n_additional_gids, 2);
	assert_int_equal(g->process.user.additional_gids[1], 6);
	assert_int_equal(g->process.n_env, 0);
	assert_non_null(g->process.env);
	assert_null(g->process.env[0]);
	assert_true(g->process.has_console_size);
	assert_int_equal(g->process.console_width, 80);
	assert_true(g->process.has_oom_score_adj);
	assert_int_equal(g->process.oom_score_adj, -500);
	assert_int_equal(g->process.n_rlimits, 2);
	assert_int_equal(g->process.rlimits[0].type, RLIMIT_NPROC);
	assert_int_equal(g->process.rlimits[0].hard, 20);
	assert_int_equal(g->process.caps.bounding, capbit("CAP_SYS_ADMIN"));
	assert_false(g->process.no_new_privileges);

	m = &g->mounts[0];
	assert_null(m->type);
	assert_true(m->is_bind);
	assert_int_equal(m->flags, MS_BIND | MS_REC | MS_NOSUID);
	assert_int_equal(m->clear_flags, MS_RDONLY);
	assert_int_equal(m->propagation, MS_PRIVATE | MS_REC);
	assert_int_equal(m->rec_attr_set, MOUNT_ATTR_RDONLY);
	assert_string_equal(m->data, "uid=3");
	m = &g->mounts[1];
	assert_true(m->tmpcopyup);
	assert_null(m->source);
	assert_int_equal(m->flags, MS_REMOUNT | MS_NOATIME);
	assert_int_equal(m->propagation, MS_SLAVE); /* the last one wins */

	assert_int_equal(g->n_namespaces, 5);
	assert_string_equal(g->namespaces[2].path, "/run/netns/x");
	assert_int_equal(g->clone_flags,
			 CLONE_NEWUSER | CLONE_NEWUTS | CLONE_NEWCGROUP | 0x80 /* NEWTIME */);
	assert_true(g->ns_present[GUEST_NS_NETWORK]);
	assert_int_equal(g->n_uid_mappings, 1);
	assert_int_equal(g->uid_mappings[0].host_id, 100000);
	assert_int_equal(g->gid_mappings[0].size, 65536);

	assert_true(g->resources.has_memory_limit);
	assert_int_equal(g->resources.memory_limit, 268435456);
	assert_int_equal(g->resources.memory_reservation, 134217728);
	assert_int_equal(g->resources.memory_swap, 536870912);
	assert_int_equal(g->resources.cpu_shares, 512);
	assert_int_equal(g->resources.cpu_quota, 50000);
	assert_int_equal(g->resources.cpu_period, 100000);
	assert_string_equal(g->resources.cpu_cpus, "0-1");
	assert_string_equal(g->resources.cpu_mems, "0");
	assert_true(g->resources.has_pids_limit);
	assert_int_equal(g->resources.pids_limit, 100);
	assert_int_equal(g->resources.n_hugepage_limits, 1);
	assert_string_equal(g->resources.hugepage_limits[0].page_size, "2MB");
	assert_int_equal(g->resources.devices[0].major, 1);
	assert_string_equal(g->resources.devices[0].access, "rw");
	assert_string_equal(g->cgroups_path, "/quiver/x");
	assert_int_equal(g->n_sysctl, 1);
	assert_string_equal(g->sysctl[0].key, "net.ipv4.ip_forward");
	assert_string_equal(g->sysctl[0].value, "1");
	assert_int_equal(g->n_devices, 1);
	assert_int_equal(g->devices[0].minor, 229);
	assert_int_equal(g->devices[0].file_mode, 0666);
	assert_int_equal(g->rootfs_propagation, MS_SLAVE | MS_REC);
	assert_non_null(g->seccomp);
	assert_string_equal(json_string_value(json_object_get(g->seccomp, "defaultAction")),
			    "SCMP_ACT_ALLOW");
	assert_int_equal(g->n_annotations, 2);
	assert_string_equal(g->annotations[1].value, "two");
	assert_int_equal(g->hooks.prestart.n, 1);
	assert_string_equal(g->hooks.prestart.v[0].path, "/bin/true");
	assert_int_equal(g->hooks.prestart.v[0].n_args, 2);
	assert_string_equal(g->hooks.prestart.v[0].env[0], "A=1");
	assert_true(g->hooks.prestart.v[0].has_timeout);
	assert_int_equal(g->hooks.prestart.v[0].timeout, 5);
	assert_int_equal(g->hooks.poststop.n, 1);
	assert_false(g->hooks.poststop.v[0].has_timeout);
	assert_int_equal(g->hooks.create_runtime.n, 0);
}

static void test_process_load(void **state)
{
	struct qerr err = {0};
	struct guest_process p;
	char path[256];
	const char *ok = "{\"user\":{\"uid\":5,\"gid\":6},\"args\":[\"ls\",\"-l\"],\"env\":["
			 "\"A=b\"],\"cwd\":\"/tmp\",\"terminal\":true}";
	const char *bad = "{\"user\":{\"uid\":5,\"gid\":6},\"args\":[],\"cwd\":\"/\"}";
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/process.json", bundle);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(ok, f);
	fclose(f);
	assert_int_equal(guest_process_load(path, &p, &err), 0);
	assert_int_equal(p.user.uid, 5);
	assert_int_equal(p.n_args, 2);
	assert_string_equal(p.args[1], "-l");
	assert_string_equal(p.cwd, "/tmp");
	assert_true(p.terminal);
	guest_process_free(&p);

	f = fopen(path, "we");
	assert_non_null(f);
	fputs(bad, f);
	fclose(f);
	assert_int_equal(guest_process_load(path, &p, &err), -EINVAL);
	{
		char want[400];
		snprintf(want, sizeof(want), "%s: args: must be a non-empty array", path);
		assert_string_equal(err.msg, want);
	}
	assert_null(p.args);
	unlink(path);
}

/* ---- the table of broken configs ---- */

/* Walk "a.b[2].c" (and "[+]" to append) in j, creating nothing; set the last
 * element to val (NULL: delete it). */
static void mutate(json_t *j, const char *path, json_t *val)
{
	char buf[256], *save = NULL, *tok, *next;

	snprintf(buf, sizeof(buf), "%s", path);
	tok = strtok_r(buf, ".", &save);
	while (tok) {
		char key[64], *br = strchr(tok, '[');
		json_t *child;

		next = strtok_r(NULL, ".", &save);
		snprintf(key, sizeof(key), "%.*s", br ? (int)(br - tok) : (int)strlen(tok), tok);
		if (!br) {
			if (!next) {
				if (val)
					json_object_set_new(j, key, val);
				else
					json_object_del(j, key);
				return;
			}
			child = json_object_get(j, key);
			assert_non_null(child);
			j = child;
		} else {
			json_t *arr = json_object_get(j, key);
			assert_non_null(arr);
			if (br[1] == '+') {
				assert_null(next);
				json_array_append_new(arr, val);
				return;
			}
			size_t idx = strtoul(br + 1, NULL, 10);
			if (!next) {
				if (val)
					json_array_set_new(arr, idx, val);
				else
					json_array_remove(arr, idx);
				return;
			}
			child = json_array_get(arr, idx);
			assert_non_null(child);
			j = child;
		}
		tok = next;
	}
}

static void many_mounts(json_t *j)
{
	json_t *arr = json_array();

	for (int i = 0; i < 1025; i++)
		json_array_append_new(arr,
				      json_pack("{s:s,s:s}", "destination", "/x", "type", "tmpfs"));
	json_object_set_new(j, "mounts", arr);
}

static void huge_env(json_t *j)
{
	char *s = malloc(70000);

	memset(s, 'x', 69999);
	s[0] = 'A';
	s[1] = '=';
	s[69999] = '\0';
	json_array_append_new(json_object_get(json_object_get(j, "process"), "env"),
			      json_string(s));
	free(s);
}

static void drop_namespaces(json_t *j)
{
	json_object_del(json_object_get(j, "linux"), "namespaces");
}

struct bad_case {
	const char *raw;   /* the whole file, or NULL: runc_spec mutated */
	const char *path;  /* what to mutate */
	const char *value; /* JSON text; NULL deletes */
	void (*fn)(json_t *);
	const char *want; /* exact message; %s is the bundle dir */
	int code;
};

static const struct bad_case bad_cases[] = {
    {"{\"ociVersion\": \n  x", NULL, NULL, NULL,
     "config.json: not valid JSON: line 2 column 3: invalid token near 'x'", EINVAL},
    {"[1]", NULL, NULL, NULL, "config.json: must be a JSON object", EINVAL},
    {"{\"a\":1,\"a\":2}", NULL, NULL, NULL,
     "config.json: not valid JSON: line 1 column 10: duplicate object key near '\"a\"'", EINVAL},
    {NULL, "ociVersion", NULL, NULL, "config.json: ociVersion: missing", EINVAL},
    {NULL, "ociVersion", "\"2.0.0\"", NULL,
     "config.json: ociVersion: unsupported version \"2.0.0\" (need 1.x)", EINVAL},
    {NULL, "process.args", "[]", NULL, "config.json: process.args: must be a non-empty array",
     EINVAL},
    {NULL, "process.args", NULL, NULL, "config.json: process.args: must be a non-empty array",
     EINVAL},
    {NULL, "process.args", "\"sh\"", NULL, "config.json: process.args: must be an array", EINVAL},
    {NULL, "process.args", "[\"sh\", 1]", NULL, "config.json: process.args[1]: must be a string",
     EINVAL},
    {NULL, "process.cwd", "\"tmp\"", NULL, "config.json: process.cwd: must be an absolute path",
     EINVAL},
    {NULL, "process.cwd", NULL, NULL, "config.json: process.cwd: missing", EINVAL},
    {NULL, "process.user.uid", "\"0\"", NULL, "config.json: process.user.uid: must be an integer",
     EINVAL},
    {NULL, "process.user.gid", "-1", NULL,
     "config.json: process.user.gid: must be between 0 and 4294967295", EINVAL},
    {NULL, "process.user", NULL, NULL, "config.json: process.user: missing", EINVAL},
    {NULL, "process.terminal", "\"yes\"", NULL, "config.json: process.terminal: must be a boolean",
     EINVAL},
    {NULL, "process.env[0]", "\"NOEQUALS\"", NULL, "config.json: process.env[0]: must be KEY=VALUE",
     EINVAL},
    {NULL, NULL, NULL, huge_env, "config.json: process.env[2]: longer than 65536 bytes", E2BIG},
    {NULL, "process.capabilities.bounding[+]", "\"CAP_BOGUS\"", NULL,
     "config.json: process.capabilities.bounding[3]: unknown capability \"CAP_BOGUS\"", EINVAL},
    {NULL, "process.capabilities.ambient[0]", "\"kill\"", NULL,
     "config.json: process.capabilities.ambient[0]: unknown capability \"kill\"", EINVAL},
    {NULL, "process.rlimits[0].type", "\"RLIMIT_BOGUS\"", NULL,
     "config.json: process.rlimits[0].type: unknown rlimit \"RLIMIT_BOGUS\"", EINVAL},
    {NULL, "process.rlimits[0].soft", "2048", NULL,
     "config.json: process.rlimits[0].soft: soft limit 2048 is above the hard limit 1024", EINVAL},
    {NULL, "process.rlimits[+]", "{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1}", NULL,
     "config.json: process.rlimits[1].type: duplicate rlimit \"RLIMIT_NOFILE\"", EINVAL},
    {NULL, "process.oomScoreAdj", "5000", NULL,
     "config.json: process.oomScoreAdj: must be between -1000 and 1000", EINVAL},
    {NULL, "linux.namespaces[+]", "{\"type\":\"foo\"}", NULL,
     "config.json: linux.namespaces[5].type: unknown namespace \"foo\"", EINVAL},
    {NULL, "linux.namespaces[+]", "{\"type\":\"pid\"}", NULL,
     "config.json: linux.namespaces[5].type: duplicate namespace \"pid\"", EINVAL},
    {NULL, "linux.namespaces[+]", "{\"type\":\"user\",\"path\":\"proc/1/ns/user\"}", NULL,
     "config.json: linux.namespaces[5].path: must be an absolute path", EINVAL},
    {NULL, "mounts[2].destination", "\"dev/pts\"", NULL,
     "config.json: mounts[2].destination: must be an absolute path", EINVAL},
    {NULL, "mounts[1].options", "\"nosuid\"", NULL,
     "config.json: mounts[1].options: must be an array", EINVAL},
    {NULL, "mounts[1].options[0]", "5", NULL, "config.json: mounts[1].options[0]: must be a string",
     EINVAL},
    {NULL, "mounts[1].options[0]", "\"ridmap\"", NULL,
     "config.json: mounts[1].options[0]: \"ridmap\" is not supported", ENOTSUP},
    {NULL, "mounts[0].type", NULL, NULL,
     "config.json: mounts[0].type: missing (required unless bind or rbind)", EINVAL},
    {NULL, NULL, NULL, many_mounts, "config.json: mounts: more than 1024 entries", E2BIG},
    {NULL, "root.path", "\"nope\"", NULL,
     "config.json: root.path: %s/nope: No such file or directory", ENOENT},
    {NULL, "root.path", "\"file\"", NULL, "config.json: root.path: %s/file: Not a directory",
     ENOTDIR},
    {NULL, "root", NULL, NULL, "config.json: root: missing", EINVAL},
    {NULL, "linux.resources.memory", "{\"limit\":-5}", NULL,
     "config.json: linux.resources.memory.limit: must be -1 (unlimited) or a non-negative "
     "integer",
     EINVAL},
    {NULL, "linux.resources.memory", "{\"limit\":1000,\"swap\":10}", NULL,
     "config.json: linux.resources.memory.swap: must be at least memory.limit (it counts "
     "memory + swap)",
     EINVAL},
    {NULL, "linux.resources.cpu", "{\"cpus\":\"0-3;rm\"}", NULL,
     "config.json: linux.resources.cpu.cpus: must be a cpu list like \"0-3,5\"", EINVAL},
    {NULL, "linux.resources.devices[0].access", "\"rwx\"", NULL,
     "config.json: linux.resources.devices[0].access: must be a non-empty combination of "
     "\"r\", \"w\", \"m\"",
     EINVAL},
    {NULL, "linux.resources.hugepageLimits", "[{\"pageSize\":\"2M\",\"limit\":1}]", NULL,
     "config.json: linux.resources.hugepageLimits[0].pageSize: must look like \"2MB\" or "
     "\"1GB\"",
     EINVAL},
    {NULL, "linux.uidMappings", "[{\"containerID\":0,\"hostID\":1000,\"size\":1}]", NULL,
     "config.json: linux.uidMappings: needs a user namespace (linux.namespaces)", EINVAL},
    {NULL, "linux.namespaces[+]", "{\"type\":\"user\"}", NULL,
     "config.json: linux.uidMappings: a new user namespace needs uid and gid mappings", EINVAL},
    {NULL, "linux.cgroupsPath", "\"/a/../../etc\"", NULL,
     "config.json: linux.cgroupsPath: must not contain \"..\"", EINVAL},
    {NULL, "linux.maskedPaths[+]", "\"proc/kcore\"", NULL,
     "config.json: linux.maskedPaths[10]: must be an absolute path", EINVAL},
    {NULL, "linux.sysctl", "{\"kernel.x\":1}", NULL,
     "config.json: linux.sysctl.kernel.x: must be a string", EINVAL},
    {NULL, "linux.rootfsPropagation", "\"sideways\"", NULL,
     "config.json: linux.rootfsPropagation: unknown propagation \"sideways\"", EINVAL},
    {NULL, "linux.seccomp", "[]", NULL, "config.json: linux.seccomp: must be an object", EINVAL},
    {NULL, NULL, NULL, drop_namespaces,
     "config.json: hostname: needs a private UTS namespace (linux.namespaces)", EINVAL},
    {NULL, "hostname", "\"0123456789012345678901234567890123456789012345678901234567890123456789\"",
     NULL, "config.json: hostname: longer than 64 bytes", E2BIG},
    {NULL, "annotations", "{\"k\":[]}", NULL, "config.json: annotations.k: must be a string",
     EINVAL},
    {NULL, "hooks", "{\"prestart\":[{\"path\":\"bin/true\"}]}", NULL,
     "config.json: hooks.prestart[0].path: must be an absolute path", EINVAL},
    {NULL, "hooks", "{\"poststop\":[{\"path\":\"/bin/true\",\"timeout\":0}]}", NULL,
     "config.json: hooks.poststop[0].timeout: must be between 1 and 2147483647", EINVAL},
};

/* The message with "%s" replaced by the bundle directory. */
static void expand_bundle(char *buf, size_t size, const char *tmpl)
{
	const char *p = strstr(tmpl, "%s");

	if (p)
		snprintf(buf, size, "%.*s%s%s", (int)(p - tmpl), tmpl, bundle, p + 2);
	else
		snprintf(buf, size, "%s", tmpl);
}

static void test_bad_configs(void **state)
{
	json_error_t jerr;
	json_t *base = json_loads(runc_spec, 0, &jerr);
	int failures = 0;

	(void)state;
	assert_non_null(base);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct guest_config *g = NULL;
		struct qerr err = {0};
		char want[QERR_MSG_MAX];
		int r;

		if (c->raw) {
			write_config(c->raw, strlen(c->raw));
		} else {
			json_t *j = json_deep_copy(base);
			if (c->fn)
				c->fn(j);
			if (c->path) {
				json_t *v = NULL;
				if (c->value) {
					v = json_loads(c->value, JSON_DECODE_ANY, &jerr);
					assert_non_null(v);
				}
				mutate(j, c->path, v);
			}
			write_json(j);
			json_decref(j);
		}
		r = guest_config_load(bundle, &g, &err);
		expand_bundle(want, sizeof(want), c->want);
		if (r != -c->code || strcmp(err.msg, want) != 0 || g || strchr(err.msg, '\n')) {
			print_error("case %zu: got %d \"%s\"\n  want %d \"%s\"\n", i, r, err.msg,
				    -c->code, want);
			failures++;
		}
		guest_config_free(g);
	}
	json_decref(base);
	assert_int_equal(failures, 0);
}

static void test_missing_and_oversized_file(void **state)
{
	struct qerr err = {0};
	struct guest_config *g = NULL;
	char path[256], want[400];
	char *big;

	(void)state;
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	unlink(path);
	assert_int_equal(guest_config_load(bundle, &g, &err), -ENOENT);
	snprintf(want, sizeof(want), "config.json: %s: No such file or directory", path);
	assert_string_equal(err.msg, want);

	big = malloc(GUEST_CONFIG_FILE_MAX + 2);
	assert_non_null(big);
	memset(big, ' ', GUEST_CONFIG_FILE_MAX + 1);
	big[0] = '{';
	big[GUEST_CONFIG_FILE_MAX] = '}';
	write_config(big, GUEST_CONFIG_FILE_MAX + 1);
	free(big);
	assert_int_equal(guest_config_load(bundle, &g, &err), -E2BIG);
	assert_string_equal(err.msg, "config.json: larger than 4194304 bytes");
	assert_null(g);

	assert_int_equal(guest_config_load("/nonexistent-bundle", &g, &err), -ENOENT);
	assert_string_equal(
	    err.msg, "config.json: /nonexistent-bundle/config.json: No such file or directory");
}

/* A mount's data buffer is sized by its options, up to the limit: data of
 * nearly 64 KiB loads whole, one byte more is refused. */
static void mount_with_data(json_t *j, size_t n_opts, size_t opt_len)
{
	json_t *opts = json_array();
	char *o = malloc(opt_len + 1);

	assert_non_null(o);
	for (size_t i = 0; i < n_opts; i++) {
		memset(o, 'a' + (int)(i % 26), opt_len);
		o[0] = 'k';
		o[1] = '=';
		o[opt_len] = '\0';
		json_array_append_new(opts, json_string(o));
	}
	free(o);
	json_array_append_new(
	    json_object_get(j, "mounts"),
	    json_pack("{s:s,s:s,s:o}", "destination", "/big", "type", "tmpfs", "options", opts));
}

static void test_mount_data_sizes(void **state)
{
	json_error_t jerr;
	struct qerr err = {0};
	struct guest_config *g = NULL;
	/* 64 options of 1022 bytes: 64 * 1022 + 63 commas = 65471 < 65536 - 1 */
	const size_t sizes[][2] = {{64, 1022}, {1, 5}, {0, 0}};

	(void)state;
	for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
		json_t *j = json_loads(runc_spec, 0, &jerr);
		assert_non_null(j);
		mount_with_data(j, sizes[t][0], sizes[t][1]);
		write_json(j);
		json_decref(j);
		assert_int_equal(guest_config_load(bundle, &g, &err), 0);
		const struct guest_mount *m = &g->mounts[g->n_mounts - 1];
		size_t want = sizes[t][0] ? sizes[t][0] * sizes[t][1] + sizes[t][0] - 1 : 0;
		assert_string_equal(m->destination, "/big");
		assert_int_equal(strlen(m->data), want);
		guest_config_free(g);
		g = NULL;
	}

	/* one more option: 65471 + 1 + 64 > 65536 - 2 */
	json_t *j = json_loads(runc_spec, 0, &jerr);
	assert_non_null(j);
	mount_with_data(j, 65, 1022);
	write_json(j);
	json_decref(j);
	assert_int_equal(guest_config_load(bundle, &g, &err), -E2BIG);
	assert_null(g);
	assert_non_null(strstr(err.msg, "mount data longer than 65536 bytes"));
}

/* A regular file whose size says 0 (procfs) is still read whole: the
 * buffer grows past the size fstat gave.  /proc/self/comm reads as our
 * name and a newline: "{}" makes it a JSON object. */
static void test_file_larger_than_its_size(void **state)
{
	struct qerr err = {0};
	struct guest_config *g = NULL;
	char path[256], name[16] = "";

	(void)state;
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	unlink(path);
	assert_int_equal(symlink("/proc/self/comm", path), 0);
	assert_int_equal(prctl(PR_GET_NAME, name), 0);
	assert_int_equal(prctl(PR_SET_NAME, "{}"), 0);
	int r = guest_config_load(bundle, &g, &err);
	prctl(PR_SET_NAME, name);
	unlink(path);
	assert_int_equal(r, -EINVAL);
	assert_null(g);
	/* the object was read whole: what it lacks, not a truncated text */
	assert_null(strstr(err.msg, "end of file"));
	assert_non_null(strstr(err.msg, "ociVersion"));
}

static void test_lookups(void **state)
{
	(void)state;
	assert_int_equal(guest_rlimit_from_name("RLIMIT_NOFILE"), RLIMIT_NOFILE);
	assert_int_equal(guest_rlimit_from_name("RLIMIT_RTTIME"), RLIMIT_RTTIME);
	assert_int_equal(guest_rlimit_from_name("NOFILE"), -1);
	assert_string_equal(guest_ns_name(GUEST_NS_NETWORK), "network");
	assert_string_equal(guest_ns_name(GUEST_NS_COUNT), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_runc_spec_loads),
	    cmocka_unit_test(test_runc_spec_from_runc),
	    cmocka_unit_test(test_warm_dev_fits_runc_spec_only),
	    cmocka_unit_test(test_warm_proc_fits_runc_spec_only),
	    cmocka_unit_test(test_rich_config),
	    cmocka_unit_test(test_process_load),
	    cmocka_unit_test(test_bad_configs),
	    cmocka_unit_test(test_missing_and_oversized_file),
	    cmocka_unit_test(test_mount_data_sizes),
	    cmocka_unit_test(test_file_larger_than_its_size),
	    cmocka_unit_test(test_lookups),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
