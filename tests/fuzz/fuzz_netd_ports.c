/* libFuzzer target: hostile bytes into ports_parse (the published-ports
 * spec comes from an OCI annotation).  The invariants: no crash, no leak;
 * a refused spec leaves an empty set and a printable message; an accepted
 * one is within bounds, passes ports_validate, and survives the round trip
 * format -> parse -> format unchanged; and every mapping conflicts with
 * itself, so a sandbox can never publish what another already holds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/netd/ports.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spec[PORTS_SPEC_MAX + 64], text[PORTS_SPEC_MAX + 1], again[PORTS_SPEC_MAX + 1];
	struct port_set set, back;
	struct qerr err = {0};
	int n;

	/* Longer input is cut, which still exercises the length bound. */
	if (size > sizeof(spec) - 1)
		size = sizeof(spec) - 1;
	memcpy(spec, data, size);
	spec[size] = '\0';

	if (ports_parse(spec, &set, &err) < 0) {
		if (err.code != EINVAL || set.n != 0 || !err.msg[0])
			abort();
		for (const char *p = err.msg; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort(); /* hostile bytes reached a message */
		return 0;
	}
	if (set.n > PORTS_MAX || ports_validate(&set, &err) < 0)
		abort();
	n = ports_format(&set, text, sizeof(text), &err);
	if (n < 0 || (size_t)n != strlen(text) || n > PORTS_SPEC_MAX)
		abort();
	if (ports_parse(text, &back, &err) < 0 || memcmp(&set, &back, sizeof(set)) != 0)
		abort();
	if (ports_format(&back, again, sizeof(again), &err) != n || strcmp(text, again) != 0)
		abort();
	if (set.n > 0 && ports_check_conflict(&set, &back, "self", &err) != -EADDRINUSE)
		abort();
	for (unsigned i = 0; i < set.n; i++)
		if (set.map[i].host_port == 0 || set.map[i].sandbox_port == 0)
			abort();
	return 0;
}
