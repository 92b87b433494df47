/* Bridge mode's nftables ruleset (ruleset.h).
 *
 * Every change replaces the table's rules in one transaction:
 *
 *   table ip quiver {}          create it if absent, so that...
 *   flush table ip quiver       ...this cannot fail: every rule goes
 *   table ip quiver { ... }     the whole new table
 *
 * The kernel commits the batch atomically: a packet sees the old rules or
 * the new ones.  Flushing rather than deleting the table keeps its named
 * counters (gateway_in, gateway_out: connections through published ports
 * and out through the masquerade), so they count on across changes and
 * netd restarts, until a teardown.  A chain an older netd made and this
 * one no longer does would stay, empty.
 *
 * Cost: each change re-parses and re-commits every rule, one per published
 * port, and a packet to a local address walks the published chain
 * linearly.  test_netd_bridge prints an apply's time; here (2 cores) it
 * was 0.3 ms for 1 sandbox with a published port, 1.9 ms for 100 and
 * 11.6 ms for 1000, so starting N sandboxes costs O(N^2) in total.  At scale the rules would become
 * a map keyed on "daddr . proto . dport" (`dnat to ip daddr . meta l4proto . th dport map
 * @published`) with an interval for "any address", and attach/detach would
 * add and delete the sandbox's elements: O(1) per change and per packet.
 * The table would still be rebuilt whole at open, from the leases.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <nftables/libnftables.h>

#include "libcommon/cleanup.h"
#include "services/netd/ruleset.h"

#define TABLE RULESET_FAMILY " " RULESET_TABLE

struct ruleset {
	struct nft_ctx *nft;
};

/* A growing string; err is set once an append failed. */
struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = EINVAL;
			return;
		}
		if (b->p && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap < b->len + (size_t)n + 1)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->err = ENOMEM;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

int ruleset_open(struct ruleset **out, struct qerr *err)
{
	struct ruleset *rs = calloc(1, sizeof(*rs));

	*out = NULL;
	if (!rs)
		return qerr_set(err, ENOMEM, "nftables: out of memory");
	rs->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!rs->nft) {
		free(rs);
		return qerr_set(err, ENOMEM, "nftables: no context");
	}
	/* Into buffers, not netd's stdout and stderr. */
	if (nft_ctx_buffer_output(rs->nft) < 0 || nft_ctx_buffer_error(rs->nft) < 0) {
		ruleset_close(rs);
		return qerr_set(err, ENOMEM, "nftables: no output buffers");
	}
	*out = rs;
	return 0;
}

void ruleset_close(struct ruleset *rs)
{
	if (!rs)
		return;
	nft_ctx_free(rs->nft);
	free(rs);
}

/* Run a script; on failure the first line of nft's error, which names the
 * problem ("Error: Could not process rule: ..."). */
static int run(struct ruleset *rs, const char *script, const char *what, struct qerr *err)
{
	const char *e;
	size_t n;

	if (nft_run_cmd_from_buffer(rs->nft, script) == 0) {
		nft_ctx_get_error_buffer(rs->nft); /* drop warnings */
		return 0;
	}
	e = nft_ctx_get_error_buffer(rs->nft);
	if (!e || !*e)
		return qerr_set(err, EIO, "nftables: %s failed", what);
	if (!strncmp(e, "Error: ", 7))
		e += 7;
	n = strcspn(e, "\n");
	return qerr_set(err, EIO, "nftables: %s: %.*s", what, (int)(n > 300 ? 300 : n), e);
}

/* The bridge name goes between quotes in the script. */
static bool ifname_safe(const char *name)
{
	size_t n = strnlen(name, IFNAMSIZ);

	if (n == 0 || n >= IFNAMSIZ)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("_.-", name[i])))
			return false;
	return true;
}

static void put_published(struct sbuf *b, const struct ipam_lease *l)
{
	char sip[INET_ADDRSTRLEN], hip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &l->addr, sip, sizeof(sip));
	for (unsigned i = 0; i < l->ports.n && i < PORTS_MAX; i++) {
		const struct port_map *m = &l->ports.map[i];

		sb_printf(b, "\t\t");
		if (m->host_ip.s_addr != htonl(INADDR_ANY)) {
			inet_ntop(AF_INET, &m->host_ip, hip, sizeof(hip));
			sb_printf(b, "ip daddr %s ", hip);
		}
		/* The id is [A-Za-z0-9_.-] (sandbox_id_check at load and
		 * alloc), so it needs no escaping. */
		sb_printf(b,
			  "%s dport %u counter name \"" RULESET_GATEWAY_IN
			  "\" dnat to %s:%u comment \"%s\"\n",
			  port_proto_name(m->proto), m->host_port, sip, m->sandbox_port, l->id);
	}
}

static const struct ipam_lease *lease_of(const struct ipam_lease *v, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].id, id) == 0)
			return &v[i];
	return NULL;
}

/* One accept rule per grant of l (io.quiver.net.peers), into the grants
 * chain.  An id grant names the sandbox's address while it has one. */
static void put_grants(struct sbuf *b, const struct ipam_lease *l, const struct ipam_lease *v,
		       size_t n)
{
	char sip[INET_ADDRSTRLEN], dip[INET_ADDRSTRLEN];
	struct grant_set gs;

	if (!l->peers[0] || grants_parse(l->peers, &gs, NULL) < 0)
		return;
	inet_ntop(AF_INET, &l->addr, sip, sizeof(sip));
	for (unsigned i = 0; i < gs.n; i++) {
		const struct grant *g = &gs.g[i];
		struct in_addr d;
		unsigned prefix = 32;

		if (g->kind == GRANT_ANY) {
			sb_printf(b, "\t\tip saddr %s accept comment \"%s\"\n", sip, l->id);
			continue;
		}
		if (g->kind == GRANT_ID) {
			const struct ipam_lease *t = lease_of(v, n, g->id);
			if (!t)
				continue;
			d = t->addr;
		} else {
			d.s_addr = htonl(g->net);
			prefix = (unsigned)__builtin_popcount(g->mask);
		}
		inet_ntop(AF_INET, &d, dip, sizeof(dip));
		sb_printf(b, "\t\tip saddr %s ip daddr %s/%u ", sip, dip, prefix);
		if (g->port)
			sb_printf(b, "meta l4proto { tcp, udp, sctp } th dport %u ", g->port);
		sb_printf(b, "accept comment \"%s\"\n", l->id);
	}
}

int ruleset_build(const char *bridge, const struct ipam_subnet *sn, const struct ipam_lease *leases,
		  size_t n, char **text, struct qerr *err)
{
	struct sbuf b = {0};
	char cidr[IPAM_CIDR_LEN];

	*text = NULL;
	if (!ifname_safe(bridge))
		return qerr_set(err, EINVAL, "nftables: bridge name \"%.16s\" is not safe to quote",
				bridge);
	ipam_subnet_format(sn, cidr);
	sb_printf(&b, "table " TABLE " {}\nflush table " TABLE "\ntable " TABLE " {\n"
		      "\tcounter " RULESET_GATEWAY_IN " {\n\t}\n"
		      "\tcounter " RULESET_GATEWAY_OUT " {\n\t}\n");
	/* Published ports: for packets arriving (prerouting) and for
	 * connections the host itself opens (output), to any local address. */
	sb_printf(&b, "\tchain prerouting {\n"
		      "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
		      "\t\tfib daddr type local jump published\n"
		      "\t}\n"
		      "\tchain output {\n"
		      "\t\ttype nat hook output priority -100; policy accept;\n"
		      "\t\tfib daddr type local jump published\n"
		      "\t}\n"
		      "\tchain published {\n");
	for (size_t i = 0; i < n; i++)
		put_published(&b, &leases[i]);
	sb_printf(&b, "\t}\n");
	/* Egress: the subnet leaving by any other interface is masqueraded.
	 * Hairpin: a sandbox reaching a published port is DNAT'ed back into
	 * the bridge; without the masquerade the target would answer it
	 * directly, from an address it did not connect to. */
	sb_printf(&b,
		  "\tchain postrouting {\n"
		  "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
		  "\t\tip saddr %s oifname != \"%s\" counter name \"" RULESET_GATEWAY_OUT
		  "\" masquerade\n"
		  "\t\tip saddr %s oifname \"%s\" ct status dnat masquerade\n"
		  "\t}\n",
		  cidr, bridge, cidr, bridge);
	/* Forwarding: from the bridge, sources in the subnet only (a sandbox
	 * forging another source would otherwise leave un-NATed); replies,
	 * and connections to a published port (DNAT'ed), pass; anything new
	 * else a sandbox starts goes through the policy.  Into the bridge:
	 * replies and published ports only, so a neighbour routing the subnet
	 * through this host cannot reach a sandbox's other ports.  The
	 * sandboxes' ports are isolated on the bridge (bridge.c), so traffic
	 * between two of them is routed through here too.  Accept here does
	 * not override another table's drop (docs/netd.md). */
	sb_printf(&b,
		  "\tchain forward {\n"
		  "\t\ttype filter hook forward priority filter; policy accept;\n"
		  "\t\tiifname \"%s\" ip saddr != %s drop\n"
		  "\t\tiifname \"%s\" ct state established,related accept\n"
		  "\t\tiifname \"%s\" ct status dnat accept\n"
		  "\t\tiifname \"%s\" jump grants\n"
		  "\t\toifname \"%s\" ct state established,related accept\n"
		  "\t\toifname \"%s\" ct status dnat accept\n"
		  "\t\toifname \"%s\" drop\n"
		  "\t}\n",
		  bridge, cidr, bridge, bridge, bridge, bridge, bridge, bridge);
	/* The host itself is reached under the same policy.  No ICMP
	 * redirects into the bridge: the host routes between the sandboxes'
	 * isolated ports on purpose. */
	sb_printf(&b,
		  "\tchain input {\n"
		  "\t\ttype filter hook input priority filter; policy accept;\n"
		  "\t\tiifname \"%s\" ct state established,related accept\n"
		  "\t\tiifname \"%s\" jump grants\n"
		  "\t}\n"
		  "\tchain redirects {\n"
		  "\t\ttype filter hook output priority filter; policy accept;\n"
		  "\t\toifname \"%s\" icmp type redirect drop\n"
		  "\t}\n",
		  bridge, bridge, bridge);
	/* What each sandbox was granted, then refusals with the errno the
	 * socket service gives (docs/netd.md, "Policy"): ECONNREFUSED inside
	 * the subnet (a TCP reset; an ICMP port unreachable for the rest),
	 * ENETUNREACH beyond it. */
	sb_printf(&b, "\tchain grants {\n");
	for (size_t i = 0; i < n; i++)
		put_grants(&b, &leases[i], leases, n);
	sb_printf(&b,
		  "\t\tip daddr %s meta l4proto tcp reject with tcp reset\n"
		  "\t\tip daddr %s reject with icmp type port-unreachable\n"
		  "\t\treject with icmp type net-unreachable\n"
		  "\t}\n"
		  "}\n",
		  cidr, cidr);
	if (b.err) {
		free(b.p);
		return qerr_set(err, b.err, "nftables: build the ruleset: out of memory");
	}
	*text = b.p;
	return 0;
}

int ruleset_apply(struct ruleset *rs, const char *bridge, const struct ipam_subnet *sn,
		  const struct ipam_lease *leases, size_t n, struct qerr *err)
{
	cleanup_free char *text = NULL;
	int r = ruleset_build(bridge, sn, leases, n, &text, err);

	if (r < 0)
		return r;
	return run(rs, text, "apply table " TABLE, err);
}

int ruleset_delete(struct ruleset *rs, struct qerr *err)
{
	return run(rs, "table " TABLE " {}\ndelete table " TABLE "\n", "delete table " TABLE, err);
}

/* "packets N" in nft's listing of one counter. */
static int counter_packets(struct ruleset *rs, const char *name, uint64_t *out, struct qerr *err)
{
	char cmd[96];
	const char *t, *p;
	int r;

	snprintf(cmd, sizeof(cmd), "list counter " TABLE " %s", name);
	if ((r = run(rs, cmd, cmd, err)) < 0)
		return r;
	t = nft_ctx_get_output_buffer(rs->nft);
	if (!t || !(p = strstr(t, "packets ")))
		return qerr_set(err, EIO, "nftables: %s: no packets in the listing", cmd);
	*out = strtoull(p + 8, NULL, 10);
	return 0;
}

int ruleset_gateway(struct ruleset *rs, uint64_t *in, uint64_t *out, struct qerr *err)
{
	int r = counter_packets(rs, RULESET_GATEWAY_IN, in, err);

	return r < 0 ? r : counter_packets(rs, RULESET_GATEWAY_OUT, out, err);
}

int ruleset_list(struct ruleset *rs, char **text, struct qerr *err)
{
	const char *out;
	int r;

	*text = NULL;
	r = run(rs, "list tables " RULESET_FAMILY, "list tables", err);
	if (r < 0)
		return r;
	out = nft_ctx_get_output_buffer(rs->nft);
	if (!out || !strstr(out, "table " TABLE "\n"))
		return qerr_set(err, ENOENT, "nftables: no table " TABLE);
	r = run(rs, "list table " TABLE, "list table " TABLE, err);
	if (r < 0)
		return r;
	out = nft_ctx_get_output_buffer(rs->nft);
	*text = strdup(out ? out : "");
	if (!*text)
		return qerr_set(err, ENOMEM, "nftables: out of memory");
	return 0;
}
