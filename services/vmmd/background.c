/* Work that is the daemon's, not the client's, done off the loop by one
 * worker thread: poold's release of a deleted sandbox (a round trip to
 * poold) and the removal of its renamed directory.  On the loop they held
 * up whatever request came next (~0.2-0.3 ms after each delete here).
 *
 * Jobs run in the order they were queued.  What a job touches must be its
 * own (a copy of what it needs) or safe from two threads: the log, *at
 * calls on vmmd.rootfd, a poold socket of the thread's own
 * (pool_client.c). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/log.h"
#include "services/vmmd/vmmd.h"

struct job {
	struct job *next;
	void (*fn)(void *);
	void *arg;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *head, **tail = &head;
static pthread_t worker;
static bool started, stopping;

static void *work(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!head && !stopping)
			pthread_cond_wait(&cv, &mu);
		if (!head)
			break;
		struct job *j = head;
		if (!(head = j->next))
			tail = &head;
		pthread_mutex_unlock(&mu);
		j->fn(j->arg);
		free(j);
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
	pool_client_close(); /* this thread's socket */
	return NULL;
}

void background(void (*fn)(void *), void *arg)
{
	struct job *j = malloc(sizeof(*j));
	pthread_mutex_lock(&mu);
	if (j && !started && !stopping) {
		int rc = pthread_create(&worker, NULL, work, NULL);
		if (rc == 0)
			started = true;
		else
			qlog_warn("background worker: %s; working on the loop", strerror(rc));
	}
	if (!j || !started || stopping) {
		pthread_mutex_unlock(&mu);
		free(j);
		fn(arg);
		return;
	}
	*j = (struct job){.fn = fn, .arg = arg};
	*tail = j;
	tail = &j->next;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

void background_drain(void)
{
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_signal(&cv);
	bool join = started;
	pthread_mutex_unlock(&mu);
	if (join)
		pthread_join(worker, NULL);
	started = false;
}
