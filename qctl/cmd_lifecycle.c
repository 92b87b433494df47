/* The OCI lifecycle commands: create, start, run, state, kill, delete,
 * list, pause, resume. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "qctl/qctl.h"

struct create_opts {
	const char *id;
	const char *bundle;
	const char *pid_file;
	const char *console_socket;
	int preserve_fds;
	bool detach;
};

static const char *one_id(int argc, char **argv, const char *cmd)
{
	struct qerr err;

	if (optind >= argc)
		usage_error(cmd, "requires exactly 1 argument (the container id)");
	if (argc - optind > 1)
		usage_error(cmd, "requires exactly 1 argument, got %d", argc - optind);
	if (sandbox_id_check(argv[optind], &err) < 0)
		die_err(&err);
	return argv[optind];
}

static int parse_create(int argc, char **argv, struct create_opts *o, bool run)
{
	static const struct option opts[] = {
	    {"bundle", required_argument, NULL, 'b'},
	    {"pid-file", required_argument, NULL, 'p'},
	    {"console-socket", required_argument, NULL, 'c'},
	    {"preserve-fds", required_argument, NULL, 'P'},
	    {"detach", no_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	char *end;

	memset(o, 0, sizeof(*o));
	o->bundle = ".";
	while ((c = getopt_long(argc, argv, run ? ":b:d" : ":b:", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->bundle = optarg;
			break;
		case 'p':
			o->pid_file = optarg;
			break;
		case 'c':
			o->console_socket = optarg;
			break;
		case 'P':
			errno = 0;
			o->preserve_fds = (int)strtol(optarg, &end, 10);
			if (errno || *end || o->preserve_fds < 0 || o->preserve_fds > 1024)
				usage_error(argv[0], "invalid --preserve-fds \"%s\"", optarg);
			break;
		case 'd':
			if (!run)
				usage_error(argv[0], "unknown option -d");
			o->detach = true;
			break;
		case ':':
			usage_error(argv[0], "option %s needs a value", argv[optind - 1]);
		default:
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		}
	}
	o->id = one_id(argc, argv, argv[0]);
	return 0;
}

static void force_delete(const char *id)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	struct qerr err;

	qmsg_out_init(&m);
	qmsg_begin(&m, "delete", 2);
	qmsg_put_str(&m, "id", id);
	qmsg_put_bool(&m, "force", true);
	if (vmmd_call(&m, &reply, &err) == 0)
		qmsg_in_free(&reply);
	qmsg_out_free(&m);
}

static void abort_reservation(const char *id)
{
	struct qmsg_in reply;
	struct qerr err;

	if (vmmd_call_id("abort", id, &reply, &err) == 0)
		qmsg_in_free(&reply);
}

/* reserve → quiver-guest create → created (and started, for run: one
 * round trip fewer).  Returns S's pid. */
/* vmmd's reserve reply may carry a warm supervisor's assignment (run
 * only): hand it over and register the sandbox as G would have. */
static bool warm_create(const struct create_opts *o, const struct qmsg_in *res, bool start,
			pid_t *spid)
{
	const msgpack_object *as = qmsg_find(res->root, "assign");
	const msgpack_object *cg =
	    as && as->type == MSGPACK_OBJECT_MAP ? qmsg_find(as, "cgroups") : NULL;
	int64_t pid = 0, start_time = 0;
	struct qerr err = {0};
	if (!as || as->type != MSGPACK_OBJECT_MAP ||
	    qmsg_get_int(as, "host_pid", 1, INT32_MAX, &pid, &err) < 0 ||
	    qmsg_get_int(res->root, "pid_start", 0, INT64_MAX, &start_time, &err) < 0)
		return false;
	char sock[PATH_MAX];
	if (qmsg_get_str(res->root, "warm_sock", sock, sizeof(sock), &err) < 0)
		return false;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *as);
	pid_t w_host = 0;
	int r = warm_assign(sock, sb.data, sb.size, &w_host, &err);
	msgpack_sbuffer_destroy(&sb);
	if (r < 0) {
		kill((pid_t)pid, SIGKILL);
		abort_reservation(o->id);
		/* Not for this supervisor (its mount namespace predates the
		 * rootfs): a cold start will do. */
		if (r == -EAGAIN)
			return false;
		die_err(&err);
	}
	trace_point("warm guest assigned");
	struct qmsg_out m;
	struct qmsg_in reply;
	qmsg_out_init(&m);
	qmsg_begin(&m, "created", 6);
	qmsg_put_bool(&m, start ? "started" : "start", start);
	qmsg_put_str(&m, "id", o->id);
	qmsg_put_int(&m, "pid", pid);
	qmsg_put_uint(&m, "pid_start", (uint64_t)start_time);
	qmsg_put_int(&m, "init_pid", w_host);
	qmsg_put_key(&m, "cgroups");
	if (cg)
		msgpack_pack_object(&m.pk, *cg);
	else
		msgpack_pack_nil(&m.pk);
	r = vmmd_call(&m, &reply, &err);
	qmsg_out_free(&m);
	if (r < 0) {
		kill((pid_t)pid, SIGKILL);
		force_delete(o->id);
		die_err(&err);
	}
	qmsg_in_free(&reply);
	trace_point(start ? "registered and started" : "registered");
	*spid = (pid_t)pid;
	return true;
}

/* reserve {id, bundle}; with warm, {warm, start} too.  A run that waits
 * for its workload deletes the sandbox as soon as it stops: transient,
 * vmmd writes no stopped record for it (docs/api.md). */
static void begin_reserve(struct qmsg_out *m, const struct create_opts *o, const char *bundle,
			  bool warm, bool start)
{
	bool transient = start && !o->detach;
	qmsg_begin(m, "reserve", 2 + (warm ? 2 : 0) + (transient ? 1 : 0));
	qmsg_put_str(m, "id", o->id);
	qmsg_put_str(m, "bundle", bundle);
	if (warm) {
		/* the supervisor starts the workload as soon as it is ready */
		qmsg_put_bool(m, "warm", true);
		qmsg_put_bool(m, "start", start);
	}
	if (transient)
		qmsg_put_bool(m, "transient", true);
}

static pid_t do_create(const struct create_opts *o, bool start, pid_t *launcher)
{
	char bundle[PATH_MAX], state_dir[PATH_MAX + SANDBOX_ID_MAX + 2], pfds[16];
	char guest_log[PATH_MAX + SANDBOX_ID_MAX + 16];
	const char *args[32];
	struct guest_spawn gs;
	struct qmsg_out m;
	struct qmsg_in reply;
	struct qerr err;
	int64_t pid = 0;
	int n = 0, r;

	if (!realpath(o->bundle, bundle))
		die("bundle %s: %s", o->bundle, strerror(errno));
	/* A warm supervisor is not our child: only run, whose caller waits
	 * through us, may take one (create's caller, a shim, reaps S). */
	bool warm = launcher && !o->console_socket && !o->preserve_fds && !g.systemd_cgroup &&
		    !getenv("QUIVER_NO_WARM");
	qmsg_out_init(&m);
	begin_reserve(&m, o, bundle, warm, start);
	if (vmmd_call(&m, &reply, &err) < 0)
		die_err(&err);
	trace_point("reserved");
	if (warm) {
		pid_t spid;
		bool assigned = qmsg_find(reply.root, "assign") != NULL;
		bool done = warm_create(o, &reply, start, &spid);
		qmsg_in_free(&reply);
		if (assigned && !done) {
			/* the reservation was dropped: again, cold */
			begin_reserve(&m, o, bundle, false, start);
			if (vmmd_call(&m, &reply, &err) < 0)
				die_err(&err);
			qmsg_in_free(&reply);
		}
		if (done) {
			qmsg_out_free(&m);
			*launcher = -1;
			if (o->pid_file && write_pid_file(o->pid_file, spid, &err) < 0) {
				force_delete(o->id);
				die_err(&err);
			}
			return spid;
		}
	} else {
		qmsg_in_free(&reply);
	}

	snprintf(state_dir, sizeof(state_dir), "%s/%s", g.root, o->id);
	snprintf(pfds, sizeof(pfds), "%d", o->preserve_fds);
	args[n++] = "create";
	args[n++] = "--id";
	args[n++] = o->id;
	args[n++] = "--bundle";
	args[n++] = bundle;
	args[n++] = "--state-dir";
	args[n++] = state_dir;
	if (o->console_socket) {
		args[n++] = "--console-socket";
		args[n++] = o->console_socket;
	}
	if (o->preserve_fds) {
		args[n++] = "--preserve-fds";
		args[n++] = pfds;
	}
	if (g.systemd_cgroup)
		args[n++] = "--systemd-cgroup";
	/* Without --log the launcher logs next to the supervisor, not on the
	 * caller's stderr (which the workload inherits): one error line. */
	snprintf(guest_log, sizeof(guest_log), "%s/launcher.log", state_dir);
	args[n++] = "--log";
	args[n++] = g.log ? g.log : guest_log;
	args[n++] = "--log-format";
	args[n++] = g.log_format;
	if (g.debug)
		args[n++] = "--debug";
	args[n] = NULL;
	if (guest_spawn(args, o->preserve_fds, &gs, &err) < 0) {
		abort_reservation(o->id);
		die_err(&err);
	}
	/* G exits right after its report, but its exit can take a while (it
	 * drops namespace references): reap it later, off the fast path. */
	trace_point("guest created");
	if (launcher)
		*launcher = gs.launcher;

	qmsg_get_int(gs.msg.root, "pid", 1, INT32_MAX, &pid, NULL);
	qmsg_begin(&m, "created", 7 + (o->console_socket ? 1 : 0));
	qmsg_put_bool(&m, "start", start);
	qmsg_put_str(&m, "id", o->id);
	{
		static const char *const copy[] = {"pid", "pid_start", "init_pid", "cgroups",
						   "annotations"};
		for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
			const msgpack_object *v = qmsg_find(gs.msg.root, copy[i]);
			qmsg_put_key(&m, copy[i]);
			if (v)
				msgpack_pack_object(&m.pk, *v);
			else
				msgpack_pack_nil(&m.pk);
		}
	}
	if (o->console_socket)
		qmsg_put_str(&m, "console", o->console_socket);
	qmsg_in_free(&gs.msg);
	r = vmmd_call(&m, &reply, &err);
	qmsg_out_free(&m);
	if (r < 0) {
		/* Not registered, or did not start: leave nothing behind. */
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		force_delete(o->id);
		die_err(&err);
	}
	qmsg_in_free(&reply);
	trace_point(start ? "registered and started" : "registered");
	if (o->pid_file && write_pid_file(o->pid_file, (pid_t)pid, &err) < 0) {
		force_delete(o->id);
		die_err(&err);
	}
	return (pid_t)pid;
}

int cmd_create(int argc, char **argv)
{
	struct create_opts o;
	struct qerr err;

	parse_create(argc, argv, &o, false);
	if (vmmd_connect(true, &err) < 0)
		die_err(&err);
	/* G is left to our caller's subreaper, which S is re-parented to. */
	do_create(&o, false, NULL);
	return 0;
}

static int start_op(const char *id, struct qerr *err)
{
	struct qmsg_in reply;
	int r = vmmd_call_id("start", id, &reply, err);

	if (r == 0)
		qmsg_in_free(&reply);
	return r;
}

int cmd_start(int argc, char **argv)
{
	struct qerr err;
	const char *id;

	if (getopt_long(argc, argv, "", (struct option[]){{NULL, 0, NULL, 0}}, NULL) != -1)
		usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	id = one_id(argc, argv, argv[0]);
	if (start_op(id, &err) < 0)
		die_err(&err);
	return 0;
}

static int delete_op(const char *id, bool force, struct qerr *err)
{
	struct qmsg_out m;

	qmsg_out_init(&m);
	qmsg_begin(&m, "delete", 2);
	qmsg_put_str(&m, "id", id);
	qmsg_put_bool(&m, "force", force);
	return vmmd_send(&m, err);
}

static int kill_op(const char *id, int sig, bool all, struct qerr *err)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	int r;

	qmsg_out_init(&m);
	qmsg_begin(&m, "kill", 3);
	qmsg_put_str(&m, "id", id);
	qmsg_put_int(&m, "signal", sig);
	qmsg_put_bool(&m, "all", all);
	r = vmmd_call(&m, &reply, err);
	qmsg_out_free(&m);
	if (r == 0)
		qmsg_in_free(&reply);
	return r;
}

/* How a supervisor we cannot wait for ended: its exit report
 * (ROOT/ID/exit), or, when it was killed before it could write one, what
 * vmmd recorded (the signal it sent). */
static int exit_code_of(const char *id)
{
	char path[PATH_MAX + SANDBOX_ID_MAX + 8];
	struct qmsg_in reply;
	struct qerr err;
	json_error_t je;
	int64_t code = 255;
	snprintf(path, sizeof(path), "%s/%s/exit", g.root, id);
	json_t *o = json_load_file(path, 0, &je);
	json_t *c = o ? json_object_get(o, "exit_code") : NULL;
	bool reported = json_is_integer(c);
	if (reported)
		code = json_integer_value(c);
	json_decref(o);
	if (reported || vmmd_call_id("inspect", id, &reply, &err) < 0)
		return (int)code;
	const msgpack_object *ex = qmsg_find(reply.root, "exit");
	if (ex && ex->type == MSGPACK_OBJECT_MAP)
		qmsg_get_int(ex, "exit_code", 0, 255, &code, NULL);
	qmsg_in_free(&reply);
	return (int)code;
}

int cmd_run(int argc, char **argv)
{
	struct create_opts o;
	struct qerr err;
	sigset_t fwd, old;
	pid_t spid, launcher = -1;
	int sfd, pidfd, status = 0, code;

	parse_create(argc, argv, &o, true);
	/* Connect (and start vmmd) before becoming a subreaper: the daemon
	 * must not be re-parented to us. */
	if (vmmd_connect(true, &err) < 0)
		die_err(&err);
	if (!o.detach && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
	sigemptyset(&fwd);
	for (size_t i = 0; i < n_forwarded_signals; i++)
		sigaddset(&fwd, forwarded_signals[i]);
	if (!o.detach)
		sigprocmask(SIG_BLOCK, &fwd, &old);

	spid = do_create(&o, true, &launcher);
	/* S becomes our child once G has exited (a warm S never is). */
	while (launcher > 0 && waitpid(launcher, NULL, 0) < 0 && errno == EINTR)
		;
	trace_point("launcher reaped");
	if (o.detach)
		return 0;

	sfd = signalfd(-1, &fwd, SFD_CLOEXEC);
	pidfd = (int)syscall(SYS_pidfd_open, spid, 0);
	for (;;) {
		struct pollfd pfd[2] = {{.fd = pidfd, .events = POLLIN},
					{.fd = sfd, .events = POLLIN}};
		if (pidfd < 0 || sfd < 0)
			break; /* no pidfd: fall back to a plain waitpid */
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si) &&
			    kill_op(o.id, (int)si.ssi_signo, false, &err) < 0 && err.code != ESRCH)
				fprintf(stderr, "%s\n", err.msg);
		}
		if (pfd[0].revents & POLLIN)
			break;
	}
	if (launcher < 0) {
		code = exit_code_of(o.id);
	} else {
		while (waitpid(spid, &status, 0) < 0) {
			if (errno != EINTR) {
				status = 0;
				break;
			}
		}
		code = WIFEXITED(status) ? WEXITSTATUS(status)
					 : (WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1);
	}
	trace_point("exited");
	if (delete_op(o.id, true, &err) < 0)
		die_err(&err);
	trace_point("deleted");
	return code;
}

int cmd_state(int argc, char **argv)
{
	static const char *const order[] = {"ociVersion", "id",	    "pid",
					    "status",	  "bundle", "created"};
	struct qmsg_in reply;
	struct qerr err;
	json_t *src, *out, *an;
	const char *id;

	if (getopt_long(argc, argv, "", (struct option[]){{NULL, 0, NULL, 0}}, NULL) != -1)
		usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	id = one_id(argc, argv, argv[0]);
	if (vmmd_call_id("state", id, &reply, &err) < 0)
		die_err(&err);
	src = reply_to_json(&reply);
	qmsg_in_free(&reply);
	/* runc's field order. */
	out = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		json_t *v = json_object_get(src, order[i]);
		json_object_set(out, order[i], v ? v : json_null());
	}
	json_object_set_new(out, "owner", json_string(""));
	an = json_object_get(src, "annotations");
	if (an && json_object_size(an))
		json_object_set(out, "annotations", an);
	print_json(out);
	json_decref(out);
	json_decref(src);
	return 0;
}

int cmd_kill(int argc, char **argv)
{
	static const struct option opts[] = {{"all", no_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
	struct qerr err;
	bool all = false;
	int c, sig = SIGTERM;

	while ((c = getopt_long(argc, argv, "a", opts, NULL)) != -1) {
		if (c != 'a')
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		all = true;
	}
	if (argc - optind < 1 || argc - optind > 2)
		usage_error(argv[0], "requires 1 or 2 arguments (ID [SIGNAL])");
	if (sandbox_id_check(argv[optind], &err) < 0)
		die_err(&err);
	if (argc - optind == 2 && parse_signal(argv[optind + 1], &sig) < 0)
		die("unknown signal \"%s\"", argv[optind + 1]);
	if (kill_op(argv[optind], sig, all, &err) < 0)
		die_err(&err);
	return 0;
}

int cmd_delete(int argc, char **argv)
{
	static const struct option opts[] = {{"force", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
	struct qerr err;
	bool force = false;
	const char *id;
	int c;

	while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (c != 'f')
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		force = true;
	}
	id = one_id(argc, argv, argv[0]);
	if (delete_op(id, force, &err) < 0) {
		/* runc: deleting what does not exist is fine with --force. */
		if (force && err.code == ENOENT)
			return 0;
		die_err(&err);
	}
	return 0;
}

static int simple_op(int argc, char **argv, const char *op)
{
	struct qmsg_in reply;
	struct qerr err;
	const char *id;

	if (getopt_long(argc, argv, "", (struct option[]){{NULL, 0, NULL, 0}}, NULL) != -1)
		usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	id = one_id(argc, argv, argv[0]);
	if (vmmd_call_id(op, id, &reply, &err) < 0)
		die_err(&err);
	qmsg_in_free(&reply);
	return 0;
}

int cmd_pause(int argc, char **argv)
{
	return simple_op(argc, argv, "pause");
}

int cmd_resume(int argc, char **argv)
{
	return simple_op(argc, argv, "resume");
}

/* The list reply's array as JSON (an empty array when there is none). */
json_t *list_sandboxes(void);
json_t *list_sandboxes(void)
{
	struct qmsg_out m;
	struct qmsg_in reply;
	struct qerr err;
	json_t *j, *arr;
	int r;

	qmsg_out_init(&m);
	qmsg_begin(&m, "list", 0);
	r = vmmd_call(&m, &reply, &err);
	qmsg_out_free(&m);
	if (r < 0)
		die_err(&err);
	j = reply_to_json(&reply);
	qmsg_in_free(&reply);
	arr = json_incref(json_object_get(j, "sandboxes"));
	json_decref(j);
	return arr ? arr : json_array();
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
					     {"quiet", no_argument, NULL, 'q'},
					     {NULL, 0, NULL, 0}};
	const char *format = "table";
	bool quiet = false;
	json_t *arr, *sb;
	size_t i;
	int c;

	while ((c = getopt_long(argc, argv, "f:q", opts, NULL)) != -1) {
		if (c == 'f')
			format = optarg;
		else if (c == 'q')
			quiet = true;
		else
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
		die("invalid format option");
	arr = list_sandboxes();
	if (quiet) {
		json_array_foreach (arr, i, sb)
			printf("%s\n", jstr(sb, "id"));
	} else if (strcmp(format, "json") == 0) {
		json_t *out = json_array();
		json_array_foreach (arr, i, sb) {
			json_t *o = json_object();
			json_object_set(o, "ociVersion", json_object_get(sb, "ociVersion"));
			json_object_set(o, "id", json_object_get(sb, "id"));
			json_object_set(o, "pid", json_object_get(sb, "pid"));
			json_object_set(o, "status", json_object_get(sb, "status"));
			json_object_set(o, "bundle", json_object_get(sb, "bundle"));
			json_object_set(o, "created", json_object_get(sb, "created"));
			json_object_set_new(o, "owner", json_string("root"));
			if (json_object_size(json_object_get(sb, "annotations")))
				json_object_set(o, "annotations",
						json_object_get(sb, "annotations"));
			json_array_append_new(out, o);
		}
		/* runc prints null for no containers. */
		if (json_array_size(out) == 0)
			printf("null\n");
		else {
			char *s = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
			printf("%s\n", s ? s : "null");
			free(s);
		}
		json_decref(out);
	} else {
		struct table *t = table_new(6);
		table_add(t, (const char *[]){"ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"});
		json_array_foreach (arr, i, sb) {
			char pid[24];
			snprintf(pid, sizeof(pid), "%lld",
				 (long long)json_integer_value(json_object_get(sb, "pid")));
			table_add(t, (const char *[]){jstr(sb, "id"), pid, jstr(sb, "status"),
						      jstr(sb, "bundle"), jstr(sb, "created"),
						      "root"});
		}
		table_print(t);
	}
	json_decref(arr);
	return 0;
}
