/* Addresses in netd's messages (net_proto.h). */
#include <arpa/inet.h>
#include <errno.h>

#include "libcommon/net_proto.h"

void netp_put_addr(struct qmsg_out *m, const char *key, struct in_addr a)
{
	char buf[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, buf, sizeof(buf));
	qmsg_put_str(m, key, buf);
}

int netp_get_addr(const msgpack_object *map, const char *key, struct in_addr *a, struct qerr *err)
{
	char buf[INET_ADDRSTRLEN];
	int r = qmsg_get_str(map, key, buf, sizeof(buf), err);
	if (r < 0)
		return r;
	if (inet_pton(AF_INET, buf, a) != 1)
		return qerr_set(err, EINVAL, "field %s: \"%s\" is not an IPv4 address", key, buf);
	return 0;
}

int netp_get_port(const msgpack_object *map, const char *key, uint16_t *port, struct qerr *err)
{
	int64_t v;
	int r = qmsg_get_int(map, key, 1, 65535, &v, err);
	if (r == 0)
		*port = (uint16_t)v;
	return r;
}
