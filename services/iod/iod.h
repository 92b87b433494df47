/* quiver-iod: the sandboxes' file syscalls, executed on the host.
 *
 *	main.c		start-up, the epoll loop, connections and hellos
 *	exec.c		one request from ring entry to completion: the steps,
 *			on io_uring (batched across sandboxes) or as plain
 *			syscalls (--mode sync)
 *	iod_metrics.c	/metrics
 *
 * docs/iod.md has the design. */
#ifndef QUIVER_IOD_H
#define QUIVER_IOD_H

#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/iod_proto.h"
#include "libcommon/ring.h"

#define IOD_VERSION "0.1"

#define IOD_CROSSING_MAX  16
#define IOD_CROSSING_NAME 32

/* One attached sandbox. */
struct sbx {
	struct sbx *next;
	int conn;     /* the guest's seqpacket connection */
	int rootfd;   /* the sandbox's root, from the guest */
	bool root_ro; /* a read-only mount: answers from it alone may be cached */
	/* First names of paths whose walk met a mount (EXDEV under
	 * RESOLVE_NO_XDEV): lookups below them are not tried for the guest's
	 * cache again (exec.c, "crossing"). */
	char crossing[IOD_CROSSING_MAX][IOD_CROSSING_NAME];
	unsigned n_crossing;
	struct ring ring;
	char id[128];
	unsigned inflight;    /* requests popped, not yet completed */
	bool dead;	      /* connection gone: freed when inflight drops to 0 */
	bool broken;	      /* the ring is unusable: drop the sandbox */
	struct job *overflow; /* completions waiting for CQ room, oldest first */
	struct job **overflow_tail;
	uint64_t ops;
	/* Before its hello: the next connection waiting for one, and when
	 * its hello is due (CLOCK_MONOTONIC, ns). */
	struct sbx *gnext;
	uint64_t hello_due;
	/* Offload-all (IOD_HELLO_OFFLOAD_ALL): the data area, mapped here and
	 * by the guest, and the files the guest registered (-1: none). */
	unsigned char *data;
	int files[IOD_FILES_MAX];
	/* epoll tags */
	struct iod_ev {
		int kind;
		struct sbx *sb;
	} ev_conn, ev_sq;
};

enum iod_mode { IOD_MODE_URING, IOD_MODE_SYNC };

struct iod {
	char root[PATH_MAX];
	int rootfd;
	int listen_fd;
	int epfd;
	enum iod_mode mode;
	bool stopping;
	struct io_uring uring;
	bool uring_ok;
	unsigned sq_pending;  /* SQEs prepared, not submitted */
	pthread_mutex_t lock; /* guards the list for the metrics thread */
	struct sbx *sandboxes;
	unsigned n_sandboxes;
	unsigned budget;  /* requests taken per sandbox per loop turn */
	unsigned spin_us; /* after work, poll the rings this long before sleeping */
	/* Connections that have not sent their hello yet, oldest first: each
	 * is closed if its hello has not come within hello_ms. */
	struct sbx *greeting;
	unsigned n_greeting;
	unsigned hello_ms;
	int hello_timer_fd;
};

extern struct iod iod;

/* exec.c */
int exec_init(struct qerr *err);
void exec_fini(void);
/* Take what the sandbox's SQ holds (up to the budget) and start it. */
unsigned exec_drain(struct sbx *sb); /* how many it took */
/* Submit what the drains prepared; reap io_uring completions. */
void exec_submit(void);
unsigned exec_reap(void); /* CQEs reaped */
/* Retry completions that found the CQ full. */
void exec_flush_overflow(struct sbx *sb);
bool exec_has_overflow(void);
int exec_uring_fd(void);
/* Close the sandbox's registered files (when it is freed). */
void exec_files_close(struct sbx *sb);

/* main.c: a sandbox is done with (its last job completed after it died). */
void sbx_maybe_free(struct sbx *sb);

/* iod_metrics.c */
int iod_metrics_start(const char *addr, struct qerr *err);
void iod_metrics_stop(void);
void iod_metrics_op(unsigned op, int64_t res, double seconds);
void iod_metrics_batch(unsigned n);
void iod_metrics_inline(void);
void iod_metrics_xdev_walk(void);
void iod_metrics_wakeup(void);

#endif
