/* The registry: every sandbox vmmd knows, and its record ROOT/ID/state.json
 * (written crash-safe through libcommon/statefile, read back bounded). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/statefile.h"
#include "services/vmmd/vmmd.h"

static const char *const status_names[SB_NSTATUS] = {
    [SB_CREATING] = "creating", [SB_CREATED] = "created", [SB_RUNNING] = "running",
    [SB_PAUSED] = "paused",	[SB_STOPPED] = "stopped",
};

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* RFC 3339 with nanoseconds, UTC, as runc prints "created". */
void format_rfc3339(int64_t ns, char *buf, size_t len)
{
	time_t sec = (time_t)(ns / 1000000000LL);
	struct tm tm;
	char base[32];

	gmtime_r(&sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%09lldZ", base, (long long)(ns % 1000000000LL));
}

const char *sb_status_name(enum sb_status s)
{
	return s < SB_NSTATUS ? status_names[s] : "unknown";
}

int sb_status_parse(const char *s, enum sb_status *out)
{
	for (int i = 0; i < SB_NSTATUS; i++) {
		if (strcmp(s, status_names[i]) == 0) {
			*out = (enum sb_status)i;
			return 0;
		}
	}
	return -EINVAL;
}

struct sandbox *sandbox_find(const char *id)
{
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next)
		if (strcmp(sb->id, id) == 0)
			return sb;
	return NULL;
}

size_t sandbox_count(void)
{
	size_t n = 0;
	for (struct sandbox *sb = vmmd.sandboxes; sb; sb = sb->next)
		n++;
	return n;
}

struct sandbox *sandbox_new(const char *id)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));

	if (!sb)
		return NULL;
	snprintf(sb->id, sizeof(sb->id), "%s", id);
	sb->annotations = json_object();
	sb->pidfd = -1;
	sb->exit_code = -1;
	if (!sb->annotations) {
		free(sb);
		return NULL;
	}
	return sb;
}

void sandbox_insert(struct sandbox *sb)
{
	pthread_mutex_lock(&vmmd.lock);
	sb->next = vmmd.sandboxes;
	vmmd.sandboxes = sb;
	pthread_mutex_unlock(&vmmd.lock);
}

static void sandbox_free(struct sandbox *sb)
{
	supervisor_unwatch(sb);
	wake_watch_stop(sb);
	for (size_t i = 0; i < sb->ncgroups; i++)
		free(sb->cgroups[i]);
	json_decref(sb->annotations);
	free(sb);
}

void sandbox_destroy(struct sandbox *sb)
{
	pthread_mutex_lock(&vmmd.lock);
	for (struct sandbox **pp = &vmmd.sandboxes; *pp; pp = &(*pp)->next) {
		if (*pp == sb) {
			*pp = sb->next;
			break;
		}
	}
	pthread_mutex_unlock(&vmmd.lock);
	sandbox_free(sb);
}

static json_t *sandbox_to_json(const struct sandbox *sb)
{
	json_t *o = json_object();
	json_t *cg = json_array();

	for (size_t i = 0; i < sb->ncgroups; i++)
		json_array_append_new(cg, json_string(sb->cgroups[i]));
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "id", json_string(sb->id));
	json_object_set_new(o, "bundle", json_string(sb->bundle));
	json_object_set_new(o, "status", json_string(sb_status_name(sb->status)));
	json_object_set_new(o, "paused_from", json_string(sb_status_name(sb->paused_from)));
	json_object_set_new(o, "pid", json_integer(sb->pid));
	json_object_set_new(o, "pid_start", json_integer((json_int_t)sb->pid_start));
	json_object_set_new(o, "init_pid", json_integer(sb->init_pid));
	json_object_set_new(o, "cgroups", cg);
	json_object_set(o, "annotations", sb->annotations);
	json_object_set_new(o, "console", json_string(sb->console));
	json_object_set_new(o, "pooled", json_boolean(sb->pooled));
	json_object_set_new(o, "own_cgroups", json_boolean(sb->own_cgroups));
	json_object_set_new(o, "reserved_ns", json_integer(sb->reserved_ns));
	json_object_set_new(o, "created_ns", json_integer(sb->created_ns));
	json_object_set_new(o, "started_ns", json_integer(sb->started_ns));
	json_object_set_new(o, "exited_ns", json_integer(sb->exited_ns));
	if (sb->hib != HIB_NONE) {
		/* hibernating or hibernated: after a restart, hibernated (it is
		 * frozen, and what was paged out stays out) */
		json_object_set_new(o, "hibernated_ns", json_integer(sb->hib_ns));
		json_object_set_new(o, "swapped_bytes", json_integer((json_int_t)sb->hib_swapped));
		json_object_set_new(o, "resident_bytes",
				    json_integer((json_int_t)sb->hib_resident));
		json_object_set_new(o, "auto_wake", json_boolean(!sb->hib_manual));
	}
	if (sb->has_exit) {
		json_object_set_new(o, "exit_status", json_integer(sb->exit_status));
		json_object_set_new(o, "exit_code", json_integer(sb->exit_code));
		json_object_set_new(o, "exit_signal", json_integer(sb->exit_signal));
	}
	return o;
}

int sandbox_save(struct sandbox *sb, struct qerr *err)
{
	char name[SANDBOX_ID_MAX + 16];
	json_t *o = sandbox_to_json(sb);
	cleanup_free char *text = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (!text)
		return qerr_set(err, ENOMEM, "state.json: out of memory");
	snprintf(name, sizeof(name), "%s/state.json", sb->id);
	/* Every write is atomic (tmp + rename), so a crash of vmmd leaves the
	 * old record or the new one.  Only the final one, with the exit
	 * status, is also fsynced: after a machine crash the sandbox is gone
	 * whatever the record said (recovery finds its supervisor dead), but
	 * how it ended before the crash is worth keeping.  The fsyncs were a
	 * fifth of a warm start. */
	if (sb->status != SB_STOPPED)
		return statefile_write_atomic(vmmd.rootfd, name, text, strlen(text), 0600, err);
	return statefile_write(vmmd.rootfd, name, text, strlen(text), err);
}

/* Getters that accept a record written by us but tampered with: wrong types
 * are errors, not crashes. */
static int json_get_str(json_t *o, const char *key, char *dst, size_t len, bool required,
			struct qerr *err)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return required ? qerr_set(err, EINVAL, "state.json: %s: missing", key) : 0;
	if (!json_is_string(v) || json_string_length(v) >= len ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return qerr_set(err, EINVAL, "state.json: %s: not a valid string", key);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int json_get_i64(json_t *o, const char *key, int64_t min, int64_t max, int64_t *out,
			struct qerr *err)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return qerr_set(err, EINVAL, "state.json: %s: out of range", key);
	*out = json_integer_value(v);
	return 0;
}

int sandbox_load(const char *id, struct sandbox **out, struct qerr *err)
{
	char name[SANDBOX_ID_MAX + 16], status[16] = "", paused_from[16] = "created";
	cleanup_free char *text = NULL;
	size_t len;
	json_error_t jerr;
	json_t *o, *cg, *an;
	struct sandbox *sb;
	int64_t v;
	int r;

	snprintf(name, sizeof(name), "%s/state.json", id);
	r = statefile_read(vmmd.rootfd, name, STATE_FILE_MAX, &text, &len, err);
	if (r < 0)
		return r;
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return qerr_set(err, EINVAL, "%s: not a JSON object", name);
	}
	sb = sandbox_new(id);
	if (!sb) {
		json_decref(o);
		return qerr_set(err, ENOMEM, "out of memory");
	}
	r = json_get_str(o, "bundle", sb->bundle, sizeof(sb->bundle), true, err);
	if (r == 0)
		r = json_get_str(o, "status", status, sizeof(status), true, err);
	if (r == 0)
		r = json_get_str(o, "paused_from", paused_from, sizeof(paused_from), false, err);
	if (r == 0)
		r = json_get_str(o, "console", sb->console, sizeof(sb->console), false, err);
	sb->pooled = json_is_true(json_object_get(o, "pooled"));
	sb->own_cgroups = json_is_true(json_object_get(o, "own_cgroups"));
	if (r == 0 && (sb_status_parse(status, &sb->status) < 0 ||
		       sb_status_parse(paused_from, &sb->paused_from) < 0))
		r = qerr_set(err, EINVAL, "state.json: status: unknown");
	v = 0;
	if (r == 0 && (r = json_get_i64(o, "pid", 0, INT32_MAX, &v, err)) == 0)
		sb->pid = (pid_t)v;
	v = 0;
	if (r == 0 && (r = json_get_i64(o, "pid_start", 0, INT64_MAX, &v, err)) == 0)
		sb->pid_start = (uint64_t)v;
	v = 0;
	if (r == 0 && (r = json_get_i64(o, "init_pid", 0, INT32_MAX, &v, err)) == 0)
		sb->init_pid = (pid_t)v;
	if (r == 0)
		r = json_get_i64(o, "reserved_ns", 0, INT64_MAX, &sb->reserved_ns, err);
	if (r == 0)
		r = json_get_i64(o, "created_ns", 0, INT64_MAX, &sb->created_ns, err);
	if (r == 0)
		r = json_get_i64(o, "started_ns", 0, INT64_MAX, &sb->started_ns, err);
	if (r == 0)
		r = json_get_i64(o, "exited_ns", 0, INT64_MAX, &sb->exited_ns, err);
	if (r == 0 && json_object_get(o, "hibernated_ns")) {
		int64_t sw = 0, res = 0;
		r = json_get_i64(o, "hibernated_ns", 1, INT64_MAX, &sb->hib_ns, err);
		if (r == 0)
			r = json_get_i64(o, "swapped_bytes", 0, INT64_MAX, &sw, err);
		if (r == 0)
			r = json_get_i64(o, "resident_bytes", 0, INT64_MAX, &res, err);
		/* only a frozen sandbox is hibernated */
		sb->hib = sb->status == SB_PAUSED ? HIB_DONE : HIB_NONE;
		sb->hib_swapped = (uint64_t)sw;
		sb->hib_resident = (uint64_t)res;
		/* absent (an older vmmd's file): woken by connections */
		sb->hib_manual = json_is_false(json_object_get(o, "auto_wake"));
	}
	if (r == 0 && json_object_get(o, "exit_code")) {
		int64_t st = 0, code = 0, sig = 0;
		r = json_get_i64(o, "exit_status", INT32_MIN, INT32_MAX, &st, err);
		if (r == 0)
			r = json_get_i64(o, "exit_code", -1, 255, &code, err);
		if (r == 0)
			r = json_get_i64(o, "exit_signal", 0, 128, &sig, err);
		sb->has_exit = true;
		sb->exit_status = (int)st;
		sb->exit_code = (int)code;
		sb->exit_signal = (int)sig;
	}
	cg = json_object_get(o, "cgroups");
	if (r == 0 && cg) {
		size_t i;
		json_t *item;
		if (!json_is_array(cg) || json_array_size(cg) > SANDBOX_CGROUPS_MAX)
			r = qerr_set(err, EINVAL, "state.json: cgroups: not a bounded array");
		json_array_foreach (cg, i, item) {
			if (r < 0)
				break;
			if (!json_is_string(item) || json_string_value(item)[0] != '/' ||
			    json_string_length(item) >= PATH_MAX) {
				r = qerr_set(err, EINVAL, "state.json: cgroups[%zu]: bad path", i);
				break;
			}
			sb->cgroups[sb->ncgroups++] = strdup(json_string_value(item));
		}
	}
	an = json_object_get(o, "annotations");
	if (r == 0 && an) {
		const char *k;
		json_t *val;
		if (!json_is_object(an) || json_object_size(an) > SANDBOX_ANNOT_MAX)
			r = qerr_set(err, EINVAL, "state.json: annotations: not a bounded object");
		else
			json_object_foreach (an, k, val) {
				if (!json_is_string(val)) {
					r = qerr_set(err, EINVAL,
						     "state.json: annotations: not a string");
					break;
				}
			}
		if (r == 0)
			json_object_update(sb->annotations, an);
	}
	json_decref(o);
	if (r < 0) {
		for (size_t i = 0; i < sb->ncgroups; i++)
			free(sb->cgroups[i]);
		json_decref(sb->annotations);
		free(sb);
		return r;
	}
	*out = sb;
	return 0;
}

/* Remove dirfd's entries recursively; no symlink is followed. */
static int remove_tree_at(int dirfd, int depth)
{
	cleanup_dir DIR *d = NULL;
	struct dirent *de;
	int fd, r = 0;

	if (depth > 8)
		return -ELOOP;
	fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0); /* the loop may spawn meanwhile */
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == 0)
			continue;
		if (errno == EISDIR) {
			cleanup_close int sub = openat(
			    dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				remove_tree_at(sub, depth + 1);
			if (unlinkat(dirfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				r = -errno;
		} else if (errno != ENOENT) {
			r = -errno;
		}
	}
	return r;
}

/* durable: the removal is on disk when this returns (an fsync of the
 * root, ~0.7 ms here, on vmmd's loop). */
static int remove_dir(const char *id, bool durable, struct qerr *err)
{
	cleanup_close int fd =
	    openat(vmmd.rootfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return qerr_sys(err, errno, "open %s/%s", vmmd.root, id);
	}
	remove_tree_at(fd, 0);
	if (unlinkat(vmmd.rootfd, id, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return qerr_sys(err, errno, "remove %s/%s", vmmd.root, id);
	if (durable)
		fsync(vmmd.rootfd);
	return 0;
}

int sandbox_remove_dir(const char *id, struct qerr *err)
{
	return remove_dir(id, true, err);
}

#define GONE_PREFIX ".gone-"

/* A ".gone-" directory that a crash brings back is removed at the next
 * start (sandbox_remove_gone): no fsync for it. */
static void remove_gone(void *arg)
{
	char *name = arg;
	struct qerr err;
	if (remove_dir(name, false, &err) < 0)
		qlog_warn("%s", err.msg);
	free(name);
}

int sandbox_remove_dir_later(const char *id, struct qerr *err)
{
	static unsigned long seq;
	char *name = NULL;
	if (asprintf(&name, GONE_PREFIX "%s-%d-%lu", id, (int)getpid(), ++seq) < 0)
		return sandbox_remove_dir(id, err);
	if (renameat(vmmd.rootfd, id, vmmd.rootfd, name) < 0) {
		free(name);
		return errno == ENOENT ? 0 : sandbox_remove_dir(id, err);
	}
	background(remove_gone, name);
	return 0;
}

void sandbox_remove_gone(void)
{
	/* a descriptor of its own: a dup would share (and move) rootfd's
	 * directory offset */
	int fd = openat(vmmd.rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		struct qerr err;
		if (strncmp(de->d_name, GONE_PREFIX, strlen(GONE_PREFIX)) == 0 &&
		    remove_dir(de->d_name, false, &err) < 0)
			qlog_warn("%s", err.msg);
	}
	closedir(d);
}
