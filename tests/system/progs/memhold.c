/* memhold: memory and a file to hibernate and check.
 *
 *	memhold MIB FILE
 *
 * Fills MIB MiB of anonymous memory and FILE (on a tmpfs, say) with a
 * pseudo-random pattern, prints "ready MEMSUM FILESUM", then, at every
 * SIGUSR1, checks both again and prints "check MEMSUM FILESUM" (the same
 * numbers when nothing was lost).  SIGTERM ends it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

int main(int argc, char **argv)
{
	size_t mib, n;
	uint64_t *mem, x = 88172645463325252ull;
	FILE *f;

	if (argc != 3 || (mib = strtoul(argv[1], NULL, 10)) == 0)
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
	/* SIGUSR1 blocked but in sigsuspend: one that comes between the
	 * test of checks and the wait is not lost (a thaw makes that window
	 * likely: the frozen task comes out of sigsuspend and goes back). */
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
		while (checks == done)
			sigsuspend(&wait_mask);
		done = checks;
		printf("check %016llx %016llx\n", (unsigned long long)sum(mem, n),
		       (unsigned long long)file_sum(argv[2]));
		fflush(stdout);
	}
}
