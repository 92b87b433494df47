/* What a quiver-mode sandbox may connect to (docs/netd.md, "Policy"):
 * the annotation io.quiver.net.peers, a comma-separated list of
 *
 *	*		anything
 *	ID[:PORT]	the sandbox ID of this node (any of its ports, or PORT)
 *	IP[/N][:PORT]	an address or a network (IPv4), any port or PORT
 *
 * A name that reads as an IPv4 address is an address.  Without the
 * annotation a sandbox may connect to nothing but itself (its own address
 * and loopback).  The spec comes from the bundle: hostile input, parsed
 * strictly. */
#ifndef QUIVER_NETD_GRANTS_H
#define QUIVER_NETD_GRANTS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/sandbox_id.h"

#define GRANTS_MAX	64
#define GRANTS_SPEC_MAX 2047

enum grant_kind { GRANT_ANY = 1, GRANT_ID, GRANT_NET };

struct grant {
	enum grant_kind kind;
	char id[SANDBOX_ID_MAX + 1]; /* GRANT_ID */
	uint32_t net, mask;	     /* GRANT_NET, host byte order */
	uint16_t port;		     /* 0: any */
};

struct grant_set {
	struct grant g[GRANTS_MAX];
	unsigned n;
};

/* Parse spec (NULL or "": nothing granted).  -EINVAL with a message that
 * quotes the bad entry; *out is empty then. */
int grants_parse(const char *spec, struct grant_set *out, struct qerr *err);

/* May a sandbox with these grants connect to ip:port, where the sandbox of
 * this node at ip is `id` (NULL when ip is no sandbox of this node's)? */
bool grants_allow(const struct grant_set *set, struct in_addr ip, uint16_t port, const char *id);

#endif
