/* netd's bridge mode (bridge.h): the bridge, the veths, reconcile and the
 * link monitor, over ipam.c (leases), rtnl.c (netlink) and ruleset.c
 * (nftables).
 *
 * Order is what makes a crash harmless.  attach: lease, veth, the netns's
 * side, table; detach: veth, lease, table.  A crash between any two steps
 * leaves a lease without a veth (released at the next open) or a veth
 * with its lease (kept, or deleted by a detach), never a veth without a
 * lease that reconcile would not recognise as ours, and the table is
 * rebuilt from the leases at every open.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/rtnetlink.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "services/netd/bridge.h"
#include "services/netd/netns_socket.h"
#include "services/netd/rtnl.h"
#include "services/netd/ruleset.h"

/* Host names tried for one sandbox before giving up (hash collisions). */
#define IFNAME_ATTEMPTS 8

struct bridge {
	char name[IFNAMSIZ];
	struct ipam_subnet sn;
	struct in_addr gw;
	int index; /* the bridge's ifindex */
	int state_dfd;
	struct ipam *ipam;
	struct rtnl nl;	 /* requests, in netd's netns */
	struct rtnl mon; /* link events */
	struct ruleset *rs;
	enum bridge_path path; /* as configured */
	bool isolate;	       /* the sandboxes' ports are isolated (no br_netfilter) */
};

static bool bridge_name_ok(const char *name)
{
	size_t n = strnlen(name, IFNAMSIZ);

	if (n == 0 || n >= IFNAMSIZ || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("_.-", name[i])))
			return false;
	return !ipam_ifname_ok(name);
}

static int apply(struct bridge *b, struct qerr *err)
{
	size_t n;
	struct ipam_lease *v = ipam_leases(b->ipam, &n);

	return ruleset_apply(b->rs, b->name, &b->sn, v, n, err);
}

static void to_bridge_lease(const struct bridge *b, const struct ipam_lease *l,
			    struct bridge_lease *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->id, l->id, sizeof(out->id));
	out->addr = l->addr;
	out->prefix = b->sn.prefix;
	out->gateway = b->gw;
	memcpy(out->host_ifname, l->ifname, sizeof(out->host_ifname));
	snprintf(out->sandbox_ifname, sizeof(out->sandbox_ifname), "%s", BRIDGE_SANDBOX_IFNAME);
	out->ports = l->ports;
}

/* The state directory's leases/: ours alone. */
static int open_leases_dir(int state_dfd, struct qerr *err)
{
	cleanup_close int fd = -1;
	struct stat st;

	if (mkdirat(state_dfd, BRIDGE_LEASES_DIR, 0700) < 0 && errno != EEXIST)
		return qerr_sys(err, errno, "state dir: mkdir " BRIDGE_LEASES_DIR);
	fd = openat(state_dfd, BRIDGE_LEASES_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return qerr_sys(err, errno, "state dir: open " BRIDGE_LEASES_DIR);
	if (fstat(fd, &st) < 0)
		return qerr_sys(err, errno, "state dir: stat " BRIDGE_LEASES_DIR);
	if (st.st_uid != geteuid())
		return qerr_set(err, EPERM, "state dir: " BRIDGE_LEASES_DIR " is owned by uid %u",
				(unsigned)st.st_uid);
	if (st.st_mode & 022)
		return qerr_set(err, EPERM,
				"state dir: " BRIDGE_LEASES_DIR
				" is writable by others (mode %04o)",
				(unsigned)(st.st_mode & 07777));
	return steal_fd(fd);
}

/* Set a boolean sysctl of netd's netns (x: its path under
 * /proc/sys/net/, "ipv4/ip_forward") to 1; *changed says whether it was
 * 0. */
static int sysctl_on(const char *x, bool *changed, struct qerr *err)
{
	char path[128];
	cleanup_close int fd = -1;
	char c = 0;

	*changed = false;
	snprintf(path, sizeof(path), "/proc/sys/net/%s", x);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return qerr_sys(err, errno, "%s: open", path);
	if (pread(fd, &c, 1, 0) != 1)
		return qerr_sys(err, errno ? errno : EIO, "%s: read", path);
	if (c == '1')
		return 0;
	if (pwrite(fd, "1\n", 2, 0) != 2)
		return qerr_sys(err, errno ? errno : EIO, "%s: write", path);
	*changed = true;
	return 0;
}

/* Write value to a sysctl of netd's netns (x as for sysctl_on). */
static int sysctl_set(const char *x, const char *value, struct qerr *err)
{
	char path[128];
	cleanup_close int fd = -1;
	size_t n = strlen(value);

	snprintf(path, sizeof(path), "/proc/sys/net/%s", x);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return qerr_sys(err, errno, "%s: open", path);
	if (write(fd, value, n) != (ssize_t)n)
		return qerr_sys(err, errno ? errno : EIO, "%s: write", path);
	return 0;
}

/* Bridged traffic leaves through another interface only if the host
 * forwards.  Said in the log, since it is a host-wide setting (of netd's
 * netns) that netd leaves on when it stops. */
static int enable_forwarding(struct qerr *err)
{
	bool changed;
	int r = sysctl_on("ipv4/ip_forward", &changed, err);

	if (r == 0 && changed)
		qlog_info("bridge: net.ipv4.ip_forward was 0; set it to 1 (bridge mode NATs the "
			  "sandboxes' traffic out)");
	return r;
}

/* Refuse a subnet that overlaps a route on another interface: sandboxes
 * and whatever is out there would shadow each other. */
static int check_routes(struct bridge *b, int bridge_index, struct qerr *err)
{
	cleanup_free struct rtnl_route *rt = NULL;
	size_t n;
	int r = rtnl_route_list(&b->nl, &rt, &n, err);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		unsigned common = rt[i].dst_len < b->sn.prefix ? rt[i].dst_len : b->sn.prefix;
		uint32_t mask = common ? ~0u << (32 - common) : 0;
		char dst[INET_ADDRSTRLEN], dev[IF_NAMESIZE] = "?", cidr[IPAM_CIDR_LEN];

		/* The default route overlaps everything and is not a LAN. */
		if (rt[i].dst_len == 0 || (bridge_index && rt[i].oif == bridge_index))
			continue;
		if (((ntohl(rt[i].dst.s_addr) ^ b->sn.net) & mask) != 0)
			continue;
		inet_ntop(AF_INET, &rt[i].dst, dst, sizeof(dst));
		if (rt[i].oif)
			if_indextoname((unsigned)rt[i].oif, dev);
		ipam_subnet_format(&b->sn, cidr);
		return qerr_set(err, EADDRINUSE, "subnet %s overlaps the route to %s/%u on %s",
				cidr, dst, rt[i].dst_len, dev);
	}
	return 0;
}

/* Exactly the gateway address on the bridge. */
static int bridge_addresses(struct bridge *b, struct qerr *err)
{
	cleanup_free struct rtnl_addr *a = NULL;
	bool have = false;
	size_t n;
	int r = rtnl_addr_list(&b->nl, b->index, &a, &n, err);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		char ip[INET_ADDRSTRLEN];

		if (a[i].addr.s_addr == b->gw.s_addr && a[i].prefix == b->sn.prefix) {
			have = true;
			continue;
		}
		inet_ntop(AF_INET, &a[i].addr, ip, sizeof(ip));
		qlog_warn("bridge %s: removing address %s/%u, not the gateway's", b->name, ip,
			  a[i].prefix);
		r = rtnl_addr_del(&b->nl, b->index, a[i].addr, a[i].prefix, err);
		if (r < 0)
			return r;
	}
	if (have)
		return 0;
	r = rtnl_addr_add(&b->nl, b->index, b->gw, b->sn.prefix, err);
	return r == -EEXIST ? 0 : r;
}

/* Traffic between two sandboxes must pass the forward chain, where the
 * policy is (ruleset.h).  With br_netfilter in the kernel, the bridge is
 * told to hand its IPv4 frames to the ip hooks (as Docker's bridges rely
 * on).  Without it, each sandbox's port is isolated: the host answers
 * their ARP for one another (private-VLAN proxy ARP) and routes between
 * them, through the same chain.  (With br_netfilter, isolated ports would
 * break a hairpin to a published port: br_netfilter bridges a DNAT'ed
 * frame back into the bridge, and the isolation drops it.) */
static int policy_path(struct bridge *b, struct qerr *err)
{
	char x[IFNAMSIZ + 32];
	bool changed, netfilter = access("/proc/sys/net/bridge/bridge-nf-call-iptables", F_OK) == 0;
	int r;

	/* IPv4 only (the policy is the ip family's): the host does not speak
	 * IPv6 on the bridge, and the sandboxes' eth0 have no IPv6 address
	 * (configure_sandbox). */
	snprintf(x, sizeof(x), "ipv6/conf/%s/disable_ipv6", b->name);
	if (access("/proc/sys/net/ipv6", F_OK) == 0 && (r = sysctl_on(x, &changed, err)) < 0)
		return r;
	b->isolate = b->path == BRIDGE_PATH_ISOLATE || (b->path == BRIDGE_PATH_AUTO && !netfilter);
	if (!b->isolate) {
		if (netfilter)
			qlog_info("bridge %s: the policy sees bridged traffic through br_netfilter",
				  b->name);
		else
			qlog_warn("bridge %s: br_netfilter asked for, but the kernel has none: "
				  "traffic between sandboxes passes no policy",
				  b->name);
		return rtnl_bridge_nf_call_iptables(&b->nl, b->index, true, err);
	}
	qlog_info("bridge %s: %s: sandbox ports isolated, the host routes between them "
		  "(proxy_arp_pvlan)",
		  b->name, netfilter ? "asked for" : "no br_netfilter");
	if (netfilter && (r = rtnl_bridge_nf_call_iptables(&b->nl, b->index, false, err)) < 0)
		return r;
	snprintf(x, sizeof(x), "ipv4/conf/%s/proxy_arp_pvlan", b->name);
	if ((r = sysctl_on(x, &changed, err)) < 0)
		return r;
	/* Proxied answers at once, not after up to proxy_delay (0.8 s). */
	snprintf(x, sizeof(x), "ipv4/neigh/%s/proxy_delay", b->name);
	return sysctl_set(x, "0", err);
}

static int ensure_bridge(struct bridge *b, bool *created, struct qerr *err)
{
	struct rtnl_link l;
	struct qerr e;
	int r = rtnl_link_get(&b->nl, b->name, &l, &e);

	*created = false;
	if (r == -ENODEV) {
		unsigned char mac[6];

		if (getrandom(mac, sizeof(mac), 0) != (ssize_t)sizeof(mac))
			return qerr_sys(err, errno ? errno : EIO, "getrandom");
		mac[0] = (unsigned char)((mac[0] & 0xfe) | 0x02); /* unicast, local */
		r = rtnl_bridge_add(&b->nl, b->name, mac, err);
		if (r < 0)
			return r;
		*created = true;
		qlog_info("bridge %s: created", b->name);
		r = rtnl_link_get(&b->nl, b->name, &l, &e);
	}
	if (r < 0) {
		if (err)
			*err = e;
		return r;
	}
	if (strcmp(l.kind, "bridge") != 0)
		return qerr_set(err, EEXIST, "a link of that name exists and is a %s",
				l.kind[0] ? l.kind : "device");
	b->index = l.index;
	if (!(l.flags & IFF_UP)) {
		r = rtnl_link_set(&b->nl, b->index, true, -1, err);
		if (r < 0)
			return r;
	}
	if ((r = policy_path(b, err)) < 0)
		return r;
	return bridge_addresses(b, err);
}

/* Delete a host veth of ours by name: only a veth, and only with our
 * name pattern, whatever a lease file says.  0 also when it is gone. */
static int delete_host_veth(struct bridge *b, const char *ifname, struct qerr *err)
{
	struct rtnl_link l;
	struct qerr e;
	int r;

	if (!ipam_ifname_ok(ifname))
		return qerr_set(err, EINVAL, "%.16s: not a host veth name", ifname);
	r = rtnl_link_get(&b->nl, ifname, &l, &e);
	if (r == -ENODEV)
		return 0;
	if (r < 0) {
		if (err)
			*err = e;
		return r;
	}
	if (strcmp(l.kind, "veth") != 0)
		return qerr_set(err, EPERM, "%s is a %s, not a veth; left alone", ifname,
				l.kind[0] ? l.kind : "device");
	return rtnl_link_del(&b->nl, l.index, err);
}

static const struct rtnl_link *find_link(const struct rtnl_link *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/* A veth that looks like ours and no lease holds: on our bridge, or on
 * none (a bridge deleted under it), never one on someone else's. */
static bool stray_veth(struct bridge *b, const struct rtnl_link *l)
{
	return strcmp(l->kind, "veth") == 0 && ipam_ifname_ok(l->name) &&
	       (l->master == 0 || l->master == b->index) && !ipam_find_ifname(b->ipam, l->name);
}

static void release_lease(struct bridge *b, struct ipam_lease *l, const char *why,
			  bridge_released_fn *released, void *arg, int *count)
{
	char id[SANDBOX_ID_MAX + 1], ip[INET_ADDRSTRLEN];
	struct qerr e;

	memcpy(id, l->id, sizeof(id));
	inet_ntop(AF_INET, &l->addr, ip, sizeof(ip));
	if (ipam_release(b->ipam, id, &e) < 0) {
		qlog_warn("sandbox %s: %s; releasing lease %s: %s", id, why, ip, e.msg);
		return;
	}
	qlog_info("sandbox %s: %s; lease %s released", id, why, ip);
	(*count)++;
	if (released)
		released(id, arg);
}

/* Make the leases and the links agree; see bridge.h.  Returns how many
 * leases it released. */
static int reconcile(struct bridge *b, bridge_released_fn *released, void *arg, struct qerr *err)
{
	cleanup_free struct rtnl_link *links = NULL;
	size_t nlinks, n;
	int r, count = 0;

	r = rtnl_link_list(&b->nl, &links, &nlinks, err);
	if (r < 0)
		return qerr_prefix(err, "reconcile");
	/* Backwards: a release moves only the leases after it. */
	ipam_leases(b->ipam, &n);
	for (size_t i = n; i-- > 0;) {
		struct ipam_lease *l = &ipam_leases(b->ipam, &n)[i];
		const struct rtnl_link *link = find_link(links, nlinks, l->ifname);

		if (!link || strcmp(link->kind, "veth") != 0) {
			release_lease(b, l, "its veth is gone", released, arg, &count);
			continue;
		}
		l->ifindex = link->index;
		if (link->master != b->index || !(link->flags & IFF_UP)) {
			qlog_info("sandbox %s: %s back on bridge %s", l->id, l->ifname, b->name);
			r = rtnl_link_set(&b->nl, link->index, true, b->index, err);
			if (r < 0)
				return qerr_prefix(err, "reconcile: sandbox %s", l->id);
		}
		/* (as the path says, whatever an older netd did) */
		if ((r = rtnl_bridge_port_isolate(&b->nl, link->index, b->isolate, err)) < 0)
			return qerr_prefix(err, "reconcile: sandbox %s", l->id);
	}
	for (size_t i = 0; i < nlinks; i++) {
		if (!stray_veth(b, &links[i]))
			continue;
		qlog_info("bridge %s: deleting %s, a veth no lease holds", b->name, links[i].name);
		r = rtnl_link_del(&b->nl, links[i].index, err);
		if (r < 0)
			return qerr_prefix(err, "reconcile");
	}
	return count;
}

static void free_bridge(struct bridge *b)
{
	ruleset_close(b->rs);
	if (b->mon.nl)
		rtnl_close(&b->mon);
	if (b->nl.nl)
		rtnl_close(&b->nl);
	ipam_close(b->ipam);
	if (b->state_dfd >= 0)
		close(b->state_dfd);
	free(b);
}

int bridge_open(const struct bridge_config *cfg, struct bridge **out, struct qerr *err)
{
	const char *name = cfg->name ? cfg->name : BRIDGE_DEFAULT_NAME;
	const char *subnet = cfg->subnet ? cfg->subnet : BRIDGE_DEFAULT_SUBNET;
	cleanup_close int leases_dfd = -1;
	struct rtnl_link l;
	bool created = false;
	struct bridge *b;
	int r;
	struct qerr scratch;

	/* qerr_prefix keeps the code only in a qerr. */
	if (!err)
		err = &scratch;

	*out = NULL;
	if (!bridge_name_ok(name))
		return qerr_set(err, EINVAL,
				"bridge name \"%.16s\": must be 1 to %d characters of "
				"[A-Za-z0-9_.-], not like a sandbox's veth",
				name, IFNAMSIZ - 1);
	b = calloc(1, sizeof(*b));
	if (!b)
		return qerr_set(err, ENOMEM, "bridge: out of memory");
	b->state_dfd = -1;
	b->path = cfg->path;
	snprintf(b->name, sizeof(b->name), "%s", name);
	r = ipam_subnet_parse(subnet, &b->sn, err);
	if (r < 0)
		goto fail;
	b->gw = ipam_subnet_gateway(&b->sn);
	b->state_dfd = fcntl(cfg->state_dirfd, F_DUPFD_CLOEXEC, 3);
	if (b->state_dfd < 0) {
		r = qerr_sys(err, errno, "bridge: state dir fd");
		goto fail;
	}
	leases_dfd = open_leases_dir(b->state_dfd, err);
	if ((r = leases_dfd) < 0)
		goto fail;
	r = ipam_open(leases_dfd, &b->sn, &b->ipam, err);
	if (r < 0)
		goto fail;
	/* The monitor first: a veth that goes while we reconcile is seen
	 * by one or the other. */
	if ((r = rtnl_monitor_open(&b->mon, err)) < 0 || (r = rtnl_open(&b->nl, -1, err)) < 0 ||
	    (r = ruleset_open(&b->rs, err)) < 0)
		goto fail;
	r = rtnl_link_get(&b->nl, b->name, &l, NULL);
	r = check_routes(b, r == 0 ? l.index : 0, err);
	if (r < 0)
		goto fail;
	if ((r = enable_forwarding(err)) < 0 || (r = ensure_bridge(b, &created, err)) < 0)
		goto fail;
	r = reconcile(b, NULL, NULL, err);
	if (r < 0)
		goto fail;
	r = apply(b, err);
	if (r < 0)
		goto fail;
	*out = b;
	return 0;

fail:
	if (created) {
		size_t n;

		ipam_leases(b->ipam, &n);
		if (n == 0)
			rtnl_link_del(&b->nl, b->index, NULL);
	}
	free_bridge(b);
	return qerr_prefix(err, "bridge %s", name);
}

/* In the sandbox's netns: eth0's address, eth0 and lo up, the default
 * route. */
static int configure_sandbox(struct bridge *b, int nsfd, struct in_addr addr, struct qerr *err)
{
	struct rtnl in;
	struct rtnl_link eth, lo;
	int r;

	r = rtnl_open(&in, nsfd, err);
	if (r < 0)
		return r;
	/* IPv4 only: the policy's table is the ip family's, so eth0 gets no
	 * IPv6 link-local address either (a listener on [::] would take
	 * connections from the other sandboxes past it). */
	if ((r = rtnl_link_get(&in, BRIDGE_SANDBOX_IFNAME, &eth, err)) < 0 ||
	    (r = rtnl_link_no_ipv6(&in, eth.index, err)) < 0 ||
	    (r = rtnl_addr_add(&in, eth.index, addr, b->sn.prefix, err)) < 0 ||
	    (r = rtnl_link_set(&in, eth.index, true, -1, err)) < 0 ||
	    (r = rtnl_link_get(&in, "lo", &lo, err)) < 0 ||
	    (!(lo.flags & IFF_UP) && (r = rtnl_link_set(&in, lo.index, true, -1, err)) < 0) ||
	    (r = rtnl_route_add_default(&in, b->gw, eth.index, err)) < 0) {
		rtnl_close(&in);
		return qerr_prefix(err, "in the sandbox's netns");
	}
	rtnl_close(&in);
	return 0;
}

/* A host name for id: the first of its candidates that neither a lease
 * nor a link has. */
static int pick_ifname(struct bridge *b, const char *id, char name[IFNAMSIZ], struct qerr *err)
{
	for (unsigned attempt = 0; attempt < IFNAME_ATTEMPTS; attempt++) {
		struct rtnl_link l;
		struct qerr e;
		int r;

		ipam_ifname_for(id, attempt, name);
		if (ipam_find_ifname(b->ipam, name))
			continue;
		r = rtnl_link_get(&b->nl, name, &l, &e);
		if (r == -ENODEV)
			return 0;
		if (r < 0) {
			if (err)
				*err = e;
			return r;
		}
	}
	return qerr_set(err, EEXIST, "no free interface name in %d attempts", IFNAME_ATTEMPTS);
}

/* Take back what a failed attach made: the veth, only if it made one
 * (ifname NULL otherwise: an EEXIST may be someone else's link), and the
 * lease. */
static void undo_attach(struct bridge *b, const char *id, const char *ifname, int index)
{
	struct qerr e;
	int r = 0;

	if (index > 0)
		r = rtnl_link_del(&b->nl, index, &e);
	else if (ifname)
		r = delete_host_veth(b, ifname, &e);
	if (r < 0)
		qlog_warn("attach %s: undo: %s", id, e.msg);
	if (ipam_release(b->ipam, id, &e) < 0)
		qlog_warn("attach %s: undo: %s", id, e.msg);
}

int bridge_attach(struct bridge *b, const char *id, int netns_fd, const struct port_set *ports,
		  const char *peers, struct bridge_lease *out, struct qerr *err)
{
	static const struct port_set none;
	struct ipam_lease *lease, *v;
	char ifname[IFNAMSIZ];
	struct rtnl_link link = {0};
	bool made = false;
	struct in_addr addr;
	size_t n;
	int r;
	struct qerr scratch;

	if (!err)
		err = &scratch;

	if (!ports)
		ports = &none;
	r = sandbox_id_check(id, err);
	if (r < 0)
		return r;
	r = ports_validate(ports, err);
	if (r < 0)
		return qerr_prefix(err, "attach %s", id);
	r = netns_is_other(netns_fd, err);
	if (r == 0)
		r = qerr_set(err, EINVAL, "the netns given is netd's own");
	if (r < 0)
		return qerr_prefix(err, "attach %s", id);
	if ((lease = ipam_find(b->ipam, id))) {
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &lease->addr, ip, sizeof(ip));
		return qerr_set(err, EEXIST, "attach %s: attached already (%s on %s)", id, ip,
				lease->ifname);
	}
	v = ipam_leases(b->ipam, &n);
	for (size_t i = 0; i < n; i++) {
		r = ports_check_conflict(ports, &v[i].ports, v[i].id, err);
		if (r < 0)
			return qerr_prefix(err, "attach %s", id);
	}
	r = pick_ifname(b, id, ifname, err);
	if (r < 0)
		return qerr_prefix(err, "attach %s", id);

	/* The lease first: from here a crash leaves something reconcile
	 * knows to be ours. */
	r = ipam_alloc(b->ipam, id, ifname, ports, peers, &lease, err);
	if (r < 0)
		return qerr_prefix(err, "attach %s", id);
	addr = lease->addr;
	r = rtnl_veth_add(&b->nl, ifname, b->index, BRIDGE_SANDBOX_IFNAME, netns_fd, err);
	if (r < 0)
		goto undo;
	made = true;
	r = rtnl_link_get(&b->nl, ifname, &link, err);
	if (r < 0)
		goto undo;
	ipam_find(b->ipam, id)->ifindex = link.index;
	if (b->isolate && (r = rtnl_bridge_port_isolate(&b->nl, link.index, true, err)) < 0)
		goto undo;
	/* The host may still know the address by a released sandbox's MAC (a
	 * restarted netd's next-fit starts again after the highest lease):
	 * with isolated ports it would forward there until the entry
	 * expired. */
	if ((r = rtnl_neigh_del(&b->nl, b->index, addr, err)) < 0)
		goto undo;
	r = configure_sandbox(b, netns_fd, addr, err);
	if (r < 0)
		goto undo;
	r = apply(b, err);
	if (r < 0)
		goto undo;
	if (out)
		to_bridge_lease(b, ipam_find(b->ipam, id), out);
	return 0;

undo:
	undo_attach(b, id, made ? ifname : NULL, link.index);
	return qerr_prefix(err, "attach %s", id);
}

int bridge_detach(struct bridge *b, const char *id, struct qerr *err)
{
	struct ipam_lease *l = ipam_find(b->ipam, id);
	int r;
	struct qerr scratch;

	if (!err)
		err = &scratch;

	if (!l)
		return 0;
	/* The veth before the lease: a crash in between leaves a lease
	 * without a veth, which the next open releases. */
	r = delete_host_veth(b, l->ifname, err);
	if (r < 0)
		return qerr_prefix(err, "detach %s", id);
	r = ipam_release(b->ipam, id, err);
	if (r < 0)
		return qerr_prefix(err, "detach %s", id);
	r = apply(b, err);
	if (r < 0)
		return qerr_prefix(err, "detach %s", id);
	return 1;
}

int bridge_monitor_fd(const struct bridge *b)
{
	return rtnl_fd(&b->mon);
}

struct monitor_ctx {
	struct bridge *b;
	bridge_released_fn *released;
	void *arg;
	int count;
	bool bridge_gone;
};

static void on_link(int type, const struct rtnl_link *link, void *arg)
{
	struct monitor_ctx *m = arg;
	struct ipam_lease *v;
	size_t n;

	if (type != RTM_DELLINK)
		return;
	if (link->index == m->b->index) {
		m->bridge_gone = true;
		return;
	}
	/* By ifindex as well as name: a sandbox detached and attached again
	 * gets the same name, and the old veth's event may arrive after. */
	v = ipam_leases(m->b->ipam, &n);
	for (size_t i = 0; i < n; i++)
		if (v[i].ifindex == link->index && strcmp(v[i].ifname, link->name) == 0) {
			release_lease(m->b, &v[i], "its netns is gone", m->released, m->arg,
				      &m->count);
			return;
		}
}

int bridge_monitor_handle(struct bridge *b, bridge_released_fn *released, void *arg,
			  struct qerr *err)
{
	struct monitor_ctx m = {b, released, arg, 0, false};
	bool resync = false;
	int r;
	struct qerr scratch;

	if (!err)
		err = &scratch;

	r = rtnl_monitor_read(&b->mon, on_link, &m, err);
	if (r == -ENOBUFS) {
		qlog_warn("bridge %s: link events were lost; checking every veth", b->name);
		resync = true;
	} else if (r < 0) {
		return r;
	}
	if (m.bridge_gone) {
		bool created;

		qlog_warn("bridge %s: deleted by someone else; making it again", b->name);
		r = ensure_bridge(b, &created, err);
		if (r < 0)
			return qerr_prefix(err, "bridge %s", b->name);
		resync = true;
	}
	if (resync) {
		r = reconcile(b, released, arg, err);
		if (r < 0)
			return r;
		m.count += r;
	}
	if (m.count > 0 || resync) {
		r = apply(b, err);
		if (r < 0)
			return qerr_prefix(err, "bridge %s", b->name);
	}
	return m.count;
}

int bridge_list(struct bridge *b, struct bridge_lease **out, size_t *n, struct qerr *err)
{
	size_t cnt;
	struct ipam_lease *v = ipam_leases(b->ipam, &cnt);

	*out = NULL;
	*n = 0;
	if (cnt == 0)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return qerr_set(err, ENOMEM, "bridge: list: out of memory");
	for (size_t i = 0; i < cnt; i++)
		to_bridge_lease(b, &v[i], &(*out)[i]);
	*n = cnt;
	return 0;
}

int bridge_lookup(struct bridge *b, const char *id, struct bridge_lease *out)
{
	struct ipam_lease *l = ipam_find(b->ipam, id);

	if (!l)
		return -ENOENT;
	to_bridge_lease(b, l, out);
	return 0;
}

void bridge_get_info(struct bridge *b, struct bridge_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", b->name);
	ipam_subnet_format(&b->sn, out->subnet);
	out->gateway = b->gw;
	ipam_leases(b->ipam, &out->leases);
	out->capacity = ipam_subnet_hosts(&b->sn);
}

/* Keep the first error, log the others. */
static void note(int r, struct qerr *first, int *rc, const struct qerr *e)
{
	if (r >= 0)
		return;
	if (*rc == 0) {
		*rc = r;
		*first = *e;
	} else {
		qlog_warn("teardown: %s", e->msg);
	}
}

static int teardown(struct bridge *b, struct qerr *err)
{
	cleanup_free struct rtnl_link *links = NULL;
	struct qerr first = {0}, e;
	size_t n, nlinks = 0;
	int rc = 0, r;

	ipam_leases(b->ipam, &n);
	for (size_t i = n; i-- > 0;) {
		struct ipam_lease *l = &ipam_leases(b->ipam, &n)[i];
		char id[SANDBOX_ID_MAX + 1];

		memcpy(id, l->id, sizeof(id));
		r = delete_host_veth(b, l->ifname, &e);
		note(r, &first, &rc, &e);
		if (r >= 0)
			note(ipam_release(b->ipam, id, &e), &first, &rc, &e);
	}
	r = rtnl_link_list(&b->nl, &links, &nlinks, &e);
	note(r, &first, &rc, &e);
	for (size_t i = 0; i < nlinks; i++) {
		if (stray_veth(b, &links[i]))
			note(rtnl_link_del(&b->nl, links[i].index, &e), &first, &rc, &e);
		else if (links[i].index == b->index && strcmp(links[i].kind, "bridge") == 0)
			note(rtnl_link_del(&b->nl, links[i].index, &e), &first, &rc, &e);
	}
	note(ruleset_delete(b->rs, &e), &first, &rc, &e);
	if (unlinkat(b->state_dfd, BRIDGE_LEASES_DIR, AT_REMOVEDIR) < 0 && errno != ENOENT) {
		r = qerr_sys(&e, errno, "state dir: remove " BRIDGE_LEASES_DIR);
		note(r, &first, &rc, &e);
	}
	if (rc == 0)
		qlog_info("bridge %s: torn down", b->name);
	else if (err)
		*err = first;
	return rc;
}

int bridge_close(struct bridge *b, bool teardown_all, struct qerr *err)
{
	int r = 0;

	if (!b)
		return 0;
	if (teardown_all)
		r = teardown(b, err);
	free_bridge(b);
	return r;
}
