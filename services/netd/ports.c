/* Published ports (ports.h): the spec parser and the overlap rule. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "services/netd/ports.h"

/* Room for a quoted mapping in a message, "..." included. */
#define QUOTE_MAX (PORTS_MAPPING_MAX + 4)

/* Copy n bytes of hostile text for a message: non-printable bytes become
 * '?', and more than PORTS_MAPPING_MAX bytes end in "...". */
static void quote(char *dst, const char *s, size_t n)
{
	size_t k = n > PORTS_MAPPING_MAX ? PORTS_MAPPING_MAX : n;

	for (size_t i = 0; i < k; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (k < n)
		memcpy(dst + k, "...", 4);
	else
		dst[k] = '\0';
}

/* 1..65535, digits only, no leading zero. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static bool unicast_or_any(struct in_addr a)
{
	uint32_t h = ntohl(a.s_addr);

	return (h >> 28) != 0xe && h != 0xffffffffu;
}

/* A dotted quad (inet_pton: exactly four parts, decimal, no leading zeros),
 * not multicast and not the limited broadcast address. */
static int parse_host_ip(const char *s, size_t n, struct in_addr *out, const char **why)
{
	char buf[INET_ADDRSTRLEN];

	*why = "not an IPv4 address";
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, out) != 1)
		return -1;
	if (!unicast_or_any(*out)) {
		*why = "not a unicast address";
		return -1;
	}
	return 0;
}

static int parse_mapping(const char *s, size_t n, unsigned idx, struct port_map *m,
			 struct qerr *err)
{
	char q[QUOTE_MAX], f[QUOTE_MAX];
	const char *colon[3];
	const char *slash = memchr(s, '/', n);
	size_t body = slash ? (size_t)(slash - s) : n;
	unsigned ncolon = 0;

	quote(q, s, n);
	if (n == 0)
		return qerr_set(err, EINVAL, "ports: mapping %u is empty", idx + 1);
	if (n > PORTS_MAPPING_MAX)
		return qerr_set(err, EINVAL, "ports: mapping %u (\"%s\"): longer than %d bytes",
				idx + 1, q, PORTS_MAPPING_MAX);
	m->proto = PORT_TCP;
	if (slash) {
		size_t plen = n - body - 1;

		if (plen == 3 && memcmp(slash + 1, "tcp", 3) == 0)
			m->proto = PORT_TCP;
		else if (plen == 3 && memcmp(slash + 1, "udp", 3) == 0)
			m->proto = PORT_UDP;
		else {
			quote(f, slash + 1, plen);
			return qerr_set(err, EINVAL,
					"ports: mapping %u (\"%s\"): protocol \"%s\": must be tcp "
					"or udp",
					idx + 1, q, f);
		}
	}
	for (size_t i = 0; i < body; i++) {
		if (s[i] != ':')
			continue;
		if (ncolon == 2)
			return qerr_set(err, EINVAL,
					"ports: mapping %u (\"%s\"): more than three fields "
					"(IPv6 is not supported)",
					idx + 1, q);
		colon[ncolon++] = s + i;
	}
	if (ncolon == 0)
		return qerr_set(err, EINVAL,
				"ports: mapping %u (\"%s\"): need HOST_PORT:SANDBOX_PORT", idx + 1,
				q);

	const char *hp = ncolon == 2 ? colon[0] + 1 : s;
	const char *sp = colon[ncolon - 1] + 1;
	size_t hplen = (size_t)(colon[ncolon - 1] - hp);
	size_t splen = (size_t)(s + body - sp);

	m->host_ip.s_addr = htonl(INADDR_ANY);
	if (ncolon == 2) {
		const char *why;
		size_t iplen = (size_t)(colon[0] - s);

		if (parse_host_ip(s, iplen, &m->host_ip, &why) < 0) {
			quote(f, s, iplen);
			return qerr_set(err, EINVAL, "ports: mapping %u (\"%s\"): host \"%s\": %s",
					idx + 1, q, f, why);
		}
	}
	if (parse_port(hp, hplen, &m->host_port) < 0) {
		quote(f, hp, hplen);
		return qerr_set(err, EINVAL,
				"ports: mapping %u (\"%s\"): host port \"%s\": must be 1 to 65535",
				idx + 1, q, f);
	}
	if (parse_port(sp, splen, &m->sandbox_port) < 0) {
		quote(f, sp, splen);
		return qerr_set(
		    err, EINVAL,
		    "ports: mapping %u (\"%s\"): sandbox port \"%s\": must be 1 to 65535", idx + 1,
		    q, f);
	}
	return 0;
}

static void format_host(const struct port_map *m, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	if (m->host_ip.s_addr == htonl(INADDR_ANY)) {
		buf[0] = '\0';
		return;
	}
	inet_ntop(AF_INET, &m->host_ip, ip, sizeof(ip));
	snprintf(buf, len, "%s:", ip);
}

int ports_parse(const char *spec, struct port_set *out, struct qerr *err)
{
	size_t len = strnlen(spec, PORTS_SPEC_MAX + 1);
	const char *p = spec, *end = spec + len;
	int r;

	memset(out, 0, sizeof(*out));
	if (len > PORTS_SPEC_MAX)
		return qerr_set(err, EINVAL, "ports: spec longer than %d bytes", PORTS_SPEC_MAX);
	if (len == 0)
		return 0;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);

		if (out->n == PORTS_MAX) {
			memset(out, 0, sizeof(*out));
			return qerr_set(err, EINVAL, "ports: more than %d mappings", PORTS_MAX);
		}
		r = parse_mapping(p, n, out->n, &out->map[out->n], err);
		if (r < 0) {
			memset(out, 0, sizeof(*out));
			return r;
		}
		for (unsigned i = 0; i < out->n; i++) {
			const struct port_map *a = &out->map[i], *b = &out->map[out->n];
			char host[INET_ADDRSTRLEN + 1];

			if (!port_maps_overlap(a, b))
				continue;
			format_host(b, host, sizeof(host));
			r = qerr_set(err, EINVAL,
				     "ports: host port %s%u/%s is published twice (mappings %u and "
				     "%u)",
				     host, b->host_port, port_proto_name(b->proto), i + 1,
				     out->n + 1);
			memset(out, 0, sizeof(*out));
			return r;
		}
		out->n++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int ports_validate(const struct port_set *set, struct qerr *err)
{
	if (set->n > PORTS_MAX)
		return qerr_set(err, EINVAL, "ports: %u mappings, more than %d", set->n, PORTS_MAX);
	for (unsigned i = 0; i < set->n; i++) {
		const struct port_map *m = &set->map[i];

		if (m->host_port == 0 || m->sandbox_port == 0)
			return qerr_set(err, EINVAL, "ports: mapping %u: port 0", i + 1);
		if (m->proto != PORT_TCP && m->proto != PORT_UDP)
			return qerr_set(err, EINVAL, "ports: mapping %u: protocol %d unknown",
					i + 1, (int)m->proto);
		if (!unicast_or_any(m->host_ip))
			return qerr_set(err, EINVAL,
					"ports: mapping %u: host address is not unicast", i + 1);
		for (unsigned j = 0; j < i; j++)
			if (port_maps_overlap(&set->map[j], m))
				return qerr_set(
				    err, EINVAL,
				    "ports: host port %u/%s is published twice (mappings "
				    "%u and %u)",
				    m->host_port, port_proto_name(m->proto), j + 1, i + 1);
	}
	return 0;
}

int ports_format(const struct port_set *set, char *buf, size_t len, struct qerr *err)
{
	size_t off = 0;

	if (len == 0)
		return qerr_set(err, ENOBUFS, "ports: no room to format");
	buf[0] = '\0';
	for (unsigned i = 0; i < set->n && i < PORTS_MAX; i++) {
		const struct port_map *m = &set->map[i];
		char host[INET_ADDRSTRLEN + 1];

		format_host(m, host, sizeof(host));
		int n = snprintf(buf + off, len - off, "%s%s%u:%u/%s", i ? "," : "", host,
				 m->host_port, m->sandbox_port, port_proto_name(m->proto));
		if (n < 0 || (size_t)n >= len - off) {
			buf[0] = '\0';
			return qerr_set(err, ENOBUFS, "ports: %zu bytes are too few to format",
					len);
		}
		off += (size_t)n;
	}
	return (int)off;
}

bool port_maps_overlap(const struct port_map *a, const struct port_map *b)
{
	if (a->proto != b->proto || a->host_port != b->host_port)
		return false;
	return a->host_ip.s_addr == htonl(INADDR_ANY) || b->host_ip.s_addr == htonl(INADDR_ANY) ||
	       a->host_ip.s_addr == b->host_ip.s_addr;
}

int ports_check_conflict(const struct port_set *want, const struct port_set *have,
			 const char *owner, struct qerr *err)
{
	for (unsigned i = 0; i < want->n; i++)
		for (unsigned j = 0; j < have->n; j++) {
			const struct port_map *w = &want->map[i], *h = &have->map[j];
			char wh[INET_ADDRSTRLEN + 1], hh[INET_ADDRSTRLEN + 1];

			if (!port_maps_overlap(w, h))
				continue;
			format_host(w, wh, sizeof(wh));
			format_host(h, hh, sizeof(hh));
			return qerr_set(err, EADDRINUSE,
					"host port %s%u/%s: already published by sandbox %s (as "
					"%s%u:%u/%s)",
					wh, w->host_port, port_proto_name(w->proto), owner, hh,
					h->host_port, h->sandbox_port, port_proto_name(h->proto));
		}
	return 0;
}

const char *port_proto_name(enum port_proto proto)
{
	return proto == PORT_UDP ? "udp" : "tcp";
}
