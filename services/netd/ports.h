/* Published ports: the spec a sandbox asks for ("8080:80",
 * "8080:80/tcp", "127.0.0.1:5353:53/udp", comma-separated), and the rule
 * that two sandboxes cannot publish the same host port.
 *
 * The spec comes from an OCI annotation, so it is hostile input: the
 * grammar is exact (no spaces, no signs, no leading zeros, no empty
 * mappings), every bound is checked, and error messages quote the
 * offending text with non-printable bytes replaced.
 *
 *   spec    := "" | mapping ("," mapping)*        at most PORTS_MAX
 *   mapping := [ipv4 ":"] port ":" port ["/" ("tcp" | "udp")]
 *   port    := 1..65535 in decimal
 *
 * A host address of 0.0.0.0, or none, means every local address. */
#ifndef QUIVER_NETD_PORTS_H
#define QUIVER_NETD_PORTS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"

#define PORTS_MAX 64
/* The longest mapping, "255.255.255.255:65535:65535/tcp". */
#define PORTS_MAPPING_MAX 31
/* The longest spec: PORTS_MAX of those and the commas between them. */
#define PORTS_SPEC_MAX (PORTS_MAX * (PORTS_MAPPING_MAX + 1) - 1)

enum port_proto {
	PORT_TCP,
	PORT_UDP,
};

struct port_map {
	struct in_addr host_ip; /* INADDR_ANY: every local address */
	uint16_t host_port;
	uint16_t sandbox_port;
	enum port_proto proto;
};

struct port_set {
	unsigned n;
	struct port_map map[PORTS_MAX];
};

/* Parse spec into *out.  Refuses (-EINVAL) anything outside the grammar,
 * more than PORTS_MAX mappings, and a spec that publishes one host port
 * twice.  *out is zeroed first, also on failure. */
int ports_parse(const char *spec, struct port_set *out, struct qerr *err);

/* Check a set that did not come from ports_parse (a caller's struct):
 * the bounds and rules the parser enforces.  -EINVAL, naming the mapping. */
int ports_validate(const struct port_set *set, struct qerr *err);

/* The canonical spec of set: "8080:80/tcp,127.0.0.1:5353:53/udp" (the
 * protocol always, the host address only when not 0.0.0.0).  parse(format(s))
 * gives s back.  Returns the length written (a buffer of PORTS_SPEC_MAX + 1
 * bytes always suffices), or -ENOBUFS. */
int ports_format(const struct port_set *set, char *buf, size_t len, struct qerr *err);

/* Same protocol, same host port, and the host addresses overlap (equal, or
 * either is 0.0.0.0). */
bool port_maps_overlap(const struct port_map *a, const struct port_map *b);

/* -EADDRINUSE, naming owner, when a mapping of want overlaps one of have. */
int ports_check_conflict(const struct port_set *want, const struct port_set *have,
			 const char *owner, struct qerr *err);

const char *port_proto_name(enum port_proto proto);

#endif
