/* Bridge mode's nftables ruleset: one table, `ip quiver`, that netd owns
 * whole and rebuilds from the leases in one atomic transaction on every
 * change.  No other table is read or written: podman/netavark, iptables-nft
 * and firewalld keep theirs.
 *
 *   prerouting, output (nat)  fib daddr type local -> published
 *   published                 one DNAT rule per published port
 *   postrouting (nat)         masquerade the subnet leaving by any other
 *                             interface than the bridge, and DNAT'ed
 *                             traffic from the subnet back into it (a
 *                             sandbox reaching a published port: hairpin)
 *   forward (filter)          from the bridge: sources in the subnet only;
 *                             replies and DNAT'ed connections pass, new
 *                             flows go to grants; into it: replies and
 *                             DNAT'ed connections, anything else dropped
 *   input (filter)            from the bridge to the host: replies pass,
 *                             new flows go to grants
 *   grants                    one accept per io.quiver.net.peers grant of
 *                             each sandbox (its lease's peers), then
 *                             reject: a TCP reset or ICMP port unreachable
 *                             in the subnet, ICMP net unreachable beyond
 *   redirects (output)        no ICMP redirects into the bridge
 *
 * Through libnftables (nft's own parser and its netlink batching), not
 * hand-built nftnl expressions: the text is what `nft list` prints back, so
 * the ruleset is reviewable as written and errors come back in nft's words.
 */
#ifndef QUIVER_NETD_RULESET_H
#define QUIVER_NETD_RULESET_H

#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"
#include "services/netd/ipam.h"

#define RULESET_FAMILY "ip"
#define RULESET_TABLE  "quiver"
/* The table's named counters: connections in through a published port,
 * and out of the host through the masquerade (NAT chains see a
 * connection's first packet only). */
#define RULESET_GATEWAY_IN  "gateway_in"
#define RULESET_GATEWAY_OUT "gateway_out"

struct ruleset;

int ruleset_open(struct ruleset **out, struct qerr *err);
void ruleset_close(struct ruleset *rs);

/* The nft script that replaces the table with one for these leases;
 * *text is malloc'd. */
int ruleset_build(const char *bridge, const struct ipam_subnet *sn, const struct ipam_lease *leases,
		  size_t n, char **text, struct qerr *err);
/* Build and run it: all of it or, on failure, none of it. */
int ruleset_apply(struct ruleset *rs, const char *bridge, const struct ipam_subnet *sn,
		  const struct ipam_lease *leases, size_t n, struct qerr *err);
/* Delete the table; 0 also when there is none. */
int ruleset_delete(struct ruleset *rs, struct qerr *err);
/* `nft list table ip quiver` into *text (malloc'd); -ENOENT when there is
 * no table. */
int ruleset_list(struct ruleset *rs, char **text, struct qerr *err);
/* The gateway counters' packets: each a connection (or UDP flow).  rs
 * must be used by one thread at a time: the metrics thread opens its
 * own. */
int ruleset_gateway(struct ruleset *rs, uint64_t *in, uint64_t *out, struct qerr *err);

#endif
