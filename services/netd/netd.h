/* quiver-netd's shared state (docs/netd.md). */
#ifndef QUIVER_NETD_H
#define QUIVER_NETD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "libcommon/err.h"
#include "libcommon/metrics.h"
#include "libcommon/sandbox_id.h"
#include "services/netd/grants.h"
#include "services/netd/ipam.h"

#define NETD_VERSION "0.1"

#define NETD_MAX_LISTENS 64 /* per sandbox, as the guest keeps them */

struct bridge;

enum nsbx_mode { NSBX_NEW = 0, NSBX_BRIDGE, NSBX_QUIVER };

struct nlisten {
	struct in_addr ip; /* INADDR_ANY: every address of the sandbox */
	uint16_t port;
};

/* One connection: a sandbox's supervisor (a sandbox once it said hello). */
struct nsbx {
	uv_poll_t poll;
	int fd;
	enum nsbx_mode mode;
	bool closing;
	char id[SANDBOX_ID_MAX + 1];
	struct in_addr ip;
	uint16_t next_port; /* the local ports its direct connections get */
	struct nlisten listens[NETD_MAX_LISTENS];
	unsigned nlistens;
	struct grant_set grants; /* io.quiver.net.peers: where it may connect */
	int64_t wake_ns;	 /* when netd last asked vmmd to wake it */
	struct nsbx *next;
};

struct netd {
	char root[4096];
	int rootfd;
	int statefd; /* ROOT/netd */
	uv_loop_t *loop;
	int lfd; /* ROOT/netd.sock */
	uv_poll_t lpoll;
	uv_signal_t sigterm, sigint;
	uv_timer_t sweep_timer, watchdog_timer, wake_timer;
	struct bridge *bridge;
	struct ipam_subnet subnet; /* the bridge's: this node's sandboxes */
	int monitor_fd;		   /* the bridge's netlink monitor, or -1 */
	uv_poll_t monitor_poll;
	struct nsbx *sandboxes;
	bool stopping;
	struct qmetrics *metrics;
	struct qmetrics_http *metrics_http;
	struct qmetric_series *m_direct, *m_kernel, *m_refused, *m_errors;
	struct qmetric_series *m_transport, *m_transport_in, *m_stalls, *m_denied;
};

extern struct netd netd;

struct qmsg_in;

/* The socket service (broker.c): listeners by address, connects between
 * sandboxes of this node. */
void broker_listen(struct nsbx *s, const struct qmsg_in *in, bool on);
void broker_connect(struct nsbx *s, const struct qmsg_in *in);
void broker_accepted(struct nsbx *s, const struct qmsg_in *in);
/* s is going away: what waits on it is refused. */
void broker_forget(struct nsbx *s);
/* For the node transport (nodes.c): answers to a sandbox's connect, its
 * next local port, and an incoming offered to this node's listener on
 * ip:port for a channel (relay_offered answers). */
struct relay;
void broker_refuse(struct nsbx *s, uint32_t seq, int code);
void broker_connected(struct nsbx *s, uint32_t seq, uint16_t lport, struct in_addr pip,
		      uint16_t pport, int fd);
uint16_t broker_lport(struct nsbx *s);
int broker_offer_remote(struct in_addr ip, uint16_t port, struct in_addr pip, uint16_t pport,
			struct relay *r);
void broker_forget_relay(struct relay *r);

/* Ask vmmd to wake s, whose supervisor has not taken an incoming channel
 * (it may be hibernated); at most once a second (wake.c). */
void wake_for_connection(struct nsbx *s);

/* The node transport (nodes.c; docs/netd.md "Between nodes"). */
int nodes_set_id(const char *spec, struct qerr *err);
int nodes_set_listen(const char *spec, struct qerr *err);
int nodes_add_peer(const char *spec, struct qerr *err);
int nodes_start(struct qerr *err);
void nodes_stop(void);
void nodes_forget(struct nsbx *s);
struct nodes_stats {
	uint64_t conns, channels, bytes_in, bytes_out; /* of the live connections */
	uint64_t gone_in, gone_out;		       /* of those that closed */
	uint64_t frames_out, sends;		       /* all of them, closed or not */
};
void nodes_stats(struct nodes_stats *out);
/* A sandbox connects to ip:port of a peer node's subnet: 0 when a channel
 * is on its way (the answer comes later), -ENETUNREACH when ip is no
 * peer's. */
int relay_connect(struct nsbx *s, uint32_t seq, struct in_addr ip, uint16_t port);
/* Is ip in a peer node's subnet? */
bool nodes_peer_subnet(struct in_addr ip);
/* The listener's supervisor answered an incoming that came over the
 * transport: 0 with our end of the pair, or an errno. */
void relay_offered(struct relay *r, int code, int fd);
/* Refuse what has waited too long on a supervisor that does not answer. */
void broker_sweep(void);
void broker_wake_check(uv_timer_t *t);
size_t broker_pending(void);

/* Send one message with at most one fd on a sandbox's connection; a
 * failure closes the connection (later, from the loop). */
struct qmsg_out;
int nsbx_send(struct nsbx *s, struct qmsg_out *m, int fd);

#endif
