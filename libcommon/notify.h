/* systemd's readiness and watchdog protocol (sd_notify(3)), for the daemons
 * run by a Type=notify unit with --foreground:
 *
 *	uint64_t ping_us = notify_init(foreground);
 *	...                              // lock, listen
 *	notify_ready("serving %s", root);  // READY=1, once the socket answers
 *	every ping_us in the loop:  notify_watchdog();
 *	notify_stopping();               // STOPPING=1, when the loop ends
 *
 * Without NOTIFY_SOCKET (not under systemd) every call does nothing.  The
 * watchdog is pinged from the daemon's own event loop, never from a thread
 * of its own: a wedged loop stops pinging, and systemd restarts it. */
#ifndef QUIVER_NOTIFY_H
#define QUIVER_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Call once, early (before threads).  A detached daemon (no --foreground)
 * is not the unit's main process: it drops NOTIFY_SOCKET and never
 * notifies.  Returns the ping interval in microseconds, half of
 * WatchdogSec=, or 0 when the watchdog is off. */
uint64_t notify_init(bool foreground);
void notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);
void notify_stopping(void);

#endif
