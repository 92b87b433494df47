/* attack: try one host-kernel entry point a sandboxed workload must not reach.
 *
 *   attack NAME [ARG]     prints one line "NAME rc=R errno=ENAME" (or
 *                         "NAME signal=N" when a child doing it was killed),
 *                         exits 0; exits 2 on a usage error.
 *   attack list           prints the names, one a line.
 *
 * Every attempt uses valid arguments, so that on an unconfined root process
 * it would succeed (or fail for an unrelated reason the test can tell apart):
 * the caller checks the errno, not just "it failed".  Children that could be
 * created by a successful attempt exit at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <dirent.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define X32_SYSCALL_BIT 0x40000000

static const char *ename(int e)
{
	switch (e) {
	case 0:
		return "0";
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	case ESRCH:
		return "ESRCH";
	case EIO:
		return "EIO";
	case EBADF:
		return "EBADF";
	case EAGAIN:
		return "EAGAIN";
	case ENOMEM:
		return "ENOMEM";
	case EACCES:
		return "EACCES";
	case EFAULT:
		return "EFAULT";
	case EBUSY:
		return "EBUSY";
	case EEXIST:
		return "EEXIST";
	case ENODEV:
		return "ENODEV";
	case ENOTDIR:
		return "ENOTDIR";
	case EINVAL:
		return "EINVAL";
	case ENOTTY:
		return "ENOTTY";
	case ENOSPC:
		return "ENOSPC";
	case EROFS:
		return "EROFS";
	case ENOSYS:
		return "ENOSYS";
	case EOPNOTSUPP:
		return "EOPNOTSUPP";
	case ENOEXEC:
		return "ENOEXEC";
	case ESTALE:
		return "ESTALE";
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	default:
		return "E?";
	}
}

static void report(const char *name, long rc, int err)
{
	printf("%s rc=%ld errno=%s(%d)\n", name, rc, rc < 0 ? ename(err) : "0", rc < 0 ? err : 0);
}

/* Run fn in a child so that a successful namespace change, a SIGSYS or a
 * SIGSEGV cannot disturb the caller; the child reports through a pipe. */
struct result {
	long rc;
	int err;
};

static void in_child(const char *name, struct result (*fn)(const char *), const char *arg)
{
	int p[2];
	if (pipe(p) < 0) {
		perror("pipe");
		exit(2);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		close(p[0]);
		struct result r = fn(arg);
		if (write(p[1], &r, sizeof(r)) != sizeof(r))
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	struct result r;
	ssize_t n = read(p[0], &r, sizeof(r));
	int status;
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status)) {
		printf("%s signal=%d\n", name, WTERMSIG(status));
		return;
	}
	if (n != sizeof(r)) {
		printf("%s broken child status=%d\n", name, status);
		return;
	}
	report(name, r.rc, r.err);
}

#define RES(expr)                                                                                  \
	do {                                                                                       \
		errno = 0;                                                                         \
		long rc_ = (long)(expr);                                                           \
		struct result r_ = {rc_, errno};                                                   \
		return r_;                                                                         \
	} while (0)

static struct result a_mount(const char *a)
{
	(void)a;
	RES(mount("none", "/tmp", "tmpfs", 0, "size=1m"));
}

static struct result a_umount2(const char *a)
{
	(void)a;
	RES(umount2("/proc", MNT_DETACH));
}

static long unshare_flag(const char *a)
{
	if (!strcmp(a, "user"))
		return CLONE_NEWUSER;
	if (!strcmp(a, "mnt"))
		return CLONE_NEWNS;
	if (!strcmp(a, "pid"))
		return CLONE_NEWPID;
	if (!strcmp(a, "net"))
		return CLONE_NEWNET;
	if (!strcmp(a, "uts"))
		return CLONE_NEWUTS;
	if (!strcmp(a, "ipc"))
		return CLONE_NEWIPC;
	if (!strcmp(a, "cgroup"))
		return CLONE_NEWCGROUP;
	if (!strcmp(a, "time"))
		return CLONE_NEWTIME;
	fprintf(stderr, "unknown namespace %s\n", a);
	exit(2);
}

static struct result a_unshare(const char *a)
{
	RES(unshare((int)unshare_flag(a)));
}

static struct result a_setns(const char *a)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/1/ns/%s", a ? a : "net");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* Cannot even open it: report that errno (EACCES/EPERM/ENOENT). */
		struct result r = {-1, errno};
		return r;
	}
	RES(setns(fd, 0));
}

static struct result a_ptrace_attach(const char *a)
{
	(void)a;
	RES(ptrace(PTRACE_ATTACH, 1, 0, 0));
}

static struct result a_ptrace_traceme(const char *a)
{
	(void)a;
	RES(ptrace(PTRACE_TRACEME, 0, 0, 0));
}

static struct result a_bpf(const char *a)
{
	(void)a;
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	RES(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}

static struct result a_keyctl(const char *a)
{
	(void)a;
	/* KEYCTL_JOIN_SESSION_KEYRING (1) with a NULL name: a new anonymous keyring. */
	RES(syscall(SYS_keyctl, 1, 0, 0, 0, 0));
}

static struct result a_add_key(const char *a)
{
	(void)a;
	/* KEY_SPEC_PROCESS_KEYRING = -2 */
	RES(syscall(SYS_add_key, "user", "quiver-test", "data", 4, -2));
}

static struct result a_io_uring_setup(const char *a)
{
	(void)a;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	RES(syscall(SYS_io_uring_setup, 4, &p));
}

static struct result a_perf_event_open(const char *a)
{
	(void)a;
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_TASK_CLOCK;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	RES(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static struct result a_userfaultfd(const char *a)
{
	(void)a;
	/* UFFD_USER_MODE_ONLY (1) is allowed to unprivileged users on a default kernel. */
	RES(syscall(SYS_userfaultfd, O_CLOEXEC | 1));
}

static struct result a_kexec_load(const char *a)
{
	(void)a;
	/* nr_segments 0: "unload", harmless if it were ever allowed. */
	RES(syscall(SYS_kexec_load, 0, 0, NULL, 0));
}

static struct result a_init_module(const char *a)
{
	(void)a;
	static char img[64];
	RES(syscall(SYS_init_module, img, sizeof(img), ""));
}

static struct result a_finit_module(const char *a)
{
	(void)a;
	int fd = open("/bin/busybox", O_RDONLY | O_CLOEXEC);
	RES(syscall(SYS_finit_module, fd, "", 0));
}

static struct result a_reboot(const char *a)
{
	(void)a;
	/* CAD_OFF: the least harmful command; needs CAP_SYS_BOOT. */
	RES(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF,
		    NULL));
}

static struct result a_swapon(const char *a)
{
	(void)a;
	RES(syscall(SYS_swapon, "/bin/busybox", 0));
}

static struct result a_open_by_handle_at(const char *a)
{
	(void)a;
	struct {
		struct file_handle fh;
		unsigned char buf[128];
	} h;
	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = 128;
	int mnt;
	if (name_to_handle_at(AT_FDCWD, "/bin/busybox", &h.fh, &mnt, 0) < 0) {
		/* Fabricate one: the permission check comes before the handle is decoded. */
		h.fh.handle_bytes = 8;
		h.fh.handle_type = 1;
	}
	int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	RES(syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY));
}

static struct result a_clone(const char *a)
{
	long flags = unshare_flag(a) | SIGCHLD;
	long rc = syscall(SYS_clone, flags, 0, NULL, NULL, 0);
	if (rc == 0)
		_exit(0);
	struct result r = {rc, rc < 0 ? errno : 0};
	if (rc > 0)
		waitpid((pid_t)rc, NULL, 0);
	return r;
}

static struct result a_clone3(const char *a)
{
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = a ? (uint64_t)unshare_flag(a) : 0;
	ca.exit_signal = SIGCHLD;
	long rc = syscall(SYS_clone3, &ca, sizeof(ca));
	if (rc == 0)
		_exit(0);
	struct result r = {rc, rc < 0 ? errno : 0};
	if (rc > 0)
		waitpid((pid_t)rc, NULL, 0);
	return r;
}

/* TIOCSTI on the controlling terminal when there is one (terminal: true),
 * else on a pty opened here. */
static struct result a_tiocsti(const char *a)
{
	int fd = -1;
	if (a && !strcmp(a, "stdin"))
		fd = 0;
	else if (a && !strcmp(a, "tty"))
		fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int master, slave;
		if (openpty(&master, &slave, NULL, NULL, NULL) < 0) {
			struct result r = {-1000, errno};
			return r;
		}
		fd = slave;
	}
	char c = 'x';
	RES(ioctl(fd, TIOCSTI, &c));
}

static struct result a_write_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		struct result r = {-1, errno};
		return r;
	}
	/* Write what is already there where that is harmless: "3" to
	 * drop_caches drops clean caches, core_pattern gets a marker that a
	 * failing test makes visible. */
	const char *data = strstr(path, "drop_caches") ? "1\n" : "|/quiver-test-escaped\n";
	RES(write(fd, data, strlen(data)));
}

static struct result a_kill(const char *arg)
{
	RES(kill((pid_t)atol(arg), 0));
}

static struct result a_mknod(const char *a)
{
	(void)a;
	long rc = mknod("/dev/shm/quiver-sda", S_IFBLK | 0600, makedev(8, 0));
	int e = errno;
	if (rc == 0)
		unlink("/dev/shm/quiver-sda");
	struct result r = {rc, e};
	return r;
}

static struct result a_int80(const char *a)
{
	(void)a;
	long ret;
	/* i386 getpid (20) through the 32-bit entry. */
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
	struct result r;
	if (ret < 0 && ret > -4096) {
		r.rc = -1;
		r.err = (int)-ret;
	} else {
		r.rc = ret;
		r.err = 0;
	}
	return r;
}

static struct result a_x32(const char *a)
{
	(void)a;
	RES(syscall(X32_SYSCALL_BIT | SYS_getpid));
}

/* Not an attack: uname(2) itself, for OCI seccomp profiles that deny it
 * (busybox's uname ignores the error). */
static struct result a_uname(const char *a)
{
	(void)a;
	struct utsname u;
	RES(uname(&u));
}

/* The working directory the runtime gave us: rc=0 when it lies outside our
 * root (the kernel's getcwd says "(unreachable)"), i.e. the runtime let a
 * host directory in as cwd (runc CVE-2024-21626); EPERM when it is inside. */
static struct result a_cwd_outside(const char *a)
{
	(void)a;
	char buf[4096];
	long n = syscall(SYS_getcwd, buf, sizeof(buf));
	struct result r = {-1, EPERM};
	if (n < 0 && errno == ENOENT)
		r.rc = 0;
	else if (n > 0 && buf[0] != '/')
		r.rc = 0;
	if (r.rc == 0)
		r.err = 0;
	return r;
}

/* The supervisor's /proc entries: ARG is mem, fd, environ, root or fd5 (the
 * directory fd S holds on the host's state dir). */
static struct result a_proc1(const char *a)
{
	if (!a)
		a = "mem";
	if (!strcmp(a, "mem"))
		RES(open("/proc/1/mem", O_RDWR));
	if (!strcmp(a, "fd"))
		RES(open("/proc/1/fd", O_RDONLY | O_DIRECTORY));
	if (!strcmp(a, "environ"))
		RES(open("/proc/1/environ", O_RDONLY));
	if (!strcmp(a, "root"))
		RES(open("/proc/1/root/", O_RDONLY | O_DIRECTORY));
	if (!strcmp(a, "exe"))
		RES(open("/proc/1/exe", O_RDONLY));
	char p[64];
	snprintf(p, sizeof(p), "/proc/1/fd/%s", a + 2);
	RES(open(p, O_RDONLY));
}

/* socket(2) with a family outside the allowlist; ARG is packet, alg, vsock,
 * or one of them with "_hi" (high bits set above the 32 the kernel reads). */
static struct result a_socket(const char *a)
{
	if (!a)
		a = "packet";
	long fam = !strncmp(a, "alg", 3)     ? 38 /* AF_ALG */
		   : !strncmp(a, "vsock", 5) ? 40 /* AF_VSOCK */
					     : 17 /* AF_PACKET */;
	if (strstr(a, "_hi"))
		fam |= 1L << 32;
	int type = (fam & 0xffffffff) == 38 ? SOCK_SEQPACKET : SOCK_DGRAM;
	RES(syscall(SYS_socket, fam, type, 0));
}

/* prctl(PR_SET_MM) with bits above the 32 the kernel reads. */
static struct result a_prctl_hi(const char *a)
{
	(void)a;
	RES(syscall(SYS_prctl, (1L << 32) | 35 /* PR_SET_MM */, 13 /* PR_SET_MM_EXE_FILE */, 0L, 0L,
		    0L));
}

static int status_field(int pid, const char *key, char *out, size_t len)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/status", pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	int found = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = 0;
			snprintf(out, len, "%s", v);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

/* The hunter of `qctl exec` children (runc CVE-2016-9962): until the file
 * ARG exists, watch every other process of the sandbox and try to open its
 * /proc/PID/mem for writing.  rc=0 (the escape) once that worked on a
 * process that is not yet under seccomp or still runs the runtime's binary
 * (its exe outside our root): code written there runs unconfined.  ENOENT
 * when the marker appeared first. */
static struct result a_exec_mem(const char *marker)
{
	struct result r = {-1, ENOENT};
	pid_t me = getpid(), parent = getppid();
	if (!marker)
		marker = "/dev/shm/exec_mem.stop";
	/* "nofilter:MARKER": only a process with no seccomp filter counts */
	bool nofilter = !strncmp(marker, "nofilter:", 9);
	if (nofilter)
		marker += 9;
	for (;;) {
		struct stat st;
		if (stat(marker, &st) == 0)
			return r;
		DIR *d = opendir("/proc");
		if (!d)
			return r;
		struct dirent *e;
		while ((e = readdir(d))) {
			char *end;
			long pid = strtol(e->d_name, &end, 10);
			if (*end || pid <= 1 || pid == me || pid == parent)
				continue;
			char p[64];
			snprintf(p, sizeof(p), "/proc/%ld/mem", pid);
			int fd = open(p, O_RDWR | O_CLOEXEC);
			if (fd < 0)
				continue;
			char sc[32] = "", exe[256] = "";
			status_field((int)pid, "Seccomp", sc, sizeof(sc));
			snprintf(p, sizeof(p), "/proc/%ld/exe", pid);
			ssize_t n = readlink(p, exe, sizeof(exe) - 1);
			if (n > 0)
				exe[n] = 0;
			close(fd);
			if (!strcmp(sc, "0") || (!nofilter && strstr(exe, "quiver"))) {
				fprintf(stderr,
					"exec_mem: pid %ld Seccomp=%s exe=%s: mem writable\n", pid,
					sc, exe);
				closedir(d);
				r.rc = 0;
				r.err = 0;
				return r;
			}
		}
		closedir(d);
	}
}

/* Pids visible in /proc, comma separated on stdout; rc = how many. */
static void list_pids(void)
{
	DIR *d = opendir("/proc");
	if (!d) {
		printf("procpids error=%s\n", ename(errno));
		return;
	}
	struct dirent *e;
	int n = 0;
	printf("procpids ");
	while ((e = readdir(d))) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end == 0 && v > 0) {
			printf("%s%ld", n ? "," : "", v);
			n++;
		}
	}
	printf("\n");
	closedir(d);
}

struct attack {
	const char *name;
	struct result (*fn)(const char *);
};

static const struct attack attacks[] = {
    {"mount", a_mount},
    {"umount2", a_umount2},
    {"unshare", a_unshare},
    {"setns", a_setns},
    {"ptrace_attach", a_ptrace_attach},
    {"ptrace_traceme", a_ptrace_traceme},
    {"bpf", a_bpf},
    {"keyctl", a_keyctl},
    {"add_key", a_add_key},
    {"io_uring_setup", a_io_uring_setup},
    {"perf_event_open", a_perf_event_open},
    {"userfaultfd", a_userfaultfd},
    {"kexec_load", a_kexec_load},
    {"init_module", a_init_module},
    {"finit_module", a_finit_module},
    {"reboot", a_reboot},
    {"swapon", a_swapon},
    {"open_by_handle_at", a_open_by_handle_at},
    {"clone", a_clone},
    {"clone3", a_clone3},
    {"tiocsti", a_tiocsti},
    {"write", a_write_file},
    {"kill", a_kill},
    {"mknod", a_mknod},
    {"int80", a_int80},
    {"x32", a_x32},
    {"uname", a_uname},
    {"cwd_outside", a_cwd_outside},
    {"proc1", a_proc1},
    {"socket", a_socket},
    {"prctl_hi", a_prctl_hi},
    {"exec_mem", a_exec_mem},
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: attack NAME [ARG] | list | procpids\n");
		return 2;
	}
	/* These attempts succeed on an unconfined host root (a tmpfs over /tmp,
	 * a new keyring, ...): refuse to run anywhere but in a fresh pid
	 * namespace, where this program's pid is small. */
	if (getpid() > 64 && !getenv("QUIVER_ATTACK_ON_HOST")) {
		fprintf(stderr, "attack: pid %d: not in a sandbox, refusing to run\n",
			(int)getpid());
		return 2;
	}
	if (!strcmp(argv[1], "list")) {
		for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
			printf("%s\n", attacks[i].name);
		return 0;
	}
	if (!strcmp(argv[1], "procpids")) {
		list_pids();
		return 0;
	}
	/* "all" runs every attack that needs no argument, one line each. */
	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		if (!strcmp(argv[1], attacks[i].name)) {
			in_child(argv[1], attacks[i].fn, argc > 2 ? argv[2] : NULL);
			return 0;
		}
	}
	fprintf(stderr, "attack: unknown attack %s\n", argv[1]);
	return 2;
}
