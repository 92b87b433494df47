/* Reading and writing the workload's memory for emulated syscalls. */
#include <errno.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include "guest/policy.h"

/* The trapped task is still blocked in this very syscall, so its pid still
 * names it (SECCOMP_IOCTL_NOTIF_ID_VALID). */
int sys_notif_valid(const struct policy_call *call)
{
	uint64_t id = call->id;

	if (ioctl(call->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
		return -ENOENT;
	return 0;
}

int sys_copy_from_user(const struct policy_call *call, void *dst, uint64_t addr, size_t len)
{
	struct iovec local = {.iov_base = dst, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
	ssize_t n;

	if (len == 0)
		return sys_notif_valid(call);
	n = process_vm_readv(call->pid, &local, 1, &remote, 1, 0);
	if (n < 0 && errno == ESRCH)
		return -ENOENT;
	if (n < 0 || (size_t)n != len)
		return -EFAULT;
	/* Only now are the bytes known to be the trapped task's. */
	return sys_notif_valid(call);
}

int sys_copy_to_user(const struct policy_call *call, uint64_t addr, const void *src, size_t len)
{
	struct iovec local = {.iov_base = (void *)src, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
	ssize_t n;
	int rc;

	rc = sys_notif_valid(call);
	if (rc < 0 || len == 0)
		return rc;
	n = process_vm_writev(call->pid, &local, 1, &remote, 1, 0);
	if (n < 0 && errno == ESRCH)
		return -ENOENT;
	if (n < 0 || (size_t)n != len)
		return -EFAULT;
	/* No second check: a task gone by now fails the answer itself. */
	return 0;
}
