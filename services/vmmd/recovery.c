/* Start-up recovery: a vmmd killed with -9 loses nothing.  Every
 * ROOT/ID/state.json is read back, live supervisors are re-adopted through
 * new pidfds (their start time must match, so a reused pid is never taken
 * for ours), dead ones are marked stopped from their exit report, and
 * reservations whose qctl went away are dropped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/statefile.h"
#include "services/vmmd/vmmd.h"

static void recover_one(const char *id)
{
	struct sandbox *sb;
	struct qerr err;

	if (statefile_sweep(vmmd.rootfd, id, &err) < 0)
		qlog_warn("%s: %s", id, err.msg);
	if (sandbox_load(id, &sb, &err) < 0) {
		/* Not ours to delete: leave it for an operator to look at. */
		qlog_warn("%s: not recovered: %s", id, err.msg);
		return;
	}
	switch (sb->status) {
	case SB_CREATING:
		if (now_ns() - sb->reserved_ns > CREATING_GRACE_NS) {
			qlog_info("%s: dropping a stale reservation", id);
			sandbox_remove_dir(id, NULL);
			json_decref(sb->annotations);
			free(sb);
			return;
		}
		break;
	case SB_CREATED:
	case SB_RUNNING:
	case SB_PAUSED:
		if (supervisor_watch(sb, &err) < 0) {
			qlog_info("%s: supervisor %d is gone", id, (int)sb->pid);
			sandbox_insert(sb);
			supervisor_exited(sb, true);
			return;
		}
		qlog_info("%s: re-adopted supervisor %d (%s)", id, (int)sb->pid,
			  sb_status_name(sb->status));
		if (sb->hib == HIB_DONE && !sb->hib_manual) {
			char memcg[PATH_MAX];
			if (memcg_dir(sb, memcg, sizeof(memcg)) == 0)
				wake_watch_start(sb, memcg, false);
		}
		break;
	default:
		break;
	}
	sandbox_insert(sb);
}

int recovery_scan(struct qerr *err)
{
	cleanup_dir DIR *d = NULL;
	struct dirent *de;
	sandbox_remove_gone();
	int fd = dup(vmmd.rootfd);

	if (fd < 0)
		return qerr_sys(err, errno, "dup");
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return qerr_sys(err, errno, "open %s", vmmd.root);
	}
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (sandbox_id_check(de->d_name, NULL) < 0 || daemon_state_dir(de->d_name))
			continue;
		if (faccessat(vmmd.rootfd, de->d_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		recover_one(de->d_name);
	}
	return 0;
}

void recovery_sweep_creating(void)
{
	struct sandbox *sb = vmmd.sandboxes, *next;
	int64_t now = now_ns();

	for (; sb; sb = next) {
		next = sb->next;
		if (sb->status != SB_CREATING || now - sb->reserved_ns <= CREATING_GRACE_NS)
			continue;
		qlog_info("%s: reservation expired (its qctl went away)", sb->id);
		sandbox_remove_dir(sb->id, NULL);
		sandbox_destroy(sb);
	}
}
