/* The warm start, qctl's side: hand a warm supervisor the assignment vmmd
 * prepared, with our stdin, stdout and stderr for the workload, and play
 * the launcher's part of the protocol (docs/guest-protocol.md, "Warm
 * start"): W's hello tells us its host pid (SO_PASSCRED), S's READY or
 * ERROR ends it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "guest/guest.h"
#include "qctl/qctl.h"

int warm_assign(const char *sock, const void *assign, size_t len, pid_t *w_host, struct qerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof(sa.sun_path))
		return qerr_set(err, ENAMETOOLONG, "warm socket %s: too long", sock);
	strcpy(sa.sun_path, sock);
	cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return qerr_sys(err, errno, "warm supervisor %s", sock);
	static const int stdio[3] = {0, 1, 2};
	int r = send_with_fds(fd, assign, len, stdio, 3);
	if (r < 0)
		return qerr_sys(err, -r, "warm supervisor: send the assignment");
	*w_host = 0;
	for (;;) {
		struct gs_msg m;
		pid_t cred;
		int n = gs_recv(fd, &m, &cred, 0);
		if (n == -ECONNRESET)
			continue;
		if (n < 0)
			return qerr_sys(err, -n, "warm supervisor");
		if (n == 0)
			return qerr_set(err, EIO, "warm supervisor exited during create");
		if ((r = gs_handle(fd, &m, cred, w_host, err)) != 0)
			return r < 0 ? r : 0;
	}
}
