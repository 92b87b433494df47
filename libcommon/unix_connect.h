/* connect(2) to a unix socket named by a path of any length.
 *
 * sun_path holds 107 bytes and a name.  A runtime root chosen by a client
 * (containerd's Root/NAMESPACE, a podman test's temporary directory) plus a
 * 64-character container id plus "/guest.sock" can pass that; such a path
 * is reached through an O_PATH descriptor of its directory, as
 * /proc/self/fd/N/NAME, the way the binding side already names it. */
#ifndef QUIVER_UNIX_CONNECT_H
#define QUIVER_UNIX_CONNECT_H

/* 0, or -errno (-ENAMETOOLONG if even the /proc form does not fit). */
int unix_connect(int fd, const char *path);

#include <stdbool.h>

#include "libcommon/err.h"

/* A new SOCK_SEQPACKET socket (close-on-exec, plus the SOCK_* in flags)
 * connected to NAME in the directory dirfd, which need not be reachable by
 * any path (a supervisor's view after pivot_root, no /proc needed):
 * connect(2) has no *at form, so the caller's cwd moves there and back.
 * The fd, or -errno. */
int unix_connect_at(int dirfd, const char *name, int flags);

/* A daemon's listening socket DIR/NAME: SOCK_SEQPACKET, non-blocking,
 * close-on-exec, mode 0600 (root's daemons and supervisors only), a stale
 * socket file replaced.  The fd, or -errno with err filled. */
int unix_listen_seqpacket(const char *dir, const char *name, struct qerr *err);

/* Whether the other end of the connected socket fd has closed (or the
 * socket failed), without waiting and without reading anything. */
bool unix_peer_gone(int fd);

#endif
