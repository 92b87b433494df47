/* process.terminal: a pty from the sandbox's own devpts instance, whose
 * master goes to the caller over --console-socket (an fd in an SCM_RIGHTS
 * message, as runc sends it: containerd, conmon and podman receive it). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "guest/guest.h"

int console_connect(const char *path, struct qerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return qerr_set(err, ENAMETOOLONG, "--console-socket %s: path too long", path);
	strcpy(sa.sun_path, path);
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return qerr_sys(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return qerr_sys(err, errno, "--console-socket %s: connect", path);
	return steal_fd(fd);
}

int console_setup(int console_fd, const struct guest_process *p, struct qerr *err)
{
	/* /dev/ptmx is the sandbox's (a symlink to pts/ptmx of its devpts
	 * newinstance), so the pty belongs to the sandbox, not the host. */
	cleanup_close int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		return qerr_sys(err, errno, "open /dev/ptmx");
	if (unlockpt(master) < 0)
		return qerr_sys(err, errno, "unlockpt");
	/* TIOCGPTPEER opens the slave from the master, with no path lookup a
	 * hostile rootfs could redirect. */
	cleanup_close int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		return qerr_sys(err, errno, "ioctl(TIOCGPTPEER)");
	char name[64] = "";
	if (ptsname_r(master, name, sizeof(name)) != 0)
		snprintf(name, sizeof(name), "/dev/pts/?");

	/* The modes stay the kernel's defaults (ONLCR on), as runc leaves the
	 * pty it sends to --console-socket: the receiver (containerd's shim,
	 * conmon) decides.  runc clears ONLCR only on a console it receives
	 * itself, for its foreground `run -t`, which qctl does not have. */
	if (p->has_console_size) {
		struct winsize ws = {.ws_row = (unsigned short)p->console_height,
				     .ws_col = (unsigned short)p->console_width};
		if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
			return qerr_sys(err, errno, "ioctl(TIOCSWINSZ)");
	}
	if (send_fd(console_fd, master, name, strlen(name)) < 0)
		return qerr_sys(err, errno, "--console-socket: send the pty master");
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		return qerr_sys(err, errno, "ioctl(TIOCSCTTY)");
	for (int i = 0; i <= 2; i++)
		if (dup2(slave, i) < 0)
			return qerr_sys(err, errno, "dup2 pty");
	return 0;
}
