#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "libcommon/sandbox_id.h"

int sandbox_id_check(const char *id, struct qerr *err)
{
	size_t n = strlen(id);

	if (n == 0 || n > SANDBOX_ID_MAX)
		return qerr_set(err, EINVAL, "invalid container id: must be 1 to %d characters",
				SANDBOX_ID_MAX);
	if (!isalnum((unsigned char)id[0]))
		return qerr_set(err, EINVAL, "invalid container id \"%s\"", id);
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return qerr_set(err, EINVAL, "invalid container id \"%s\"", id);
	}
	return 0;
}
