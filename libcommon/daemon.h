/* What every Quiver daemon does at start-up (vmmd, poold).
 *
 *	int ready_fd = foreground ? -1 : daemon_detach();
 *	...                          // lock, listen
 *	daemon_ready(&ready_fd, 'R'); // the first process exits 0
 *
 * The first process waits for one byte from the daemon: 'R' ready, 'B'
 * another daemon already serves the root; end of file means it failed. */
#ifndef QUIVER_DAEMON_H
#define QUIVER_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

#include "libcommon/log.h"

/* mkdir -p: parents 0755, the last one mode; existing ones are fine. */
int daemon_mkdir_p(const char *path, mode_t mode);
/* Fork; the parent waits for daemon_ready and exits.  Returns the
 * child's end of the pipe. */
int daemon_detach(void);
void daemon_ready(int *fd, char c);
void daemon_stdio_to_null(void);
/* Open ROOT (*rootfd) and take ROOT/NAME.lock: the lock's fd (keep it
 * open), or -1 when another daemon holds it (the first process has been
 * told 'B'; exit 0).  Any other failure is fatal. */
int daemon_claim_root(const char *root, const char *name, int *rootfd, int *readyfd);
/* The log: logpath, "-" for stderr, or NULL for ROOT/NAME.log. */
void daemon_log_init(const char *prog, const char *root, const char *name, const char *logpath,
		     enum qlog_format fmt, enum qlog_level level);
/* A program installed next to ours (quiver-guest next to quiver-vmmd), or
 * $env when set.  Returns -ENAMETOOLONG or -errno. */
int daemon_sibling(const char *prog, const char *env, char *buf, size_t len);

#endif
