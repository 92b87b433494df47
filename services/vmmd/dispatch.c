/* One function per control request (docs/api.md).  Each reads its fields
 * through the typed getters of libcommon/msg.h, which bound and check them,
 * and answers with a reply or an error; nothing a client sends can crash
 * the daemon. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <seccomp.h>

#include "guest/counters.h"
#include "guest/guest.h"
#include "guest/hooks.h"
#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

/* ---- helpers ---- */

static int req_id(const struct qmsg_in *req, char *id, struct qerr *err)
{
	int r = qmsg_get_str(req->root, "id", id, SANDBOX_ID_MAX + 1, err);

	if (r == -ENOENT)
		return qerr_set(err, EINVAL, "field id: missing");
	if (r == -EINVAL && qmsg_find(req->root, "id") &&
	    qmsg_find(req->root, "id")->type == MSGPACK_OBJECT_STR)
		return qerr_set(err, EINVAL, "invalid container id: must be 1 to %d characters",
				SANDBOX_ID_MAX);
	if (r < 0)
		return r;
	return sandbox_id_check(id, err);
}

/* The sandbox named by the request's id, its exit noticed if it happened. */
static struct sandbox *req_sandbox_persist(const struct qmsg_in *req, bool persist,
					   struct qerr *err)
{
	char id[SANDBOX_ID_MAX + 1];
	struct sandbox *sb;

	if (req_id(req, id, err) < 0)
		return NULL;
	sb = sandbox_find(id);
	if (!sb) {
		qerr_set(err, ENOENT, "container \"%s\" does not exist", id);
		return NULL;
	}
	supervisor_refresh(sb, persist);
	return sb;
}

static struct sandbox *req_sandbox(const struct qmsg_in *req, struct qerr *err)
{
	return req_sandbox_persist(req, true, err);
}

static int opt_bool(const struct qmsg_in *req, const char *key, bool *out, struct qerr *err)
{
	int r;

	*out = false;
	r = qmsg_get_bool(req->root, key, out, err);
	return r == -ENOENT ? 0 : r;
}

void save_or_log(struct sandbox *sb)
{
	struct qerr err;

	if (sandbox_save(sb, &err) < 0)
		qlog_error("%s: %s", sb->id, err.msg);
}

void set_status(struct sandbox *sb, enum sb_status s)
{
	pthread_mutex_lock(&vmmd.lock);
	sb->status = s;
	pthread_mutex_unlock(&vmmd.lock);
}

static void pack_time(msgpack_packer *pk, int64_t ns)
{
	char buf[64];

	if (!ns) {
		msgpack_pack_nil(pk);
		return;
	}
	format_rfc3339(ns, buf, sizeof(buf));
	qmsg_pack_cstr(pk, buf);
}

static void pack_annotations(msgpack_packer *pk, const struct sandbox *sb)
{
	const char *k;
	json_t *v;

	msgpack_pack_map(pk, json_object_size(sb->annotations));
	json_object_foreach (sb->annotations, k, v) {
		qmsg_pack_cstr(pk, k);
		qmsg_pack_cstr(pk, json_string_value(v));
	}
}

/* The OCI state fields: 7 key/value pairs. */
#define STATE_FIELDS 7
static void pack_state_fields(msgpack_packer *pk, const struct sandbox *sb)
{
	bool alive = sb->status != SB_STOPPED && sb->status != SB_CREATING;

	qmsg_pack_cstr(pk, "ociVersion");
	qmsg_pack_cstr(pk, OCI_VERSION);
	qmsg_pack_cstr(pk, "id");
	qmsg_pack_cstr(pk, sb->id);
	qmsg_pack_cstr(pk, "status");
	qmsg_pack_cstr(pk, sb_status_name(sb->status));
	qmsg_pack_cstr(pk, "pid");
	msgpack_pack_int64(pk, alive ? sb->pid : 0);
	qmsg_pack_cstr(pk, "bundle");
	qmsg_pack_cstr(pk, sb->bundle);
	qmsg_pack_cstr(pk, "annotations");
	pack_annotations(pk, sb);
	qmsg_pack_cstr(pk, "created");
	pack_time(pk, sb->created_ns ? sb->created_ns : sb->reserved_ns);
}

static void reply_ok(struct qmsg_out *reply)
{
	qmsg_begin(reply, "ok", 0);
}

static void reply_state(struct qmsg_out *reply, const struct sandbox *sb)
{
	qmsg_begin(reply, "state", STATE_FIELDS);
	pack_state_fields(&reply->pk, sb);
}

/* ---- one function per op ---- */

static int op_ping(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	(void)req;
	(void)err;
	qmsg_begin(reply, "pong", 3);
	qmsg_put_int(reply, "pid", getpid());
	qmsg_put_str(reply, "version", VMMD_VERSION);
	qmsg_put_uint(reply, "sandboxes", sandbox_count());
	return 0;
}

static int op_shutdown(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	(void)req;
	(void)err;
	qlog_info("shutdown requested; sandboxes keep running");
	vmmd.stopping = true;
	reply_ok(reply);
	return 0;
}

void pack_assignment(msgpack_packer *pk, const struct sandbox *sb, const struct pool_lease *l,
		     int64_t rootfs_dev, int64_t rootfs_ino, bool start)
{
	char state_dir[PATH_MAX + SANDBOX_ID_MAX + 2];
	snprintf(state_dir, sizeof(state_dir), "%s/%s", vmmd.root, sb->id);
	msgpack_pack_map(pk, 10 + (l->upper[0] ? 2 : 0));
	qmsg_pack_cstr(pk, "v");
	msgpack_pack_int(pk, QMSG_VERSION);
	qmsg_pack_cstr(pk, "op");
	qmsg_pack_cstr(pk, "assign");
	qmsg_pack_cstr(pk, "id");
	qmsg_pack_cstr(pk, sb->id);
	qmsg_pack_cstr(pk, "bundle");
	qmsg_pack_cstr(pk, sb->bundle);
	qmsg_pack_cstr(pk, "state_dir");
	qmsg_pack_cstr(pk, state_dir);
	qmsg_pack_cstr(pk, "host_pid");
	msgpack_pack_int64(pk, l->pid);
	qmsg_pack_cstr(pk, "rootfs_dev");
	msgpack_pack_int64(pk, rootfs_dev);
	qmsg_pack_cstr(pk, "rootfs_ino");
	msgpack_pack_int64(pk, rootfs_ino);
	qmsg_pack_cstr(pk, "start");
	if (start)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	qmsg_pack_cstr(pk, "cgroups");
	msgpack_pack_array(pk, l->ncgroups);
	for (size_t i = 0; i < l->ncgroups; i++)
		qmsg_pack_cstr(pk, l->cgroups[i]);
	if (l->upper[0]) {
		qmsg_pack_cstr(pk, "layer_upper");
		qmsg_pack_cstr(pk, l->upper);
		qmsg_pack_cstr(pk, "layer_work");
		qmsg_pack_cstr(pk, l->work);
	}
}

/* A warm supervisor for a new reservation, when its config allows one and
 * poold has one.  The config is parsed here once; its annotations are the
 * sandbox's from now on (nobody sends them in `created`). */
static bool try_warm(struct sandbox *sb, struct pool_lease *l, int64_t *dev, int64_t *ino)
{
	struct qerr err = {0};
	const struct bundle_info *bi = bundle_info_get(sb->bundle, &err);
	if (!bi)
		return false; /* the cold path reports it */
	json_object_update(sb->annotations, bi->annotations);
	if (!bi->eligible) {
		qlog_debug("%s: cold start: %s", sb->id, bi->reason);
		return false;
	}
	*dev = bi->rootfs_dev;
	*ino = bi->rootfs_ino;
	if (pool_take(sb->id, sb->bundle, bi->layer, l, &err) < 0) {
		if (err.code == EAGAIN) /* said once, when it stopped answering */
			qlog_debug("%s: cold start: %s", sb->id, err.msg);
		else
			qlog_warn("%s: cold start: poold: %s", sb->id, err.msg);
		sb->pooled = l->any;
		return false;
	}
	sb->pooled = l->any;
	if (!l->warm)
		return false;
	if (bi->layer && !l->upper[0])
		qlog_info("%s: no writable layer ready: the rootfs is used as is", sb->id);
	return true;
}

/* The reservation shared by reserve (qctl) and create (the API). */
static struct sandbox *reserve(const char *id, const char *bundle, bool warm, bool transient,
			       struct pool_lease *l, int64_t *dev, int64_t *ino, struct qerr *err)
{
	struct sandbox *sb;
	int r;

	if (sandbox_find(id)) {
		qerr_set(err, EEXIST, "container \"%s\" already exists", id);
		return NULL;
	}
	if (daemon_state_dir(id)) {
		qerr_set(err, EINVAL, "container id \"%s\" is reserved (%s's state directory)", id,
			 id);
		return NULL;
	}
	if (mkdirat(vmmd.rootfd, id, 0700) < 0) {
		if (errno == EEXIST)
			qerr_set(err, EEXIST, "container \"%s\" already exists", id);
		else
			qerr_sys(err, errno, "mkdir %s/%s", vmmd.root, id);
		return NULL;
	}
	sb = sandbox_new(id);
	if (!sb) {
		unlinkat(vmmd.rootfd, id, AT_REMOVEDIR);
		qerr_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	snprintf(sb->bundle, sizeof(sb->bundle), "%s", bundle);
	sb->status = SB_CREATING;
	sb->reserved_ns = now_ns();
	sb->transient = transient;
	*l = (struct pool_lease){0};
	bool hit = warm && try_warm(sb, l, dev, ino);
	/* a miss with a layer, or a take that timed out: the start is cold */
	sb->own_cgroups = sb->pooled && !hit;
	if (warm)
		vmmd_metrics_start_path(hit ? "warm" : "cold");
	if ((r = sandbox_save(sb, err)) < 0) {
		if (sb->pooled)
			pool_release_later(sb);
		pool_lease_free(l);
		sandbox_remove_dir(id, NULL);
		json_decref(sb->annotations);
		free(sb);
		return NULL;
	}
	sandbox_insert(sb);
	return sb;
}

static int req_bundle(const struct qmsg_in *req, char *bundle, size_t len, struct qerr *err)
{
	int r = qmsg_get_str(req->root, "bundle", bundle, len, err);
	if (r == -ENOENT)
		return qerr_set(err, EINVAL, "field bundle: missing");
	if (r < 0)
		return r;
	if (bundle[0] != '/')
		return qerr_set(err, EINVAL, "field bundle: must be an absolute path");
	return 0;
}

static int op_reserve(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	char id[SANDBOX_ID_MAX + 1], bundle[PATH_MAX];
	struct pool_lease l;
	int64_t dev = 0, ino = 0;
	bool warm, start, transient;
	int r;

	if ((r = req_id(req, id, err)) < 0 ||
	    (r = req_bundle(req, bundle, sizeof(bundle), err)) < 0 ||
	    (r = opt_bool(req, "warm", &warm, err)) < 0 ||
	    (r = opt_bool(req, "start", &start, err)) < 0 ||
	    (r = opt_bool(req, "transient", &transient, err)) < 0)
		return r;
	struct sandbox *sb = reserve(id, bundle, warm, transient, &l, &dev, &ino, err);
	if (!sb)
		return -err->code;
	if (!l.warm) {
		pool_lease_free(&l);
		qmsg_begin(reply, "reserved", 1);
		qmsg_put_str(reply, "id", id);
		return 0;
	}
	/* qctl hands the assignment over with its stdio, then says created. */
	qmsg_begin(reply, "reserved", 4);
	qmsg_put_str(reply, "id", id);
	qmsg_put_str(reply, "warm_sock", l.sock);
	qmsg_put_uint(reply, "pid_start", l.pid_start);
	qmsg_put_key(reply, "assign");
	pack_assignment(&reply->pk, sb, &l, dev, ino, start);
	pool_lease_free(&l);
	return 0;
}

/* The API's create: no CLI, answered at once ("accepted"); the outcome
 * comes as events (created, started, exited; or failed). */
static int op_create(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	char id[SANDBOX_ID_MAX + 1], bundle[PATH_MAX];
	struct pool_lease l;
	int64_t dev = 0, ino = 0;
	bool start, transient;
	int r;

	if ((r = req_id(req, id, err)) < 0 ||
	    (r = req_bundle(req, bundle, sizeof(bundle), err)) < 0 ||
	    (r = opt_bool(req, "start", &start, err)) < 0 ||
	    (r = opt_bool(req, "transient", &transient, err)) < 0)
		return r;
	struct sandbox *sb = reserve(id, bundle, true, transient, &l, &dev, &ino, err);
	if (!sb)
		return -err->code;
	r = create_async(sb, &l, dev, ino, start, err);
	pool_lease_free(&l);
	if (r < 0) {
		if (sb->pooled)
			pool_release_later(sb);
		sandbox_remove_dir(sb->id, NULL);
		sandbox_destroy(sb);
		return r;
	}
	qmsg_begin(reply, "accepted", 2);
	qmsg_put_str(reply, "id", id);
	qmsg_put_str(reply, "path", l.warm ? "warm" : "cold");
	return 0;
}

static int drop_reservation(struct sandbox *sb, struct qerr *err)
{
	if (sb->assign)
		create_abandon(sb);
	if (sb->pooled)
		pool_release_later(sb);
	int r = sandbox_remove_dir(sb->id, err);

	if (r < 0)
		return r;
	qlog_info("%s: reservation dropped", sb->id);
	sandbox_destroy(sb);
	return 0;
}

void sandbox_drop(struct sandbox *sb)
{
	struct qerr err;
	if (drop_reservation(sb, &err) < 0)
		qlog_warn("%s: %s", sb->id, err.msg);
}

static int op_abort(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int r;

	if (!sb)
		return -err->code;
	if (sb->status != SB_CREATING)
		return qerr_set(err, EBUSY, "container %s is not being created: %s", sb->id,
				sb_status_name(sb->status));
	if ((r = drop_reservation(sb, err)) < 0)
		return r;
	reply_ok(reply);
	return 0;
}

/* What a `created` request carries, parsed in full before any of it is
 * applied: a request that fails a check leaves the reservation as it was. */
struct created_fields {
	int64_t pid, pid_start, init_pid;
	char console[PATH_MAX];
	char *cgroups[SANDBOX_CGROUPS_MAX];
	size_t ncgroups;
	json_t *annotations;
	bool start;
	bool started; /* a warm supervisor assigned with start: already running */
};

static void created_fields_free(struct created_fields *f)
{
	for (size_t i = 0; i < f->ncgroups; i++)
		free(f->cgroups[i]);
	f->ncgroups = 0;
	json_decref(f->annotations);
	f->annotations = NULL;
}

static int read_cgroups(const struct qmsg_in *req, struct created_fields *f, struct qerr *err)
{
	const msgpack_object *arr = NULL;
	char path[PATH_MAX + SANDBOX_ID_MAX + 32];
	int r = qmsg_get_array(req->root, "cgroups", SANDBOX_CGROUPS_MAX, &arr, err);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		if ((r = qmsg_obj_str(&arr->via.array.ptr[i], path, sizeof(path), err)) < 0)
			return qerr_prefix(err, "field cgroups[%u]", i);
		/* Deleting a sandbox removes these (cgroups_remove also checks
		 * that each is on a cgroup filesystem). */
		if (path[0] != '/' || strstr(path, "/../") || strstr(path, "/./") ||
		    (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0))
			return qerr_set(err, EINVAL, "field cgroups[%u]: not a cgroup directory",
					i);
		f->cgroups[f->ncgroups] = strdup(path);
		if (!f->cgroups[f->ncgroups])
			return qerr_set(err, ENOMEM, "out of memory");
		f->ncgroups++;
	}
	return 0;
}

static int read_annotations(const struct qmsg_in *req, struct created_fields *f, struct qerr *err)
{
	const msgpack_object *map = NULL;
	char key[QMSG_MAX_KEY + 1], val[QMSG_MAX_STR + 1];
	int r = qmsg_get_map(req->root, "annotations", SANDBOX_ANNOT_MAX, &map, err);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if ((r = qmsg_obj_str(&kv->key, key, sizeof(key), err)) < 0 ||
		    (r = qmsg_obj_str(&kv->val, val, sizeof(val), err)) < 0)
			return qerr_prefix(err, "field annotations");
		if (json_object_set_new(f->annotations, key, json_string(val)) < 0)
			return qerr_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

static int read_created(const struct qmsg_in *req, struct created_fields *f, struct qerr *err)
{
	int r;

	if ((r = qmsg_get_int(req->root, "pid", 1, INT32_MAX, &f->pid, err)) < 0 ||
	    (r = qmsg_get_int(req->root, "pid_start", 0, INT64_MAX, &f->pid_start, err)) < 0)
		return r == -ENOENT ? qerr_set(err, EINVAL, "fields pid, pid_start: required") : r;
	r = qmsg_get_int(req->root, "init_pid", 0, INT32_MAX, &f->init_pid, err);
	if (r < 0 && r != -ENOENT)
		return r;
	r = qmsg_get_str(req->root, "console", f->console, sizeof(f->console), err);
	if (r < 0 && r != -ENOENT)
		return r;
	if ((r = read_cgroups(req, f, err)) < 0 || (r = read_annotations(req, f, err)) < 0)
		return r;
	if ((r = opt_bool(req, "started", &f->started, err)) < 0)
		return r;
	return opt_bool(req, "start", &f->start, err);
}

static int do_start(struct sandbox *sb, struct qmsg_out *reply, struct qerr *err);
static void run_post_hooks(struct sandbox *sb, bool start);

/* ---- for create.c ---- */

int sandbox_adopt(struct sandbox *sb, pid_t pid, uint64_t pid_start, pid_t init_pid,
		  char *const *cgroups, size_t ncgroups, struct qerr *err)
{
	int r;
	sb->pid = pid;
	sb->pid_start = pid_start;
	if (sb->pidfd < 0 && (r = supervisor_watch(sb, err)) < 0) {
		sb->pid = 0;
		sb->pid_start = 0;
		return r;
	}
	sb->init_pid = init_pid;
	/* Under the lock: the metrics collector reads the cgroups. */
	pthread_mutex_lock(&vmmd.lock);
	for (size_t i = 0; i < sb->ncgroups; i++)
		free(sb->cgroups[i]);
	sb->ncgroups = 0;
	for (size_t i = 0; i < ncgroups && i < SANDBOX_CGROUPS_MAX; i++)
		if ((sb->cgroups[sb->ncgroups] = strdup(cgroups[i])))
			sb->ncgroups++;
	pthread_mutex_unlock(&vmmd.lock);
	sb->created_ns = now_ns();
	set_status(sb, SB_CREATED);
	events_publish("created", sb);
	return 0;
}

void sandbox_mark_created(struct sandbox *sb)
{
	save_or_log(sb);
}

/* A warm supervisor assigned with start runs its workload by itself. */
void sandbox_mark_running(struct sandbox *sb)
{
	sb->started_ns = now_ns();
	set_status(sb, SB_RUNNING);
	save_or_log(sb);
	vmmd_metrics_started(sb);
	events_publish("started", sb);
	run_post_hooks(sb, true);
}

int sandbox_start(struct sandbox *sb, struct qerr *err)
{
	struct qmsg_out reply;
	qmsg_out_init(&reply);
	int r = do_start(sb, &reply, err);
	qmsg_out_free(&reply);
	return r;
}

static int op_created(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	struct created_fields f = {.annotations = json_object()};
	int r;

	if (!sb) {
		created_fields_free(&f);
		return -err->code;
	}
	if (sb->status != SB_CREATING) {
		created_fields_free(&f);
		return qerr_set(err, EBUSY, "container %s is not being created: %s", sb->id,
				sb_status_name(sb->status));
	}
	if (!f.annotations) {
		created_fields_free(&f);
		return qerr_set(err, ENOMEM, "out of memory");
	}
	if ((r = read_created(req, &f, err)) < 0) {
		created_fields_free(&f);
		return r;
	}
	sb->pid = (pid_t)f.pid;
	sb->pid_start = (uint64_t)f.pid_start;
	/* A workload that started by itself may be done already: its
	 * supervisor is gone, and its exit report tells how it ended. */
	r = supervisor_watch(sb, err);
	bool gone = r == -ESRCH && f.started;
	if (r < 0 && !gone) {
		sb->pid = 0;
		sb->pid_start = 0;
		created_fields_free(&f);
		return r;
	}
	/* Checked and adopted: now the record takes the rest. */
	sb->init_pid = (pid_t)f.init_pid;
	snprintf(sb->console, sizeof(sb->console), "%s", f.console);
	pthread_mutex_lock(&vmmd.lock);
	for (size_t i = 0; i < sb->ncgroups; i++)
		free(sb->cgroups[i]);
	memcpy(sb->cgroups, f.cgroups, f.ncgroups * sizeof(f.cgroups[0]));
	sb->ncgroups = f.ncgroups;
	pthread_mutex_unlock(&vmmd.lock);
	f.ncgroups = 0;
	json_object_update(sb->annotations, f.annotations);
	created_fields_free(&f);
	sb->created_ns = now_ns();
	set_status(sb, SB_CREATED);
	if (f.started) {
		events_publish("created", sb);
		sandbox_mark_running(sb);
		if (gone)
			supervisor_exited(sb, true);
		reply_state(reply, sb);
		return 0;
	}
	if (f.start) {
		/* qctl run: created and started in one round trip, one write. */
		events_publish("created", sb);
		return do_start(sb, reply, err);
	}
	if ((r = sandbox_save(sb, err)) < 0)
		return r;
	events_publish("created", sb);
	reply_state(reply, sb);
	return 0;
}

/* poststart and poststop: in the runtime namespace, from the bundle's
 * config.json; a failure is only logged (runtime-spec).  They run in the
 * loop, which waits for them (each bounded by its timeout, if given). */
static void run_post_hooks(struct sandbox *sb, bool start)
{
	cleanup_config struct guest_config *cfg = NULL;
	struct qerr err = {0};

	if (!sb->bundle[0])
		return;
	/* Most configs have none: the bundle cache knows without a parse of
	 * config.json (twice per sandbox, on the loop, the delete's reply
	 * behind one of them). */
	const struct bundle_info *bi = bundle_info_get(sb->bundle, &err);
	if (bi && !(start ? bi->poststart : bi->poststop))
		return;
	if (guest_config_load(sb->bundle, &cfg, &err) < 0) {
		qlog_warn("%s: %s hooks: %s", sb->id, start ? "poststart" : "poststop", err.msg);
		return;
	}
	const struct guest_hook_list *l = start ? &cfg->hooks.poststart : &cfg->hooks.poststop;
	if (!hooks_any(l))
		return;
	cleanup_free char *state =
	    hooks_state_json(cfg, sb->id, start ? "running" : "stopped", start ? sb->pid : 0, &err);
	if (!state) {
		qlog_warn("%s: %s", sb->id, err.msg);
		return;
	}
	hooks_run(l, start ? "poststart" : "poststop", state, true, &err);
}

/* Ask S to exec the workload.  Persists the result either way. */
static int do_start(struct sandbox *sb, struct qmsg_out *reply, struct qerr *err)
{
	struct qmsg_out m;
	struct qmsg_in r_in;
	int64_t wpid = 0;
	int r;

	qmsg_out_init(&m);
	qmsg_begin(&m, "start", 0);
	r = guest_call(sb, &m, &r_in, err);
	qmsg_out_free(&m);
	if (r < 0) {
		/* A failed exec ends the sandbox: S exits after reporting it. */
		if (supervisor_wait(sb, 1000, true, NULL) < 0)
			save_or_log(sb);
		return r;
	}
	qmsg_get_int(r_in.root, "pid", 0, INT32_MAX, &wpid, NULL);
	qmsg_in_free(&r_in);
	if (wpid > 0)
		sb->init_pid = (pid_t)wpid;
	sandbox_mark_running(sb);
	qmsg_begin(reply, "started", 1);
	qmsg_put_int(reply, "pid", sb->pid);
	return 0;
}

static int op_start(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);

	if (!sb)
		return -err->code;
	switch (sb->status) {
	case SB_CREATED:
		break;
	case SB_STOPPED:
		return qerr_set(err, EINVAL, "cannot start a container that has stopped");
	case SB_RUNNING:
		return qerr_set(err, EINVAL, "cannot start an already running container");
	default:
		return qerr_set(err, EINVAL, "cannot start a container in the %s state",
				sb_status_name(sb->status));
	}
	return do_start(sb, reply, err);
}

static int op_kill(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int64_t sig = SIGTERM;
	bool all;
	int r;

	if (!sb)
		return -err->code;
	r = qmsg_get_int(req->root, "signal", 1, 64, &sig, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if ((r = opt_bool(req, "all", &all, err)) < 0)
		return r;
	/* A signal to a hibernated sandbox wakes it first (SIGKILL too: the
	 * freezer must let go for the tasks to die). */
	if (sb->hib != HIB_NONE && (r = hibernate_wake(sb, "signal", -1, err)) < 0)
		return r;
	/* runc: `kill --all` of a stopped container signals what is left in
	 * its cgroup and succeeds.  Nothing is left here (S's exit tore the
	 * pid namespace down); the containerd shim and podman send it after
	 * the init has exited. */
	if (all && sb->status == SB_STOPPED) {
		reply_ok(reply);
		return 0;
	}
	if (sb->status == SB_STOPPED || sb->status == SB_CREATING)
		return qerr_set(err, ESRCH, "container not running");
	if (all && sig != SIGKILL) {
		struct qmsg_out m;
		struct qmsg_in r_in;

		qmsg_out_init(&m);
		qmsg_begin(&m, "killall", 1);
		qmsg_put_int(&m, "signal", sig);
		r = guest_call(sb, &m, &r_in, err);
		qmsg_out_free(&m);
		if (r < 0)
			return r;
		qmsg_in_free(&r_in);
	} else {
		/* SIGKILL of S: the kernel tears the whole pid namespace down. */
		if ((r = supervisor_signal(sb, (int)sig, err)) < 0)
			return r;
		if (sig == SIGKILL && sb->status == SB_PAUSED)
			freezer_set(sb, false, NULL);
	}
	reply_ok(reply);
	return 0;
}

static int op_delete(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	/* An exit noticed now needs no state.json: the directory goes. */
	struct sandbox *sb = req_sandbox_persist(req, false, err);
	bool force;
	int r;

	if (!sb)
		return -err->code;
	if ((r = opt_bool(req, "force", &force, err)) < 0)
		return r;
	if (sb->status == SB_CREATING) {
		if (!force)
			return qerr_set(err, EBUSY,
					"cannot delete container %s that is not stopped: creating",
					sb->id);
		if ((r = drop_reservation(sb, err)) < 0)
			return r;
		reply_ok(reply);
		return 0;
	}
	/* runc deletes a created container without --force (containerd
	 * relies on it after a failed start); a running one needs it. */
	if (sb->status == SB_RUNNING || sb->status == SB_PAUSED) {
		if (!force)
			return qerr_set(err, EBUSY,
					"cannot delete container %s that is not stopped: %s",
					sb->id, sb_status_name(sb->status));
	}
	if (sb->status != SB_STOPPED) {
		bool was_paused = sb->status == SB_PAUSED;
		r = supervisor_signal(sb, SIGKILL, err);
		if (r < 0 && r != -ESRCH)
			return r;
		if (was_paused)
			freezer_set(sb, false, NULL);
		if ((r = supervisor_wait(sb, SUPERVISOR_KILL_WAIT, false, err)) < 0)
			return r;
	} else if ((r = supervisor_reap(sb, err)) < 0) {
		return r;
	}
	/* poold takes back what it gave (cgroups reset for reuse, netns,
	 * layer), after our reply (pool_release_later); a cold start's
	 * cgroups are ours to remove */
	if (sb->pooled)
		pool_release_later(sb);
	if ((!sb->pooled || sb->own_cgroups) && (r = sandbox_remove_cgroups(sb, err)) < 0)
		qlog_warn("%s: %s", sb->id, err->msg);
	if ((r = sandbox_remove_dir_later(sb->id, err)) < 0)
		return r;
	events_publish("deleted", sb);
	qlog_info("%s: deleted", sb->id);
	run_post_hooks(sb, false);
	sandbox_destroy(sb);
	reply_ok(reply);
	return 0;
}

static int op_pause(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int r;

	if (!sb)
		return -err->code;
	if (sb->status == SB_PAUSED)
		return qerr_set(err, EINVAL, "container %s is already paused", sb->id);
	if (sb->status != SB_RUNNING && sb->status != SB_CREATED)
		return qerr_set(err, EINVAL, "container not running");
	if ((r = freezer_set(sb, true, err)) < 0)
		return r;
	sb->paused_from = sb->status;
	set_status(sb, SB_PAUSED);
	save_or_log(sb);
	events_publish("paused", sb);
	reply_ok(reply);
	return 0;
}

static int op_resume(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int r;

	if (!sb)
		return -err->code;
	if (sb->status != SB_PAUSED)
		return qerr_set(err, EINVAL, "container not paused");
	if (sb->hib != HIB_NONE) {
		if ((r = hibernate_wake(sb, "resume", -1, err)) < 0)
			return r;
		reply_ok(reply);
		return 0;
	}
	if ((r = freezer_set(sb, false, err)) < 0)
		return r;
	set_status(sb, sb->paused_from == SB_CREATED ? SB_CREATED : SB_RUNNING);
	save_or_log(sb);
	events_publish("resumed", sb);
	reply_ok(reply);
	return 0;
}

static int op_hibernate(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int r;

	bool auto_wake = true;
	int given;

	if (!sb)
		return -err->code;
	/* absent: as the sandbox's io.quiver.wake-on-connection says */
	given = qmsg_get_bool(req->root, "auto_wake", &auto_wake, err);
	if (given < 0 && given != -ENOENT)
		return given;
	qerr_clear(err);
	if ((r = hibernate_start(sb, given == 0 ? auto_wake : -1, err)) < 0)
		return r;
	events_publish("hibernating", sb);
	reply_ok(reply);
	return 0;
}

static int op_wake(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	int r;

	bool prefetch = false;
	int given;

	if (!sb)
		return -err->code;
	/* absent: as the sandbox's io.quiver.wake-prefetch says */
	given = qmsg_get_bool(req->root, "prefetch", &prefetch, err);
	if (given < 0 && given != -ENOENT)
		return given;
	/* who asks: a client ("request"), qctl exec ("exec"), or netd for a
	 * connection that waits on the sandbox ("connection") */
	char why[16] = "request";
	r = qmsg_get_str(req->root, "why", why, sizeof(why), err);
	if ((r < 0 && r != -ENOENT) || (strcmp(why, "request") != 0 &&
					strcmp(why, "connection") != 0 && strcmp(why, "exec") != 0))
		return qerr_set(err, EINVAL, "wake: why \"%s\" is not request, exec or connection",
				why);
	qerr_clear(err);
	if ((r = hibernate_wake(sb, why, given == 0 ? prefetch : -1, err)) < 0)
		return r;
	reply_ok(reply);
	return 0;
}

static const char *hib_name(enum sb_hib h)
{
	return h == HIB_GOING ? "hibernating" : h == HIB_DONE ? "hibernated" : NULL;
}

static int op_state(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);

	if (!sb)
		return -err->code;
	reply_state(reply, sb);
	return 0;
}

static int op_list(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	size_t n = 0;

	(void)req;
	(void)err;
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next) {
		supervisor_refresh(sb, true);
		n++;
	}
	qmsg_begin(reply, "list", 1);
	qmsg_put_key(reply, "sandboxes");
	msgpack_pack_array(&reply->pk, n);
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next) {
		msgpack_pack_map(&reply->pk, STATE_FIELDS + 1);
		pack_state_fields(&reply->pk, sb);
		qmsg_pack_cstr(&reply->pk, "hibernation");
		if (hib_name(sb->hib))
			qmsg_pack_cstr(&reply->pk, hib_name(sb->hib));
		else
			msgpack_pack_nil(&reply->pk);
	}
	return 0;
}

static void pack_syscalls(msgpack_packer *pk, const struct sandbox *sb)
{
	char path[PATH_MAX + SANDBOX_ID_MAX + 32];
	const struct guest_counters *c = NULL;
	struct qerr e;
	uint32_t n = 0;

	snprintf(path, sizeof(path), "%s/%s/counters", vmmd.root, sb->id);
	if (guest_counters_open(path, &c, &e) < 0) {
		msgpack_pack_array(pk, 0);
		return;
	}
	for (uint32_t nr = 0; nr < GUEST_NR_MAX; nr++)
		if (atomic_load(&c->trapped[nr]) || atomic_load(&c->denied[nr]))
			n++;
	msgpack_pack_array(pk, n);
	for (uint32_t nr = 0; nr < GUEST_NR_MAX && n; nr++) {
		uint64_t t = atomic_load(&c->trapped[nr]), d = atomic_load(&c->denied[nr]);
		char *name;
		if (!t && !d)
			continue;
		n--;
		name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, (int)nr);
		msgpack_pack_map(pk, 4);
		qmsg_pack_cstr(pk, "nr");
		msgpack_pack_uint32(pk, nr);
		qmsg_pack_cstr(pk, "name");
		qmsg_pack_cstr(pk, name);
		qmsg_pack_cstr(pk, "trapped");
		msgpack_pack_uint64(pk, t);
		qmsg_pack_cstr(pk, "denied");
		msgpack_pack_uint64(pk, d);
		free(name);
	}
	guest_counters_unmap(c);
}

static int op_inspect(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *sb = req_sandbox(req, err);
	msgpack_packer *pk;

	if (!sb)
		return -err->code;
	qmsg_begin(reply, "inspect", STATE_FIELDS + 12);
	pk = &reply->pk;
	pack_state_fields(pk, sb);
	qmsg_put_int(reply, "supervisor_pid", sb->pid);
	qmsg_put_uint(reply, "pid_start", sb->pid_start);
	qmsg_put_int(reply, "init_pid", sb->init_pid);
	qmsg_put_str(reply, "console", sb->console[0] ? sb->console : NULL);
	qmsg_put_key(reply, "cgroups");
	msgpack_pack_array(pk, sb->ncgroups);
	for (size_t i = 0; i < sb->ncgroups; i++)
		qmsg_pack_cstr(pk, sb->cgroups[i]);
	qmsg_put_key(reply, "reserved");
	pack_time(pk, sb->reserved_ns);
	qmsg_put_key(reply, "started");
	pack_time(pk, sb->started_ns);
	qmsg_put_key(reply, "exited");
	pack_time(pk, sb->exited_ns);
	qmsg_put_key(reply, "exit");
	if (sb->has_exit) {
		msgpack_pack_map(pk, 3);
		qmsg_pack_cstr(pk, "status");
		msgpack_pack_int64(pk, sb->exit_status);
		qmsg_pack_cstr(pk, "exit_code");
		msgpack_pack_int64(pk, sb->exit_code);
		qmsg_pack_cstr(pk, "signal");
		msgpack_pack_int64(pk, sb->exit_signal);
	} else {
		msgpack_pack_nil(pk);
	}
	{
		char dir[PATH_MAX + SANDBOX_ID_MAX + 2];
		snprintf(dir, sizeof(dir), "%s/%s", vmmd.root, sb->id);
		qmsg_put_str(reply, "state_dir", dir);
	}
	qmsg_put_key(reply, "syscalls");
	pack_syscalls(pk, sb);
	qmsg_put_key(reply, "hibernation");
	if (sb->hib == HIB_NONE) {
		msgpack_pack_nil(pk);
	} else {
		msgpack_pack_map(pk, 5);
		qmsg_pack_cstr(pk, "state");
		qmsg_pack_cstr(pk, hib_name(sb->hib));
		qmsg_pack_cstr(pk, "auto_wake");
		if (sb->hib_manual)
			msgpack_pack_false(pk);
		else
			msgpack_pack_true(pk);
		qmsg_pack_cstr(pk, "since");
		pack_time(pk, sb->hib_ns);
		qmsg_pack_cstr(pk, "swapped_bytes");
		msgpack_pack_uint64(pk, sb->hib_swapped);
		qmsg_pack_cstr(pk, "resident_bytes");
		msgpack_pack_uint64(pk, sb->hib_resident);
	}
	return 0;
}

static void pack_opt_u64(msgpack_packer *pk, const char *key, bool has, uint64_t v)
{
	qmsg_pack_cstr(pk, key);
	if (has)
		msgpack_pack_uint64(pk, v);
	else
		msgpack_pack_nil(pk);
}

static void pack_stats(msgpack_packer *pk, const struct sandbox *sb)
{
	struct sandbox_stats st;

	sandbox_stats_read(sb->id, sb->cgroups, sb->ncgroups, NULL, NULL, &st);
	msgpack_pack_map(pk, 7);
	qmsg_pack_cstr(pk, "id");
	qmsg_pack_cstr(pk, sb->id);
	qmsg_pack_cstr(pk, "status");
	qmsg_pack_cstr(pk, sb_status_name(sb->status));
	pack_opt_u64(pk, "cpu_ns", st.has_cpu, st.cpu_ns);
	pack_opt_u64(pk, "memory_bytes", st.has_memory, st.memory_bytes);
	pack_opt_u64(pk, "pids", st.has_pids, st.pids);
	pack_opt_u64(pk, "syscalls_trapped", st.has_syscalls, st.syscalls_trapped);
	pack_opt_u64(pk, "syscalls_denied", st.has_syscalls, st.syscalls_denied);
}

/* {"id"} for one sandbox, {} for all of them. */
static int op_stats(const struct qmsg_in *req, struct qmsg_out *reply, struct qerr *err)
{
	struct sandbox *one = NULL;
	size_t n = 0;

	if (qmsg_find(req->root, "id")) {
		if (!(one = req_sandbox(req, err)))
			return -err->code;
		n = 1;
	} else {
		for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next) {
			supervisor_refresh(sb, true);
			n++;
		}
	}
	qmsg_begin(reply, "stats", 1);
	qmsg_put_key(reply, "sandboxes");
	msgpack_pack_array(&reply->pk, n);
	if (one)
		pack_stats(&reply->pk, one);
	else
		for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next)
			pack_stats(&reply->pk, sb);
	return 0;
}

static const struct {
	const char *op;
	int (*fn)(const struct qmsg_in *, struct qmsg_out *, struct qerr *);
} ops[] = {
    {"ping", op_ping},		 {"shutdown", op_shutdown}, {"reserve", op_reserve},
    {"create", op_create},	 {"abort", op_abort},	    {"created", op_created},
    {"start", op_start},	 {"kill", op_kill},	    {"delete", op_delete},
    {"pause", op_pause},	 {"resume", op_resume},	    {"state", op_state},
    {"list", op_list},		 {"inspect", op_inspect},   {"stats", op_stats},
    {"hibernate", op_hibernate}, {"wake", op_wake},
};

void dispatch(const struct qmsg_in *req, struct qmsg_out *reply)
{
	struct qerr err;
	int r = -ENOSYS;

	qerr_clear(&err);
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		if (strcmp(req->op, ops[i].op) == 0) {
			r = ops[i].fn(req, reply, &err);
			if (r < 0 && !err.msg[0])
				qerr_set(&err, -r, "%s failed", req->op);
			vmmd_metrics_request(ops[i].op, r < 0);
			goto done;
		}
	}
	qerr_set(&err, ENOSYS, "unknown op \"%s\"", req->op);
	vmmd_metrics_request("unknown", true);
done:
	if (r < 0) {
		qlog_debug("%s: %s", req->op, err.msg);
		qmsg_error_reply(reply, &err);
	}
}
