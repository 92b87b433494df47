/* IPAM for bridge mode: sandbox addresses from one IPv4 subnet, and the
 * leases that hold them.
 *
 * The network address, the first host address (the gateway, on the
 * bridge) and the broadcast address are never leased.  Allocation is
 * next-fit: it continues after the last address handed out and wraps, so
 * a released address is reused as late as possible (conntrack entries
 * and neighbour caches that still name it have time to expire before a
 * new sandbox answers on it).
 *
 * A lease is one file in a directory netd owns, named after the address
 * ("10.88.0.7"), holding what reconcile needs after a restart: the
 * sandbox id, the host end of its veth and its published ports.  It is
 * written to a temporary file and renamed into place with
 * RENAME_NOREPLACE, so a crash leaves either no lease or a complete one,
 * and two writers cannot take one address.  No fsync: a lease describes a
 * veth, which does not survive a machine crash either, so after a reboot
 * every lease is released by reconcile whether it reached the disk or not
 * (docs/netd.md, "Leases and crash safety").  Loading drops, and logs, any
 * file that is not a complete lease.
 */
#ifndef QUIVER_NETD_IPAM_H
#define QUIVER_NETD_IPAM_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "libcommon/sandbox_id.h"
#include "services/netd/grants.h"
#include "services/netd/ports.h"

#define IPAM_PREFIX_MIN 8
#define IPAM_PREFIX_MAX 30
/* "255.255.255.255/32" and a NUL. */
#define IPAM_CIDR_LEN 19

/* The host end of a sandbox's veth: this prefix and 10 lowercase hex
 * digits of a hash of the sandbox id.  Reconcile deletes veths named like
 * this that no lease holds, so the pattern is exact. */
#define IPAM_IFNAME_PREFIX "qv"
#define IPAM_IFNAME_HEX	   10

struct ipam_subnet {
	uint32_t net; /* host byte order */
	unsigned prefix;
};

struct ipam_lease {
	char id[SANDBOX_ID_MAX + 1];
	struct in_addr addr;
	char ifname[IFNAMSIZ]; /* the host end of the sandbox's veth */
	struct port_set ports;
	char peers[GRANTS_SPEC_MAX + 1]; /* io.quiver.net.peers ("": nothing) */
	int ifindex;			 /* of ifname; kept in memory only, 0 when not known */
};

struct ipam;

/* "10.88.0.0/16": a dotted quad, a prefix of IPAM_PREFIX_MIN to
 * IPAM_PREFIX_MAX, host bits zero, and no overlap with 0/8, 127/8,
 * 169.254/16 or 224/3. */
int ipam_subnet_parse(const char *cidr, struct ipam_subnet *out, struct qerr *err);
void ipam_subnet_format(const struct ipam_subnet *sn, char buf[IPAM_CIDR_LEN]);
struct in_addr ipam_subnet_gateway(const struct ipam_subnet *sn);
bool ipam_subnet_contains(const struct ipam_subnet *sn, struct in_addr a);
/* Addresses a sandbox can lease: size minus network, gateway, broadcast. */
uint32_t ipam_subnet_hosts(const struct ipam_subnet *sn);

/* attempt 0, 1, ...: the host ifname for id; a later attempt is taken when
 * an earlier name is in use. */
void ipam_ifname_for(const char *id, unsigned attempt, char buf[IFNAMSIZ]);
bool ipam_ifname_ok(const char *name);

/* Load the leases in dirfd (which is dup'ed; the caller keeps its own):
 * temporary files a crash left and anything that is not a complete lease
 * are removed and logged.  A lease outside sn fails the open (-EINVAL,
 * naming it) and changes nothing: the subnet was reconfigured while
 * sandboxes held addresses from the old one. */
int ipam_open(int dirfd, const struct ipam_subnet *sn, struct ipam **out, struct qerr *err);
void ipam_close(struct ipam *ipam);

/* Lease an address to id, whose host veth will be ifname, with its
 * published ports and its peers spec (each NULL: none; peers must be a
 * valid spec, at most GRANTS_SPEC_MAX long, -EINVAL otherwise).  -EEXIST
 * when id or ifname already holds a lease, -ENOSPC when the subnet is
 * full.  The
 * lease is on disk when this returns; *out points into the table (valid
 * until the next alloc or release). */
int ipam_alloc(struct ipam *ipam, const char *id, const char *ifname, const struct port_set *ports,
	       const char *peers, struct ipam_lease **out, struct qerr *err);

/* Release id's lease: 1 when it had one, 0 when not. */
int ipam_release(struct ipam *ipam, const char *id, struct qerr *err);

struct ipam_lease *ipam_find(struct ipam *ipam, const char *id);
struct ipam_lease *ipam_find_ifname(struct ipam *ipam, const char *ifname);
/* Every lease, in address order; valid until the next alloc or release. */
struct ipam_lease *ipam_leases(struct ipam *ipam, size_t *n);

#endif
