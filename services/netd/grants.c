/* io.quiver.net.peers (grants.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/netd/grants.h"

/* "80" -> 80; anything but 1..65535 in plain digits is refused. */
static int parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535 || s[0] == '0')
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* "10.0.0.0/8", "10.1.2.3": 0, or -EINVAL when it is not an address. */
static int parse_net(const char *s, uint32_t *net, uint32_t *mask)
{
	char buf[INET_ADDRSTRLEN + 4];
	const char *slash = strchr(s, '/');
	unsigned long prefix = 32;
	struct in_addr a;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	if (slash) {
		buf[slash - s] = '\0';
		const char *p = slash + 1;
		if (!*p || strlen(p) > 2)
			return -EINVAL;
		prefix = 0;
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			prefix = prefix * 10 + (unsigned long)(*p - '0');
		}
		if (prefix > 32)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	*mask = prefix ? ~0u << (32 - prefix) : 0;
	*net = ntohl(a.s_addr) & *mask;
	return 0;
}

static int parse_one(const char *e, struct grant *g, struct qerr *err)
{
	char head[SANDBOX_ID_MAX + 8];
	const char *colon = strrchr(e, ':');

	*g = (struct grant){0};
	if (strcmp(e, "*") == 0) {
		g->kind = GRANT_ANY;
		return 0;
	}
	if (colon) {
		if (parse_port(colon + 1, &g->port) < 0)
			return qerr_set(err, EINVAL, "\"%s\": the port is not 1..65535", e);
		if ((size_t)(colon - e) >= sizeof(head))
			return qerr_set(err, EINVAL, "\"%s\": too long", e);
		memcpy(head, e, (size_t)(colon - e));
		head[colon - e] = '\0';
	} else {
		if (strlen(e) >= sizeof(head))
			return qerr_set(err, EINVAL, "\"%s\": too long", e);
		snprintf(head, sizeof(head), "%s", e);
	}
	if (parse_net(head, &g->net, &g->mask) == 0) {
		g->kind = GRANT_NET;
		return 0;
	}
	if (strchr(head, '/'))
		return qerr_set(err, EINVAL, "\"%s\": not an IPv4 network", e);
	if (sandbox_id_check(head, NULL) < 0)
		return qerr_set(err, EINVAL,
				"\"%s\": not *, a sandbox id, an IPv4 address or an IPv4 network",
				e);
	g->kind = GRANT_ID;
	snprintf(g->id, sizeof(g->id), "%s", head);
	return 0;
}

int grants_parse(const char *spec, struct grant_set *out, struct qerr *err)
{
	char entry[SANDBOX_ID_MAX + 16];

	memset(out, 0, sizeof(*out));
	if (!spec || !*spec)
		return 0;
	if (strlen(spec) > GRANTS_SPEC_MAX)
		return qerr_set(err, EINVAL, "longer than %d bytes", GRANTS_SPEC_MAX);
	/* what is quoted in a message below is printable */
	for (const char *p = spec; *p; p++)
		if (*p <= ' ' || *p > '~')
			return qerr_set(err, EINVAL,
					"byte %zu is not printable ASCII (or is a space)",
					(size_t)(p - spec));
	for (const char *p = spec;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		int r;

		if (len == 0) {
			memset(out, 0, sizeof(*out));
			return qerr_set(err, EINVAL, "an empty entry");
		}
		if (len >= sizeof(entry)) {
			memset(out, 0, sizeof(*out));
			return qerr_set(err, EINVAL, "an entry longer than %zu bytes",
					sizeof(entry) - 1);
		}
		if (out->n == GRANTS_MAX) {
			memset(out, 0, sizeof(*out));
			return qerr_set(err, EINVAL, "more than %d entries", GRANTS_MAX);
		}
		memcpy(entry, p, len);
		entry[len] = '\0';
		if ((r = parse_one(entry, &out->g[out->n], err)) < 0) {
			memset(out, 0, sizeof(*out));
			return r;
		}
		out->n++;
		if (!end)
			return 0;
		p = end + 1;
	}
}

bool grants_allow(const struct grant_set *set, struct in_addr ip, uint16_t port, const char *id)
{
	uint32_t a = ntohl(ip.s_addr);

	for (unsigned i = 0; i < set->n; i++) {
		const struct grant *g = &set->g[i];
		if (g->port && g->port != port)
			continue;
		if (g->kind == GRANT_ANY || (g->kind == GRANT_NET && (a & g->mask) == g->net) ||
		    (g->kind == GRANT_ID && id && strcmp(g->id, id) == 0))
			return true;
	}
	return false;
}
