/* poold's swap area for hibernated sandboxes (swap_area.c). */
#ifndef QUIVER_POOLD_SWAP_AREA_H
#define QUIVER_POOLD_SWAP_AREA_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"

struct swap_area {
	char path[PATH_MAX];
	uint64_t mib;
	bool active;
};

/* Make and activate STATE_DIR/swap.img of mib MiB, or adopt it when it is
 * already active. */
int swap_area_start(struct swap_area *s, const char *state_dir, uint64_t mib, struct qerr *err);
/* swapoff (pages come back into memory) and remove; left active when that
 * fails. */
void swap_area_stop(struct swap_area *s);
/* From /proc/swaps, in KiB; -ENOENT when path is not an active area. */
int swap_area_usage(const char *path, uint64_t *size_kib, uint64_t *used_kib);

#endif
