/* The launcher's channel with a supervisor (docs/guest-protocol.md): fixed
 * size messages on a SOCK_SEQPACKET socket.  For a cold start G holds one
 * end; for a warm start the assigner (qctl or vmmd) does, after sending
 * the assignment with the workload's stdio attached.  The workload's
 * hello carries its credentials (SO_PASSCRED on the launcher's end): that
 * is how the launcher learns W's pid in its own pid namespace. */
#ifndef QUIVER_LAUNCH_PROTO_H
#define QUIVER_LAUNCH_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "libcommon/err.h"

enum gs_msg_type { GS_GO = 1, GS_HELLO_W, GS_READY, GS_ERROR };
struct gs_msg {
	int32_t type;
	int32_t code;
	char msg[QERR_MSG_MAX];
};

/* poold to a waiting warm supervisor on its sync socket: you are taken.
 * The bundle's path may follow the NUL (the datagram's length ends it). */
#define WARM_TAKEN "taken"

/* The state files a warm supervisor makes ahead next to its socket SOCK,
 * as SOCK.<suffix> (guest/warm.c): its counters, guest.log and guest.sock,
 * in that order.  poold removes what an unassigned one leaves. */
#define WARM_PREMADE_N 3
extern const char *const warm_premade_suffix[WARM_PREMADE_N];

/* One message and, if it came with credentials, the sender's pid (else
 * 0).  Returns 1, 0 for end of file or a short message, -errno (EAGAIN with
 * MSG_DONTWAIT in flags). */
int gs_recv(int fd, struct gs_msg *m, pid_t *cred_pid, int flags);
/* The launcher's part for one received message: W's hello is answered
 * with its pid (*w_host is set), READY returns 1, HELLO 0, ERROR or a bad
 * message a negative errno with err filled. */
int gs_handle(int fd, const struct gs_msg *m, pid_t cred_pid, pid_t *w_host, struct qerr *err);
/* data with nfds fds as SCM_RIGHTS (nfds may be 0). */
int send_with_fds(int fd, const void *data, size_t len, const int *fds, int nfds);
/* One message and at most one fd (*fd = -1 when none came), close-on-exec.
 * Returns bytes or -errno (-EMSGSIZE for a truncated message or control
 * data, whose fds are closed; -EAGAIN on a non-blocking socket). */
ssize_t recv_fd(int sock, void *buf, size_t len, int *fd);
/* The same for up to max fds (the rest are closed); unused slots are -1. */
ssize_t recv_fds(int sock, void *buf, size_t len, int *fds, int max);

#endif
