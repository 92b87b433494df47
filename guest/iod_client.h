/* The guest kernel's side of iod (libcommon/iod_proto.h): one connection
 * and ring pair per sandbox, made by the supervisor after pivot_root and
 * before the workload exists.
 *
 * Calls are asynchronous: iod_client_submit queues a request with a
 * completion callback; the supervisor's loop watches the fds that
 * watch() was told about and calls iod_client_dispatch, which runs the
 * callbacks of what completed.  A request that blocks in iod (a FIFO's
 * open) so holds nothing else up.  iod_client_call is the synchronous form
 * (it dispatches other completions while it waits). */
#ifndef QUIVER_GUEST_IOD_CLIENT_H
#define QUIVER_GUEST_IOD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/iod_proto.h"
#include "libcommon/ring.h"

/* resp NULL: iod is gone, the call failed (EIO).  fd: the file that came
 * with the completion (the callback owns it), or -1. */
typedef void (*iod_done_fn)(void *arg, const struct iod_resp *resp, int fd);

struct iod_pending {
	uint64_t ud; /* 0: free */
	iod_done_fn done;
	void *arg;
	uint64_t sent_ns; /* CLOCK_MONOTONIC at submit: the spin's measure */
};

struct iod_client {
	int rundir; /* O_PATH: vmmd's root, where iod.sock is (kept for reconnects) */
	int rootfd; /* O_PATH: the sandbox's root, "/" after pivot_root */
	int conn;   /* -1 while detached */
	bool attached;
	struct ring ring;
	char id[128];
	uint64_t seq;
	uint64_t reconnects;
	long spin_ns;	     /* how long dispatch(spin) polls now (adaptive) */
	int cache;	     /* io.quiver.iod.cache: keep cacheable answers (meta_cache.h) */
	bool root_ro;	     /* iod says the root is a read-only mount (IOD_WELCOME_ROOT_RO) */
	bool offload;	     /* offload-all asked for: reads and writes through iod too */
	unsigned char *data; /* offload-all: the data area, while attached */
	/* Called when the connection ends (iod's handles are gone with it). */
	void (*detached)(void *arg);
	void *detached_arg;
	struct iod_pending pend[IOD_RING_ENTRIES];
	unsigned npend;
	/* Told about the fds to watch after each (re)attach and before each
	 * detach: the CQ eventfd (readable: call dispatch) and the connection
	 * (hang-up: call dispatch, which fails what is pending). */
	void (*watch)(void *arg, int fd, bool add);
	void *watch_arg;
};

/* Connect for the first time: -errno with err filled (iod not running...).
 * offload: ask for offload-all (IOD_HELLO_OFFLOAD_ALL) and map the data area. */
int iod_client_open(struct iod_client *c, int state_dirfd, const char *id, bool offload,
		    struct qerr *err);

/* Queue one request.  req->hdr.opcode, the fields and paths are the
 * caller's, and of hdr.flags IOD_REQ_CACHE; hdr.len, IOD_REQ_FD and
 * user_data are set here.  with_fd >= 0:
 * sent to iod ahead of the request (IOD_REQ_FD; the caller keeps its
 * copy).  0, or -EIO when iod is gone (a reconnect is tried at the next
 * submit), -EAGAIN when IOD_RING_ENTRIES calls are already in flight. */
int iod_client_submit(struct iod_client *c, struct iod_req *req, int with_fd, iod_done_fn done,
		      void *arg);
/* Run the callbacks of what completed; after a short spin when spin is
 * true.  Re-arms the wake-up before returning. */
void iod_client_dispatch(struct iod_client *c, bool spin);

/* One call, waited for.  On return resp holds the completion (res < 0:
 * -errno) and *fd the fd that came with it (or -1).  -EIO when iod is gone,
 * -ENOENT when the notification died while waiting (valid() said so). */
int iod_client_call(struct iod_client *c, struct iod_req *req, int with_fd, struct iod_resp *resp,
		    int *fd, bool (*valid)(void *), void *arg);

void iod_client_close(struct iod_client *c);
/* Set the watch callback (and call it for the fds watched now). */
void iod_client_set_watch(struct iod_client *c, void (*fn)(void *, int, bool), void *arg);

#endif
