/* Work that is the daemon's, not the client's: queued by a request,
 * run once the loop has sent the reply (an idle callback comes after the
 * control socket's callback, which replies before it returns). */
#include <stdlib.h>

#include "services/vmmd/vmmd.h"

struct deferred {
	struct deferred *next;
	void (*fn)(void *);
	void *arg;
};

static struct deferred *head, **tail = &head;
static uv_idle_t idle;
static bool idle_on;

static void run_all(uv_idle_t *h)
{
	uv_idle_stop(h);
	while (head) {
		struct deferred *d = head;
		head = d->next;
		if (!head)
			tail = &head;
		d->fn(d->arg);
		free(d);
	}
}

void after_reply(void (*fn)(void *), void *arg)
{
	struct deferred *d = malloc(sizeof(*d));
	if (!d) {
		fn(arg);
		return;
	}
	*d = (struct deferred){.fn = fn, .arg = arg};
	*tail = d;
	tail = &d->next;
	if (!idle_on) {
		uv_idle_init(vmmd.loop, &idle);
		idle_on = true;
	}
	uv_idle_start(&idle, run_all);
}

void after_reply_flush(void)
{
	if (idle_on)
		run_all(&idle);
}
