/* Route netlink (NETLINK_ROUTE) with libmnl: the few link, address and
 * route operations bridge mode needs, each one request and its ack.
 *
 * A struct rtnl is one netlink socket, in the netns it was opened for
 * (nsfd, or netd's own with -1) for its whole life.  Errors carry the
 * kernel's extended ack message when it sends one ("Unknown device type",
 * "Nexthop has invalid gateway").  Dumps restart when the kernel reports
 * that the table changed under them (NLM_F_DUMP_INTR). */
#ifndef QUIVER_NETD_RTNL_H
#define QUIVER_NETD_RTNL_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "libcommon/err.h"

struct mnl_socket;

struct rtnl {
	struct mnl_socket *nl;
	unsigned portid;
	unsigned seq;
	char *buf;
};

struct rtnl_link {
	int index;
	char name[IFNAMSIZ];
	char kind[16];	/* "veth", "bridge", ...; "" for none (lo, a NIC) */
	int master;	/* ifindex of the bridge it is a port of; 0: none */
	unsigned flags; /* IFF_* */
};

struct rtnl_addr {
	struct in_addr addr;
	unsigned prefix;
};

struct rtnl_route {
	struct in_addr dst;
	unsigned dst_len;
	int oif; /* 0 when the route has none (multipath, blackhole) */
};

/* nsfd: a network namespace, or -1 for the caller's. */
int rtnl_open(struct rtnl *r, int nsfd, struct qerr *err);
void rtnl_close(struct rtnl *r);
int rtnl_fd(const struct rtnl *r);

/* -ENODEV when there is no such link. */
int rtnl_link_get(struct rtnl *r, const char *name, struct rtnl_link *out, struct qerr *err);
/* Every link; *out is malloc'd. */
int rtnl_link_list(struct rtnl *r, struct rtnl_link **out, size_t *n, struct qerr *err);

/* A bridge with this MAC address, up.  A bridge's MAC set at creation
 * stays; otherwise the kernel gives it the lowest MAC among its ports, and
 * every sandbox's neighbour entry for the gateway goes stale whenever the
 * port with the lowest one leaves. */
int rtnl_bridge_add(struct rtnl *r, const char *name, const unsigned char mac[6], struct qerr *err);
/* A veth pair in one request: name here, a port of master (0: none), up;
 * peer, down, created directly in the netns of peer_nsfd (-1: here).
 * Either both ends exist afterwards or neither does. */
int rtnl_veth_add(struct rtnl *r, const char *name, int master, const char *peer, int peer_nsfd,
		  struct qerr *err);
/* Delete by ifindex; 0 also when it is already gone. */
int rtnl_link_del(struct rtnl *r, int index, struct qerr *err);
/* Bring a link up or down and, when master >= 0, make it a port of master
 * (0: of none). */
int rtnl_link_set(struct rtnl *r, int index, bool up, int master, struct qerr *err);
/* Mark a bridge port isolated (or not): an isolated port exchanges frames
 * with the bridge itself and non-isolated ports only, never with another
 * isolated port. */
int rtnl_bridge_port_isolate(struct rtnl *r, int index, bool on, struct qerr *err);
/* on: have br_netfilter pass this bridge's IPv4 frames through the ip
 * family's hooks whatever net.bridge.bridge-nf-call-iptables says. */
int rtnl_bridge_nf_call_iptables(struct rtnl *r, int index, bool on, struct qerr *err);
/* Before the link is up: no IPv6 link-local address on it (address
 * generation mode none), so that nothing reaches it over IPv6. */
int rtnl_link_no_ipv6(struct rtnl *r, int index, struct qerr *err);
/* Forget the neighbour entry for a on link index; 0 also when none. */
int rtnl_neigh_del(struct rtnl *r, int index, struct in_addr a, struct qerr *err);

/* An IPv4 address with its broadcast address; -EEXIST if present. */
int rtnl_addr_add(struct rtnl *r, int index, struct in_addr a, unsigned prefix, struct qerr *err);
int rtnl_addr_del(struct rtnl *r, int index, struct in_addr a, unsigned prefix, struct qerr *err);
/* The IPv4 addresses on index; *out is malloc'd. */
int rtnl_addr_list(struct rtnl *r, int index, struct rtnl_addr **out, size_t *n, struct qerr *err);

/* default via gw dev index, in the main table. */
int rtnl_route_add_default(struct rtnl *r, struct in_addr gw, int index, struct qerr *err);
/* The IPv4 unicast routes of the main table; *out is malloc'd. */
int rtnl_route_list(struct rtnl *r, struct rtnl_route **out, size_t *n, struct qerr *err);

/* Link events: after rtnl_monitor_open, rtnl_fd() is non-blocking and
 * readable when RTM_NEWLINK/RTM_DELLINK events wait; rtnl_monitor_read
 * passes each to cb (type is RTM_NEWLINK or RTM_DELLINK) until none is
 * left.  -ENOBUFS: the socket overflowed and events were lost, so the
 * caller must compare its state with a fresh rtnl_link_list. */
int rtnl_monitor_open(struct rtnl *r, struct qerr *err);
int rtnl_monitor_read(struct rtnl *r, void (*cb)(int type, const struct rtnl_link *l, void *arg),
		      void *arg, struct qerr *err);

#endif
