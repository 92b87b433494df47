/* A deleted sandbox's cgroups go with it (guest/cgroups.h does the work and
 * refuses anything that is not a directory on a cgroup filesystem). */
#include "guest/cgroups.h"
#include "services/vmmd/vmmd.h"

int sandbox_remove_cgroups(struct sandbox *sb, struct qerr *err)
{
	if (sb->ncgroups == 0)
		return 0;
	return cgroups_remove(sb->cgroups, sb->ncgroups, err);
}
