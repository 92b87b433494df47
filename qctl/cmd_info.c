/* features, spec, version: what qctl can do, and a starting config.json. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "qctl/qctl.h"

/* The OCI runtime features document (runtime-spec features.md). */
static const char features_json[] =
    "{\n"
    "  \"ociVersionMin\": \"1.0.0\",\n"
    "  \"ociVersionMax\": \"" OCI_VERSION "\",\n"
    "  \"hooks\": [\"prestart\", \"createRuntime\", \"createContainer\", \"startContainer\", "
    "\"poststart\", \"poststop\"],\n"
    "  \"mountOptions\": [\"async\", \"atime\", \"bind\", \"defaults\", \"dev\", \"diratime\", "
    "\"dirsync\", \"exec\", \"iversion\", \"lazytime\", \"loud\", \"mand\", \"noatime\", "
    "\"nodev\", \"nodiratime\", \"noexec\", \"noiversion\", \"nolazytime\", \"nomand\", "
    "\"norelatime\", \"nostrictatime\", \"nosuid\", \"private\", \"rbind\", \"relatime\", "
    "\"remount\", \"ro\", \"rprivate\", \"rshared\", \"rslave\", \"runbindable\", \"rw\", "
    "\"shared\", \"silent\", \"slave\", \"strictatime\", \"suid\", \"sync\", \"unbindable\"],\n"
    "  \"linux\": {\n"
    "    \"namespaces\": [\"cgroup\", \"ipc\", \"mount\", \"network\", \"pid\", \"user\", "
    "\"uts\"],\n"
    "    \"capabilities\": [\"CAP_CHOWN\", \"CAP_DAC_OVERRIDE\", \"CAP_DAC_READ_SEARCH\", "
    "\"CAP_FOWNER\", \"CAP_FSETID\", \"CAP_KILL\", \"CAP_SETGID\", \"CAP_SETUID\", "
    "\"CAP_SETPCAP\", \"CAP_LINUX_IMMUTABLE\", \"CAP_NET_BIND_SERVICE\", "
    "\"CAP_NET_BROADCAST\", \"CAP_NET_ADMIN\", \"CAP_NET_RAW\", \"CAP_IPC_LOCK\", "
    "\"CAP_IPC_OWNER\", \"CAP_SYS_MODULE\", \"CAP_SYS_RAWIO\", \"CAP_SYS_CHROOT\", "
    "\"CAP_SYS_PTRACE\", \"CAP_SYS_PACCT\", \"CAP_SYS_ADMIN\", \"CAP_SYS_BOOT\", "
    "\"CAP_SYS_NICE\", \"CAP_SYS_RESOURCE\", \"CAP_SYS_TIME\", \"CAP_SYS_TTY_CONFIG\", "
    "\"CAP_MKNOD\", \"CAP_LEASE\", \"CAP_AUDIT_WRITE\", \"CAP_AUDIT_CONTROL\", "
    "\"CAP_SETFCAP\", \"CAP_MAC_OVERRIDE\", \"CAP_MAC_ADMIN\", \"CAP_SYSLOG\", "
    "\"CAP_WAKE_ALARM\", \"CAP_BLOCK_SUSPEND\", \"CAP_AUDIT_READ\", \"CAP_PERFMON\", "
    "\"CAP_BPF\", \"CAP_CHECKPOINT_RESTORE\"],\n"
    "    \"cgroup\": {\n"
    "      \"v1\": true,\n"
    "      \"v2\": true,\n"
    "      \"systemd\": false,\n"
    "      \"systemdUser\": false\n"
    "    },\n"
    "    \"seccomp\": {\n"
    "      \"enabled\": true,\n"
    "      \"actions\": [\"SCMP_ACT_ALLOW\", \"SCMP_ACT_ERRNO\", \"SCMP_ACT_KILL\", "
    "\"SCMP_ACT_KILL_PROCESS\", \"SCMP_ACT_KILL_THREAD\", \"SCMP_ACT_LOG\", "
    "\"SCMP_ACT_TRACE\", \"SCMP_ACT_TRAP\"],\n"
    "      \"operators\": [\"SCMP_CMP_EQ\", \"SCMP_CMP_GE\", \"SCMP_CMP_GT\", "
    "\"SCMP_CMP_LE\", \"SCMP_CMP_LT\", \"SCMP_CMP_MASKED_EQ\", \"SCMP_CMP_NE\"],\n"
    "      \"archs\": [\"SCMP_ARCH_X86_64\"]\n"
    "    },\n"
    "    \"apparmor\": {\n"
    "      \"enabled\": false\n"
    "    },\n"
    "    \"selinux\": {\n"
    "      \"enabled\": false\n"
    "    }\n"
    "  },\n"
    "  \"annotations\": {\n"
    "    \"io.github.quiver.version\": \"" QCTL_VERSION "\",\n"
    "    \"io.github.quiver.guest\": \"seccomp-user-notify\"\n"
    "  }\n"
    "}\n";

int cmd_features(int argc, char **argv)
{
	if (argc > 1)
		usage_error(argv[0], "takes no arguments");
	fputs(features_json, stdout);
	return 0;
}

/* The shape `runc spec` writes: busybox-friendly, args ["sh"], a terminal. */
static const char spec_json[] =
    "{\n"
    "\t\"ociVersion\": \"" OCI_VERSION "\",\n"
    "\t\"process\": {\n"
    "\t\t\"terminal\": true,\n"
    "\t\t\"user\": {\n\t\t\t\"uid\": 0,\n\t\t\t\"gid\": 0\n\t\t},\n"
    "\t\t\"args\": [\n\t\t\t\"sh\"\n\t\t],\n"
    "\t\t\"env\": [\n"
    "\t\t\t\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\n"
    "\t\t\t\"TERM=xterm\"\n\t\t],\n"
    "\t\t\"cwd\": \"/\",\n"
    "\t\t\"capabilities\": {\n"
    "\t\t\t\"bounding\": [\n\t\t\t\t\"CAP_AUDIT_WRITE\",\n\t\t\t\t\"CAP_KILL\",\n"
    "\t\t\t\t\"CAP_NET_BIND_SERVICE\"\n\t\t\t],\n"
    "\t\t\t\"effective\": [\n\t\t\t\t\"CAP_AUDIT_WRITE\",\n\t\t\t\t\"CAP_KILL\",\n"
    "\t\t\t\t\"CAP_NET_BIND_SERVICE\"\n\t\t\t],\n"
    "\t\t\t\"permitted\": [\n\t\t\t\t\"CAP_AUDIT_WRITE\",\n\t\t\t\t\"CAP_KILL\",\n"
    "\t\t\t\t\"CAP_NET_BIND_SERVICE\"\n\t\t\t],\n"
    "\t\t\t\"ambient\": [\n\t\t\t\t\"CAP_AUDIT_WRITE\",\n\t\t\t\t\"CAP_KILL\",\n"
    "\t\t\t\t\"CAP_NET_BIND_SERVICE\"\n\t\t\t]\n"
    "\t\t},\n"
    "\t\t\"rlimits\": [\n\t\t\t{\n\t\t\t\t\"type\": \"RLIMIT_NOFILE\",\n"
    "\t\t\t\t\"hard\": 1024,\n\t\t\t\t\"soft\": 1024\n\t\t\t}\n\t\t],\n"
    "\t\t\"noNewPrivileges\": true\n"
    "\t},\n"
    "\t\"root\": {\n\t\t\"path\": \"rootfs\",\n\t\t\"readonly\": true\n\t},\n"
    "\t\"hostname\": \"quiver\",\n"
    "\t\"mounts\": [\n"
    "\t\t{\n\t\t\t\"destination\": \"/proc\",\n\t\t\t\"type\": \"proc\",\n"
    "\t\t\t\"source\": \"proc\"\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/dev\",\n\t\t\t\"type\": \"tmpfs\",\n"
    "\t\t\t\"source\": \"tmpfs\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"strictatime\",\n\t\t\t\t\"mode=755\",\n\t\t\t\t\"size=65536k\"\n"
    "\t\t\t]\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/dev/pts\",\n\t\t\t\"type\": \"devpts\",\n"
    "\t\t\t\"source\": \"devpts\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"noexec\",\n\t\t\t\t\"newinstance\",\n\t\t\t\t\"ptmxmode=0666\",\n"
    "\t\t\t\t\"mode=0620\",\n\t\t\t\t\"gid=5\"\n\t\t\t]\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/dev/shm\",\n\t\t\t\"type\": \"tmpfs\",\n"
    "\t\t\t\"source\": \"shm\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"noexec\",\n\t\t\t\t\"nodev\",\n\t\t\t\t\"mode=1777\",\n"
    "\t\t\t\t\"size=65536k\"\n\t\t\t]\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/dev/mqueue\",\n\t\t\t\"type\": \"mqueue\",\n"
    "\t\t\t\"source\": \"mqueue\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"noexec\",\n\t\t\t\t\"nodev\"\n\t\t\t]\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/sys\",\n\t\t\t\"type\": \"sysfs\",\n"
    "\t\t\t\"source\": \"sysfs\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"noexec\",\n\t\t\t\t\"nodev\",\n\t\t\t\t\"ro\"\n\t\t\t]\n\t\t},\n"
    "\t\t{\n\t\t\t\"destination\": \"/sys/fs/cgroup\",\n\t\t\t\"type\": \"cgroup\",\n"
    "\t\t\t\"source\": \"cgroup\",\n\t\t\t\"options\": [\n\t\t\t\t\"nosuid\",\n"
    "\t\t\t\t\"noexec\",\n\t\t\t\t\"nodev\",\n\t\t\t\t\"relatime\",\n"
    "\t\t\t\t\"ro\"\n\t\t\t]\n\t\t}\n"
    "\t],\n"
    "\t\"linux\": {\n"
    "\t\t\"resources\": {\n\t\t\t\"devices\": [\n\t\t\t\t{\n"
    "\t\t\t\t\t\"allow\": false,\n\t\t\t\t\t\"access\": \"rwm\"\n"
    "\t\t\t\t}\n\t\t\t]\n\t\t},\n"
    "\t\t\"namespaces\": [\n"
    "\t\t\t{\n\t\t\t\t\"type\": \"pid\"\n\t\t\t},\n"
    "\t\t\t{\n\t\t\t\t\"type\": \"network\"\n\t\t\t},\n"
    "\t\t\t{\n\t\t\t\t\"type\": \"ipc\"\n\t\t\t},\n"
    "\t\t\t{\n\t\t\t\t\"type\": \"uts\"\n\t\t\t},\n"
    "\t\t\t{\n\t\t\t\t\"type\": \"mount\"\n\t\t\t}\n"
    "\t\t],\n"
    "\t\t\"maskedPaths\": [\n"
    "\t\t\t\"/proc/acpi\",\n\t\t\t\"/proc/asound\",\n\t\t\t\"/proc/kcore\",\n"
    "\t\t\t\"/proc/keys\",\n\t\t\t\"/proc/latency_stats\",\n\t\t\t\"/proc/timer_list\",\n"
    "\t\t\t\"/proc/timer_stats\",\n\t\t\t\"/proc/sched_debug\",\n\t\t\t\"/sys/firmware\",\n"
    "\t\t\t\"/proc/scsi\"\n"
    "\t\t],\n"
    "\t\t\"readonlyPaths\": [\n"
    "\t\t\t\"/proc/bus\",\n\t\t\t\"/proc/fs\",\n\t\t\t\"/proc/irq\",\n"
    "\t\t\t\"/proc/sys\",\n\t\t\t\"/proc/sysrq-trigger\"\n"
    "\t\t]\n"
    "\t}\n"
    "}";

int cmd_spec(int argc, char **argv)
{
	static const struct option opts[] = {{"bundle", required_argument, NULL, 'b'},
					     {NULL, 0, NULL, 0}};
	const char *bundle = ".";
	char path[PATH_MAX];
	cleanup_close int fd = -1;
	size_t len = strlen(spec_json);
	int c;

	while ((c = getopt_long(argc, argv, "b:", opts, NULL)) != -1) {
		if (c != 'b')
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		bundle = optarg;
	}
	if (optind != argc)
		usage_error(argv[0], "takes no arguments");
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0) {
		if (errno == EEXIST)
			die("File %s exists. Remove it first", path);
		die("%s: %s", path, strerror(errno));
	}
	if (write(fd, spec_json, len) != (ssize_t)len)
		die("%s: %s", path, strerror(errno));
	return 0;
}

int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("qctl version %s\nspec: %s\n", QCTL_VERSION, OCI_VERSION);
	return 0;
}
