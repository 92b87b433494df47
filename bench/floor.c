/* floor: what the design itself costs on this machine, below any code of
 * Quiver's.  Issue 4 mediates every path-taking syscall through a seccomp
 * user notification; issue 3 gives every sandbox a supervisor process.  This
 * measures the least either can cost: a trapped call answered by a
 * supervisor that does nothing else, a trapped openat answered with the
 * fewest steps that keep it confined (no iod, no ring), and a process that
 * only sleeps.  bench/floor.py compiles it (static) and runs the rounds.
 *
 *   cc -O2 -static -o floor bench/floor.c
 *   ./floor MODE [-n CALLS] [--same-cpu] [--no-sync]
 *
 *   native   openat("/etc/passwd", O_RDONLY|O_CLOEXEC) + close, no filter
 *   notify   getppid trapped (SECCOMP_RET_USER_NOTIF); the supervisor waits
 *            in epoll, as guest/supervisor.c does, then RECV and SEND
 *   block    the same, the supervisor blocking in SECCOMP_IOCTL_NOTIF_RECV
 *   open     openat trapped; the supervisor (blocking in RECV) reads the
 *            path with process_vm_readv, opens it with openat2 at a root
 *            fd (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) and answers with
 *            SECCOMP_IOCTL_NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND (one ioctl
 *            installs the fd and answers); then close, not trapped
 *   idle     pause() forever (the memory floor of one more process)
 *
 * It prints the microseconds per call (per openat + close), timed with
 * CLOCK_MONOTONIC in the trapped process over CALLS calls (default 20000)
 * after a tenth unrecorded.  --same-cpu pins both processes to one CPU;
 * --no-sync leaves out SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (set by default,
 * as the supervisor sets it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS _IOW('!', 4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1ull
#endif

enum mode { NATIVE, NOTIFY, BLOCK, OPEN, IDLE };

static void die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void send_fd(int sock, int fd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = {0};
	char byte = 'f';
	struct iovec iov = {&byte, 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	if (sendmsg(sock, &m, 0) != 1)
		die("sendmsg");
}

static int recv_fd(int sock)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	char byte;
	struct iovec iov = {&byte, 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &m, 0) != 1)
		die("recvmsg");
	c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		die("no fd received");
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

static int trap_one(int nr)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	int fd;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("PR_SET_NO_NEW_PRIVS");
	fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			  &prog);
	if (fd < 0)
		die("seccomp");
	return fd;
}

static double open_close(int calls)
{
	double t0 = now_us();

	for (int i = 0; i < calls; i++) {
		int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			die("openat");
		close(fd);
	}
	return (now_us() - t0) / calls;
}

static double getppids(int calls)
{
	double t0 = now_us();

	for (int i = 0; i < calls; i++)
		if (syscall(SYS_getppid) != 42)
			die("getppid was not answered by the supervisor");
	return (now_us() - t0) / calls;
}

/* The trapped side: install the filter, hand the listener over, wait for
 * the go, time the loop. */
static void trapped(enum mode m, int sock, int calls)
{
	double us;
	char go;

	if (m != NATIVE) {
		int l = trap_one(m == OPEN ? SYS_openat : SYS_getppid);

		send_fd(sock, l);
		close(l);
	}
	if (read(sock, &go, 1) != 1)
		die("read go");
	if (m == NOTIFY || m == BLOCK) {
		getppids(calls / 10);
		us = getppids(calls);
	} else {
		open_close(calls / 10);
		us = open_close(calls);
	}
	printf("%.3f\n", us);
	fflush(stdout);
}

static void answer(int l, struct seccomp_notif *req, int root)
{
	struct seccomp_notif_resp resp = {.id = req->id};
	char path[4096];

	if (root < 0) {
		resp.val = 42;
		goto send;
	}
	struct iovec here = {path, sizeof(path) - 1};
	struct iovec there = {(void *)(uintptr_t)req->data.args[1], sizeof(path) - 1};
	/* A read may stop at a page end short of the whole buffer: the path is
	 * whatever came, up to its NUL. */
	ssize_t got = process_vm_readv((pid_t)req->pid, &here, 1, &there, 1, 0);

	if (got <= 0 || !memchr(path, 0, (size_t)got)) {
		resp.error = -EFAULT;
		goto send;
	}
	struct open_how how = {
	    .flags = (req->data.args[2] & ~(__u64)O_CLOEXEC) | O_CLOEXEC,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));

	if (fd < 0) {
		resp.error = -errno;
		goto send;
	}
	struct seccomp_notif_addfd add = {
	    .id = req->id,
	    .flags = SECCOMP_ADDFD_FLAG_SEND,
	    .srcfd = (__u32)fd,
	    .newfd_flags = (req->data.args[2] & O_CLOEXEC) ? O_CLOEXEC : 0,
	};
	int r = ioctl(l, SECCOMP_IOCTL_NOTIF_ADDFD, &add);

	close(fd);
	if (r >= 0 || errno == ENOENT) /* ENOENT: the task is gone */
		return;
	resp.error = -errno;
send:
	if (ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
		die("SECCOMP_IOCTL_NOTIF_SEND");
}

static void supervise(enum mode m, int sock, int sync)
{
	int l = recv_fd(sock);
	int root = m == OPEN ? open("/", O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN};

	if (sync && ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
		die("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP");
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
		die("epoll");
	if (write(sock, "g", 1) != 1)
		die("write go");
	for (;;) {
		struct seccomp_notif req;

		if (m == NOTIFY) {
			int n = epoll_wait(ep, &ev, 1, -1);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die("epoll_wait");
			if (ev.events & EPOLLHUP)
				break;
		}
		memset(&req, 0, sizeof(req));
		if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR)
				continue;
			break; /* the trapped process is gone (ENOENT) */
		}
		answer(l, &req, root);
	}
}

static void pin_here(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	CPU_ZERO(&set);
	CPU_SET(cpu < 0 ? 0 : cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity");
}

int main(int argc, char **argv)
{
	static const char *names[] = {"native", "notify", "block", "open", "idle"};
	int calls = 20000, same_cpu = 0, sync = 1, sv[2], status;
	enum mode m = IDLE + 1;
	pid_t pid;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			calls = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--same-cpu"))
			same_cpu = 1;
		else if (!strcmp(argv[i], "--no-sync"))
			sync = 0;
		else
			for (int k = 0; k <= IDLE; k++)
				if (!strcmp(argv[i], names[k]))
					m = (enum mode)k;
	}
	if (m > IDLE || calls < 10) {
		fprintf(stderr, "usage: floor native|notify|block|open|idle [-n CALLS] "
				"[--same-cpu] [--no-sync]\n");
		return 2;
	}
	if (m == IDLE)
		for (;;)
			pause();
	if (same_cpu)
		pin_here();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(sv[1]);
		trapped(m, sv[0], calls);
		_exit(0);
	}
	close(sv[0]);
	if (m == NATIVE) {
		if (write(sv[1], "g", 1) != 1)
			die("write go");
	} else {
		supervise(m, sv[1], sync);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
