/* The syscall policy table: the one source of truth (policy.h).
 *
 * Rule of thumb (docs/security-model.md): creating a resource or touching a
 * name (a path, an address, a namespace) is mediated; operating on an fd the
 * sandbox already holds passes, with argument checks where the call
 * multiplexes.  Path and socket calls pass TODAY, confined by the sandbox's
 * mount and network namespaces; the `later` column says where they move. */
#include <errno.h>
#include <jansson.h>
#include <linux/personality.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sched.h>

#include "guest/policy.h"
#include "libcommon/cleanup.h"

/* Newer than the kernel headers of Debian 12 (6.1), known to libseccomp. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_map_shadow_stack
#define __NR_map_shadow_stack 453
#endif
#ifndef __NR_futex_wake
#define __NR_futex_wake 454
#endif
#ifndef __NR_futex_wait
#define __NR_futex_wait 455
#endif
#ifndef __NR_futex_requeue
#define __NR_futex_requeue 456
#endif

#define POLICY_NR_LIMIT 512

#define ENTRY_(n, act, e, chk, kern, lat, fn, w)                                                   \
	[__NR_##n] = {.name = #n,                                                                  \
		      .nr = __NR_##n,                                                              \
		      .action = (act),                                                             \
		      .err = (e),                                                                  \
		      .check = (chk),                                                              \
		      .in_kernel = (kern),                                                         \
		      .later = (lat),                                                              \
		      .emulator = (fn),                                                            \
		      .why = (w)}

#define NO_EMU	   POLICY_EMULATOR_NONE
#define PASS(n, w) ENTRY_(n, POLICY_PASS, 0, POLICY_CHECK_NONE, false, POLICY_LATER_NONE, NO_EMU, w)
#define PASS_IO(n, w)                                                                              \
	ENTRY_(n, POLICY_PASS, 0, POLICY_CHECK_NONE, false, POLICY_LATER_IO, NO_EMU, w)
#define PASS_NET(n, w)                                                                             \
	ENTRY_(n, POLICY_PASS, 0, POLICY_CHECK_NONE, false, POLICY_LATER_NET, NO_EMU, w)
#define CHECKED(n, chk, e, lat, w) ENTRY_(n, POLICY_PASS, e, chk, false, lat, NO_EMU, w)
#define DENY(n, e, w)                                                                              \
	ENTRY_(n, POLICY_DENY, e, POLICY_CHECK_NONE, false, POLICY_LATER_NONE, NO_EMU, w)
#define DENY_BPF(n, e, w)                                                                          \
	ENTRY_(n, POLICY_DENY, e, POLICY_CHECK_NONE, true, POLICY_LATER_NONE, NO_EMU, w)
#define EMULATE(n, fn, w)                                                                          \
	ENTRY_(n, POLICY_EMULATE, 0, POLICY_CHECK_NONE, false, POLICY_LATER_NONE, fn, w)

/* Indexed by syscall number, so lookup is one load; a duplicate entry is a
 * compile error (-Woverride-init, from -Wextra). */
static const struct policy_entry policy_by_nr[POLICY_NR_LIMIT] = {
    /* Memory, signals, time and scheduling of the caller itself. */
    PASS(read, "reads an fd the sandbox holds"),
    PASS(write, "writes an fd the sandbox holds"),
    PASS_IO(open, "path, confined by the mount namespace, read-only and masked paths"),
    PASS(close, "releases an fd"),
    PASS_IO(stat, "path, confined by the mount namespace"),
    PASS(fstat, "stats an fd the sandbox holds"),
    PASS_IO(lstat, "path, confined by the mount namespace"),
    PASS(poll, "waits on fds the sandbox holds"),
    PASS(lseek, "moves an fd's offset"),
    PASS(mmap, "maps memory; charged to the memory cgroup"),
    PASS(mprotect, "changes the caller's own mappings"),
    PASS(munmap, "unmaps the caller's own memory"),
    PASS(brk, "grows the caller's heap; charged to the memory cgroup"),
    PASS(rt_sigaction, "the caller's own signal handlers"),
    PASS(rt_sigprocmask, "the caller's own signal mask"),
    PASS(rt_sigreturn, "returns from the caller's signal handler"),
    CHECKED(ioctl, POLICY_CHECK_IOCTL_CMD, EPERM, POLICY_LATER_NONE,
	    "operates on an fd; TIOCSTI/TIOCLINUX inject input into a terminal shared with "
	    "the host"),
    PASS(pread64, "reads an fd the sandbox holds"),
    PASS(pwrite64, "writes an fd the sandbox holds"),
    PASS(readv, "reads an fd the sandbox holds"),
    PASS(writev, "writes an fd the sandbox holds"),
    PASS_IO(access, "path lookup, confined by the mount namespace and pivot_root"),
    PASS(pipe, "creates an anonymous pipe"),
    PASS(select, "waits on fds the sandbox holds"),
    PASS(sched_yield, "yields the caller's CPU"),
    PASS(mremap, "remaps the caller's own memory"),
    PASS(msync, "flushes the caller's own mapping"),
    PASS(mincore, "residency of the caller's own pages"),
    PASS(madvise, "advice on the caller's own memory"),
    PASS(shmget, "SysV shared memory, in the sandbox's IPC namespace"),
    PASS(shmat, "SysV shared memory, in the sandbox's IPC namespace"),
    PASS(shmctl, "SysV shared memory, in the sandbox's IPC namespace"),
    PASS(dup, "duplicates an fd"),
    PASS(dup2, "duplicates an fd"),
    PASS(pause, "waits for a signal"),
    PASS(nanosleep, "sleeps"),
    PASS(getitimer, "the caller's own timers"),
    PASS(alarm, "the caller's own timer"),
    PASS(setitimer, "the caller's own timers"),
    PASS(getpid, "the caller's pid in its pid namespace"),
    PASS(sendfile, "copies between fds the sandbox holds"),
    CHECKED(socket, POLICY_CHECK_SOCKET_FAMILY, EAFNOSUPPORT, POLICY_LATER_NET,
	    "creates a socket in the sandbox's network namespace; families limited to unix, "
	    "inet, inet6, netlink"),
    PASS_NET(connect, "names an address; confined by the network namespace"),
    PASS_NET(accept, "accepts on a socket the sandbox holds"),
    PASS_NET(sendto, "may name an address; confined by the network namespace"),
    PASS_NET(recvfrom, "reads a socket the sandbox holds"),
    PASS_NET(sendmsg, "may name an address or pass fds; confined by the network namespace"),
    PASS_NET(recvmsg, "reads a socket the sandbox holds"),
    PASS_NET(shutdown, "operates on a socket the sandbox holds"),
    PASS_NET(bind, "names an address; confined by the network namespace"),
    PASS_NET(listen, "operates on a socket the sandbox holds"),
    PASS_NET(getsockname, "operates on a socket the sandbox holds"),
    PASS_NET(getpeername, "operates on a socket the sandbox holds"),
    CHECKED(socketpair, POLICY_CHECK_SOCKETPAIR_FAMILY, EAFNOSUPPORT, POLICY_LATER_NET,
	    "creates a connected pair; only AF_UNIX makes sense"),
    PASS_NET(setsockopt, "configures a socket the sandbox holds (SO_ATTACH_BPF needs bpf(2), "
			 "which is denied)"),
    PASS_NET(getsockopt, "reads a socket the sandbox holds"),
    CHECKED(clone, POLICY_CHECK_CLONE_FLAGS, EPERM, POLICY_LATER_NONE,
	    "new processes and threads; a CLONE_NEW* flag would make a namespace"),
    PASS(fork, "a new process in the sandbox's pid namespace and pids cgroup"),
    PASS(vfork, "a new process in the sandbox's pid namespace and pids cgroup"),
    PASS_IO(execve, "runs a file from the sandbox's rootfs"),
    PASS(exit, "ends the calling thread"),
    PASS(wait4, "reaps the caller's children"),
    PASS(kill, "signals; the pid namespace hides every host process"),
    PASS(uname, "reports the sandbox's UTS namespace"),
    PASS(semget, "SysV semaphores, in the sandbox's IPC namespace"),
    PASS(semop, "SysV semaphores, in the sandbox's IPC namespace"),
    PASS(semctl, "SysV semaphores, in the sandbox's IPC namespace"),
    PASS(shmdt, "SysV shared memory, in the sandbox's IPC namespace"),
    PASS(msgget, "SysV message queues, in the sandbox's IPC namespace"),
    PASS(msgsnd, "SysV message queues, in the sandbox's IPC namespace"),
    PASS(msgrcv, "SysV message queues, in the sandbox's IPC namespace"),
    PASS(msgctl, "SysV message queues, in the sandbox's IPC namespace"),
    PASS(fcntl, "operates on an fd the sandbox holds"),
    PASS(flock, "locks a file the sandbox holds open"),
    PASS(fsync, "flushes an fd the sandbox holds"),
    PASS(fdatasync, "flushes an fd the sandbox holds"),
    PASS_IO(truncate, "path, confined by the mount namespace"),
    PASS(ftruncate, "sizes an fd the sandbox holds"),
    PASS(getdents, "reads a directory fd the sandbox holds"),
    PASS(getcwd, "the caller's own working directory"),
    PASS_IO(chdir, "path, confined by the mount namespace"),
    PASS(fchdir, "enters a directory fd the sandbox holds"),
    PASS_IO(rename, "paths, confined by the mount namespace"),
    PASS_IO(mkdir, "path, confined by the mount namespace"),
    PASS_IO(rmdir, "path, confined by the mount namespace"),
    PASS_IO(creat, "path, confined by the mount namespace"),
    PASS_IO(link, "paths, confined by the mount namespace"),
    PASS_IO(unlink, "path, confined by the mount namespace"),
    PASS_IO(symlink, "paths, confined by the mount namespace"),
    PASS_IO(readlink, "path, confined by the mount namespace"),
    PASS_IO(chmod, "path, confined by the mount namespace"),
    PASS(fchmod, "changes a file the sandbox holds open"),
    PASS_IO(chown, "path, confined by the mount namespace"),
    PASS(fchown, "changes a file the sandbox holds open"),
    PASS_IO(lchown, "path, confined by the mount namespace"),
    PASS(umask, "the caller's own umask"),
    PASS(gettimeofday, "reads the clock"),
    PASS(getrlimit, "the caller's own limits"),
    PASS(getrusage, "the caller's own usage"),
    EMULATE(sysinfo, POLICY_EMULATOR_SYSINFO,
	    "reports the sandbox's memory limit as totalram, not the host's memory"),
    PASS(times, "the caller's own CPU times"),
    DENY(ptrace, EPERM, "debugging other processes is a large kernel surface"),
    PASS(getuid, "the caller's own credentials"),
    DENY(syslog, EPERM, "the host kernel's log"),
    PASS(getgid, "the caller's own credentials"),
    PASS(setuid, "credentials inside the sandbox"),
    PASS(setgid, "credentials inside the sandbox"),
    PASS(geteuid, "the caller's own credentials"),
    PASS(getegid, "the caller's own credentials"),
    PASS(setpgid, "process groups inside the pid namespace"),
    PASS(getppid, "the caller's parent in its pid namespace"),
    PASS(getpgrp, "the caller's process group"),
    PASS(setsid, "a new session"),
    PASS(setreuid, "credentials inside the sandbox"),
    PASS(setregid, "credentials inside the sandbox"),
    PASS(getgroups, "the caller's own credentials"),
    PASS(setgroups, "credentials inside the sandbox"),
    PASS(setresuid, "credentials inside the sandbox"),
    PASS(getresuid, "the caller's own credentials"),
    PASS(setresgid, "credentials inside the sandbox"),
    PASS(getresgid, "the caller's own credentials"),
    PASS(getpgid, "process groups inside the pid namespace"),
    PASS(setfsuid, "credentials inside the sandbox"),
    PASS(setfsgid, "credentials inside the sandbox"),
    PASS(getsid, "sessions inside the pid namespace"),
    PASS(capget, "the caller's own capabilities"),
    PASS(capset, "can only drop from the bounding set the launcher left"),
    PASS(rt_sigpending, "the caller's own signals"),
    PASS(rt_sigtimedwait, "the caller's own signals"),
    PASS(rt_sigqueueinfo, "signals inside the pid namespace"),
    PASS(rt_sigsuspend, "the caller's own signals"),
    PASS(sigaltstack, "the caller's own signal stack"),
    PASS_IO(utime, "path, confined by the mount namespace"),
    CHECKED(mknod, POLICY_CHECK_MKNOD_TYPE, EPERM, POLICY_LATER_IO,
	    "path; only regular files and fifos, never device nodes or sockets"),
    DENY(uselib, EPERM, "obsolete a.out loader"),
    CHECKED(personality, POLICY_CHECK_PERSONALITY, EPERM, POLICY_LATER_NONE,
	    "only PER_LINUX(32) and UNAME26, never READ_IMPLIES_EXEC or other domains"),
    DENY(ustat, ENOSYS, "obsolete; reports on any superblock of the host"),
    PASS_IO(statfs, "path, confined by the mount namespace"),
    PASS(fstatfs, "stats a filesystem through an fd the sandbox holds"),
    DENY(sysfs, ENOSYS, "obsolete"),
    PASS(getpriority, "priorities inside the pid namespace"),
    PASS(setpriority, "priorities inside the pid namespace; raising needs CAP_SYS_NICE"),
    PASS(sched_setparam, "scheduling inside the pid namespace; cpu cgroup limits"),
    PASS(sched_getparam, "scheduling inside the pid namespace"),
    PASS(sched_setscheduler, "scheduling inside the pid namespace; real-time needs "
			     "CAP_SYS_NICE"),
    PASS(sched_getscheduler, "scheduling inside the pid namespace"),
    PASS(sched_get_priority_max, "a constant"),
    PASS(sched_get_priority_min, "a constant"),
    PASS(sched_rr_get_interval, "scheduling inside the pid namespace"),
    PASS(mlock, "locks the caller's memory; RLIMIT_MEMLOCK and the memory cgroup"),
    PASS(munlock, "the caller's own memory"),
    PASS(mlockall, "locks the caller's memory; RLIMIT_MEMLOCK and the memory cgroup"),
    PASS(munlockall, "the caller's own memory"),
    DENY(vhangup, EPERM, "hangs up a terminal that may be shared with the host"),
    DENY(modify_ldt, EPERM, "16-bit segments; a history of kernel bugs, no modern use"),
    DENY(pivot_root, EPERM, "changes the root; the sandbox's root is fixed"),
    DENY(_sysctl, ENOSYS, "removed from the kernel"),
    CHECKED(prctl, POLICY_CHECK_PRCTL_OPTION, EINVAL, POLICY_LATER_NONE,
	    "multiplexes; only options that act on the caller (allowlist)"),
    PASS(arch_prctl, "the caller's own FS/GS base and CPU features"),
    DENY(adjtimex, EPERM, "the host's clock is not namespaced"),
    PASS(setrlimit, "the caller's own limits; raising needs CAP_SYS_RESOURCE"),
    DENY(chroot, EPERM, "changes the root; the sandbox's root is fixed"),
    PASS(sync, "flushes every filesystem: a nuisance, not a breach"),
    DENY(acct, EPERM, "process accounting is host-wide"),
    DENY(settimeofday, EPERM, "the host's clock is not namespaced"),
    DENY(mount, EPERM, "the sandbox's mounts are fixed by the supervisor"),
    DENY(umount2, EPERM, "would uncover masked paths"),
    DENY(swapon, EPERM, "host-wide"),
    DENY(swapoff, EPERM, "host-wide"),
    DENY(reboot, EPERM, "host-wide (or kills the sandbox's init)"),
    PASS(sethostname, "the sandbox's UTS namespace"),
    PASS(setdomainname, "the sandbox's UTS namespace"),
    DENY(iopl, EPERM, "raw I/O port access"),
    DENY(ioperm, EPERM, "raw I/O port access"),
    DENY(create_module, ENOSYS, "removed from the kernel"),
    DENY(init_module, EPERM, "loads code into the host kernel"),
    DENY(delete_module, EPERM, "unloads host kernel code"),
    DENY(get_kernel_syms, ENOSYS, "removed from the kernel"),
    DENY(query_module, ENOSYS, "removed from the kernel"),
    DENY(quotactl, EPERM, "host filesystem quotas"),
    DENY(nfsservctl, ENOSYS, "removed from the kernel"),
    DENY(getpmsg, ENOSYS, "never implemented"),
    DENY(putpmsg, ENOSYS, "never implemented"),
    DENY(afs_syscall, ENOSYS, "never implemented"),
    DENY(tuxcall, ENOSYS, "never implemented"),
    DENY(security, ENOSYS, "never implemented"),
    PASS(gettid, "the caller's tid in its pid namespace"),
    PASS(readahead, "reads ahead on an fd the sandbox holds"),
    PASS_IO(setxattr, "path, confined by the mount namespace"),
    PASS_IO(lsetxattr, "path, confined by the mount namespace"),
    PASS(fsetxattr, "a file the sandbox holds open"),
    PASS_IO(getxattr, "path, confined by the mount namespace"),
    PASS_IO(lgetxattr, "path, confined by the mount namespace"),
    PASS(fgetxattr, "a file the sandbox holds open"),
    PASS_IO(listxattr, "path, confined by the mount namespace"),
    PASS_IO(llistxattr, "path, confined by the mount namespace"),
    PASS(flistxattr, "a file the sandbox holds open"),
    PASS_IO(removexattr, "path, confined by the mount namespace"),
    PASS_IO(lremovexattr, "path, confined by the mount namespace"),
    PASS(fremovexattr, "a file the sandbox holds open"),
    PASS(tkill, "signals a thread inside the pid namespace"),
    PASS(time, "reads the clock"),
    PASS(futex, "waits and wakes on the caller's memory"),
    PASS(sched_setaffinity, "CPUs within the cpuset cgroup"),
    PASS(sched_getaffinity, "CPUs within the cpuset cgroup"),
    DENY(set_thread_area, ENOSYS, "32-bit TLS; x86-64 uses arch_prctl"),
    PASS(io_setup, "Linux AIO context, charged to the caller"),
    PASS(io_destroy, "Linux AIO on the caller's context"),
    PASS(io_getevents, "Linux AIO on the caller's context"),
    PASS(io_submit, "Linux AIO on fds the sandbox holds"),
    PASS(io_cancel, "Linux AIO on the caller's context"),
    DENY(get_thread_area, ENOSYS, "32-bit TLS; x86-64 uses arch_prctl"),
    DENY(lookup_dcookie, EPERM, "oprofile's view of host paths"),
    PASS(epoll_create, "creates an epoll fd"),
    DENY(epoll_ctl_old, ENOSYS, "never implemented"),
    DENY(epoll_wait_old, ENOSYS, "never implemented"),
    PASS(remap_file_pages, "the caller's own mappings"),
    PASS(getdents64, "reads a directory fd the sandbox holds"),
    PASS(set_tid_address, "the caller's own thread state"),
    PASS(restart_syscall, "restarts an interrupted call"),
    PASS(semtimedop, "SysV semaphores, in the sandbox's IPC namespace"),
    PASS(fadvise64, "advice on an fd the sandbox holds"),
    PASS(timer_create, "the caller's own POSIX timers"),
    PASS(timer_settime, "the caller's own POSIX timers"),
    PASS(timer_gettime, "the caller's own POSIX timers"),
    PASS(timer_getoverrun, "the caller's own POSIX timers"),
    PASS(timer_delete, "the caller's own POSIX timers"),
    DENY(clock_settime, EPERM, "the host's clock is not namespaced"),
    PASS(clock_gettime, "reads the clock"),
    PASS(clock_getres, "reads the clock"),
    PASS(clock_nanosleep, "sleeps"),
    PASS(exit_group, "ends the calling process"),
    PASS(epoll_wait, "waits on an epoll fd"),
    PASS(epoll_ctl, "adds fds the sandbox holds to an epoll fd"),
    PASS(tgkill, "signals a thread inside the pid namespace"),
    PASS_IO(utimes, "path, confined by the mount namespace"),
    DENY(vserver, ENOSYS, "never implemented"),
    PASS(mbind, "NUMA policy of the caller's memory"),
    PASS(set_mempolicy, "the caller's NUMA policy"),
    PASS(get_mempolicy, "the caller's NUMA policy"),
    PASS(mq_open, "POSIX message queues, in the sandbox's IPC namespace"),
    PASS(mq_unlink, "POSIX message queues, in the sandbox's IPC namespace"),
    PASS(mq_timedsend, "a message queue the sandbox holds"),
    PASS(mq_timedreceive, "a message queue the sandbox holds"),
    PASS(mq_notify, "a message queue the sandbox holds"),
    PASS(mq_getsetattr, "a message queue the sandbox holds"),
    DENY(kexec_load, EPERM, "replaces the host kernel"),
    PASS(waitid, "reaps the caller's children"),
    DENY(add_key, EPERM, "kernel keyrings are not namespaced"),
    DENY(request_key, EPERM, "kernel keyrings are not namespaced"),
    DENY(keyctl, EPERM, "kernel keyrings are not namespaced"),
    PASS(ioprio_set, "I/O priority inside the pid namespace"),
    PASS(ioprio_get, "I/O priority inside the pid namespace"),
    PASS(inotify_init, "creates an inotify fd"),
    PASS_IO(inotify_add_watch, "path, confined by the mount namespace"),
    PASS(inotify_rm_watch, "operates on an inotify fd the sandbox holds"),
    PASS(migrate_pages, "pages of processes inside the pid namespace"),
    PASS_IO(openat, "path, confined by the mount namespace, read-only and masked paths"),
    PASS_IO(mkdirat, "path, confined by the mount namespace"),
    CHECKED(mknodat, POLICY_CHECK_MKNODAT_TYPE, EPERM, POLICY_LATER_IO,
	    "path; only regular files and fifos, never device nodes or sockets"),
    PASS_IO(fchownat, "path, confined by the mount namespace"),
    PASS_IO(futimesat, "path, confined by the mount namespace"),
    PASS_IO(newfstatat, "path, confined by the mount namespace"),
    PASS_IO(unlinkat, "path, confined by the mount namespace"),
    PASS_IO(renameat, "paths, confined by the mount namespace"),
    PASS_IO(linkat, "paths, confined by the mount namespace"),
    PASS_IO(symlinkat, "paths, confined by the mount namespace"),
    PASS_IO(readlinkat, "path, confined by the mount namespace"),
    PASS_IO(fchmodat, "path, confined by the mount namespace"),
    PASS_IO(faccessat, "path, confined by the mount namespace"),
    PASS(pselect6, "waits on fds the sandbox holds"),
    PASS(ppoll, "waits on fds the sandbox holds"),
    DENY(unshare, EPERM, "makes namespaces: the sandbox's are fixed"),
    PASS(set_robust_list, "the caller's own futex list"),
    PASS(get_robust_list, "futex lists inside the pid namespace"),
    PASS(splice, "moves data between fds the sandbox holds"),
    PASS(tee, "moves data between pipes the sandbox holds"),
    PASS(sync_file_range, "flushes an fd the sandbox holds"),
    PASS(vmsplice, "moves the caller's memory into a pipe"),
    PASS(move_pages, "pages of processes inside the pid namespace"),
    PASS_IO(utimensat, "path, confined by the mount namespace"),
    PASS(epoll_pwait, "waits on an epoll fd"),
    PASS(signalfd, "creates a signalfd for the caller"),
    PASS(timerfd_create, "creates a timerfd"),
    PASS(eventfd, "creates an eventfd"),
    PASS(fallocate, "allocates space for an fd; disk quota of the writable layer"),
    PASS(timerfd_settime, "operates on a timerfd"),
    PASS(timerfd_gettime, "operates on a timerfd"),
    PASS_NET(accept4, "accepts on a socket the sandbox holds"),
    PASS(signalfd4, "creates a signalfd for the caller"),
    PASS(eventfd2, "creates an eventfd"),
    PASS(epoll_create1, "creates an epoll fd"),
    PASS(dup3, "duplicates an fd"),
    PASS(pipe2, "creates an anonymous pipe"),
    PASS(inotify_init1, "creates an inotify fd"),
    PASS(preadv, "reads an fd the sandbox holds"),
    PASS(pwritev, "writes an fd the sandbox holds"),
    PASS(rt_tgsigqueueinfo, "signals a thread inside the pid namespace"),
    DENY(perf_event_open, EPERM, "a large kernel surface and a side channel"),
    PASS_NET(recvmmsg, "reads a socket the sandbox holds"),
    DENY(fanotify_init, EPERM, "watches whole filesystems, beyond the sandbox's view"),
    DENY(fanotify_mark, EPERM, "needs a fanotify fd, which cannot be made"),
    PASS(prlimit64, "limits inside the pid namespace; raising needs CAP_SYS_RESOURCE"),
    DENY(name_to_handle_at, EPERM, "file handles escape the mount namespace"),
    DENY(open_by_handle_at, EPERM, "opens any inode of a filesystem by handle (shocker)"),
    DENY(clock_adjtime, EPERM, "the host's clock is not namespaced"),
    PASS(syncfs, "flushes the filesystem of an fd"),
    PASS_NET(sendmmsg, "may name addresses; confined by the network namespace"),
    DENY(setns, EPERM, "enters other namespaces: the sandbox's are fixed"),
    PASS(getcpu, "the caller's CPU"),
    DENY(process_vm_readv, EPERM, "reads another process's memory"),
    DENY(process_vm_writev, EPERM, "writes another process's memory"),
    DENY(kcmp, EPERM, "compares kernel objects: an address-space oracle"),
    DENY(finit_module, EPERM, "loads code into the host kernel"),
    PASS(sched_setattr, "scheduling inside the pid namespace"),
    PASS(sched_getattr, "scheduling inside the pid namespace"),
    PASS_IO(renameat2, "paths, confined by the mount namespace"),
    PASS(seccomp, "can only narrow; the kernel refuses a second listener"),
    PASS(getrandom, "reads the host's entropy pool"),
    PASS(memfd_create, "anonymous memory; charged to the memory cgroup"),
    DENY(kexec_file_load, EPERM, "replaces the host kernel"),
    DENY(bpf, EPERM, "eBPF is a large kernel surface"),
    PASS_IO(execveat, "runs a file from the sandbox's rootfs"),
    DENY(userfaultfd, EPERM, "stalls kernel accesses at will: widens kernel races"),
    PASS(membarrier, "barriers among the caller's threads"),
    PASS(mlock2, "locks the caller's memory; RLIMIT_MEMLOCK and the memory cgroup"),
    PASS(copy_file_range, "copies between fds the sandbox holds"),
    PASS(preadv2, "reads an fd the sandbox holds"),
    PASS(pwritev2, "writes an fd the sandbox holds"),
    PASS(pkey_mprotect, "the caller's own memory protection keys"),
    PASS(pkey_alloc, "the caller's own memory protection keys"),
    PASS(pkey_free, "the caller's own memory protection keys"),
    PASS_IO(statx, "path, confined by the mount namespace"),
    PASS(io_pgetevents, "Linux AIO on the caller's context"),
    PASS(rseq, "the caller's own restartable sequences"),
    PASS(pidfd_send_signal, "signals a process the sandbox holds a pidfd for"),
    DENY(io_uring_setup, EPERM, "io_uring bypasses this filter (its ops are not syscalls)"),
    DENY(io_uring_enter, EPERM, "io_uring bypasses this filter"),
    DENY(io_uring_register, EPERM, "io_uring bypasses this filter"),
    DENY(open_tree, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(move_mount, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(fsopen, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(fsconfig, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(fsmount, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(fspick, EPERM, "new mount API: the sandbox's mounts are fixed"),
    PASS(pidfd_open, "a pidfd for a process inside the pid namespace"),
    DENY_BPF(clone3, ENOSYS, "its flags live in memory BPF cannot read; libc falls back to clone"),
    PASS(close_range, "releases fds"),
    PASS_IO(openat2, "path, confined by the mount namespace"),
    DENY(pidfd_getfd, EPERM, "steals an fd from another process"),
    PASS_IO(faccessat2, "path, confined by the mount namespace"),
    PASS(process_madvise, "advice on memory of a process the sandbox holds a pidfd for"),
    PASS(epoll_pwait2, "waits on an epoll fd"),
    DENY(mount_setattr, EPERM, "new mount API: the sandbox's mounts are fixed"),
    DENY(quotactl_fd, EPERM, "host filesystem quotas"),
    PASS(landlock_create_ruleset, "Landlock can only narrow"),
    PASS(landlock_add_rule, "Landlock can only narrow"),
    PASS(landlock_restrict_self, "Landlock can only narrow"),
    PASS(memfd_secret, "anonymous memory hidden from the kernel; charged to the memory "
		       "cgroup"),
    PASS(process_mrelease, "frees memory of a dying process the sandbox holds a pidfd for"),
    PASS(futex_waitv, "waits on the caller's memory"),
    PASS(set_mempolicy_home_node, "NUMA policy of the caller's memory"),
    PASS(cachestat, "page-cache state of an fd the sandbox holds"),
    PASS_IO(fchmodat2, "path, confined by the mount namespace"),
    PASS(map_shadow_stack, "the caller's own shadow stack"),
    PASS(futex_wake, "wakes on the caller's memory"),
    PASS(futex_wait, "waits on the caller's memory"),
    PASS(futex_requeue, "requeues on the caller's memory"),
};

/* CLONE_NEWTIME (0x80) lies inside CSIGNAL for clone(2) (exit signal 128,
 * which the kernel rejects anyway); it is in the mask so that any way it
 * could reach the kernel as a namespace flag is refused. */
#define CLONE_NS_FLAGS                                                                             \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	 CLONE_NEWCGROUP | 0x00000080u /* CLONE_NEWTIME */)

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#ifndef PR_GET_AUXV
#define PR_GET_AUXV 0x41555856
#endif
#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif

/* prctl options that act only on the caller (or narrow it).  Left out on
 * purpose: PR_SET_MM (rewrites the caller's mm layout, needs
 * CAP_SYS_RESOURCE), PR_SET_SYSCALL_USER_DISPATCH, PR_SET_IO_FLUSHER,
 * PR_SCHED_CORE, PR_MCE_KILL, PR_SET_TSC, PR_SET_SPECULATION_CTRL. */
static const uint32_t prctl_allowed[] = {
    PR_SET_PDEATHSIG,
    PR_GET_PDEATHSIG,
    PR_GET_DUMPABLE,
    PR_SET_DUMPABLE,
    PR_GET_KEEPCAPS,
    PR_SET_KEEPCAPS,
    PR_GET_TIMING,
    PR_SET_NAME,
    PR_GET_NAME,
    PR_GET_SECCOMP,
    PR_SET_SECCOMP,
    PR_CAPBSET_READ,
    PR_CAPBSET_DROP,
    PR_GET_SECUREBITS,
    PR_SET_SECUREBITS,
    PR_GET_TIMERSLACK,
    PR_SET_TIMERSLACK,
    PR_SET_CHILD_SUBREAPER,
    PR_GET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_TID_ADDRESS,
    PR_SET_THP_DISABLE,
    PR_GET_THP_DISABLE,
    PR_CAP_AMBIENT,
    PR_GET_SPECULATION_CTRL,
    PR_SET_MDWE,
    PR_GET_MDWE,
    PR_GET_AUXV,
    PR_SET_VMA,
    PR_SET_PTRACER,
};

/* Docker's set: PER_LINUX, PER_LINUX32, UNAME26 and both, and the query.
 * Not READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE or foreign execution domains. */
static const uint32_t personality_allowed[] = {
    PER_LINUX, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, 0xffffffffu,
};

static const uint32_t socket_allowed[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
static const uint32_t socketpair_allowed[] = {AF_UNIX};

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

const uint32_t *policy_check_values(enum policy_check check, size_t *n_out)
{
	switch (check) {
	case POLICY_CHECK_PRCTL_OPTION:
		*n_out = ARRAY_SIZE(prctl_allowed);
		return prctl_allowed;
	case POLICY_CHECK_PERSONALITY:
		*n_out = ARRAY_SIZE(personality_allowed);
		return personality_allowed;
	case POLICY_CHECK_SOCKET_FAMILY:
		*n_out = ARRAY_SIZE(socket_allowed);
		return socket_allowed;
	case POLICY_CHECK_SOCKETPAIR_FAMILY:
		*n_out = ARRAY_SIZE(socketpair_allowed);
		return socketpair_allowed;
	default:
		*n_out = 0;
		return NULL;
	}
}

uint64_t policy_clone_ns_flags(void)
{
	return CLONE_NS_FLAGS;
}

const uint32_t *policy_ioctl_denied(size_t *n_out)
{
	static const uint32_t denied[] = {TIOCSTI, TIOCLINUX};

	*n_out = ARRAY_SIZE(denied);
	return denied;
}

static bool in_list(uint32_t v, const uint32_t *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == v)
			return true;
	return false;
}

static bool mknod_type_ok(uint64_t mode)
{
	/* The kernel takes mode as umode_t; only the S_IFMT bits matter here,
	 * and 0 means a regular file. */
	uint32_t type = (uint32_t)mode & S_IFMT;

	return type == 0 || type == S_IFREG || type == S_IFIFO;
}

int policy_check_errno(const struct policy_entry *e, const uint64_t args[6])
{
	const uint32_t *list;
	size_t n;

	switch (e->check) {
	case POLICY_CHECK_NONE:
		return 0;
	case POLICY_CHECK_CLONE_FLAGS:
		/* The kernel reads the low 32 bits of clone's flags. */
		return ((uint32_t)args[0] & CLONE_NS_FLAGS) ? e->err : 0;
	case POLICY_CHECK_IOCTL_CMD:
		list = policy_ioctl_denied(&n);
		return in_list((uint32_t)args[1], list, n) ? e->err : 0;
	case POLICY_CHECK_PRCTL_OPTION:
	case POLICY_CHECK_PERSONALITY:
	case POLICY_CHECK_SOCKET_FAMILY:
	case POLICY_CHECK_SOCKETPAIR_FAMILY:
		list = policy_check_values(e->check, &n);
		return in_list((uint32_t)args[0], list, n) ? 0 : e->err;
	case POLICY_CHECK_MKNOD_TYPE:
		return mknod_type_ok(args[1]) ? 0 : e->err;
	case POLICY_CHECK_MKNODAT_TYPE:
		return mknod_type_ok(args[2]) ? 0 : e->err;
	}
	return e->err ? e->err : EPERM;
}

const char *policy_check_describe(enum policy_check check)
{
	switch (check) {
	case POLICY_CHECK_NONE:
		return "";
	case POLICY_CHECK_CLONE_FLAGS:
		return "flags (low 32 bits) carry no CLONE_NEW* flag";
	case POLICY_CHECK_IOCTL_CMD:
		return "cmd (32-bit) is not TIOCSTI or TIOCLINUX";
	case POLICY_CHECK_PRCTL_OPTION:
		return "option (32-bit) in an allowlist of options acting on the caller";
	case POLICY_CHECK_PERSONALITY:
		return "persona (32-bit) is PER_LINUX, PER_LINUX32, UNAME26 or the query";
	case POLICY_CHECK_SOCKET_FAMILY:
		return "domain (32-bit) is AF_UNIX, AF_INET, AF_INET6 or AF_NETLINK";
	case POLICY_CHECK_SOCKETPAIR_FAMILY:
		return "domain (32-bit) is AF_UNIX";
	case POLICY_CHECK_MKNOD_TYPE:
	case POLICY_CHECK_MKNODAT_TYPE:
		return "mode's file type is regular or fifo";
	}
	return "";
}

const struct policy_entry *policy_lookup(int nr)
{
	if (nr < 0 || nr >= POLICY_NR_LIMIT || !policy_by_nr[nr].name[0])
		return NULL;
	return &policy_by_nr[nr];
}

policy_emulate_fn policy_emulator(const struct policy_entry *e)
{
	switch (e->emulator) {
	case POLICY_EMULATOR_SYSINFO:
		return sys_sysinfo;
	case POLICY_EMULATOR_NONE:
		break;
	}
	return NULL;
}

const struct policy_entry *policy_next(const struct policy_entry *prev)
{
	size_t i = prev ? (size_t)(prev - policy_by_nr) + 1 : 0;

	for (; i < POLICY_NR_LIMIT; i++)
		if (policy_by_nr[i].name[0])
			return &policy_by_nr[i];
	return NULL;
}

const char *policy_action_name(enum policy_action a)
{
	switch (a) {
	case POLICY_PASS:
		return "PASS";
	case POLICY_EMULATE:
		return "EMULATE";
	case POLICY_DENY:
		return "DENY";
	}
	return "?";
}

const char *policy_entry_note(const struct policy_entry *e)
{
	if (e->later == POLICY_LATER_IO)
		return sys_iod_serves(e->nr)	? "IO: iod with io.quiver.iod=on"
		       : sys_iod_watches(e->nr) ? "IO: not routed yet; traps with iod"
						: "IO: not routed yet (issue 4)";
	if (e->later == POLICY_LATER_NONE && sys_iod_watches(e->nr))
		return "traps with iod (credentials)";
	if (e->later == POLICY_LATER_NONE && sys_offload_serves(e->nr))
		return "IO: iod with io.quiver.iod=offload-all (regular files)";
	if (e->later == POLICY_LATER_NONE && sys_offload_watches(e->nr))
		return "traps with offload-all (drops iod's copies)";
	return policy_later_note(e->later);
}

const char *policy_later_note(enum policy_later l)
{
	switch (l) {
	case POLICY_LATER_NONE:
		return "";
	case POLICY_LATER_IO:
		return "IO: iod, issue 4";
	case POLICY_LATER_NET:
		return "NET: netd, issue 5";
	}
	return "";
}

static const char *errno_name(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

void policy_describe_action(const struct policy_entry *e, char *buf, size_t size)
{
	switch (e->action) {
	case POLICY_PASS:
		if (e->check != POLICY_CHECK_NONE)
			snprintf(buf, size, "PASS if %s, else DENY(%s)",
				 policy_check_describe(e->check), errno_name(e->err));
		else
			snprintf(buf, size, "PASS");
		return;
	case POLICY_EMULATE:
		snprintf(buf, size, "EMULATE");
		return;
	case POLICY_DENY:
		snprintf(buf, size, "DENY(%s)%s", errno_name(e->err),
			 e->in_kernel ? " in-kernel, not counted" : "");
		return;
	}
	snprintf(buf, size, "?");
}

void policy_stats(struct policy_stats *st)
{
	const struct policy_entry *e;

	memset(st, 0, sizeof(*st));
	policy_foreach(e)
	{
		st->total++;
		st->by_action[e->action]++;
		st->checked += e->check != POLICY_CHECK_NONE;
		st->in_kernel += e->in_kernel;
		st->later_io += e->later == POLICY_LATER_IO;
		st->later_net += e->later == POLICY_LATER_NET;
	}
}

static const char default_text[] =
    "not in the table: DENY(ENOSYS), counted; i386 (int 0x80) and x32 calls: the process is "
    "killed (SIGSYS) in-kernel";

static int print_table(FILE *out)
{
	const struct policy_entry *e;
	char act[192];

	fprintf(out, "%-4s %-24s %-40s %-18s %s\n", "NR", "SYSCALL", "TODAY", "LATER", "WHY");
	policy_foreach(e)
	{
		policy_describe_action(e, act, sizeof(act));
		/* The check's wording is long; the table keeps one line. */
		if (e->check != POLICY_CHECK_NONE)
			snprintf(act, sizeof(act), "PASS if args ok, else DENY(%s)",
				 errno_name(e->err));
		fprintf(out, "%-4d %-24s %-40s %-18s %s\n", e->nr, e->name, act,
			policy_entry_note(e), e->why);
	}
	fprintf(out, "default: %s\n", default_text);
	return 0;
}

/* Markdown table cells: a '|' would split the cell. */
static void md_cell(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else
			fputc(*s, out);
	}
}

static int print_markdown(FILE *out)
{
	const struct policy_entry *e;
	struct policy_stats st;
	char act[192];

	policy_stats(&st);
	fprintf(out,
		"%u syscalls in the table: %u PASS (%u with an argument check; %u to move to iod, "
		"%u to netd), %u EMULATE, %u DENY (%u of them in-kernel).  Default: %s.\n\n",
		st.total, st.by_action[POLICY_PASS], st.checked, st.later_io, st.later_net,
		st.by_action[POLICY_EMULATE], st.by_action[POLICY_DENY], st.in_kernel,
		default_text);
	fputs("| nr | syscall | today | later | why |\n", out);
	fputs("|---:|---|---|---|---|\n", out);
	policy_foreach(e)
	{
		policy_describe_action(e, act, sizeof(act));
		fprintf(out, "| %d | `%s` | ", e->nr, e->name);
		md_cell(out, act);
		fputs(" | ", out);
		md_cell(out, policy_entry_note(e));
		fputs(" | ", out);
		md_cell(out, e->why);
		fputs(" |\n", out);
	}
	return 0;
}

static const char *check_name(enum policy_check c)
{
	switch (c) {
	case POLICY_CHECK_NONE:
		return NULL;
	case POLICY_CHECK_CLONE_FLAGS:
		return "clone_flags";
	case POLICY_CHECK_IOCTL_CMD:
		return "ioctl_cmd";
	case POLICY_CHECK_PRCTL_OPTION:
		return "prctl_option";
	case POLICY_CHECK_PERSONALITY:
		return "personality";
	case POLICY_CHECK_SOCKET_FAMILY:
		return "socket_family";
	case POLICY_CHECK_SOCKETPAIR_FAMILY:
		return "socketpair_family";
	case POLICY_CHECK_MKNOD_TYPE:
	case POLICY_CHECK_MKNODAT_TYPE:
		return "mknod_type";
	}
	return NULL;
}

static int print_json(FILE *out, struct qerr *err)
{
	const struct policy_entry *e;
	json_t *root, *arr;
	int rc = 0;

	root = json_object();
	arr = json_array();
	if (!root || !arr) {
		json_decref(root);
		json_decref(arr);
		return qerr_set(err, ENOMEM, "policy: out of memory");
	}
	json_object_set_new(root, "arch", json_string("x86_64"));
	json_object_set_new(root, "default", json_string("DENY"));
	json_object_set_new(root, "default_errno", json_string("ENOSYS"));
	json_object_set_new(root, "non_native_abi", json_string("KILL_PROCESS"));
	policy_foreach(e)
	{
		json_t *o = json_object();
		const char *cn = check_name(e->check);

		if (!o) {
			rc = qerr_set(err, ENOMEM, "policy: out of memory");
			goto out;
		}
		json_object_set_new(o, "nr", json_integer(e->nr));
		json_object_set_new(o, "name", json_string(e->name));
		json_object_set_new(o, "action", json_string(policy_action_name(e->action)));
		if (e->err)
			json_object_set_new(o, "errno", json_string(errno_name(e->err)));
		if (cn) {
			json_object_set_new(o, "check", json_string(cn));
			json_object_set_new(o, "check_text",
					    json_string(policy_check_describe(e->check)));
		}
		if (e->in_kernel)
			json_object_set_new(o, "in_kernel", json_true());
		if (*policy_entry_note(e))
			json_object_set_new(o, "later", json_string(policy_entry_note(e)));
		json_object_set_new(o, "why", json_string(e->why));
		json_array_append_new(arr, o);
	}
	json_object_set(root, "syscalls", arr);
	if (json_dumpf(root, out, JSON_INDENT(2)) < 0) {
		rc = qerr_set(err, EIO, "policy: write failed");
		goto out;
	}
	fputc('\n', out);
out:
	json_decref(arr);
	json_decref(root);
	return rc;
}

int policy_print(FILE *out, const char *format, struct qerr *err)
{
	int rc;

	if (!format || !strcmp(format, "table"))
		rc = print_table(out);
	else if (!strcmp(format, "markdown"))
		rc = print_markdown(out);
	else if (!strcmp(format, "json"))
		rc = print_json(out, err);
	else
		return qerr_set(err, EINVAL,
				"policy: unknown format \"%s\" (table, json, markdown)", format);
	if (rc < 0)
		return rc;
	if (fflush(out) != 0 || ferror(out))
		return qerr_sys(err, errno ? errno : EIO, "policy: write");
	return 0;
}
