/* OCI hooks (runtime-spec config.md, "POSIX-platform Hooks"): one runner,
 * used by whoever runs a kind of hook (docs/guest-protocol.md):
 *   prestart, createRuntime  G, after S is cloned, before S builds the rootfs
 *   createContainer          S (or its rootfs helper), before pivot_root
 *   startContainer           W, after `start`, before the execve
 *   poststart, poststop      vmmd, after `start` / after `delete`
 */
#ifndef QUIVER_GUEST_HOOKS_H
#define QUIVER_GUEST_HOOKS_H

#include <stdbool.h>
#include <sys/types.h>

#include "libcommon/err.h"
#include "guest/oci_config.h"

/* The OCI state document a hook reads on stdin: ociVersion, id, status,
 * pid (omitted when <= 0), bundle, annotations (from cfg).  malloc'd; NULL
 * with err filled on failure. */
char *hooks_state_json(const struct guest_config *cfg, const char *id, const char *status,
		       pid_t pid, struct qerr *err);

/* Run the hooks of list in order, each with state on stdin, its args and
 * env, stdout and stderr on /dev/null, killed after its timeout.  Stops at
 * the first failure: "hook createRuntime[0] /path: exit status 3".  With
 * keep_going (poststart, poststop: the spec only wants a warning), every
 * hook runs, failures are logged, and the result is 0.  Safe to call in a
 * multi-threaded process (the child only calls async-signal-safe
 * functions). */
int hooks_run(const struct guest_hook_list *list, const char *kind, const char *state,
	      bool keep_going, struct qerr *err);

static inline bool hooks_any(const struct guest_hook_list *list)
{
	return list->n > 0;
}

#endif
