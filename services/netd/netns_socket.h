/* A socket in another network namespace.
 *
 * A socket belongs to the netns it was created in, for its whole life,
 * whichever thread uses it later.  So a short-lived thread setns()es into
 * the target and creates the socket there; netd's own threads never leave
 * its netns (services/poold/netns_pool.c says why that matters: a thread
 * stranded in a sandbox's netns would open every later socket there).
 * setns(CLONE_NEWNET) moves only the calling thread, so this is safe beside
 * the daemon's other threads. */
#ifndef QUIVER_NETD_NETNS_SOCKET_H
#define QUIVER_NETD_NETNS_SOCKET_H

#include "libcommon/err.h"

/* socket(domain, type, protocol) in the netns of nsfd; returns the fd
 * (SOCK_CLOEXEC is added) or a negative errno. */
int netns_socket(int nsfd, int domain, int type, int protocol, struct qerr *err);

/* 1 when nsfd is a network namespace other than the caller's, 0 when it is
 * the caller's own, or a negative errno (-EINVAL: not a network
 * namespace). */
int netns_is_other(int nsfd, struct qerr *err);

#endif
