/* The guest kernel's side of iod (libcommon/iod_proto.h): one connection
 * and ring pair per sandbox, made by the supervisor after pivot_root and
 * before the workload exists.  Calls are synchronous: the supervisor
 * pushes one request and waits for its completion. */
#ifndef QUIVER_GUEST_IOD_CLIENT_H
#define QUIVER_GUEST_IOD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/iod_proto.h"
#include "libcommon/ring.h"

struct iod_client {
	int rundir; /* O_PATH: vmmd's root, where iod.sock is (kept for reconnects) */
	int rootfd; /* O_PATH: the sandbox's root, "/" after pivot_root */
	int conn;   /* -1 while detached */
	bool attached;
	struct ring ring;
	char id[128];
	uint64_t seq;
	uint64_t reconnects;
};

/* Connect for the first time: -errno with err filled (iod not running...). */
int iod_client_open(struct iod_client *c, int state_dirfd, const char *id, struct qerr *err);

/* One call.  req->hdr.opcode, the fields and paths are the caller's;
 * hdr.len and user_data are set here.  On return resp holds the
 * completion (res < 0: -errno) and *fd the fd that came with it (or -1).
 * -EIO when iod is gone (a reconnect is tried at the next call), -ENOENT
 * when the notification died while waiting (valid() said so). */
int iod_client_call(struct iod_client *c, struct iod_req *req, struct iod_resp *resp, int *fd,
		    bool (*valid)(void *), void *arg);

void iod_client_close(struct iod_client *c);

#endif
