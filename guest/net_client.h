/* The guest kernel's side of netd (libcommon/net_proto.h) and the socket
 * service of quiver mode (guest/sys_net.c; docs/netd.md).
 *
 * The supervisor opens the client after pivot_root, before the workload
 * exists: the hello gives netd the sandbox's network namespace, and netd
 * answers once the sandbox has its address (bridge and quiver modes).  In
 * quiver mode the supervisor then serves the workload's TCP socket calls:
 * a connect to a port another sandbox on this node listens on gets a
 * stream pair from netd instead of a TCP connection, an accept hands the
 * workload the other end.  What the loop must watch comes through watch(). */
#ifndef QUIVER_GUEST_NET_CLIENT_H
#define QUIVER_GUEST_NET_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"

struct guest_config;
struct net_client;

enum net_mode { NET_MODE_NONE = 0, NET_MODE_BRIDGE, NET_MODE_QUIVER };

/* The bundle's choice (annotation io.quiver.net): NET_MODE_*, or -errno
 * with err filled (a bad value; a mode that needs the sandbox's own
 * network namespace or /proc without them). */
int net_mode_from_config(const struct guest_config *cfg, struct qerr *err);

/* Connect to netd (ROOT/netd.sock, ROOT the parent of state_dirfd) and
 * set the sandbox's network up.  Blocks until netd answers. */
int net_client_open(struct net_client **out, int state_dirfd, const char *id,
		    const struct guest_config *cfg, enum net_mode mode, struct qerr *err);

/* fd is to be watched for events (add) or no longer (!add); dispatch with
 * net_client_event.  Called at once for the fds watched already. */
typedef void (*net_watch_fn)(void *arg, int fd, uint32_t events, bool add);
void net_client_set_watch(struct net_client *c, net_watch_fn fn, void *arg);
void net_client_event(struct net_client *c, int fd, uint32_t events);

#endif
