/* Sandbox ids: one rule for qctl (which checks before it does anything) and
 * vmmd (which must not trust qctl).  An id names a directory under the
 * runtime root, so runc's rule applies: 1 to SANDBOX_ID_MAX characters of
 * [A-Za-z0-9_.-], starting with a letter or digit (no '/', no "..", no
 * hidden names). */
#ifndef QUIVER_SANDBOX_ID_H
#define QUIVER_SANDBOX_ID_H

#include "libcommon/err.h"

#define SANDBOX_ID_MAX 64

int sandbox_id_check(const char *id, struct qerr *err);

#endif
