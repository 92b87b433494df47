/* quiver-vmmd: sandbox lifecycle, registry and state directory.
 *
 * One libuv loop serves the control socket (SP REP) and publishes events (SP
 * PUB), both spoken by libcommon/sp.c, and watches every sandbox's supervisor through a
 * pidfd.  vmmd is the only writer of ROOT/ID/state.json; everything else in ROOT/ID belongs to the
 * guest (docs/guest-protocol.md). */
#ifndef QUIVER_VMMD_H
#define QUIVER_VMMD_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <nng/nng.h>
#include <uv.h>

#include "libcommon/err.h"
#include "libcommon/sandbox_id.h"
#include "libcommon/msg.h"

#define VMMD_VERSION	    "0.1.0"
#define OCI_VERSION	    "1.1.0"
#define SANDBOX_CGROUPS_MAX 16
#define SANDBOX_ANNOT_MAX   1024
#define STATE_FILE_MAX	    (1u << 20)
/* ROOT/poold is poold's (docs/pools.md), ROOT/netd netd's (docs/netd.md):
 * not sandboxes, and not ids. */
#define POOLD_STATE_DIR "poold"
#define NETD_STATE_DIR	"netd"
static inline bool daemon_state_dir(const char *name)
{
	return strcmp(name, POOLD_STATE_DIR) == 0 || strcmp(name, NETD_STATE_DIR) == 0;
}
#define EXIT_FILE_MAX 4096u
/* A reservation whose qctl went away is dropped after this long. */
#define CREATING_GRACE_NS    (30LL * 1000000000LL)
#define GUEST_REPLY_TIMEOUT  30000 /* ms: start may wait for a slow exec */
#define SUPERVISOR_KILL_WAIT 10000 /* ms: delete --force waits for the pidfd */

enum sb_status { SB_CREATING, SB_CREATED, SB_RUNNING, SB_PAUSED, SB_STOPPED, SB_NSTATUS };
/* A hibernated sandbox is SB_PAUSED (frozen) to OCI clients. */
enum sb_hib { HIB_NONE, HIB_GOING, HIB_DONE };

struct sandbox {
	struct sandbox *next;
	char id[SANDBOX_ID_MAX + 1];
	char bundle[PATH_MAX];
	char console[PATH_MAX];
	enum sb_status status;
	enum sb_status paused_from; /* created or running, while paused */
	pid_t pid;		    /* the supervisor S (host pid) */
	uint64_t pid_start;	    /* field 22 of /proc/PID/stat */
	pid_t init_pid;		    /* the workload W */
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
	json_t *annotations;					/* object of strings, never NULL */
	int64_t reserved_ns, created_ns, started_ns, exited_ns; /* CLOCK_REALTIME, 0 = never */
	bool has_exit;
	int exit_status, exit_code, exit_signal;
	int sent_signal; /* last fatal signal vmmd sent, for a supervisor that left no report */
	int pidfd;
	uv_poll_t *pidfd_poll; /* heap, freed in its close callback */
	int report_wd;	  /* supervisor.c: inotify watch of ROOT/ID for the exit report; 0: none */
	bool pooled;	  /* holds resources from poold: released through it */
	bool own_cgroups; /* pooled, but started cold: its cgroups are vmmd's */
	bool transient;	  /* its caller deletes it once it stops: no stopped record */
	struct assign *assign; /* API create in flight (create.c), or NULL */
	/* hibernate.c */
	enum sb_hib hib;
	uint64_t hib_gen;      /* a worker's result applies to its generation only */
	int64_t hib_ns;	       /* when hibernation began (CLOCK_REALTIME) */
	uint64_t hib_swapped;  /* bytes of its memory in swap when it finished */
	uint64_t hib_resident; /* bytes its memory cgroup still held then */
	bool hib_manual;       /* a connection does not wake it (auto_wake false) */
	/* the idle policy: CPU and trapped calls when they last changed */
	uint64_t idle_cpu_ns, idle_syscalls;
	int64_t idle_since_ns;	  /* CLOCK_MONOTONIC; 0: not sampled yet */
	int64_t ws_due_ns;	  /* when to record the working set after a wake; 0: not */
	struct wake_watch *watch; /* wake_watch.c: its listeners while hibernated */
};

struct vmmd_metrics;

struct vmmd {
	char root[PATH_MAX];
	int rootfd;
	uv_loop_t *loop;
	uv_timer_t sweep_timer;
	uv_timer_t watchdog_timer; /* WATCHDOG=1 to systemd (notify.h) */
	uv_signal_t sigterm, sigint;
	struct sandbox *sandboxes;
	/* Held by the loop while it changes the registry, and by the metrics
	 * collector (nng HTTP thread) while it reads it. */
	pthread_mutex_t lock;
	struct vmmd_metrics *metrics;
	bool stopping;
	int64_t hibernate_idle_ns; /* --hibernate-idle: 0 off */
};

extern struct vmmd vmmd;

/* time.c-ish helpers live in registry.c */
int64_t now_ns(void);
void format_rfc3339(int64_t ns, char *buf, size_t len);
const char *sb_status_name(enum sb_status s);
int sb_status_parse(const char *s, enum sb_status *out);

/* registry.c */
struct sandbox *sandbox_find(const char *id);
struct sandbox *sandbox_new(const char *id);
void sandbox_insert(struct sandbox *sb);
/* Unlink from the registry, close the pidfd, free. */
void sandbox_destroy(struct sandbox *sb);
int sandbox_save(struct sandbox *sb, struct qerr *err);
int sandbox_load(const char *id, struct sandbox **out, struct qerr *err);
/* Remove ROOT/ID and everything in it. */
int sandbox_remove_dir(const char *id, struct qerr *err);
/* The same, the id free at once: ROOT/ID is renamed to ROOT/.gone-ID-N and
 * removed in the background (recovery removes what a crash left). */
int sandbox_remove_dir_later(const char *id, struct qerr *err);
/* Recovery: remove the ROOT/.gone-* a crash left. */
void sandbox_remove_gone(void);
size_t sandbox_count(void);

/* supervisor.c: the supervisor process, seen through its pidfd */
int proc_start_time(pid_t pid, uint64_t *out);
/* Open a pidfd for sb->pid, check its start time, watch it on the loop.
 * Returns 0, or -ESRCH when the process is gone or is not ours. */
int supervisor_watch(struct sandbox *sb, struct qerr *err);
/* If the supervisor has exited, record it (exit file, status stopped,
 * event) now rather than waiting for the loop; true if it is stopped. */
bool supervisor_refresh(struct sandbox *sb, bool persist);
/* Mark sb stopped from its exit file (or from what we know); persist
 * false skips writing state.json (delete is about to remove it). */
void supervisor_exited(struct sandbox *sb, bool persist);
/* Before a stopped sandbox's resources go: a supervisor stopped on its
 * exit report may still be tearing the sandbox's namespaces down.  Waits
 * for it (SIGKILL after a moment); 0 once it is gone. */
int supervisor_reap(struct sandbox *sb, struct qerr *err);
int supervisor_signal(struct sandbox *sb, int sig, struct qerr *err);
/* Block up to timeout_ms until the supervisor exits. */
int supervisor_wait(struct sandbox *sb, int timeout_ms, bool persist, struct qerr *err);
void supervisor_unwatch(struct sandbox *sb);

/* guest_control.c: requests to S over ROOT/ID/guest.sock */
int guest_call(struct sandbox *sb, const struct qmsg_out *req, struct qmsg_in *reply,
	       struct qerr *err);

/* dispatch.c */
void save_or_log(struct sandbox *sb);
void set_status(struct sandbox *sb, enum sb_status s);

/* hibernate.c (docs/hibernate.md) */
/* auto_wake: a connection wakes it; -1 as the sandbox's
 * io.quiver.wake-on-connection says ("off", or on by default). */
int hibernate_start(struct sandbox *sb, int auto_wake, struct qerr *err);
/* prefetch: 1 read the working set recorded after the last wake back in
 * first, 0 not, -1 as the sandbox's io.quiver.wake-prefetch says. */
int hibernate_wake(struct sandbox *sb, const char *why, int prefetch, struct qerr *err);
/* The idle policy (--hibernate-idle): hibernate running sandboxes that used
 * no CPU and trapped no call for that long; looked at four times per
 * period (at least every 5 s, at most every 250 ms). */
void hibernate_idle_start(void);
/* The sandbox's memory cgroup (v1), and the pids in it. */
int memcg_dir(const struct sandbox *sb, char *out, size_t len);
size_t cgroup_pids(const char *memcg, pid_t *out, size_t max);

/* wake_watch.c: while hibernated, a new connection to any of the sandbox's
 * listening sockets wakes it (why "connection"). */
/* at_hibernate: a connection waiting already was there before the
 * hibernation and does not wake it; otherwise (a new vmmd re-arming) it
 * may have come while nobody watched, and wakes it at once. */
void wake_watch_start(struct sandbox *sb, const char *memcg, bool at_hibernate);
void wake_watch_stop(struct sandbox *sb);

/* freezer.c: cgroup v1 freezer */
int freezer_set(struct sandbox *sb, bool frozen, struct qerr *err);

/* control.c */
int control_listen(struct qerr *err);
void control_close(void);

/* events.c */
int events_listen(struct qerr *err);
void events_publish(const char *type, const struct sandbox *sb);
void events_close(void);

/* dispatch.c: handle one parsed request, filling the reply. */
void dispatch(const struct qmsg_in *req, struct qmsg_out *reply);

/* recovery.c */
int recovery_scan(struct qerr *err);
/* Drop creating reservations older than the grace period. */
void recovery_sweep_creating(void);

/* sandbox_metrics.c */
int vmmd_metrics_start(const char *addr, struct qerr *err);
void vmmd_metrics_stop(void);
void vmmd_metrics_request(const char *op, bool failed);
void vmmd_metrics_started(const struct sandbox *sb);
void vmmd_metrics_hibernated(const struct sandbox *sb, double seconds);
void vmmd_metrics_woken(double seconds);

/* sandbox_stats.c: what a sandbox uses, for the stats op and /metrics */
struct sandbox_stats {
	bool has_cpu, has_memory, has_pids, has_syscalls;
	uint64_t cpu_ns;       /* cpuacct.usage, or cpu.stat usage_usec (v2) */
	uint64_t memory_bytes; /* working set: usage minus inactive file cache */
	uint64_t pids;	       /* pids.current */
	uint64_t syscalls_trapped, syscalls_denied;
};
/* id's counters and the cgroup directories it lists (the loop passes
 * sb->cgroups; the metrics collector a copy taken under vmmd.lock); the
 * counters are also added per syscall nr into the arrays (GUEST_NR_MAX
 * entries each) when they are not NULL. */
void sandbox_stats_read(const char *id, char *const *cgroups, size_t ncgroups,
			uint64_t *trapped_by_nr, uint64_t *denied_by_nr, struct sandbox_stats *st);
/* ROOT/ID/counters alone; -ENOENT when the sandbox has none (yet, or any
 * more). */
int sandbox_syscalls_read(const char *id, uint64_t *trapped_by_nr, uint64_t *denied_by_nr,
			  uint64_t *trapped, uint64_t *denied);

/* pool_client.c: poold, when it runs (ROOT/poold.sock) */
struct pool_lease {
	bool warm;
	char sock[PATH_MAX];
	pid_t pid;
	uint64_t pid_start;
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
	char upper[PATH_MAX], work[PATH_MAX];
	bool any; /* something was taken: release it on delete */
};
/* Take a warm supervisor (and a writable layer if layer) for id.  0 with
 * l->warm false is a miss (or no poold): the caller goes cold. */
int pool_take(const char *id, const char *bundle, bool layer, struct pool_lease *l,
	      struct qerr *err);
void pool_lease_free(struct pool_lease *l);
/* Give back / destroy what id holds; -errno if poold could not be asked. */
int pool_release(const char *id, struct qerr *err);
void pool_client_close(void);
/* The same in the background; a take of the same id waits for it. */
void pool_release_later(const struct sandbox *sb);

/* background.c: fn(arg) run by the worker thread, in the order queued (on
 * the caller's thread if there is no worker); drain runs what is queued
 * and stops the worker (at exit). */
void background(void (*fn)(void *), void *arg);
void background_drain(void);
/* Count of starts by path, for /metrics. */
void vmmd_metrics_start_path(const char *path);

/* bundle_cache.c: what a warm start needs of a bundle's config.json */
struct bundle_info {
	bool eligible;		  /* warm_check passed and the rootfs exists */
	char reason[256];	  /* why not */
	bool layer;		  /* io.quiver.rootfs.overlay: "true" */
	bool poststart, poststop; /* the config has hooks of that kind */
	json_t *annotations;	  /* object, owned by the cache */
	int64_t rootfs_dev, rootfs_ino;
};
/* Parsed once per version of config.json; NULL with err on a config that
 * does not load (the cold path reports it properly). */
const struct bundle_info *bundle_info_get(const char *bundle, struct qerr *err);

/* create.c: the API's create (no CLI): asynchronous, answered at once */
int create_async(struct sandbox *sb, const struct pool_lease *l, int64_t rootfs_dev,
		 int64_t rootfs_ino, bool start, struct qerr *err);
void create_abandon(struct sandbox *sb);

/* The reservation's config checks for a warm start, and the assignment
 * it would send; packs the "assign" map (with v and op) into pk. */
void pack_assignment(msgpack_packer *pk, const struct sandbox *sb, const struct pool_lease *l,
		     int64_t rootfs_dev, int64_t rootfs_ino, bool start);
/* dispatch.c, for create.c: the steps of `created` and `start`. */
int sandbox_adopt(struct sandbox *sb, pid_t pid, uint64_t pid_start, pid_t init_pid,
		  char *const *cgroups, size_t ncgroups, struct qerr *err);
void sandbox_mark_created(struct sandbox *sb);
void sandbox_mark_running(struct sandbox *sb);
int sandbox_start(struct sandbox *sb, struct qerr *err);
/* quiver-guest next to us, or $QUIVER_GUEST */
void vmmd_guest_path(char *buf, size_t len);
void sandbox_drop(struct sandbox *sb);

/* cgroup removal on delete: guest/cgroups.h */
int sandbox_remove_cgroups(struct sandbox *sb, struct qerr *err);

#endif
