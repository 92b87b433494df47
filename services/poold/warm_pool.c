/* Warm guest kernels: supervisors made ahead of their bundle.
 *
 * Each is a `quiver-guest warm` (guest/warm.c) started with one pooled
 * cgroup and, when one is ready, one pooled netns.  We keep one end of its
 * sync socket: the first message says it is listening ("warm", with its
 * pid) or why it failed; end of file afterwards means it died.  On take we
 * send "taken" (with the bundle it is for, when the taker said) and let go
 * of the socket: from then on the supervisor is the caller's (and, once
 * assigned, vmmd's).  poold is a child subreaper, so supervisors whose
 * launcher has exited are still ours to reap. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "libcommon/launch_proto.h"
#include "libcommon/log.h"
#include "guest/cgroups.h"
#include "services/poold/cgroup_pool.h"
#include "services/poold/netns_pool.h"
#include "services/poold/poold.h"

extern char **environ;

static uint64_t warm_seq;

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void unwatch(struct pool_item *it)
{
	if (it->poll) {
		uv_poll_stop(it->poll);
		uv_close((uv_handle_t *)it->poll, poll_closed);
		it->poll = NULL;
	}
	if (it->link >= 0)
		close(it->link);
	it->link = -1;
}

static void unlist(struct pool *p, struct pool_item *it)
{
	for (struct pool_item **pp = &p->items; *pp; pp = &(*pp)->next) {
		if (*pp == it) {
			*pp = it->next;
			if (it->ready)
				p->n_ready--;
			else
				p->n_starting--;
			return;
		}
	}
}

/* The state files a warm supervisor made ahead next to its socket
 * (guest/warm.c); an assigned one has moved them out already. */
void warm_remove_premade(const char *sock)
{
	char path[PATH_MAX + 16];
	for (size_t i = 0; i < WARM_PREMADE_N; i++)
		if ((size_t)snprintf(path, sizeof(path), "%s.%s", sock, warm_premade_suffix[i]) <
		    sizeof(path))
			unlink(path);
}

void warm_destroy(struct pool_item *it)
{
	struct qerr err = {0};
	unwatch(it);
	if (it->pid > 0) {
		kill(it->pid, SIGKILL);
		/* ours to reap: the launcher's child, and we are its subreaper */
		while (waitpid(it->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (it->path[0]) {
		unlink(it->path);
		warm_remove_premade(it->path);
	}
	if (it->cgroup[0]) {
		struct cgroups *cg = NULL;
		if (cgroup_pool_dirs(poold.cg, it->cgroup, &cg, &err) < 0 ||
		    cgroups_remove(cg->dirs, cg->n, &err) < 0)
			qlog_warn("warm %s: cgroup %s: %s", it->name, it->cgroup, err.msg);
		if (cg)
			cgroups_free(cg);
	}
	if (it->netns[0] && netns_pool_destroy(poold.ns, it->netns, &err) < 0)
		qlog_warn("warm %s: netns %s: %s", it->name, it->netns, err.msg);
	free(it);
}

/* The launcher's report, or (later) the supervisor's end. */
static void link_readable(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	struct pool_item *it = h->data;
	struct pool *p = &poold.pools[POOL_WARM];
	char buf[4096];
	ssize_t n = recv(it->link, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	struct qmsg_in in;
	struct qerr err = {0};
	int64_t pid = 0, start = 0;
	if (!it->ready && n > 0 && qmsg_parse(&in, buf, (size_t)n, &err) == 0) {
		bool ok = strcmp(in.op, "warm") == 0 &&
			  qmsg_get_int(in.root, "pid", 1, INT32_MAX, &pid, &err) == 0 &&
			  qmsg_get_int(in.root, "pid_start", 0, INT64_MAX, &start, &err) == 0;
		if (!ok && strcmp(in.op, "error") == 0)
			qmsg_reply_error(&in, &err);
		qmsg_in_free(&in);
		if (ok) {
			it->pid = (pid_t)pid;
			it->pid_start = (uint64_t)start;
			it->ready = true;
			p->n_starting--;
			p->n_ready++;
			pool_count_made(p);
			return;
		}
		qlog_warn("warm %s: %s", it->name, err.msg[0] ? err.msg : "bad report");
	} else if (!it->ready) {
		qlog_warn("warm %s: the launcher exited without a report", it->name);
	} else {
		qlog_info("warm %s (pid %d) exited while in the pool", it->name, (int)it->pid);
	}
	if (!it->ready)
		p->failed++;
	unlist(p, it);
	warm_destroy(it);
}

static int spawn_guest(struct pool_item *it, const struct cgroups *cg, const char *netns_path,
		       int child_end, struct qerr *err)
{
	char log[PATH_MAX + 16];
	const char *argv[8 + 2 * POOLD_DIRS_MAX];
	size_t n = 0;
	snprintf(log, sizeof(log), "%s/warm.log", poold.state);
	argv[n++] = "quiver-guest";
	argv[n++] = "warm";
	argv[n++] = "--sync-fd=3";
	argv[n++] = "--sock";
	argv[n++] = it->path;
	for (size_t i = 0; i < cg->n && i < POOLD_DIRS_MAX; i++) {
		argv[n++] = "--cgroup";
		argv[n++] = cg->dirs[i];
	}
	if (netns_path) {
		argv[n++] = "--netns";
		argv[n++] = netns_path;
	}
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n] = NULL;
	(void)argv[sizeof(argv) / sizeof(argv[0]) - 1];

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	posix_spawn_file_actions_adddup2(&fa, child_end, 3);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	sigset_t dfl;
	sigfillset(&dfl);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int rc = posix_spawn(&pid, poold.guest_bin, &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0)
		return qerr_sys(err, rc, "spawn %s", poold.guest_bin);
	return 0;
}

int warm_spawn(struct qerr *err)
{
	struct pool *cgp = &poold.pools[POOL_CGROUP], *nsp = &poold.pools[POOL_NETNS];
	struct pool_item *it = calloc(1, sizeof(*it));
	if (!it)
		return qerr_set(err, ENOMEM, "out of memory");
	it->link = -1;
	snprintf(it->name, sizeof(it->name), "@warm-%d-%llu", (int)getpid(),
		 (unsigned long long)++warm_seq);
	int r;
	struct pool_item *cgi = pool_pop(cgp);
	if (cgi) {
		snprintf(it->cgroup, sizeof(it->cgroup), "%s", cgi->name);
		free(cgi);
	} else if ((r = cgroup_pool_make(poold.cg, it->cgroup, sizeof(it->cgroup), err)) < 0) {
		free(it);
		return r;
	}
	struct pool_item *nsi = pool_pop(nsp);
	if (nsi) {
		snprintf(it->netns, sizeof(it->netns), "%s", nsi->name);
	}
	/* poold.state is checked at start-up to leave room for this */
	(void)!snprintf(it->path, sizeof(it->path), "%.3900s/warm/%s.sock", poold.state, it->name);

	struct cgroups *cg = NULL;
	int sp[2] = {-1, -1};
	if ((r = cgroup_pool_dirs(poold.cg, it->cgroup, &cg, err)) < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		r = qerr_sys(err, errno, "socketpair");
		goto fail;
	}
	r = spawn_guest(it, cg, nsi ? nsi->path : NULL, sp[1], err);
	close(sp[1]);
	cgroups_free(cg);
	cg = NULL;
	free(nsi);
	nsi = NULL;
	if (r < 0)
		goto fail;
	it->link = sp[0];
	it->poll = malloc(sizeof(*it->poll));
	if (!it->poll) {
		r = qerr_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	uv_poll_init(poold.loop, it->poll, it->link);
	it->poll->data = it;
	uv_poll_start(it->poll, UV_READABLE | UV_DISCONNECT, link_readable);
	it->next = poold.pools[POOL_WARM].items;
	poold.pools[POOL_WARM].items = it;
	poold.pools[POOL_WARM].n_starting++;
	return 0;
fail:
	if (cg)
		cgroups_free(cg);
	free(nsi);
	if (sp[0] >= 0 && it->link < 0)
		close(sp[0]);
	warm_destroy(it);
	return r;
}

int warm_mark_taken(struct pool_item *it, const char *bundle, struct qerr *err)
{
	/* "taken\0" then the bundle's path, unterminated (a datagram's length
	 * is its own) */
	char m[sizeof(WARM_TAKEN) + PATH_MAX];
	size_t n = sizeof(WARM_TAKEN), blen = bundle ? strlen(bundle) : 0;
	int r = 0;
	memcpy(m, WARM_TAKEN, n);
	if (blen && blen < PATH_MAX) {
		memcpy(m + n, bundle, blen);
		n += blen;
	}
	if (send(it->link, m, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		r = qerr_sys(err, errno, "warm %s: tell it it is taken", it->name);
	unwatch(it);
	return r;
}

void warm_reap_children(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}
