/* qctl: the OCI runtime CLI (runc's grammar) and the daemons' management
 * commands.  Each command is a function in a cmd_*.c file; they talk to
 * vmmd through client.c and start guests through guest_spawn.c. */
#ifndef QUIVER_QCTL_H
#define QUIVER_QCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "libcommon/err.h"
#include "libcommon/msg.h"
#include "libcommon/sandbox_id.h"

#define QCTL_VERSION "0.1.0"
#define OCI_VERSION  "1.1.0"
#define DEFAULT_ROOT "/run/quiver"
#define CALL_TIMEOUT 60000 /* ms: delete --force may wait for a kill */

struct qctl_global {
	const char *root;
	const char *log;
	const char *log_format;
	bool debug;
	bool systemd_cgroup;
	const char *metrics;	    /* daemons start --metrics: for a vmmd qctl starts */
	const char *hibernate_idle; /* daemons start --hibernate-idle: the same */
};

extern struct qctl_global g;

/* main.c: report one line (stderr, and --log as JSON when given), exit 1. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void die_err(const struct qerr *err);
_Noreturn void usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Path of a sibling program (quiver-guest, quiver-vmmd), or $ENV. */
void sibling_path(const char *prog, const char *env, char *buf, size_t len);
int parse_signal(const char *s, int *sig);
int write_pid_file(const char *path, pid_t pid, struct qerr *err);

/* QCTL_TRACE=1: phase timings on stderr (for bench/, not for users). */
void trace_point(const char *what);

/* client.c: vmmd, started in the background when nobody serves ROOT. */
int vmmd_connect(bool start, struct qerr *err);
/* One round trip: an error reply comes back as its negative code, with
 * err holding vmmd's message.  reply must be freed by the caller on 0. */
int vmmd_call(const struct qmsg_out *req, struct qmsg_in *reply, struct qerr *err);
/* vmmd_call for a request whose answer is only ok or an error; req is
 * freed. */
int vmmd_send(struct qmsg_out *req, struct qerr *err);
/* Convenience: {op, id} requests. */
int vmmd_call_id(const char *op, const char *id, struct qmsg_in *reply, struct qerr *err);
int vmmd_start_daemon(struct qerr *err);

/* json_out.c */
json_t *msgpack_to_json(const msgpack_object *o);
/* A reply's root map as a JSON object, without "v" and "op". */
json_t *reply_to_json(const struct qmsg_in *reply);
void print_json(json_t *j);
/* The options of a command whose only one is --json: whether it was given;
 * optind is then at the operands. */
bool parse_json_flag(int argc, char **argv);
/* Go's text/tabwriter with runc's settings (minwidth 12, padding 3). */
struct table;
struct table *table_new(size_t ncols);
void table_add(struct table *t, const char *const *cells);
void table_print(struct table *t);

/* guest_spawn.c */
struct guest_spawn {
	pid_t launcher;	    /* G: quiver-guest create/exec */
	struct qmsg_in msg; /* its sync message (created/exec) */
};
/* argv is the guest's command line after the program name; the sync fd's
 * number is appended as "--sync-fd N" (N = 3 + preserve_fds). */
int guest_spawn(const char *const *argv, int preserve_fds, struct guest_spawn *out,
		struct qerr *err);
/* warm_assign.c: hand a warm supervisor its assignment (msgpack) and our
 * stdio; *w_host receives the workload's host pid. */
int warm_assign(const char *sock, const void *assign, size_t len, pid_t *w_host, struct qerr *err);
/* Signals qctl forwards while it waits (run, exec). */
extern const int forwarded_signals[];
extern const size_t n_forwarded_signals;

/* commands */
int cmd_create(int argc, char **argv);
int cmd_pool(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_state(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_spec(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_daemons(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_hibernate(int argc, char **argv);
int cmd_wake(int argc, char **argv);

/* progress.c: one line redrawn on a terminal; elsewhere a line when the
 * text changed, at most one a second; done always prints its line. */
struct progress {
	FILE *f;
	bool tty;
	double t0, last_print;
	char what[64];
	char last[256];
};
void progress_init(struct progress *p, FILE *f, const char *what);
void progress_update(struct progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void progress_done(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* commands.c: the command table, with each command's documentation. */
struct help_opt {
	const char *flags; /* "-b, --bundle DIR"; NULL ends the list */
	const char *text;
};

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis; /* after "qctl " */
	const char *summary;  /* one line, lower case, no full stop */
	const char *text;     /* paragraphs separated by "\n\n" */
	struct help_opt opts[14];
	bool trailing_args; /* words after ID belong to the workload (exec, ps) */
};

struct help_section {
	const char *title; /* NULL ends the list */
	const char *text;
};

extern const struct command commands[];
extern const char qctl_description[];
extern const struct help_opt global_opts[];	 /* NULL-terminated */
extern const struct help_section man_sections[]; /* the man page's last sections */
extern const size_t n_commands;
const struct command *command_find(const char *name);

/* help.c: the same text for a terminal and as a man page (roff). */
void help_overview(FILE *f);
void help_command(FILE *f, const struct command *c);
void help_man(FILE *f);
/* Whether argv (argv[0] the command) asks for help: -h or --help before
 * "--" and, for a command with trailing_args, before its first operand. */
bool help_asked(int argc, char **argv);

#endif
