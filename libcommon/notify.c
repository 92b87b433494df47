/* sd_notify for the daemons (notify.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "libcommon/log.h"
#include "libcommon/notify.h"

static bool active;

uint64_t notify_init(bool foreground)
{
	uint64_t usec = 0;
	int r;

	if (!foreground || !getenv("NOTIFY_SOCKET")) {
		/* Not ours to answer (a qctl run from some unit started us):
		 * and nothing we spawn should see it either. */
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		return 0;
	}
	active = true;
	/* Unset WATCHDOG_*: supervisors we spawn are not the one watched.
	 * NOTIFY_SOCKET stays, every later sd_notify reads it; a child that
	 * wrote there would be refused (NotifyAccess=main). */
	r = sd_watchdog_enabled(1, &usec);
	if (r < 0) {
		qlog_warn("watchdog: %s", strerror(-r));
		return 0;
	}
	return r > 0 ? usec / 2 ?: 1 : 0;
}

static void send_state(const char *state)
{
	int r = sd_notify(0, state);

	if (r < 0)
		qlog_warn("sd_notify: %s", strerror(-r));
}

static void send_with_status(const char *head, const char *fmt, va_list ap)
{
	char status[512], buf[600];

	vsnprintf(status, sizeof(status), fmt, ap);
	snprintf(buf, sizeof(buf), "%sSTATUS=%s", head, status);
	send_state(buf);
}

void notify_ready(const char *fmt, ...)
{
	va_list ap;

	if (!active)
		return;
	va_start(ap, fmt);
	send_with_status("READY=1\n", fmt, ap);
	va_end(ap);
}

void notify_status(const char *fmt, ...)
{
	va_list ap;

	if (!active)
		return;
	va_start(ap, fmt);
	send_with_status("", fmt, ap);
	va_end(ap);
}

void notify_watchdog(void)
{
	if (active)
		send_state("WATCHDOG=1");
}

void notify_stopping(void)
{
	if (active)
		send_state("STOPPING=1\nSTATUS=stopping");
}
