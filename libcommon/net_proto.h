/* The channel between a sandbox's supervisor and netd (docs/netd.md).
 *
 * One SOCK_SEQPACKET connection per sandbox on ROOT/netd.sock, made by the
 * supervisor before the workload exists and held for the sandbox's life:
 * netd learns that a sandbox is gone when its connection closes.  Each
 * message is one qmsg map (libcommon/msg.h) of at most NETP_MAX_MSG bytes,
 * with at most one fd (SCM_RIGHTS).  Addresses are dotted IPv4 strings,
 * ports integers.
 *
 * supervisor -> netd
 *   hello    {id, mode: "bridge"|"quiver", ports: spec|nil, peers: spec|nil,
 *            resume: bool}
 *            + the sandbox's network namespace.  Answered (before anything
 *            else is sent either way) by
 *            ok {ip, prefix, gateway} or an error reply.  resume: the
 *            sandbox was set up by an earlier netd (netd restarted); the
 *            network it has is kept.
 *   listen   {ip, port}      the workload listens on ip:port (0.0.0.0: any)
 *   unlisten {ip, port}
 *   connect  {seq, ip, port} the workload connects to ip:port; answered by
 *            connected {seq, lport, pip, pport} + one end of a stream pair
 *                      (lport: the workload's own port as its peer sees it;
 *                      pip:pport: the peer's address),
 *            kernel {seq}      (allowed, and no sandbox of this node or of a
 *                      peer node listens there: the supervisor makes the
 *                      kernel's TCP connection itself, to the address netd
 *                      checked),
 *            refused {seq, code} (the policy, or the listener's node, says
 *                      no: the workload gets code)
 *   accepted {seq, code}     answer to an incoming: 0 (the channel is
 *                            queued on the listener) or an errno
 *
 * netd -> supervisor
 *   incoming {seq, ip, port, pip, pport} + the other end: a sandbox on this
 *            node connects to ip:port, where this one listens.
 */
#ifndef QUIVER_NET_PROTO_H
#define QUIVER_NET_PROTO_H

#define NETD_SOCK_NAME "netd.sock"
#define NETP_MAX_MSG   4096

/* The annotations a bundle chooses its network with. */
#define NET_ANNOTATION	     "io.quiver.net"
#define NET_PORTS_ANNOTATION "io.quiver.net.ports"
#define NET_PEERS_ANNOTATION "io.quiver.net.peers"

/* How long a supervisor waits for netd's answer to hello. */
#define NETP_HELLO_TIMEOUT_MS 5000

#include <netinet/in.h>
#include <stdint.h>

#include "libcommon/msg.h"

/* An address as its dotted string; an address and a port (1..65535) read
 * back with the checks of msg.h (-ENOENT, -EINVAL with err filled). */
void netp_put_addr(struct qmsg_out *m, const char *key, struct in_addr a);
int netp_get_addr(const msgpack_object *map, const char *key, struct in_addr *a, struct qerr *err);
int netp_get_port(const msgpack_object *map, const char *key, uint16_t *port, struct qerr *err);

#endif
