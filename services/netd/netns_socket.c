/* A socket in another network namespace (netns_socket.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/nsfs.h>

#include "services/netd/netns_socket.h"

struct ns_socket_args {
	int nsfd, domain, type, protocol;
	int fd;
	int err;
	const char *step;
};

static void *ns_socket_thread(void *arg)
{
	struct ns_socket_args *a = arg;

	if (setns(a->nsfd, CLONE_NEWNET) < 0) {
		a->err = errno;
		a->step = "setns";
		return NULL;
	}
	a->fd = socket(a->domain, a->type | SOCK_CLOEXEC, a->protocol);
	if (a->fd < 0) {
		a->err = errno;
		a->step = "socket";
	}
	return NULL;
}

int netns_socket(int nsfd, int domain, int type, int protocol, struct qerr *err)
{
	struct ns_socket_args a = {nsfd, domain, type, protocol, -1, 0, NULL};
	sigset_t all, old;
	pthread_t t;
	int r;

	/* The thread starts with every signal blocked: no handler of the
	 * daemon's runs in a thread that is in another netns. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&t, NULL, ns_socket_thread, &a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return qerr_sys(err, r, "socket in netns: thread");
	pthread_join(t, NULL);
	if (a.fd < 0)
		return qerr_sys(err, a.err, "socket in netns: %s", a.step);
	return a.fd;
}

int netns_is_other(int nsfd, struct qerr *err)
{
	struct stat theirs, ours;
	int type = ioctl(nsfd, NS_GET_NSTYPE);

	if (type < 0)
		return qerr_sys(err, errno == ENOTTY ? EINVAL : errno,
				"netns fd %d: not a namespace", nsfd);
	if (type != CLONE_NEWNET)
		return qerr_set(err, EINVAL, "netns fd %d: not a network namespace", nsfd);
	if (fstat(nsfd, &theirs) < 0)
		return qerr_sys(err, errno, "netns fd %d: stat", nsfd);
	if (stat("/proc/thread-self/ns/net", &ours) < 0)
		return qerr_sys(err, errno, "/proc/thread-self/ns/net");
	return theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino;
}
