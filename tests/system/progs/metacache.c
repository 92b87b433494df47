/* metacache: the same lookups, many times, to check the guest's metadata
 * cache (docs/iod.md) answers what the kernel would.
 *
 *	metacache N OP...
 *
 * OPs run in groups: a group is the run of lookups between two one-shot
 * ops, and runs N times.  Lookups: s:PATH (stat), l:PATH (lstat),
 * a:PATH (access R_OK), w:PATH (access W_OK), o:PATH (open O_RDONLY, then
 * close).  One-shot ops: u:UID (setresuid and setresgid to UID, for good),
 * c:PATH (create an empty file).  Prints each lookup's first answer, then
 * "group K same" when the N rounds agreed, or the round and lookup that did
 * not. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void answer(const char *op, char *out, size_t size)
{
	const char *path = op + 2;
	struct stat st;
	int r, fd;

	switch (op[0]) {
	case 's':
	case 'l':
		r = op[0] == 's' ? stat(path, &st) : lstat(path, &st);
		if (r == 0)
			snprintf(out, size, "%s ok mode=%o ino=%llu size=%lld", op, st.st_mode,
				 (unsigned long long)st.st_ino, (long long)st.st_size);
		else
			snprintf(out, size, "%s %s", op, strerrorname_np(errno));
		return;
	case 'a':
	case 'w':
		r = access(path, op[0] == 'a' ? R_OK : W_OK);
		snprintf(out, size, "%s %s", op, r == 0 ? "ok" : strerrorname_np(errno));
		return;
	case 'o':
		fd = open(path, O_RDONLY | O_CLOEXEC);
		snprintf(out, size, "%s %s", op, fd >= 0 ? "ok" : strerrorname_np(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	snprintf(out, size, "%s bad-op", op);
}

static int run_group(char **ops, int n, int rounds, int k)
{
	char first[64][512], now[512];

	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++) {
		answer(ops[i], first[i], sizeof(first[i]));
		printf("%s\n", first[i]);
	}
	for (int r = 1; r < rounds; r++) {
		for (int i = 0; i < n; i++) {
			answer(ops[i], now, sizeof(now));
			if (strcmp(now, first[i]) != 0) {
				printf("group %d round %d differs: %s\n", k, r, now);
				return 1;
			}
		}
	}
	printf("group %d same\n", k);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds, start = 2, k = 0, bad = 0;

	if (argc < 3 || (rounds = atoi(argv[1])) < 1) {
		fprintf(stderr, "usage: metacache N OP...\n");
		return 2;
	}
	for (int i = 2; i <= argc; i++) {
		if (i < argc && argv[i][0] != 'u' && argv[i][0] != 'c')
			continue;
		if (i > start)
			bad |= run_group(argv + start, i - start, rounds, k++);
		if (i == argc)
			break;
		if (argv[i][0] == 'u') {
			uid_t u = (uid_t)atoi(argv[i] + 2);
			if (setresgid(u, u, u) < 0 || setresuid(u, u, u) < 0) {
				printf("%s %s\n", argv[i], strerrorname_np(errno));
				return 1;
			}
		} else {
			int fd = open(argv[i] + 2, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
			printf("%s %s\n", argv[i], fd >= 0 ? "ok" : strerrorname_np(errno));
			if (fd >= 0)
				close(fd);
		}
		printf("%s done\n", argv[i]);
		start = i + 1;
	}
	printf("end\n");
	return bad;
}
