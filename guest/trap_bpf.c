/* Quiver's seccomp program as a binary search over ranges of syscall
 * numbers (guest/trap_bpf.h says why and what is guaranteed).
 *
 * A seccomp program reads the architecture (offset 4) and the syscall
 * number (offset 0) and compares them with constants; what it does after
 * reading an argument or the instruction pointer depends on those too.
 * For one architecture and number the program is partially evaluated: a
 * load of either makes A known, a comparison of a known A is decided and
 * disappears, and what is left (the residual) is the instructions that
 * read or test arguments, and the returns.  Between two neighbouring
 * constants that the architecture or the number is compared with, every
 * comparison of them goes the same way, so one residual stands for the
 * whole interval.  The output dispatches on the architecture and then on
 * the number by binary search, each leaf a return or a jump to a residual.
 *
 * Only what libseccomp emits is handled: 32-bit absolute loads, jumps
 * (ja, jeq, jgt, jge, jset with a constant), `and` with a constant and
 * returns of a constant; jset and arithmetic on a known A are refused (the
 * intervals would not hold). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "guest/trap_bpf.h"

#define OFF_NR	 0
#define OFF_ARCH 4
#define U32_END	 ((uint64_t)1 << 32)

/* Room for one more element in the array *pv of *cap: -ENOMEM or 0. */
static int grow(void *pv, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 64;
	void *v = realloc(*(void **)pv, c * elem);
	if (!v)
		return -ENOMEM;
	*(void **)pv = v;
	*cap = c;
	return 0;
}

static bool is_ld_abs(const struct sock_filter *f)
{
	return f->code == (BPF_LD | BPF_W | BPF_ABS);
}

static bool is_cond_jump(uint16_t code)
{
	return code == (BPF_JMP | BPF_JEQ | BPF_K) || code == (BPF_JMP | BPF_JGT | BPF_K) ||
	       code == (BPF_JMP | BPF_JGE | BPF_K) || code == (BPF_JMP | BPF_JSET | BPF_K);
}

static bool jump_taken(uint16_t code, uint32_t a, uint32_t k)
{
	switch (BPF_OP(code)) {
	case BPF_JEQ:
		return a == k;
	case BPF_JGT:
		return a > k;
	case BPF_JGE:
		return a >= k;
	default: /* BPF_JSET */
		return (a & k) != 0;
	}
}

int64_t trap_bpf_run(const struct sock_filter *prog, size_t len, const struct trap_bpf_data *d,
		     bool *read_args)
{
	uint32_t a = 0;
	if (read_args)
		*read_args = false;
	for (size_t pc = 0; pc < len;) {
		const struct sock_filter *f = &prog[pc];
		if (is_ld_abs(f)) {
			if (f->k % 4 || f->k > sizeof(*d) - 4)
				return -EINVAL;
			if (read_args && f->k != OFF_NR && f->k != OFF_ARCH)
				*read_args = true;
			memcpy(&a, (const char *)d + f->k, 4);
			pc++;
		} else if (f->code == (BPF_JMP | BPF_JA)) {
			if (f->k >= len - pc - 1)
				return -EINVAL;
			pc += 1 + f->k;
		} else if (is_cond_jump(f->code)) {
			pc += 1 + (jump_taken(f->code, a, f->k) ? f->jt : f->jf);
		} else if (f->code == (BPF_ALU | BPF_AND | BPF_K)) {
			a &= f->k;
			pc++;
		} else if (f->code == (BPF_RET | BPF_K)) {
			return f->k;
		} else {
			return -EINVAL;
		}
	}
	return -EINVAL;
}

/* ---- breakpoints: the constants the architecture and the number meet ---- */

enum tag { T_CONST, T_ARCH, T_NR, T_OTHER, T_N };

struct points {
	uint64_t *v;
	size_t n, cap;
};

static int points_add(struct points *p, uint64_t x)
{
	if (x >= U32_END)
		return 0;
	if (grow(&p->v, &p->cap, p->n, sizeof(*p->v)) < 0)
		return -ENOMEM;
	p->v[p->n++] = x;
	return 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Sorted, unique, starting with 0: interval i is [v[i], v[i+1]) (the last
 * one up to 2^32). */
static void points_finish(struct points *p)
{
	qsort(p->v, p->n, sizeof(*p->v), cmp_u64);
	size_t w = 0;
	for (size_t i = 0; i < p->n; i++)
		if (!w || p->v[w - 1] != p->v[i])
			p->v[w++] = p->v[i];
	p->n = w;
}

struct prog {
	const struct sock_filter *f;
	size_t len;
	struct qerr *err;
};

/* Every (instruction, what A holds) the program can reach, with the
 * comparisons of the architecture and of the number collected. */
static int collect(const struct prog *p, struct points *arch, struct points *nr)
{
	bool *seen = calloc(p->len * T_N, sizeof(*seen));
	size_t *stack = malloc(p->len * T_N * sizeof(*stack));
	size_t top = 0;
	int r = 0;
	if (!seen || !stack) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = points_add(arch, 0)) < 0 || (r = points_add(nr, 0)) < 0)
		goto out;
	seen[0 * T_N + T_CONST] = true;
	stack[top++] = 0 * T_N + T_CONST;
	while (top && r == 0) {
		size_t pc = stack[--top] / T_N;
		enum tag t = (enum tag)(stack[top] % T_N);
		const struct sock_filter *f = &p->f[pc];
		size_t next[2];
		size_t nnext = 0;
		if (is_ld_abs(f)) {
			t = f->k == OFF_NR ? T_NR : f->k == OFF_ARCH ? T_ARCH : T_OTHER;
			next[nnext++] = pc + 1;
		} else if (f->code == (BPF_JMP | BPF_JA)) {
			next[nnext++] = pc + 1 + (size_t)f->k;
		} else if (is_cond_jump(f->code)) {
			if (BPF_OP(f->code) == BPF_JSET && (t == T_ARCH || t == T_NR)) {
				r = qerr_set(p->err, ENOTSUP, "bit test of the %s",
					     t == T_NR ? "syscall number" : "architecture");
				break;
			}
			struct points *pts = t == T_ARCH ? arch : t == T_NR ? nr : NULL;
			if (pts && BPF_OP(f->code) == BPF_JEQ)
				r = points_add(pts, f->k) < 0 ||
					    points_add(pts, (uint64_t)f->k + 1) < 0
					? -ENOMEM
					: 0;
			else if (pts && BPF_OP(f->code) == BPF_JGT)
				r = points_add(pts, (uint64_t)f->k + 1);
			else if (pts)
				r = points_add(pts, f->k);
			next[nnext++] = pc + 1 + f->jt;
			next[nnext++] = pc + 1 + f->jf;
		} else if (f->code == (BPF_ALU | BPF_AND | BPF_K)) {
			if (t == T_ARCH || t == T_NR) {
				r = qerr_set(p->err, ENOTSUP, "arithmetic on the %s",
					     t == T_NR ? "syscall number" : "architecture");
				break;
			}
			next[nnext++] = pc + 1;
		} else if (f->code != (BPF_RET | BPF_K)) {
			r = qerr_set(p->err, ENOTSUP, "instruction 0x%04x at %zu", f->code, pc);
			break;
		}
		for (size_t i = 0; i < nnext; i++) {
			if (next[i] >= p->len) {
				r = qerr_set(p->err, ENOTSUP, "jump out of the program at %zu", pc);
				break;
			}
			if (!seen[next[i] * T_N + t]) {
				seen[next[i] * T_N + t] = true;
				stack[top++] = next[i] * T_N + t;
			}
		}
	}
	if (r == -ENOMEM)
		qerr_set(p->err, ENOMEM, "out of memory");
out:
	free(seen);
	free(stack);
	return r;
}

/* ---- residuals: the program for one architecture and number ---- */

/* The instructions kept, in program order, as a program of their own. */
struct residual {
	struct sock_filter *f;
	size_t len;
};

struct spec {
	const struct prog *p;
	uint32_t arch, nr;
	int *node_of; /* pc -> index in pcs, or -1 */
	size_t *pcs;
	size_t n;
};

/* The first instruction kept on the way from pc with A as given:
 * decided comparisons and jumps are followed; -errno or a pc. */
static long first_kept(struct spec *s, size_t pc, bool known, uint32_t a)
{
	const struct prog *p = s->p;
	for (;;) {
		if (pc >= p->len)
			return qerr_set(p->err, ENOTSUP, "jump out of the program");
		const struct sock_filter *f = &p->f[pc];
		if (is_ld_abs(f) && (f->k == OFF_NR || f->k == OFF_ARCH)) {
			known = true;
			a = f->k == OFF_NR ? s->nr : s->arch;
			pc++;
		} else if (f->code == (BPF_JMP | BPF_JA)) {
			pc += 1 + (size_t)f->k;
		} else if (known && is_cond_jump(f->code)) {
			pc += 1 + (jump_taken(f->code, a, f->k) ? f->jt : f->jf);
		} else if (known && f->code == (BPF_ALU | BPF_AND | BPF_K)) {
			return qerr_set(p->err, ENOTSUP, "arithmetic on a known value");
		} else {
			return (long)pc; /* a load of an argument, a test of one, a return */
		}
	}
}

/* Marks what is kept from pc on (A unknown or about to be loaded). */
static int keep_from(struct spec *s, size_t pc)
{
	if (s->node_of[pc] >= 0)
		return 0;
	const struct sock_filter *f = &s->p->f[pc];
	s->node_of[pc] = (int)s->n;
	s->pcs[s->n++] = pc;
	size_t succ[2];
	int nsucc = 0;
	if (is_cond_jump(f->code)) {
		succ[nsucc++] = pc + 1 + f->jt;
		succ[nsucc++] = pc + 1 + f->jf;
	} else if (f->code != (BPF_RET | BPF_K)) {
		succ[nsucc++] = pc + 1; /* a load or an `and` */
	}
	for (int i = 0; i < nsucc; i++) {
		long k = first_kept(s, succ[i], false, 0);
		int r = k < 0 ? (int)k : keep_from(s, (size_t)k);
		if (r < 0)
			return r;
	}
	return 0;
}

static int cmp_size(const void *x, const void *y)
{
	size_t a = *(const size_t *)x, b = *(const size_t *)y;
	return a < b ? -1 : a > b;
}

static int residual_of(const struct prog *p, uint32_t arch, uint32_t nr, struct residual *out)
{
	struct spec s = {.p = p, .arch = arch, .nr = nr};
	int r = -ENOMEM;
	*out = (struct residual){0};
	s.node_of = malloc(p->len * sizeof(*s.node_of));
	s.pcs = malloc(p->len * sizeof(*s.pcs));
	if (!s.node_of || !s.pcs) {
		qerr_set(p->err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p->len; i++)
		s.node_of[i] = -1;
	long start = first_kept(&s, 0, true, 0); /* A starts at 0 */
	if (start < 0 || (r = keep_from(&s, (size_t)start)) < 0) {
		r = start < 0 ? (int)start : r;
		goto out;
	}
	/* A at the residual's start is the dispatcher's: it must not matter */
	if (!is_ld_abs(&p->f[start]) && p->f[start].code != (BPF_RET | BPF_K)) {
		r = qerr_set(p->err, ENOTSUP, "a test of A before any load");
		goto out;
	}
	/* the program's jumps go forward: its order is the residual's, and
	 * the start (reached first) is the lowest pc */
	qsort(s.pcs, s.n, sizeof(*s.pcs), cmp_size);
	for (size_t i = 0; i < s.n; i++)
		s.node_of[s.pcs[i]] = (int)i;
	if (!(out->f = calloc(s.n, sizeof(*out->f)))) {
		r = qerr_set(p->err, ENOMEM, "out of memory");
		goto out;
	}
	out->len = s.n;
	for (size_t i = 0; i < s.n; i++) {
		struct sock_filter f = p->f[s.pcs[i]];
		if (is_cond_jump(f.code)) {
			long t = first_kept(&s, s.pcs[i] + 1 + f.jt, false, 0);
			long e = first_kept(&s, s.pcs[i] + 1 + f.jf, false, 0);
			if (t < 0 || e < 0) {
				r = (int)(t < 0 ? t : e);
				goto out;
			}
			size_t jt = (size_t)s.node_of[t] - i - 1, jf = (size_t)s.node_of[e] - i - 1;
			if (jt > 255 || jf > 255) {
				r = qerr_set(p->err, ENOTSUP, "a jump too long");
				goto out;
			}
			f.jt = (uint8_t)jt;
			f.jf = (uint8_t)jf;
		}
		out->f[i] = f;
	}
	r = 0;
out:
	if (r < 0) {
		free(out->f);
		*out = (struct residual){0};
	}
	free(s.node_of);
	free(s.pcs);
	return r;
}

static bool residual_eq(const struct residual *a, const struct residual *b)
{
	return a->len == b->len && memcmp(a->f, b->f, a->len * sizeof(*a->f)) == 0;
}

/* ---- the output ---- */

/* A run of intervals with one outcome: a residual, or (for the
 * architecture) the dispatch on the number of nr_runs[first..first+n). */
struct run {
	uint32_t start;
	size_t residual; /* index in the table of distinct residuals, or SIZE_MAX */
	size_t nr_first, nr_n;
};

struct out {
	struct sock_filter *f;
	size_t len, cap;
	/* jumps to patch once the residuals are placed: the instruction, which
	 * of its offsets (k of a ja, jt or jf), and the residual it goes to */
	struct fix {
		size_t at, residual;
		enum { FIX_K, FIX_JT, FIX_JF } field;
	} * fix;
	size_t nfix, capfix;
	bool direct; /* tests jump straight to the returns, placed after them */
	struct qerr *err;
};

static int emit(struct out *o, struct sock_filter f)
{
	if (grow(&o->f, &o->cap, o->len, sizeof(*o->f)) < 0)
		return qerr_set(o->err, ENOMEM, "out of memory");
	o->f[o->len++] = f;
	return 0;
}

static int add_fix(struct out *o, size_t at, int field, size_t residual)
{
	if (grow(&o->fix, &o->capfix, o->nfix, sizeof(*o->fix)) < 0)
		return qerr_set(o->err, ENOMEM, "out of memory");
	o->fix[o->nfix++] = (struct fix){.at = at, .residual = residual, .field = field};
	return 0;
}

/* A leaf in place: the return itself when the residual is one, else a
 * jump to it. */
static int emit_leaf(struct out *o, const struct residual *res, size_t ri)
{
	if (res[ri].len == 1)
		return emit(o, res[ri].f[0]);
	int r = add_fix(o, o->len, FIX_K, ri);
	return r < 0 ? r : emit(o, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0));
}

/* Binary search over runs[lo..hi) of the value in A; for the
 * architecture's runs, a leaf may itself be a dispatch on the number. */
static int emit_tree(struct out *o, const struct run *runs, size_t lo, size_t hi,
		     const struct residual *res, const struct run *nr_runs)
{
	int r;
	if (hi - lo == 1) {
		const struct run *x = &runs[lo];
		if (x->residual != SIZE_MAX)
			return emit_leaf(o, res, x->residual);
		if ((r = emit(o, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, OFF_NR))) <
		    0)
			return r;
		return emit_tree(o, nr_runs, x->nr_first, x->nr_first + x->nr_n, res, NULL);
	}
	size_t mid = lo + (hi - lo) / 2, at = o->len;
	const struct run *left = mid - lo == 1 ? &runs[lo] : NULL;
	const struct run *right = hi - mid == 1 ? &runs[mid] : NULL;
	if ((r = emit(o, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, runs[mid].start, 0,
						      0))) < 0)
		return r;
	/* a side that is one return needs no instruction of its own */
	if (o->direct && left && left->residual != SIZE_MAX && res[left->residual].len == 1)
		r = add_fix(o, at, FIX_JF, left->residual);
	else
		r = emit_tree(o, runs, lo, mid, res, nr_runs);
	if (r < 0)
		return r;
	if (o->direct && right && right->residual != SIZE_MAX && res[right->residual].len == 1)
		return add_fix(o, at, FIX_JT, right->residual);
	size_t jt = o->len - at - 1;
	if (jt > 255)
		return qerr_set(o->err, ENOTSUP, "a jump too long");
	o->f[at].jt = (uint8_t)jt;
	return emit_tree(o, runs, mid, hi, res, nr_runs);
}

struct tables {
	struct residual *res;
	size_t nres, capres;
	struct run *arch_runs, *nr_runs;
	size_t narch, nnr;
};

/* The index of r among the distinct residuals (r is taken over or freed). */
static long intern(struct tables *t, struct residual *r, struct qerr *err)
{
	for (size_t i = 0; i < t->nres; i++)
		if (residual_eq(&t->res[i], r)) {
			free(r->f);
			return (long)i;
		}
	if (grow(&t->res, &t->capres, t->nres, sizeof(*t->res)) < 0) {
		free(r->f);
		return qerr_set(err, ENOMEM, "out of memory");
	}
	t->res[t->nres] = *r;
	return (long)t->nres++;
}

static int build_runs(const struct prog *p, const struct points *arch, const struct points *nr,
		      struct tables *t)
{
	t->arch_runs = calloc(arch->n, sizeof(*t->arch_runs));
	t->nr_runs = calloc(arch->n * nr->n, sizeof(*t->nr_runs));
	if (!t->arch_runs || !t->nr_runs)
		return qerr_set(p->err, ENOMEM, "out of memory");
	for (size_t a = 0; a < arch->n; a++) {
		size_t first = t->nnr;
		for (size_t i = 0; i < nr->n; i++) {
			struct residual res;
			int r = residual_of(p, (uint32_t)arch->v[a], (uint32_t)nr->v[i], &res);
			long ri = r < 0 ? r : intern(t, &res, p->err);
			if (ri < 0)
				return (int)ri;
			if (t->nnr > first && t->nr_runs[t->nnr - 1].residual == (size_t)ri)
				continue;
			t->nr_runs[t->nnr++] =
			    (struct run){.start = (uint32_t)nr->v[i], .residual = (size_t)ri};
		}
		struct run ar = {.start = (uint32_t)arch->v[a]};
		if (t->nnr - first == 1) {
			ar.residual = t->nr_runs[first].residual; /* the number does not matter */
			t->nnr = first;
		} else {
			ar.residual = SIZE_MAX;
			ar.nr_first = first;
			ar.nr_n = t->nnr - first;
		}
		struct run *prev = t->narch ? &t->arch_runs[t->narch - 1] : NULL;
		bool same = prev && prev->residual == ar.residual &&
			    (ar.residual != SIZE_MAX ||
			     (prev->nr_n == ar.nr_n &&
			      memcmp(&t->nr_runs[prev->nr_first], &t->nr_runs[first],
				     ar.nr_n * sizeof(*t->nr_runs)) == 0));
		if (same)
			t->nnr = ar.residual == SIZE_MAX ? first : t->nnr;
		else
			t->arch_runs[t->narch++] = ar;
	}
	return 0;
}

/* Runs both programs on the representatives of every interval, with
 * arguments all zero, all ones and two patterns: a rewrite that differs
 * is a bug here, not a program to fall back from. */
static int self_check(const struct prog *p, const struct sock_filter *g, size_t glen,
		      const struct points *arch, const struct points *nr)
{
	static const uint64_t pat[] = {0, ~0ull, 0x5555555555555555ull, 0x0123456789abcdefull};
	for (size_t a = 0; a < arch->n; a++)
		for (size_t i = 0; i < nr->n; i++)
			for (size_t k = 0; k < sizeof(pat) / sizeof(pat[0]); k++) {
				struct trap_bpf_data d = {.nr = (uint32_t)nr->v[i],
							  .arch = (uint32_t)arch->v[a],
							  .ip = pat[k]};
				for (int j = 0; j < 6; j++)
					d.args[j] = pat[k] >> j | pat[k] << (64 - j) * (j > 0);
				int64_t want = trap_bpf_run(p->f, p->len, &d, NULL);
				int64_t got = trap_bpf_run(g, glen, &d, NULL);
				if (want < 0 || got != want)
					return qerr_set(
					    p->err, EPROTO,
					    "seccomp: the rewritten program returns %lld "
					    "where libseccomp's returns %lld (arch 0x%x, nr %u)",
					    (long long)got, (long long)want, d.arch, d.nr);
			}
	return 0;
}

/* The dispatch, then the residuals it jumps to: the returns first (one
 * instruction each), then the longer ones. */
static int assemble(struct out *o, const struct tables *t)
{
	int r = 0;
	if (t->narch > 1 &&
	    (r = emit(o, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH))) < 0)
		return r;
	if ((r = emit_tree(o, t->arch_runs, 0, t->narch, t->res, t->nr_runs)) < 0)
		return r;
	size_t *at = calloc(t->nres, sizeof(*at));
	bool *used = calloc(t->nres, sizeof(*used));
	if (!at || !used) {
		free(at);
		free(used);
		return qerr_set(o->err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < o->nfix; i++)
		used[o->fix[i].residual] = true;
	for (int longer = 0; longer <= 1; longer++)
		for (size_t i = 0; i < t->nres && r == 0; i++) {
			if (!used[i] || (t->res[i].len > 1) != longer)
				continue;
			at[i] = o->len;
			for (size_t j = 0; j < t->res[i].len && r == 0; j++)
				r = emit(o, t->res[i].f[j]);
		}
	for (size_t i = 0; i < o->nfix && r == 0; i++) {
		const struct fix *x = &o->fix[i];
		size_t d = at[x->residual] - x->at - 1;
		if (x->field == FIX_K)
			o->f[x->at].k = (uint32_t)d;
		else if (d > 255)
			r = qerr_set(o->err, ENOTSUP, "a jump too long");
		else if (x->field == FIX_JT)
			o->f[x->at].jt = (uint8_t)d;
		else
			o->f[x->at].jf = (uint8_t)d;
	}
	free(at);
	free(used);
	return r;
}

int trap_bpf_shrink(const struct sock_filter *in, size_t len, struct sock_filter **out,
		    size_t *out_len, struct qerr *err)
{
	struct prog p = {.f = in, .len = len, .err = err};
	struct points arch = {0}, nr = {0};
	struct tables t = {0};
	struct out o = {.err = err};
	int r;
	*out = NULL;
	*out_len = 0;
	if (!len) {
		r = qerr_set(err, ENOTSUP, "an empty program");
		goto done;
	}
	if ((r = collect(&p, &arch, &nr)) < 0)
		goto done;
	points_finish(&arch);
	points_finish(&nr);
	if ((r = build_runs(&p, &arch, &nr, &t)) < 0)
		goto done;
	/* with the tests jumping straight to shared returns, or, if some
	 * jump would be too long for that, with the returns in place */
	for (int pass = 0; pass < 2; pass++) {
		o.direct = pass == 0;
		o.len = o.nfix = 0;
		r = assemble(&o, &t);
		if (r != -ENOTSUP || !o.direct)
			break;
	}
	if (r < 0)
		goto done;
	if (o.len > BPF_MAXINSNS) {
		r = qerr_set(err, ENOTSUP, "%zu instructions", o.len);
		goto done;
	}
	if ((r = self_check(&p, o.f, o.len, &arch, &nr)) < 0)
		goto done;
	*out = o.f;
	*out_len = o.len;
	o.f = NULL;
done:
	free(o.f);
	free(o.fix);
	for (size_t i = 0; i < t.nres; i++)
		free(t.res[i].f);
	free(t.res);
	free(t.arch_runs);
	free(t.nr_runs);
	free(arch.v);
	free(nr.v);
	return r;
}
