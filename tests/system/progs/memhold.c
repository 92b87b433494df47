/* memhold: memory, a file and sockets to hibernate and check.
 *
 *	memhold MIB FILE [SOCKET]
 *
 * Fills MIB MiB of anonymous memory and FILE (on a tmpfs, say) with a
 * pseudo-random pattern, prints "ready MEMSUM FILESUM", then, at every
 * SIGUSR1, checks both again and prints "check MEMSUM FILESUM" (the same
 * numbers when nothing was lost).  With SOCKET it also listens there (a
 * unix stream socket) and answers each line a client sends with "pong
 * MEMSUM", on connections old and new.  SIGTERM ends it. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t checks;

static void on_usr1(int sig)
{
	(void)sig;
	checks++;
}

static uint64_t sum(const uint64_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t file_sum(const char *path)
{
	uint64_t h = 1469598103934665603ull, buf[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		h ^= sum(buf, (size_t)n / 8) + (h << 6) + (h >> 2);
	close(fd);
	return h;
}

/* One line from a client: answered with the memory's sum; false when the
 * connection is done. */
static bool answer(int fd, const uint64_t *mem, size_t n)
{
	char buf[256], out[64];
	ssize_t r = read(fd, buf, sizeof(buf));
	int len;

	if (r <= 0)
		return false;
	len = snprintf(out, sizeof(out), "pong %016llx\n", (unsigned long long)sum(mem, n));
	return write(fd, out, (size_t)len) == len;
}

int main(int argc, char **argv)
{
	size_t mib, n;
	uint64_t *mem, x = 88172645463325252ull;
	struct pollfd pfd[17];
	int npfd = 0;
	FILE *f;

	if ((argc != 3 && argc != 4) || (mib = strtoul(argv[1], NULL, 10)) == 0)
		return 2;
	n = (mib << 20) / 8;
	mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		mem[i] = x;
	}
	if (!(f = fopen(argv[2], "we")))
		return 1;
	for (size_t i = 0; i < n / 4; i++)
		fwrite(&mem[i * 3 % n], 8, 1, f);
	fclose(f);
	if (argc == 4) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[3]);
		unlink(argv[3]);
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 8) < 0)
			return 1;
		pfd[npfd++] = (struct pollfd){.fd = l, .events = POLLIN};
	}
	/* SIGUSR1 blocked but in ppoll: one that comes between the test of
	 * checks and the wait is not lost (a thaw makes that window likely:
	 * the frozen task comes out of its wait and goes back). */
	struct sigaction sa = {.sa_handler = on_usr1};
	sigset_t block, wait_mask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGUSR1);
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready %016llx %016llx\n", (unsigned long long)sum(mem, n),
	       (unsigned long long)file_sum(argv[2]));
	fflush(stdout);
	for (int done = 0;;) {
		if (checks != done) {
			done = checks;
			printf("check %016llx %016llx\n", (unsigned long long)sum(mem, n),
			       (unsigned long long)file_sum(argv[2]));
			fflush(stdout);
			continue;
		}
		if (ppoll(pfd, (nfds_t)npfd, NULL, &wait_mask) <= 0)
			continue;
		for (int i = npfd - 1; i >= 0; i--) {
			if (!pfd[i].revents)
				continue;
			if (i == 0 && argc == 4) {
				int c = accept4(pfd[0].fd, NULL, NULL, SOCK_CLOEXEC);
				if (c >= 0 && npfd < 17)
					pfd[npfd++] = (struct pollfd){.fd = c, .events = POLLIN};
				else if (c >= 0)
					close(c);
			} else if (!answer(pfd[i].fd, mem, n)) {
				close(pfd[i].fd);
				pfd[i] = pfd[--npfd];
			}
		}
	}
}
