/* netd's bridge mode: each sandbox gets a veth pair whose host end is a
 * port of one Linux bridge and whose other end is eth0 in the sandbox's
 * network namespace, an address from the bridge's subnet (ipam.h), egress
 * NAT and published ports (ruleset.h).  docs/netd.md, "Bridge mode".
 *
 * Nothing leaks when a sandbox goes away or netd dies:
 *  - attach writes the lease before it creates the veth, and undoes all of
 *    it when a later step fails;
 *  - a sandbox's netns dying deletes its veth pair; the link monitor sees
 *    the host end go and releases the lease;
 *  - bridge_open reconciles what a crash or a restart left: a lease whose
 *    veth is gone is released, a veth of ours that no lease holds is
 *    deleted, and the nft table is rebuilt from the leases.
 *
 * Not thread-safe: one thread (netd's loop) calls these. */
#ifndef QUIVER_NETD_BRIDGE_H
#define QUIVER_NETD_BRIDGE_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "libcommon/err.h"
#include "libcommon/sandbox_id.h"
#include "services/netd/ipam.h"
#include "services/netd/ports.h"

#define BRIDGE_DEFAULT_NAME "quiver0"
/* Not podman's 10.88.0.0/16 nor docker's 172.17.0.0/16: they live here too. */
#define BRIDGE_DEFAULT_SUBNET "10.77.0.0/16"
/* The sandbox's end of its veth. */
#define BRIDGE_SANDBOX_IFNAME "eth0"
/* Leases live in this directory under the state directory. */
#define BRIDGE_LEASES_DIR "leases"

/* How traffic between two sandboxes reaches the policy (ruleset.h):
 * through br_netfilter when the kernel has it (auto), or by isolating
 * their bridge ports so that the host routes between them. */
enum bridge_path { BRIDGE_PATH_AUTO, BRIDGE_PATH_NETFILTER, BRIDGE_PATH_ISOLATE };

struct bridge_config {
	const char *name;      /* the bridge; NULL: BRIDGE_DEFAULT_NAME */
	const char *subnet;    /* IPv4 CIDR; NULL: BRIDGE_DEFAULT_SUBNET */
	int state_dirfd;       /* netd's state directory (the caller keeps it) */
	enum bridge_path path; /* 0: auto */
};

/* A sandbox's network, as attach made it. */
struct bridge_lease {
	char id[SANDBOX_ID_MAX + 1];
	struct in_addr addr; /* eth0's address... */
	unsigned prefix;     /* ...and prefix length */
	struct in_addr gateway;
	char host_ifname[IFNAMSIZ];    /* the veth's host end, a port of the bridge */
	char sandbox_ifname[IFNAMSIZ]; /* BRIDGE_SANDBOX_IFNAME */
	struct port_set ports;
};

struct bridge_info {
	char name[IFNAMSIZ];
	char subnet[IPAM_CIDR_LEN];
	struct in_addr gateway;
	size_t leases;
	size_t capacity; /* addresses a sandbox can lease */
};

struct bridge;

/* Make sure the bridge exists, is up and has the gateway address (the
 * first host address of the subnet); set net.ipv4.ip_forward; load the
 * leases and reconcile them with the links that exist; apply the nft
 * table.  -EADDRINUSE when the subnet overlaps a route on another
 * interface; -EINVAL when a lease is outside the subnet (it was changed
 * while sandboxes held addresses). */
int bridge_open(const struct bridge_config *cfg, struct bridge **out, struct qerr *err);

/* Give sandbox id an address and a veth into the netns of netns_fd (eth0
 * there: the address, up, lo up, the default route via the gateway), and
 * publish ports (NULL: none).  peers (io.quiver.net.peers, NULL or "": none)
 * is what the forward and input chains let it reach (ruleset.h); it is
 * kept in the lease, parsed already by the caller.  -EEXIST when id is attached already,
 * -EADDRINUSE (naming the other sandbox) when a port is published
 * already, -ENOSPC when the subnet is full, -EINVAL when netns_fd is not a
 * network namespace or is netd's own.  On failure nothing of it is left. */
int bridge_attach(struct bridge *b, const char *id, int netns_fd, const struct port_set *ports,
		  const char *peers, struct bridge_lease *out, struct qerr *err);

/* Delete id's veth (both ends), release its lease, rebuild the table.
 * 1 when it was attached, 0 when there was nothing to do. */
int bridge_detach(struct bridge *b, const char *id, struct qerr *err);

/* Link events: poll this fd for POLLIN and call bridge_monitor_handle,
 * which releases the lease of every sandbox whose veth vanished (its netns
 * was destroyed without a detach), calls released(id, arg) for each, and
 * rebuilds the table once.  Returns how many leases it released. */
typedef void bridge_released_fn(const char *id, void *arg);
int bridge_monitor_fd(const struct bridge *b);
int bridge_monitor_handle(struct bridge *b, bridge_released_fn *released, void *arg,
			  struct qerr *err);

/* Every lease, in address order; *out is malloc'd (NULL when none). */
int bridge_list(struct bridge *b, struct bridge_lease **out, size_t *n, struct qerr *err);
/* One sandbox's lease: 0, or -ENOENT when it is not attached. */
int bridge_lookup(struct bridge *b, const char *id, struct bridge_lease *out);
void bridge_get_info(struct bridge *b, struct bridge_info *out);

/* Free b.  Without teardown the bridge, the veths, the table and the
 * leases stay, so running sandboxes keep their network and the next
 * bridge_open picks them up.  With teardown (tests, netd --teardown)
 * every veth of ours, the bridge, the nft table and every lease are
 * deleted; errors are reported but do not stop the rest.  b is freed
 * either way. */
int bridge_close(struct bridge *b, bool teardown, struct qerr *err);

#endif
