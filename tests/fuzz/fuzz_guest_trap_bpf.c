/* trap_bpf_shrink on programs built from the fuzzer's bytes: whatever it
 * accepts, the rewrite must take the decision the input takes, on probes
 * made of the program's own constants and their neighbours.  Its input is
 * our own build's, not hostile; this checks the equivalence on shapes
 * libseccomp has not produced yet (tests/unit/test_guest_trap_bpf.c covers
 * the ones it does). */
#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/trap_bpf.h"

#define MAX_INSNS 48

struct bytes {
	const uint8_t *p;
	size_t n;
};

static uint32_t take(struct bytes *b, unsigned len)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < len; i++) {
		v = v << 8 | (b->n ? *b->p : 0);
		if (b->n) {
			b->p++;
			b->n--;
		}
	}
	return v;
}

/* A constant: often one near the syscall numbers and architectures a
 * program compares, sometimes any 32 bits. */
static uint32_t constant(struct bytes *b)
{
	uint32_t sel = take(b, 1);
	if (sel < 96)
		return take(b, 1) % 64;
	if (sel < 128)
		return sel & 1 ? AUDIT_ARCH_X86_64 : AUDIT_ARCH_I386;
	return take(b, 4);
}

static size_t build(struct bytes *b, struct sock_filter *f)
{
	static const uint32_t rets[] = {SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF,
					SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO | EPERM,
					SECCOMP_RET_ERRNO | ENOSYS};
	static const uint32_t offs[] = {0, 4, 0, 16, 20, 24, 28, 8};
	size_t n = 2 + take(b, 1) % (MAX_INSNS - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned op = take(b, 1) % 8;
		size_t room = n - i - 1; /* instructions after this one */
		if (i == n - 1)
			op = 7;
		switch (op) {
		case 0:
			f[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
							    offs[take(b, 1) % 8]);
			break;
		case 1:
		case 2:
		case 3:
		case 4: {
			static const uint16_t jmp[] = {BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET};
			uint8_t jt = (uint8_t)(take(b, 1) % room),
				jf = (uint8_t)(take(b, 1) % room);
			f[i] = (struct sock_filter)BPF_JUMP(BPF_JMP | jmp[op - 1] | BPF_K,
							    constant(b), jt, jf);
			break;
		}
		case 5:
			f[i] =
			    (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, take(b, 1) % room, 0, 0);
			break;
		case 6:
			f[i] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, constant(b));
			break;
		default:
			f[i] = (struct sock_filter)BPF_STMT(
			    BPF_RET | BPF_K, rets[take(b, 1) % (sizeof(rets) / sizeof(rets[0]))]);
		}
	}
	return n;
}

static void probe(const struct sock_filter *in, size_t n, const struct sock_filter *out, size_t m,
		  const struct trap_bpf_data *d)
{
	int64_t want = trap_bpf_run(in, n, d, NULL), got = trap_bpf_run(out, m, d, NULL);
	if (want < 0 || got != want)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bytes b = {data, size};
	struct sock_filter in[MAX_INSNS + 1];
	size_t n = build(&b, in);
	struct sock_filter *out = NULL;
	size_t m = 0;
	struct qerr err = {0};
	int r = trap_bpf_shrink(in, n, &out, &m, &err);
	if (r == -ENOTSUP)
		return 0;
	if (r < 0)
		abort(); /* -EPROTO: its own check found the rewrite wrong */
	/* every constant of the program, and its neighbours, as the number,
	 * the architecture and each argument's low word */
	uint32_t vals[3 * MAX_INSNS + 4];
	size_t nv = 0;
	for (size_t i = 0; i < n; i++) {
		vals[nv++] = in[i].k - 1;
		vals[nv++] = in[i].k;
		vals[nv++] = in[i].k + 1;
	}
	vals[nv++] = 0;
	vals[nv++] = 0xffffffff;
	for (size_t a = 0; a < nv; a++)
		for (size_t i = 0; i < nv; i++) {
			struct trap_bpf_data d = {.nr = vals[i], .arch = vals[a]};
			probe(in, n, out, m, &d);
			for (int j = 0; j < 6; j++) {
				d.args[j] = vals[(i + (size_t)j + a) % nv] |
					    (uint64_t)vals[(a + (size_t)j) % nv] << 32;
				d.ip = d.args[j];
			}
			probe(in, n, out, m, &d);
		}
	free(out);
	return 0;
}
