/* IPAM for bridge mode (ipam.h): subnets, the lease table and its files.
 *
 * A lease file, all of it ("ports " is followed by nothing when the sandbox
 * publishes none):
 *
 *   quiver-netd-lease 1
 *   id web-1
 *   addr 10.88.0.7
 *   ifname qv3f09a1c2d4
 *   ports 8080:80/tcp,127.0.0.1:5353:53/udp
 *   peers web-2:6379,10.1.0.0/16
 *   end
 *
 * Loading accepts exactly that, in that order, and nothing after "end":
 * a file cut short anywhere is not a lease.  The peers line (followed by
 * nothing when none are granted) may be missing: a lease an older netd
 * wrote, whose sandbox is granted nothing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/log.h"
#include "libcommon/statefile.h"
#include "services/netd/ipam.h"

#define LEASE_MAGIC "quiver-netd-lease 1"
/* A lease with PORTS_MAX of the longest mappings is about 2.2 KiB. */
#define LEASE_FILE_MAX 8192
/* Matches statefile_sweep()'s pattern, so a crash's leftovers are swept. */
#define TMP_RAND 6
/* Lease files found taken on disk but not in the table, before giving up. */
#define MAX_STRAY_FILES 16

struct ipam {
	int dfd;
	struct ipam_subnet sn;
	struct ipam_lease *v; /* sorted by address */
	size_t n, cap;
	uint32_t cursor; /* offset in the subnet of the last address handed out */
};

/* Hostile text for a message: bounded, non-printable bytes as '?'. */
static void quote(char *dst, size_t dlen, const char *s)
{
	size_t i = 0;

	for (; s[i] && i + 4 < dlen; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i])
		memcpy(dst + i, "...", 4);
	else
		dst[i] = '\0';
}

static uint32_t mask_of(unsigned prefix)
{
	return prefix ? ~0u << (32 - prefix) : 0;
}

/* Ranges that are not for a bridge's LAN. */
static const struct {
	uint32_t net;
	unsigned prefix;
	const char *cidr, *what;
} reserved[] = {
    {0x00000000, 8, "0.0.0.0/8", "this network"},
    {0x7f000000, 8, "127.0.0.0/8", "loopback"},
    {0xa9fe0000, 16, "169.254.0.0/16", "link-local, where cloud metadata lives"},
    {0xe0000000, 3, "224.0.0.0/3", "multicast and reserved"},
};

static uint32_t size_of(const struct ipam_subnet *sn)
{
	return 1u << (32 - sn->prefix);
}

int ipam_subnet_parse(const char *cidr, struct ipam_subnet *out, struct qerr *err)
{
	char q[48], ip[INET_ADDRSTRLEN];
	const char *slash = strchr(cidr, '/');
	struct in_addr a;
	unsigned prefix = 0;

	quote(q, sizeof(q), cidr);
	memset(out, 0, sizeof(*out));
	if (strnlen(cidr, IPAM_CIDR_LEN) >= IPAM_CIDR_LEN)
		return qerr_set(err, EINVAL, "subnet \"%s\": too long for an IPv4 CIDR", q);
	if (!slash)
		return qerr_set(err, EINVAL, "subnet \"%s\": need ADDRESS/PREFIX", q);
	if ((size_t)(slash - cidr) >= sizeof(ip))
		return qerr_set(err, EINVAL, "subnet \"%s\": not an IPv4 address", q);
	memcpy(ip, cidr, (size_t)(slash - cidr));
	ip[slash - cidr] = '\0';
	if (inet_pton(AF_INET, ip, &a) != 1) {
		char qip[INET_ADDRSTRLEN + 4];

		quote(qip, sizeof(qip), ip);
		return qerr_set(err, EINVAL, "subnet \"%s\": \"%s\" is not an IPv4 address", q,
				qip);
	}
	const char *p = slash + 1;
	size_t plen = strlen(p);
	if (plen == 0 || plen > 2 || (plen == 2 && p[0] == '0'))
		return qerr_set(err, EINVAL, "subnet \"%s\": prefix must be %d to %d", q,
				IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);
	for (size_t i = 0; i < plen; i++) {
		if (p[i] < '0' || p[i] > '9')
			return qerr_set(err, EINVAL, "subnet \"%s\": prefix must be %d to %d", q,
					IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);
		prefix = prefix * 10 + (unsigned)(p[i] - '0');
	}
	if (prefix < IPAM_PREFIX_MIN || prefix > IPAM_PREFIX_MAX)
		return qerr_set(err, EINVAL, "subnet \"%s\": prefix /%u: must be %d to %d", q,
				prefix, IPAM_PREFIX_MIN, IPAM_PREFIX_MAX);

	uint32_t h = ntohl(a.s_addr);
	if (h & ~mask_of(prefix)) {
		struct in_addr net = {htonl(h & mask_of(prefix))};
		char ns[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &net, ns, sizeof(ns));
		return qerr_set(err, EINVAL,
				"subnet \"%s\": host bits are set (the network is %s/%u)", q, ns,
				prefix);
	}
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++) {
		unsigned common = prefix < reserved[i].prefix ? prefix : reserved[i].prefix;

		if (((h ^ reserved[i].net) & mask_of(common)) == 0)
			return qerr_set(err, EINVAL, "subnet \"%s\": overlaps %s (%s)", q,
					reserved[i].cidr, reserved[i].what);
	}
	out->net = h;
	out->prefix = prefix;
	return 0;
}

void ipam_subnet_format(const struct ipam_subnet *sn, char buf[IPAM_CIDR_LEN])
{
	struct in_addr a = {htonl(sn->net)};
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, IPAM_CIDR_LEN, "%s/%u", ip, sn->prefix);
}

struct in_addr ipam_subnet_gateway(const struct ipam_subnet *sn)
{
	return (struct in_addr){htonl(sn->net + 1)};
}

bool ipam_subnet_contains(const struct ipam_subnet *sn, struct in_addr a)
{
	return (ntohl(a.s_addr) & mask_of(sn->prefix)) == sn->net;
}

uint32_t ipam_subnet_hosts(const struct ipam_subnet *sn)
{
	return size_of(sn) - 3;
}

/* FNV-1a, 64 bits: short, fixed inputs; it needs to spread, not to resist
 * an attacker (a collision costs only the next attempt). */
static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void ipam_ifname_for(const char *id, unsigned attempt, char buf[IFNAMSIZ])
{
	uint64_t h = fnv1a(id, strlen(id), 0xcbf29ce484222325ull);

	if (attempt)
		h = fnv1a(&attempt, sizeof(attempt), h);
	snprintf(buf, IFNAMSIZ, IPAM_IFNAME_PREFIX "%010llx",
		 (unsigned long long)(h & ((1ull << (4 * IPAM_IFNAME_HEX)) - 1)));
}

bool ipam_ifname_ok(const char *name)
{
	size_t plen = strlen(IPAM_IFNAME_PREFIX);

	if (strnlen(name, IFNAMSIZ) != plen + IPAM_IFNAME_HEX ||
	    strncmp(name, IPAM_IFNAME_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < plen + IPAM_IFNAME_HEX; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

/* Binary search by address: the index of a, or where it would go. */
static size_t find_pos(const struct ipam *ipam, uint32_t a, bool *found)
{
	size_t lo = 0, hi = ipam->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t m = ntohl(ipam->v[mid].addr.s_addr);

		if (m == a) {
			*found = true;
			return mid;
		}
		if (m < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int insert(struct ipam *ipam, const struct ipam_lease *l, struct ipam_lease **out)
{
	bool found;
	size_t pos = find_pos(ipam, ntohl(l->addr.s_addr), &found);

	if (found)
		return -EEXIST;
	if (ipam->n == ipam->cap) {
		size_t ncap = ipam->cap ? ipam->cap * 2 : 16;
		struct ipam_lease *v = realloc(ipam->v, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ipam->v = v;
		ipam->cap = ncap;
	}
	memmove(&ipam->v[pos + 1], &ipam->v[pos], (ipam->n - pos) * sizeof(*ipam->v));
	ipam->v[pos] = *l;
	ipam->n++;
	if (out)
		*out = &ipam->v[pos];
	return 0;
}

static void addr_name(struct in_addr a, char buf[INET_ADDRSTRLEN])
{
	inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* The next line of [*p, end) if it is "key value" (or exactly "key" when
 * val is NULL); the value is copied to val.  -2 when the file ends before
 * the line does. */
static int take_line(const char **p, const char *end, const char *key, char *val, size_t vlen)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t klen = strlen(key), n;

	if (!nl)
		return -2;
	n = (size_t)(nl - *p);
	if (n < klen || memcmp(*p, key, klen) != 0)
		return -1;
	if (!val) {
		if (n != klen)
			return -1;
	} else {
		if (n == klen || (*p)[klen] != ' ' || n - klen - 1 >= vlen)
			return -1;
		memcpy(val, *p + klen + 1, n - klen - 1);
		val[n - klen - 1] = '\0';
	}
	*p = nl + 1;
	return 0;
}

/* Parse a lease file named name; *why says what was wrong. */
static int parse_lease(const char *name, const char *text, size_t len, struct ipam_lease *l,
		       const char **why)
{
	const char *p = text, *end = text + len;
	char val[GRANTS_SPEC_MAX + 1];
	int r;

	memset(l, 0, sizeof(*l));
	/* Each step names what it wanted; a line the file ends inside of
	 * is a write cut short, whichever it was. */
	*why = "not a lease (no header)";
	if ((r = take_line(&p, end, LEASE_MAGIC, NULL, 0)) < 0)
		goto bad;
	*why = "no valid id line";
	if ((r = take_line(&p, end, "id", val, sizeof(val))) < 0 || sandbox_id_check(val, NULL) < 0)
		goto bad;
	memcpy(l->id, val, strlen(val) + 1);
	*why = "no addr line matching the file name";
	if ((r = take_line(&p, end, "addr", val, sizeof(val))) < 0 || strcmp(val, name) != 0 ||
	    inet_pton(AF_INET, val, &l->addr) != 1)
		goto bad;
	*why = "no valid ifname line";
	if ((r = take_line(&p, end, "ifname", val, sizeof(val))) < 0 || !ipam_ifname_ok(val))
		goto bad;
	memcpy(l->ifname, val, strlen(val) + 1);
	*why = "no valid ports line";
	if ((r = take_line(&p, end, "ports", val, sizeof(val))) < 0 ||
	    ports_parse(val, &l->ports, NULL))
		goto bad;
	*why = "no valid peers line";
	if ((r = take_line(&p, end, "peers", val, sizeof(val))) == 0) {
		struct grant_set gs;
		if (grants_parse(val, &gs, NULL) < 0)
			goto bad;
		memcpy(l->peers, val, strlen(val) + 1);
	} else if (r == -2) {
		goto bad;
	}
	*why = "no end line";
	if ((r = take_line(&p, end, "end", NULL, 0)) < 0)
		goto bad;
	*why = "data after the end line";
	if (p != end)
		return -1;
	return 0;
bad:
	if (r == -2)
		*why = "cut short";
	return -1;
}

static int format_lease(const struct ipam_lease *l, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN], ports[PORTS_SPEC_MAX + 1];
	int n;

	addr_name(l->addr, ip);
	if (ports_format(&l->ports, ports, sizeof(ports), NULL) < 0)
		return -ENOBUFS;
	n = snprintf(buf, len, LEASE_MAGIC "\nid %s\naddr %s\nifname %s\nports %s\npeers %s\nend\n",
		     l->id, ip, l->ifname, ports, l->peers);
	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	return n;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int create_tmp(int dfd, const char *name, char *tmp, size_t tlen)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";

	for (int attempt = 0; attempt < 16; attempt++) {
		unsigned char rnd[TMP_RAND];
		char sfx[TMP_RAND + 1];

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return -EIO;
		for (int i = 0; i < TMP_RAND; i++)
			sfx[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
		sfx[TMP_RAND] = '\0';
		snprintf(tmp, tlen, ".%s" STATEFILE_TMP_INFIX "%s", name, sfx);
		int fd =
		    openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* Publish the lease under its address: complete, and only if no file has
 * that name (-EEXIST). */
static int write_lease(struct ipam *ipam, const struct ipam_lease *l, struct qerr *err)
{
	char name[INET_ADDRSTRLEN], tmp[64], text[LEASE_FILE_MAX];
	cleanup_close int fd = -1;
	int len, r;

	addr_name(l->addr, name);
	len = format_lease(l, text, sizeof(text));
	if (len < 0)
		return qerr_set(err, ENOBUFS, "lease %s: does not fit in %d bytes", name,
				LEASE_FILE_MAX);
	fd = create_tmp(ipam->dfd, name, tmp, sizeof(tmp));
	if (fd < 0)
		return qerr_sys(err, -fd, "lease %s: create temporary file", name);
	r = write_all(fd, text, (size_t)len);
	if (r < 0) {
		unlinkat(ipam->dfd, tmp, 0);
		return qerr_sys(err, -r, "lease %s: write %s", name, tmp);
	}
	if (close(steal_fd(fd)) < 0 && errno != EINTR) {
		r = qerr_sys(err, errno, "lease %s: close %s", name, tmp);
		unlinkat(ipam->dfd, tmp, 0);
		return r;
	}
	r = renameat2(ipam->dfd, tmp, ipam->dfd, name, RENAME_NOREPLACE);
	if (r < 0 && errno == EINVAL) {
		/* A filesystem without RENAME_NOREPLACE: link(2) is exclusive
		 * too; a crash before the unlink leaves a temporary file for
		 * the sweep. */
		r = linkat(ipam->dfd, tmp, ipam->dfd, name, 0);
		if (r == 0)
			unlinkat(ipam->dfd, tmp, 0);
	}
	if (r < 0) {
		int e = errno;

		unlinkat(ipam->dfd, tmp, 0);
		return qerr_sys(err, e, "lease %s: publish", name);
	}
	return 0;
}

static void drop(struct ipam *ipam, const char *name, const char *why)
{
	char q[80];

	quote(q, sizeof(q), name);
	if (unlinkat(ipam->dfd, name, 0) < 0 && errno != ENOENT)
		qlog_warn("lease file %s: %s; cannot remove it: %s", q, why, strerror(errno));
	else
		qlog_warn("lease file %s: %s; removed", q, why);
}

/* An address name is the canonical dotted quad, which inet_pton checks
 * (no leading zeros, four parts) and inet_ntop would give back. */
static bool addr_of_name(const char *name, struct in_addr *a)
{
	return strlen(name) < INET_ADDRSTRLEN && inet_pton(AF_INET, name, a) == 1;
}

/* Lease names in address order, the rest after: a duplicate is decided
 * the same way whatever order readdir gives. */
static int cmp_names(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	struct in_addr ax, ay;
	bool px = addr_of_name(x, &ax), py = addr_of_name(y, &ay);

	if (px != py)
		return px ? -1 : 1;
	if (!px)
		return strcmp(x, y);
	return ntohl(ax.s_addr) < ntohl(ay.s_addr) ? -1 : ntohl(ax.s_addr) > ntohl(ay.s_addr);
}

static int list_names(int dfd, char ***names, size_t *n, struct qerr *err)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;

	if (fd < 0)
		return qerr_sys(err, errno, "leases: open directory");
	cleanup_dir DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return qerr_sys(err, errno, "leases: open directory");
	}
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **nv = realloc(v, ncap * sizeof(*nv));

			if (!nv)
				goto nomem;
			v = nv;
			cap = ncap;
		}
		if (!(v[cnt] = strdup(de->d_name)))
			goto nomem;
		cnt++;
	}
	if (errno) {
		int e = errno;

		for (size_t i = 0; i < cnt; i++)
			free(v[i]);
		free(v);
		return qerr_sys(err, e, "leases: read directory");
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_names);
	*names = v;
	*n = cnt;
	return 0;
nomem:
	for (size_t i = 0; i < cnt; i++)
		free(v[i]);
	free(v);
	return qerr_set(err, ENOMEM, "leases: out of memory");
}

/* Read and parse one lease file; 1 when it is a lease (in *l), 0 when it
 * is not (*why says why), or a negative errno. */
static int read_lease(struct ipam *ipam, const char *name, struct ipam_lease *l, const char **why,
		      struct qerr *err)
{
	cleanup_free char *text = NULL;
	size_t len;
	int r = statefile_read(ipam->dfd, name, LEASE_FILE_MAX, &text, &len, NULL);

	if (r == -EFBIG || r == -EINVAL) {
		*why = r == -EFBIG ? "too large for a lease" : "not a regular file";
		return 0;
	}
	if (r < 0)
		return qerr_sys(err, -r, "lease %s: read", name);
	if (memchr(text, '\0', len)) {
		*why = "contains a NUL byte";
		return 0;
	}
	return parse_lease(name, text, len, l, why) == 0;
}

static int load(struct ipam *ipam, struct qerr *err)
{
	char **names = NULL;
	size_t n = 0;
	int r;

	r = statefile_sweep(ipam->dfd, ".", err);
	if (r < 0)
		return r;
	if (r > 0)
		qlog_info("leases: removed %d temporary file%s a crash left", r, r == 1 ? "" : "s");
	r = list_names(ipam->dfd, &names, &n, err);
	if (r < 0)
		return r;

	/* First, without changing anything: is every lease in the subnet? */
	for (size_t i = 0; i < n && r == 0; i++) {
		struct in_addr a;
		char cidr[IPAM_CIDR_LEN];

		if (!addr_of_name(names[i], &a) || ipam_subnet_contains(&ipam->sn, a))
			continue;
		ipam_subnet_format(&ipam->sn, cidr);
		r = qerr_set(err, EINVAL,
			     "lease %s is outside subnet %s: the subnet was changed while "
			     "sandboxes held addresses; detach them, or tear bridge mode down",
			     names[i], cidr);
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		struct ipam_lease l;
		struct in_addr a;
		const char *why;
		uint32_t off;

		if (!addr_of_name(names[i], &a)) {
			drop(ipam, names[i], "not a lease name");
			continue;
		}
		off = ntohl(a.s_addr) - ipam->sn.net;
		if (off < 2 || off == size_of(&ipam->sn) - 1) {
			drop(ipam, names[i], "not a sandbox address");
			continue;
		}
		r = read_lease(ipam, names[i], &l, &why, err);
		if (r <= 0) {
			if (r == 0)
				drop(ipam, names[i], why);
			continue;
		}
		r = 0;
		if (ipam_find(ipam, l.id)) {
			drop(ipam, names[i], "a second lease for its sandbox");
			continue;
		}
		if (ipam_find_ifname(ipam, l.ifname)) {
			drop(ipam, names[i], "a second lease for its interface");
			continue;
		}
		if (insert(ipam, &l, NULL) < 0)
			r = qerr_set(err, ENOMEM, "leases: out of memory");
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (r < 0)
		return r;
	/* Next-fit goes on after the highest lease, as if it were the last. */
	ipam->cursor = ipam->n ? ntohl(ipam->v[ipam->n - 1].addr.s_addr) - ipam->sn.net : 1;
	return 0;
}

int ipam_open(int dirfd, const struct ipam_subnet *sn, struct ipam **out, struct qerr *err)
{
	struct ipam *ipam;
	int r;

	*out = NULL;
	if (sn->prefix < IPAM_PREFIX_MIN || sn->prefix > IPAM_PREFIX_MAX ||
	    (sn->net & ~mask_of(sn->prefix)))
		return qerr_set(err, EINVAL, "ipam: not a valid subnet");
	ipam = calloc(1, sizeof(*ipam));
	if (!ipam)
		return qerr_set(err, ENOMEM, "ipam: out of memory");
	ipam->sn = *sn;
	ipam->dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (ipam->dfd < 0) {
		r = qerr_sys(err, errno, "leases: dup directory fd");
		free(ipam);
		return r;
	}
	r = load(ipam, err);
	if (r < 0) {
		ipam_close(ipam);
		return r;
	}
	*out = ipam;
	return 0;
}

void ipam_close(struct ipam *ipam)
{
	if (!ipam)
		return;
	close(ipam->dfd);
	free(ipam->v);
	free(ipam);
}

int ipam_alloc(struct ipam *ipam, const char *id, const char *ifname, const struct port_set *ports,
	       const char *peers, struct ipam_lease **out, struct qerr *err)
{
	uint32_t hosts = ipam_subnet_hosts(&ipam->sn), last = size_of(&ipam->sn) - 2;
	uint32_t off = ipam->cursor;
	struct ipam_lease l, *have;
	unsigned stray = 0;
	char cidr[IPAM_CIDR_LEN], name[INET_ADDRSTRLEN];
	int r;

	*out = NULL;
	r = sandbox_id_check(id, err);
	if (r < 0)
		return r;
	if (!ipam_ifname_ok(ifname))
		return qerr_set(err, EINVAL, "lease for %s: \"%.16s\" is not a host veth name", id,
				ifname);
	if ((have = ipam_find(ipam, id))) {
		addr_name(have->addr, name);
		return qerr_set(err, EEXIST, "sandbox %s already holds lease %s", id, name);
	}
	if ((have = ipam_find_ifname(ipam, ifname)))
		return qerr_set(err, EEXIST, "interface %s already belongs to sandbox %s", ifname,
				have->id);
	ipam_subnet_format(&ipam->sn, cidr);
	if (ipam->n >= hosts)
		return qerr_set(err, ENOSPC, "subnet %s is full: all %u addresses are leased", cidr,
				hosts);

	memset(&l, 0, sizeof(l));
	memcpy(l.id, id, strlen(id) + 1);
	memcpy(l.ifname, ifname, strlen(ifname) + 1);
	if (ports)
		l.ports = *ports;
	if (peers) {
		struct grant_set gs;
		if (strlen(peers) > GRANTS_SPEC_MAX || strchr(peers, '\n') ||
		    grants_parse(peers, &gs, NULL) < 0)
			return qerr_set(err, EINVAL, "lease for %s: not a valid peers spec", id);
		memcpy(l.peers, peers, strlen(peers) + 1);
	}
	for (uint32_t tries = 0; tries < hosts; tries++) {
		bool found;

		off = off >= last ? 2 : off + 1;
		find_pos(ipam, ipam->sn.net + off, &found);
		if (found)
			continue;
		l.addr.s_addr = htonl(ipam->sn.net + off);
		r = write_lease(ipam, &l, err);
		if (r == -EEXIST && ++stray <= MAX_STRAY_FILES) {
			addr_name(l.addr, name);
			qlog_warn("lease file %s exists but is not in the table; skipped", name);
			continue;
		}
		if (r < 0)
			return r;
		if (insert(ipam, &l, out) < 0) {
			addr_name(l.addr, name);
			unlinkat(ipam->dfd, name, 0);
			return qerr_set(err, ENOMEM, "lease %s: out of memory", name);
		}
		ipam->cursor = off;
		return 0;
	}
	return qerr_set(err, ENOSPC, "subnet %s: no free address", cidr);
}

int ipam_release(struct ipam *ipam, const char *id, struct qerr *err)
{
	struct ipam_lease *l = ipam_find(ipam, id);
	char name[INET_ADDRSTRLEN];

	if (!l)
		return 0;
	addr_name(l->addr, name);
	if (unlinkat(ipam->dfd, name, 0) < 0 && errno != ENOENT)
		return qerr_sys(err, errno, "lease %s of %s: remove", name, id);
	size_t pos = (size_t)(l - ipam->v);
	memmove(&ipam->v[pos], &ipam->v[pos + 1], (ipam->n - pos - 1) * sizeof(*ipam->v));
	ipam->n--;
	return 1;
}

struct ipam_lease *ipam_find(struct ipam *ipam, const char *id)
{
	for (size_t i = 0; i < ipam->n; i++)
		if (strcmp(ipam->v[i].id, id) == 0)
			return &ipam->v[i];
	return NULL;
}

struct ipam_lease *ipam_find_ifname(struct ipam *ipam, const char *ifname)
{
	for (size_t i = 0; i < ipam->n; i++)
		if (strcmp(ipam->v[i].ifname, ifname) == 0)
			return &ipam->v[i];
	return NULL;
}

struct ipam_lease *ipam_leases(struct ipam *ipam, size_t *n)
{
	*n = ipam->n;
	return ipam->v;
}
