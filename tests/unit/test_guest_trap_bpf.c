/* trap_bpf_shrink: the rewritten seccomp program decides every input as
 * libseccomp's does, for each of Quiver's eight filters, and is smaller;
 * programs it cannot treat exactly are refused; the interpreter it is
 * checked with agrees with the kernel on hand-made programs. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/trap.h"
#include "guest/trap_bpf.h"
#include "libcommon/cleanup.h"

/* libseccomp's program for the filter selected with trap_use_*. */
static struct sock_filter *libseccomp_prog(size_t *len)
{
	struct qerr err = {0};
	void *ctx = NULL;
	assert_int_equal(trap_build_filter(&ctx, &err), 0);
	int fd = memfd_create("bpf", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(seccomp_export_bpf(ctx, fd), 0);
	trap_free_filter(ctx);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	struct sock_filter *f = malloc((size_t)st.st_size);
	assert_non_null(f);
	assert_int_equal(pread(fd, f, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size / sizeof(*f);
	return f;
}

/* Values worth trying: every constant either program holds, its
 * neighbours, and the edges of the 32-bit range. */
struct values {
	uint32_t v[8192];
	size_t n;
};

static void add_value(struct values *s, uint32_t x)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == x)
			return;
	if (s->n < sizeof(s->v) / sizeof(s->v[0]))
		s->v[s->n++] = x;
}

static void add_constants(struct values *s, const struct sock_filter *f, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		add_value(s, f[i].k - 1);
		add_value(s, f[i].k);
		add_value(s, f[i].k + 1);
		add_value(s, ~f[i].k);
	}
	add_value(s, 0);
	add_value(s, 0x7fffffff);
	add_value(s, 0x80000000);
	add_value(s, 0xffffffff);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void same(const struct sock_filter *a, size_t alen, const struct sock_filter *b, size_t blen,
		 const struct trap_bpf_data *d)
{
	int64_t want = trap_bpf_run(a, alen, d, NULL), got = trap_bpf_run(b, blen, d, NULL);
	if (want < 0 || got != want)
		fail_msg("arch 0x%x nr %u args %llx %llx %llx %llx %llx %llx: libseccomp %lld, "
			 "rewritten %lld",
			 d->arch, d->nr, (unsigned long long)d->args[0],
			 (unsigned long long)d->args[1], (unsigned long long)d->args[2],
			 (unsigned long long)d->args[3], (unsigned long long)d->args[4],
			 (unsigned long long)d->args[5], (long long)want, (long long)got);
}

static void check_variant(unsigned int v)
{
	trap_use_iod(v & 1);
	trap_use_net(v & 2);
	trap_use_offload(v & 4);
	size_t len, slen;
	cleanup_free struct sock_filter *prog = libseccomp_prog(&len);
	cleanup_free struct sock_filter *shrunk = NULL;
	struct qerr err = {0};
	assert_int_equal(trap_bpf_shrink(prog, len, &shrunk, &slen, &err), 0);
	/* what it is for: fewer instructions for the kernel to JIT (the
	 * plain filter: about half) */
	if (slen * 4 > len * 3)
		fail_msg("variant %u: %zu instructions from %zu", v, slen, len);

	struct values *vals = calloc(1, sizeof(*vals));
	assert_non_null(vals);
	add_constants(vals, prog, len);
	add_constants(vals, shrunk, slen);
	static const uint32_t arches[] = {
	    AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64 - 1, AUDIT_ARCH_X86_64 + 1, 0,
	    0xffffffff};
	for (size_t a = 0; a < sizeof(arches) / sizeof(arches[0]); a++) {
		struct trap_bpf_data d = {.arch = arches[a]};
		/* every number up to past the last syscall, the x32 range's
		 * start, and every constant's neighbourhood: arguments zero */
		for (uint32_t nr = 0; nr < 1100; nr++) {
			d.nr = nr;
			same(prog, len, shrunk, slen, &d);
		}
		for (uint32_t nr = 0x40000000; nr < 0x40000000 + 600; nr++) {
			d.nr = nr;
			same(prog, len, shrunk, slen, &d);
		}
		for (size_t i = 0; i < vals->n; i++) {
			d.nr = vals->v[i];
			same(prog, len, shrunk, slen, &d);
		}
	}
	/* each argument of each number whose decision reads one, through the
	 * interesting values as the low word, with a high word of 0, 1 or all
	 * ones */
	struct trap_bpf_data d = {.arch = AUDIT_ARCH_X86_64};
	static const uint64_t highs[] = {0, 1ull << 32, 0xffffffff00000000ull};
	size_t with_args = 0;
	for (uint32_t nr = 0; nr < 1100; nr++) {
		bool reads = false;
		memset(d.args, 0, sizeof(d.args));
		d.nr = nr;
		assert_true(trap_bpf_run(prog, len, &d, &reads) >= 0);
		if (!reads)
			continue;
		with_args++;
		for (int arg = 0; arg < 6; arg++)
			for (size_t i = 0; i < vals->n; i++)
				for (size_t h = 0; h < 3; h++) {
					memset(d.args, 0, sizeof(d.args));
					d.nr = nr;
					d.args[arg] = highs[h] | vals->v[i];
					same(prog, len, shrunk, slen, &d);
				}
	}
	/* clone, ioctl, prctl, personality, socket, ... (guest/policy.c) */
	assert_true(with_args >= 5);
	/* and at random */
	for (int i = 0; i < 200000; i++) {
		d.nr = (uint32_t)(next_rand() % 500);
		d.ip = next_rand();
		for (int j = 0; j < 6; j++)
			d.args[j] = next_rand() & (next_rand() % 2 ? ~0ull : 0xffffffffull);
		same(prog, len, shrunk, slen, &d);
	}
	free(vals);
}

static void test_each_filter_decides_as_libseccomps(void **state)
{
	(void)state;
	for (unsigned int v = 0; v < 8; v++)
		check_variant(v);
	trap_use_iod(false);
	trap_use_net(false);
	trap_use_offload(false);
}

#define LD(k)	     BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (k))
#define RET(k)	     BPF_STMT(BPF_RET | BPF_K, (k))
#define JEQ(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))

static void refused(const struct sock_filter *f, size_t len, const char *why)
{
	struct sock_filter *out = NULL;
	size_t n = 0;
	struct qerr err = {0};
	assert_int_equal(trap_bpf_shrink(f, len, &out, &n, &err), -ENOTSUP);
	assert_null(out);
	if (!strstr(err.msg, why))
		fail_msg("refused for \"%s\", not \"%s\"", err.msg, why);
}

static void test_refuses_what_it_cannot_treat_exactly(void **state)
{
	(void)state;
	/* a bit test of the number: intervals would not hold */
	const struct sock_filter jset[] = {LD(0), BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 1, 0, 1),
					   RET(SECCOMP_RET_KILL_PROCESS), RET(SECCOMP_RET_ALLOW)};
	refused(jset, 4, "bit test of the syscall number");
	/* arithmetic on the architecture */
	const struct sock_filter and[] = {LD(4), BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff),
					  JEQ(0x3e, 0, 1), RET(SECCOMP_RET_ALLOW),
					  RET(SECCOMP_RET_KILL_PROCESS)};
	refused(and, 5, "arithmetic on the architecture");
	/* arithmetic on A before any load (A starts known, at 0); this path
	 * returned its errno with the wrong sign, read as an instruction
	 * index (found by fuzz_guest_trap_bpf) */
	const struct sock_filter and0[] = {BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 1),
					   RET(SECCOMP_RET_ALLOW)};
	refused(and0, 2, "arithmetic on a known value");
	/* an instruction libseccomp does not emit (X register) */
	const struct sock_filter ldx[] = {BPF_STMT(BPF_LDX | BPF_W | BPF_IMM, 1),
					  RET(SECCOMP_RET_ALLOW)};
	refused(ldx, 2, "instruction");
	/* a jump past the end */
	const struct sock_filter out[] = {LD(0), JEQ(1, 0, 5), RET(SECCOMP_RET_ALLOW)};
	refused(out, 3, "jump out");
	refused(out, 0, "empty");
}

/* A hand-made program with an argument check behind the number: the
 * rewrite keeps the check, and both give the kernel's answers. */
static void test_keeps_argument_checks(void **state)
{
	(void)state;
	const struct sock_filter f[] = {
	    LD(4),
	    JEQ(AUDIT_ARCH_X86_64, 1, 0),
	    RET(SECCOMP_RET_KILL_PROCESS),
	    LD(0),
	    JEQ(SYS_getuid, 2, 0),
	    JEQ(SYS_prctl, 2, 0),
	    RET(SECCOMP_RET_ALLOW),
	    RET(SECCOMP_RET_ERRNO | EPERM),
	    LD(16), /* prctl's option, low word */
	    JEQ(PR_GET_NAME, 0, 1),
	    RET(SECCOMP_RET_ALLOW),
	    RET(SECCOMP_RET_ERRNO | EACCES),
	};
	size_t len = sizeof(f) / sizeof(f[0]), n = 0;
	cleanup_free struct sock_filter *out = NULL;
	struct qerr err = {0};
	assert_int_equal(trap_bpf_shrink(f, len, &out, &n, &err), 0);
	struct trap_bpf_data d = {.arch = AUDIT_ARCH_X86_64, .nr = SYS_prctl};
	d.args[0] = PR_GET_NAME;
	assert_int_equal(trap_bpf_run(out, n, &d, NULL), SECCOMP_RET_ALLOW);
	d.args[0] = PR_SET_NAME;
	assert_int_equal(trap_bpf_run(out, n, &d, NULL), SECCOMP_RET_ERRNO | EACCES);
	d.nr = SYS_getppid;
	assert_int_equal(trap_bpf_run(out, n, &d, NULL), SECCOMP_RET_ALLOW);
	d.nr = SYS_getuid;
	assert_int_equal(trap_bpf_run(out, n, &d, NULL), SECCOMP_RET_ERRNO | EPERM);
	d.arch = AUDIT_ARCH_I386;
	assert_int_equal(trap_bpf_run(out, n, &d, NULL), SECCOMP_RET_KILL_PROCESS);

	/* in the kernel: a child loads the rewritten program and reports
	 * what four calls returned */
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sock_fprog prog = {.len = (unsigned short)n, .filter = out};
		char name[16];
		long r[4];
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			_exit(2);
		r[0] = prctl(PR_GET_NAME, name, 0, 0, 0) < 0 ? -errno : 0;
		r[1] = prctl(PR_SET_NAME, "x", 0, 0, 0) < 0 ? -errno : 0;
		r[2] = syscall(SYS_getuid) < 0 ? -errno : 0;
		r[3] = syscall(SYS_getppid) > 0;
		_exit(write(p[1], r, sizeof(r)) == sizeof(r) ? 0 : 3);
	}
	close(p[1]);
	long r[4];
	int status;
	assert_int_equal(read(p[0], r, sizeof(r)), sizeof(r));
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], -EACCES);
	assert_int_equal(r[2], -EPERM);
	assert_int_equal(r[3], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_filter_decides_as_libseccomps),
	    cmocka_unit_test(test_refuses_what_it_cannot_treat_exactly),
	    cmocka_unit_test(test_keeps_argument_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
