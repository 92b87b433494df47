/* Route netlink with libmnl (rtnl.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include "libcommon/cleanup.h"
#include "services/netd/netns_socket.h"
#include "services/netd/rtnl.h"

/* Large enough for one dump batch: the kernel fills up to the size of
 * the largest read it has seen, at most 32 KiB. */
#define RTNL_BUF (32 * 1024)
/* A dump interrupted by changes this often in a row is an error. */
#define DUMP_TRIES 8
/* The monitor's receive buffer: room for a burst of link events (a netns
 * with many veths dying at once) before the kernel drops them. */
#define MONITOR_RCVBUF (4 * 1024 * 1024)

/* What the kernel said about a failed request. */
struct ack {
	int code; /* positive errno, 0 for success */
	char msg[128];
};

int rtnl_open(struct rtnl *r, int nsfd, struct qerr *err)
{
	int one = 1, fd;

	memset(r, 0, sizeof(*r));
	if (nsfd >= 0) {
		fd = netns_socket(nsfd, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, err);
		if (fd < 0)
			return err ? qerr_prefix(err, "netlink") : fd;
		r->nl = mnl_socket_fdopen(fd);
		if (!r->nl) {
			int e = errno;

			close(fd);
			return qerr_sys(err, e, "netlink: fdopen");
		}
	} else {
		r->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
		if (!r->nl)
			return qerr_sys(err, errno, "netlink: socket");
	}
	/* Extended acks carry the kernel's reason; capped acks leave our
	 * request out of the error message. */
	mnl_socket_setsockopt(r->nl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(r->nl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(r->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;

		rtnl_close(r);
		return qerr_sys(err, e, "netlink: bind");
	}
	r->portid = mnl_socket_get_portid(r->nl);
	r->seq = (unsigned)getpid() << 8;
	r->buf = malloc(RTNL_BUF);
	if (!r->buf) {
		rtnl_close(r);
		return qerr_set(err, ENOMEM, "netlink: out of memory");
	}
	return 0;
}

void rtnl_close(struct rtnl *r)
{
	if (r->nl)
		mnl_socket_close(r->nl);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int rtnl_fd(const struct rtnl *r)
{
	return mnl_socket_get_fd(r->nl);
}

static struct nlmsghdr *put_header(struct rtnl *r, int type, int flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(r->buf);

	nlh->nlmsg_type = (uint16_t)type;
	nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
	nlh->nlmsg_seq = ++r->seq;
	return nlh;
}

/* A request about link index (ifi_family family, nothing to change in
 * its flags): attributes follow. */
static struct nlmsghdr *put_link(struct rtnl *r, int type, unsigned char family, int index)
{
	struct nlmsghdr *nlh = put_header(r, type, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));

	ifm->ifi_family = family;
	ifm->ifi_index = index;
	return nlh;
}

/* The kernel's NLMSG_ERROR: the code and, with NLM_F_ACK_TLVS, its
 * message. */
static void parse_ack(const struct nlmsghdr *nlh, struct ack *ack)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	size_t off;

	ack->msg[0] = '\0';
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e)) {
		ack->code = EBADMSG;
		return;
	}
	ack->code = -e->error;
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	off = sizeof(*e);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (off >= mnl_nlmsg_get_payload_len(nlh))
		return;
	mnl_attr_for_each(a, nlh, off)
	{
		if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			snprintf(ack->msg, sizeof(ack->msg), "%s", mnl_attr_get_str(a));
	}
}

/* Send the request in r->buf and read until its ack, passing any data
 * messages to cb.  Returns 0 or -errno, with ack filled. */
static int talk(struct rtnl *r, mnl_cb_t cb, void *data, struct ack *ack)
{
	struct nlmsghdr *req = (struct nlmsghdr *)r->buf;
	unsigned seq = req->nlmsg_seq;

	ack->code = 0;
	ack->msg[0] = '\0';
	if (mnl_socket_sendto(r->nl, req, req->nlmsg_len) < 0) {
		ack->code = errno;
		snprintf(ack->msg, sizeof(ack->msg), "send");
		return -ack->code;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(r->nl, r->buf, RTNL_BUF);
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)r->buf;
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ack->code = errno;
			snprintf(ack->msg, sizeof(ack->msg), "receive");
			return -ack->code;
		}
		len = (int)n;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != r->portid)
				continue;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				parse_ack(nlh, ack);
				return -ack->code;
			}
			if (nlh->nlmsg_type >= NLMSG_MIN_TYPE && cb &&
			    cb(nlh, data) == MNL_CB_ERROR) {
				ack->code = EBADMSG;
				snprintf(ack->msg, sizeof(ack->msg), "malformed reply");
				return -ack->code;
			}
		}
	}
}

/* "what: strerror (kernel's message)". */
static int fail(struct qerr *err, const struct ack *ack, const char *what)
{
	if (ack->msg[0])
		return qerr_set(err, ack->code, "%s: %s (%s)", what, strerror(ack->code), ack->msg);
	return qerr_sys(err, ack->code, "%s", what);
}

struct dump {
	mnl_cb_t cb;
	void *data;
	bool intr;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump *d = data;

	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		d->intr = true;
	return d->cb(nlh, d->data);
}

/* Run the dump request in r->buf; -EAGAIN when it was interrupted. */
static int run_dump(struct rtnl *r, mnl_cb_t cb, void *data, struct ack *ack)
{
	struct nlmsghdr *req = (struct nlmsghdr *)r->buf;
	unsigned seq = req->nlmsg_seq;
	struct dump d = {cb, data, false};

	ack->code = 0;
	ack->msg[0] = '\0';
	if (mnl_socket_sendto(r->nl, req, req->nlmsg_len) < 0) {
		ack->code = errno;
		return -ack->code;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(r->nl, r->buf, RTNL_BUF);
		int ret;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ack->code = errno;
			return -ack->code;
		}
		ret = mnl_cb_run(r->buf, (size_t)n, seq, r->portid, dump_cb, &d);
		if (ret < 0) {
			ack->code = errno ? errno : EBADMSG;
			return -ack->code;
		}
		if (ret == MNL_CB_STOP)
			break;
	}
	if (d.intr) {
		ack->code = EAGAIN;
		snprintf(ack->msg, sizeof(ack->msg), "dump interrupted %d times", DUMP_TRIES);
		return -EAGAIN;
	}
	return 0;
}

/* A growing array of fixed-size items, for dumps. */
struct vec {
	void *v;
	size_t n, cap, size;
	int err;
};

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		size_t ncap = v->cap ? v->cap * 2 : 16;
		void *nv = realloc(v->v, ncap * v->size);

		if (!nv) {
			v->err = ENOMEM;
			return NULL;
		}
		v->v = nv;
		v->cap = ncap;
	}
	return (char *)v->v + v->size * v->n++;
}

/* An attribute table of max + 1 entries, filled by mnl_attr_parse;
 * types beyond it (newer kernels) are skipped. */
struct attrs {
	const struct nlattr **tb;
	unsigned max;
};

static int bounded_attr_cb(const struct nlattr *a, void *data)
{
	struct attrs *at = data;

	if (mnl_attr_get_type(a) <= at->max)
		at->tb[mnl_attr_get_type(a)] = a;
	return MNL_CB_OK;
}

static int parse_link(const struct nlmsghdr *nlh, struct rtnl_link *l)
{
	const struct nlattr *tb[IFLA_MAX + 1] = {0}, *info[IFLA_INFO_MAX + 1] = {0};
	struct attrs at = {tb, IFLA_MAX}, ai = {info, IFLA_INFO_MAX};
	const struct ifinfomsg *ifm;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifm))
		return -1;
	ifm = mnl_nlmsg_get_payload(nlh);
	memset(l, 0, sizeof(*l));
	l->index = ifm->ifi_index;
	l->flags = ifm->ifi_flags;
	if (mnl_attr_parse(nlh, sizeof(*ifm), bounded_attr_cb, &at) < 0)
		return -1;
	if (!tb[IFLA_IFNAME] || mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) < 0 ||
	    strlen(mnl_attr_get_str(tb[IFLA_IFNAME])) >= IFNAMSIZ)
		return -1;
	strcpy(l->name, mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_MASTER] && mnl_attr_validate(tb[IFLA_MASTER], MNL_TYPE_U32) == 0)
		l->master = (int)mnl_attr_get_u32(tb[IFLA_MASTER]);
	if (tb[IFLA_LINKINFO] &&
	    mnl_attr_parse_nested(tb[IFLA_LINKINFO], bounded_attr_cb, &ai) >= 0 &&
	    info[IFLA_INFO_KIND] &&
	    mnl_attr_validate(info[IFLA_INFO_KIND], MNL_TYPE_NUL_STRING) == 0)
		snprintf(l->kind, sizeof(l->kind), "%s", mnl_attr_get_str(info[IFLA_INFO_KIND]));
	return 0;
}

static int link_one_cb(const struct nlmsghdr *nlh, void *data)
{
	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	return parse_link(nlh, data) == 0 ? MNL_CB_OK : MNL_CB_ERROR;
}

int rtnl_link_get(struct rtnl *r, const char *name, struct rtnl_link *out, struct qerr *err)
{
	struct nlmsghdr *nlh = put_header(r, RTM_GETLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	struct ack ack;
	char what[64];

	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	memset(out, 0, sizeof(*out));
	if (talk(r, link_one_cb, out, &ack) == 0 && out->index > 0)
		return 0;
	snprintf(what, sizeof(what), "link %s", name);
	if (ack.code == 0)
		ack.code = ENODEV;
	return fail(err, &ack, what);
}

static int link_list_cb(const struct nlmsghdr *nlh, void *data)
{
	struct vec *v = data;
	struct rtnl_link *l;

	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	if (!(l = vec_push(v)))
		return MNL_CB_ERROR;
	if (parse_link(nlh, l) < 0)
		v->n--; /* a link without a name: not one of ours */
	return MNL_CB_OK;
}

int rtnl_link_list(struct rtnl *r, struct rtnl_link **out, size_t *n, struct qerr *err)
{
	struct ack ack;
	int ret = -EAGAIN;

	*out = NULL;
	*n = 0;
	for (int tries = 0; tries < DUMP_TRIES && ret == -EAGAIN; tries++) {
		struct vec v = {.size = sizeof(struct rtnl_link)};
		struct nlmsghdr *nlh = put_header(r, RTM_GETLINK, NLM_F_DUMP);
		struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));

		nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
		ifm->ifi_family = AF_UNSPEC;
		mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
		ret = run_dump(r, link_list_cb, &v, &ack);
		if (ret == 0 && v.err)
			ret = -(ack.code = v.err);
		if (ret < 0) {
			free(v.v);
			continue;
		}
		*out = v.v;
		*n = v.n;
	}
	return ret < 0 ? fail(err, &ack, "list links") : 0;
}

static struct nlmsghdr *put_newlink(struct rtnl *r, const char *name, int flags)
{
	struct nlmsghdr *nlh = put_header(r, RTM_NEWLINK, flags);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));

	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	return nlh;
}

int rtnl_bridge_add(struct rtnl *r, const char *name, const unsigned char mac[6], struct qerr *err)
{
	struct nlmsghdr *nlh = put_newlink(r, name, NLM_F_CREATE | NLM_F_EXCL);
	struct nlattr *linkinfo;
	struct ack ack;
	char what[64];

	mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nlh, linkinfo);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	snprintf(what, sizeof(what), "create bridge %s", name);
	return fail(err, &ack, what);
}

int rtnl_bridge_nf_call_iptables(struct rtnl *r, int index, bool on, struct qerr *err)
{
	struct nlmsghdr *nlh = put_link(r, RTM_NEWLINK, AF_UNSPEC, index);
	struct nlattr *linkinfo, *data;
	struct ack ack;
	char what[64];

	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	mnl_attr_put_u8(nlh, IFLA_BR_NF_CALL_IPTABLES, on ? 1 : 0);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	snprintf(what, sizeof(what), "bridge %d: nf_call_iptables", index);
	return fail(err, &ack, what);
}

int rtnl_veth_add(struct rtnl *r, const char *name, int master, const char *peer, int peer_nsfd,
		  struct qerr *err)
{
	struct nlmsghdr *nlh = put_newlink(r, name, NLM_F_CREATE | NLM_F_EXCL);
	struct nlattr *linkinfo, *data, *pn;
	struct ifinfomsg *pifm;
	struct ack ack;
	char what[64];

	if (master > 0)
		mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	pn = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow its own ifinfomsg inside the nest. */
	pifm = mnl_nlmsg_get_payload_tail(nlh);
	memset(pifm, 0, sizeof(*pifm));
	nlh->nlmsg_len += MNL_ALIGN(sizeof(*pifm));
	/* The peer stays down: the kernel configures it before the pair is
	 * linked, and opening a veth without its peer fails (ENOTCONN). */
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	if (peer_nsfd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_nsfd);
	mnl_attr_nest_end(nlh, pn);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	snprintf(what, sizeof(what), "create veth %s (peer %s)", name, peer);
	return fail(err, &ack, what);
}

int rtnl_link_del(struct rtnl *r, int index, struct qerr *err)
{
	struct ack ack;
	char what[64];

	put_link(r, RTM_DELLINK, AF_UNSPEC, index);
	if (talk(r, NULL, NULL, &ack) == 0 || ack.code == ENODEV)
		return 0;
	snprintf(what, sizeof(what), "delete link %d", index);
	return fail(err, &ack, what);
}

int rtnl_link_set(struct rtnl *r, int index, bool up, int master, struct qerr *err)
{
	struct nlmsghdr *nlh = put_header(r, RTM_NEWLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	struct ack ack;
	char what[64];

	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = index;
	ifm->ifi_flags = up ? IFF_UP : 0;
	ifm->ifi_change = IFF_UP;
	if (master >= 0)
		mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	snprintf(what, sizeof(what), "set link %d", index);
	return fail(err, &ack, what);
}

int rtnl_bridge_port_isolate(struct rtnl *r, int index, bool on, struct qerr *err)
{
	struct nlmsghdr *nlh = put_link(r, RTM_SETLINK, AF_BRIDGE, index);
	struct nlattr *nest;
	struct ack ack;
	char what[64];

	nest = mnl_attr_nest_start(nlh, IFLA_PROTINFO | NLA_F_NESTED);
	mnl_attr_put_u8(nlh, IFLA_BRPORT_ISOLATED, on ? 1 : 0);
	mnl_attr_nest_end(nlh, nest);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	snprintf(what, sizeof(what), "isolate bridge port %d", index);
	return fail(err, &ack, what);
}

int rtnl_link_no_ipv6(struct rtnl *r, int index, struct qerr *err)
{
	struct nlmsghdr *nlh = put_link(r, RTM_NEWLINK, AF_UNSPEC, index);
	struct nlattr *spec, *inet6;
	struct ack ack;
	char what[64];

	spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
	inet6 = mnl_attr_nest_start(nlh, AF_INET6);
	mnl_attr_put_u8(nlh, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
	mnl_attr_nest_end(nlh, inet6);
	mnl_attr_nest_end(nlh, spec);
	/* EAFNOSUPPORT: a kernel without IPv6, nothing to turn off */
	if (talk(r, NULL, NULL, &ack) == 0 || ack.code == EAFNOSUPPORT)
		return 0;
	snprintf(what, sizeof(what), "link %d: no IPv6 link-local address", index);
	return fail(err, &ack, what);
}

int rtnl_neigh_del(struct rtnl *r, int index, struct in_addr a, struct qerr *err)
{
	struct nlmsghdr *nlh = put_header(r, RTM_DELNEIGH, 0);
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	struct ack ack;
	char what[64], ip[INET_ADDRSTRLEN];

	nd->ndm_family = AF_INET;
	nd->ndm_ifindex = index;
	mnl_attr_put(nlh, NDA_DST, sizeof(a), &a);
	if (talk(r, NULL, NULL, &ack) == 0 || ack.code == ENOENT)
		return 0;
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(what, sizeof(what), "forget neighbour %s", ip);
	return fail(err, &ack, what);
}

static int addr_change(struct rtnl *r, int type, int flags, int index, struct in_addr a,
		       unsigned prefix, struct qerr *err)
{
	struct nlmsghdr *nlh = put_header(r, type, flags);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
	struct in_addr brd = {htonl(ntohl(a.s_addr) | ~mask)};
	char ip[INET_ADDRSTRLEN], what[96];
	struct ack ack;

	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(a), &a);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(a), &a);
	if (type == RTM_NEWADDR && prefix < 31)
		mnl_attr_put(nlh, IFA_BROADCAST, sizeof(brd), &brd);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(what, sizeof(what), "%s address %s/%u on link %d",
		 type == RTM_NEWADDR ? "add" : "delete", ip, prefix, index);
	return fail(err, &ack, what);
}

int rtnl_addr_add(struct rtnl *r, int index, struct in_addr a, unsigned prefix, struct qerr *err)
{
	return addr_change(r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, a, prefix, err);
}

int rtnl_addr_del(struct rtnl *r, int index, struct in_addr a, unsigned prefix, struct qerr *err)
{
	return addr_change(r, RTM_DELADDR, 0, index, a, prefix, err);
}

struct addr_list {
	struct vec v;
	int index;
};

static int addr_list_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[IFA_MAX + 1] = {0};
	struct attrs at = {tb, IFA_MAX};
	struct addr_list *al = data;
	const struct ifaddrmsg *ifa;
	struct rtnl_addr *a;

	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return MNL_CB_OK;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != al->index)
		return MNL_CB_OK;
	if (mnl_attr_parse(nlh, sizeof(*ifa), bounded_attr_cb, &at) < 0)
		return MNL_CB_ERROR;
	const struct nlattr *la = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!la || mnl_attr_get_payload_len(la) != sizeof(struct in_addr))
		return MNL_CB_OK;
	if (!(a = vec_push(&al->v)))
		return MNL_CB_ERROR;
	memcpy(&a->addr, mnl_attr_get_payload(la), sizeof(a->addr));
	a->prefix = ifa->ifa_prefixlen;
	return MNL_CB_OK;
}

int rtnl_addr_list(struct rtnl *r, int index, struct rtnl_addr **out, size_t *n, struct qerr *err)
{
	struct ack ack;
	int ret = -EAGAIN;

	*out = NULL;
	*n = 0;
	for (int tries = 0; tries < DUMP_TRIES && ret == -EAGAIN; tries++) {
		struct addr_list al = {{.size = sizeof(struct rtnl_addr)}, index};
		struct nlmsghdr *nlh = put_header(r, RTM_GETADDR, NLM_F_DUMP);
		struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));

		nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
		ifa->ifa_family = AF_INET;
		ret = run_dump(r, addr_list_cb, &al, &ack);
		if (ret == 0 && al.v.err)
			ret = -(ack.code = al.v.err);
		if (ret < 0) {
			free(al.v.v);
			continue;
		}
		*out = al.v.v;
		*n = al.v.n;
	}
	return ret < 0 ? fail(err, &ack, "list addresses") : 0;
}

int rtnl_route_add_default(struct rtnl *r, struct in_addr gw, int index, struct qerr *err)
{
	struct nlmsghdr *nlh = put_header(r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	char ip[INET_ADDRSTRLEN], what[64];
	struct ack ack;

	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_GATEWAY, sizeof(gw), &gw);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
	if (talk(r, NULL, NULL, &ack) == 0)
		return 0;
	inet_ntop(AF_INET, &gw, ip, sizeof(ip));
	snprintf(what, sizeof(what), "add default route via %s", ip);
	return fail(err, &ack, what);
}

static int route_list_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[RTA_MAX + 1] = {0};
	struct attrs at = {tb, RTA_MAX};
	const struct rtmsg *rtm;
	struct rtnl_route *rt;
	uint32_t table;

	if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(*rtm))
		return MNL_CB_OK;
	rtm = mnl_nlmsg_get_payload(nlh);
	if (rtm->rtm_family != AF_INET || rtm->rtm_type != RTN_UNICAST)
		return MNL_CB_OK;
	if (mnl_attr_parse(nlh, sizeof(*rtm), bounded_attr_cb, &at) < 0)
		return MNL_CB_ERROR;
	table = rtm->rtm_table;
	if (tb[RTA_TABLE] && mnl_attr_validate(tb[RTA_TABLE], MNL_TYPE_U32) == 0)
		table = mnl_attr_get_u32(tb[RTA_TABLE]);
	if (table != RT_TABLE_MAIN)
		return MNL_CB_OK;
	if (!(rt = vec_push(data)))
		return MNL_CB_ERROR;
	memset(rt, 0, sizeof(*rt));
	rt->dst_len = rtm->rtm_dst_len;
	if (tb[RTA_DST] && mnl_attr_get_payload_len(tb[RTA_DST]) == sizeof(rt->dst))
		memcpy(&rt->dst, mnl_attr_get_payload(tb[RTA_DST]), sizeof(rt->dst));
	if (tb[RTA_OIF] && mnl_attr_validate(tb[RTA_OIF], MNL_TYPE_U32) == 0)
		rt->oif = (int)mnl_attr_get_u32(tb[RTA_OIF]);
	return MNL_CB_OK;
}

int rtnl_route_list(struct rtnl *r, struct rtnl_route **out, size_t *n, struct qerr *err)
{
	struct ack ack;
	int ret = -EAGAIN;

	*out = NULL;
	*n = 0;
	for (int tries = 0; tries < DUMP_TRIES && ret == -EAGAIN; tries++) {
		struct vec v = {.size = sizeof(struct rtnl_route)};
		struct nlmsghdr *nlh = put_header(r, RTM_GETROUTE, NLM_F_DUMP);
		struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

		nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
		rtm->rtm_family = AF_INET;
		ret = run_dump(r, route_list_cb, &v, &ack);
		if (ret == 0 && v.err)
			ret = -(ack.code = v.err);
		if (ret < 0) {
			free(v.v);
			continue;
		}
		*out = v.v;
		*n = v.n;
	}
	return ret < 0 ? fail(err, &ack, "list routes") : 0;
}

int rtnl_monitor_open(struct rtnl *r, struct qerr *err)
{
	int size = MONITOR_RCVBUF, fd;

	memset(r, 0, sizeof(*r));
	r->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!r->nl)
		return qerr_sys(err, errno, "link monitor: socket");
	fd = mnl_socket_get_fd(r->nl);
	/* FORCE: above rmem_max, as root; the plain one is the fallback. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (mnl_socket_bind(r->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;

		rtnl_close(r);
		return qerr_sys(err, e, "link monitor: bind");
	}
	r->portid = mnl_socket_get_portid(r->nl);
	r->buf = malloc(RTNL_BUF);
	if (!r->buf) {
		rtnl_close(r);
		return qerr_set(err, ENOMEM, "link monitor: out of memory");
	}
	return 0;
}

int rtnl_monitor_read(struct rtnl *r, void (*cb)(int type, const struct rtnl_link *l, void *arg),
		      void *arg, struct qerr *err)
{
	for (;;) {
		struct sockaddr_nl from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(rtnl_fd(r), r->buf, RTNL_BUF, MSG_DONTWAIT | MSG_TRUNC,
				     (struct sockaddr *)&from, &flen);
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)r->buf;
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return qerr_sys(err, errno, "link monitor: receive");
		}
		if (n > RTNL_BUF)
			return qerr_set(err, ENOBUFS, "link monitor: message of %zd bytes", n);
		/* Only the kernel speaks on this group. */
		if (flen != sizeof(from) || from.nl_pid != 0)
			continue;
		len = (int)n;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			struct rtnl_link l;

			if (nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK)
				continue;
			if (parse_link(nlh, &l) == 0)
				cb(nlh->nlmsg_type, &l, arg);
		}
	}
}
