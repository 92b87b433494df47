/* libFuzzer target: hostile bytes into grants_parse (io.quiver.net.peers
 * comes from an OCI annotation).  The invariants: no crash, no leak; a
 * refused spec leaves an empty set and a printable message; an accepted
 * one is within bounds, every entry well formed, and allowing is a pure
 * function of the set. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/netd/grants.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spec[GRANTS_SPEC_MAX + 64];
	struct grant_set set;
	struct qerr err = {0};

	if (size > sizeof(spec) - 1)
		size = sizeof(spec) - 1;
	memcpy(spec, data, size);
	spec[size] = '\0';

	if (grants_parse(spec, &set, &err) < 0) {
		if (err.code != EINVAL || set.n != 0 || !err.msg[0])
			abort();
		for (const char *p = err.msg; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();
		return 0;
	}
	if (set.n > GRANTS_MAX)
		abort();
	for (unsigned i = 0; i < set.n; i++) {
		const struct grant *g = &set.g[i];
		if (g->kind == GRANT_ID && sandbox_id_check(g->id, NULL) < 0)
			abort();
		if (g->kind == GRANT_NET && (g->net & ~g->mask) != 0)
			abort();
		if (g->kind != GRANT_ANY && g->kind != GRANT_ID && g->kind != GRANT_NET)
			abort();
		if (g->kind == GRANT_NET) {
			struct in_addr a = {.s_addr = htonl(g->net)};
			if (!grants_allow(&set, a, g->port ? g->port : 1, NULL))
				abort();
		}
	}
	return 0;
}
