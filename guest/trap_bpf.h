/* Quiver's seccomp program, made smaller before it is embedded.
 *
 * libseccomp compiles the policy table into one comparison per syscall it
 * names (about 560 instructions for the plain filter), and the kernel
 * converts and JITs every instruction of it at each sandbox start: about
 * 0.28 ms here.  Most neighbouring syscall numbers share an action, so the
 * same decisions fit in a binary search over ranges of numbers (76 ranges
 * for the plain filter: 285 instructions with the argument checks, loaded
 * in about 0.16 ms).
 *
 * trap_bpf_shrink rewrites libseccomp's program into that shape without
 * re-deriving the policy: it partially evaluates the program for each
 * interval of architecture and syscall number on which every comparison
 * the program makes of them gives the same result, and keeps, for each, the
 * instructions that still depend on the arguments, copied as they are.
 * The result takes the same decision as its input for every input.  It
 * refuses programs it cannot treat exactly (other instructions, bit tests
 * or arithmetic on the architecture or number, jumps too long for the
 * layout): the caller then keeps libseccomp's program. */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libcommon/err.h"

/* The seccomp_data a program sees, in the kernel's layout. */
struct trap_bpf_data {
	uint32_t nr;
	uint32_t arch;
	uint64_t ip;
	uint64_t args[6];
};

/* *out (malloc'd, *out_len instructions): in, rewritten.  -ENOTSUP (with
 * err) for a program outside what it handles, -ENOMEM. */
int trap_bpf_shrink(const struct sock_filter *in, size_t len, struct sock_filter **out,
		    size_t *out_len, struct qerr *err);

/* What the kernel would return for d: a classic BPF interpreter for the
 * instructions trap_bpf_shrink handles.  -EINVAL for a program it cannot
 * run (a jump out of it, another instruction, a load out of seccomp_data).
 * *read_args (if not NULL): whether the decision loaded anything past the
 * architecture and the number. */
int64_t trap_bpf_run(const struct sock_filter *prog, size_t len, const struct trap_bpf_data *d,
		     bool *read_args);
