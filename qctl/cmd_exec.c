/* exec (a new process in a running sandbox, through `quiver-guest exec`)
 * and ps (the processes in the sandbox's cgroups). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcommon/cleanup.h"
#include "qctl/qctl.h"

#define EXEC_ENV_MAX  512
#define EXEC_ARGS_MAX 200

/* A hibernated sandbox is woken for an exec (as for a kill): 0 when it
 * was, -1 when it is not hibernated (plainly paused, say). */
static int wake_for_exec(const char *id)
{
	struct qmsg_out m;
	struct qerr err;

	qmsg_out_init(&m);
	qmsg_begin(&m, "wake", 2);
	qmsg_put_str(&m, "id", id);
	qmsg_put_str(&m, "why", "exec");
	return vmmd_send(&m, &err) < 0 ? -1 : 0;
}

/* The running sandbox's supervisor pid and bundle, or die with runc's words. */
static pid_t running_pid(const char *id, char *bundle, size_t len)
{
	struct qmsg_in reply;
	struct qerr err;
	char status[32];
	int64_t pid;

	for (int woken = 0;; woken++) {
		status[0] = '\0';
		pid = 0;
		if (vmmd_call_id("state", id, &reply, &err) < 0)
			die_err(&err);
		qmsg_get_str(reply.root, "status", status, sizeof(status), NULL);
		qmsg_get_int(reply.root, "pid", 0, INT32_MAX, &pid, NULL);
		if (qmsg_get_str(reply.root, "bundle", bundle, len, &err) < 0)
			die_err(&err);
		qmsg_in_free(&reply);
		if (strcmp(status, "running") == 0 || strcmp(status, "created") == 0)
			return (pid_t)pid;
		if (woken || strcmp(status, "paused") != 0 || wake_for_exec(id) < 0)
			die("cannot exec in a %s container", status);
	}
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"process", required_argument, NULL, 'p'},
	    {"detach", no_argument, NULL, 'd'},
	    {"env", required_argument, NULL, 'e'},
	    {"cwd", required_argument, NULL, 'C'},
	    {"tty", no_argument, NULL, 't'},
	    {"console-socket", required_argument, NULL, 'c'},
	    {"pid-file", required_argument, NULL, 'P'},
	    {"preserve-fds", required_argument, NULL, 'F'},
	    {NULL, 0, NULL, 0},
	};
	const char *process = NULL, *cwd = NULL, *console = NULL, *pid_file = NULL;
	const char *env[EXEC_ENV_MAX];
	const char *args[EXEC_ENV_MAX * 2 + EXEC_ARGS_MAX + 32];
	char spid[16], state_dir[PATH_MAX + SANDBOX_ID_MAX + 2], pfds[16], bundle[PATH_MAX];
	bool detach = false, tty = false;
	int nenv = 0, preserve = 0, n = 0, c, status = 0, code;
	struct guest_spawn gs;
	struct qerr err;
	const char *id;
	int64_t xpid = 0;
	sigset_t fwd;
	char *end;

	while ((c = getopt_long(argc, argv, "+:p:de:tC:", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			process = optarg;
			break;
		case 'd':
			detach = true;
			break;
		case 'e':
			if (nenv >= EXEC_ENV_MAX)
				die("exec: too many --env");
			if (!strchr(optarg, '='))
				die("exec: --env %s: must be KEY=VALUE", optarg);
			env[nenv++] = optarg;
			break;
		case 'C':
			cwd = optarg;
			break;
		case 't':
			tty = true;
			break;
		case 'c':
			console = optarg;
			break;
		case 'P':
			pid_file = optarg;
			break;
		case 'F':
			errno = 0;
			preserve = (int)strtol(optarg, &end, 10);
			if (errno || *end || preserve < 0 || preserve > 1024)
				usage_error(argv[0], "invalid --preserve-fds \"%s\"", optarg);
			break;
		case ':':
			usage_error(argv[0], "option %s needs a value", argv[optind - 1]);
		default:
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		usage_error(argv[0], "requires the container id");
	id = argv[optind++];
	if (sandbox_id_check(id, &err) < 0)
		die_err(&err);
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (!process && optind >= argc)
		usage_error(argv[0], "needs --process or the command to run");
	if (process && optind < argc)
		usage_error(argv[0], "--process and a command line exclude each other");
	if (argc - optind > EXEC_ARGS_MAX)
		die("exec: too many arguments");

	if (vmmd_connect(true, &err) < 0)
		die_err(&err);
	snprintf(spid, sizeof(spid), "%d", (int)running_pid(id, bundle, sizeof(bundle)));
	if (!detach && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
	snprintf(state_dir, sizeof(state_dir), "%s/%s", g.root, id);
	snprintf(pfds, sizeof(pfds), "%d", preserve);
	args[n++] = "exec";
	args[n++] = "--id";
	args[n++] = id;
	args[n++] = "--state-dir";
	args[n++] = state_dir;
	args[n++] = "--bundle";
	args[n++] = bundle;
	args[n++] = "--pid";
	args[n++] = spid;
	for (int i = 0; i < nenv; i++) {
		args[n++] = "--env";
		args[n++] = env[i];
	}
	if (cwd) {
		args[n++] = "--cwd";
		args[n++] = cwd;
	}
	if (tty)
		args[n++] = "--tty";
	if (console) {
		args[n++] = "--console-socket";
		args[n++] = console;
	}
	if (preserve) {
		args[n++] = "--preserve-fds";
		args[n++] = pfds;
	}
	if (detach)
		args[n++] = "--detach";
	if (process) {
		args[n++] = "--process";
		args[n++] = process;
	} else {
		args[n++] = "--";
		while (optind < argc)
			args[n++] = argv[optind++];
	}
	args[n] = NULL;

	sigemptyset(&fwd);
	for (size_t i = 0; i < n_forwarded_signals; i++)
		sigaddset(&fwd, forwarded_signals[i]);
	if (!detach)
		sigprocmask(SIG_BLOCK, &fwd, NULL);
	if (guest_spawn(args, preserve, &gs, &err) < 0)
		die_err(&err);
	qmsg_get_int(gs.msg.root, "pid", 1, INT32_MAX, &xpid, NULL);
	qmsg_in_free(&gs.msg);
	if (pid_file && write_pid_file(pid_file, (pid_t)xpid, &err) < 0) {
		if (xpid > 0)
			kill((pid_t)xpid, SIGKILL);
		die_err(&err);
	}
	if (!detach) {
		int sfd = signalfd(-1, &fwd, SFD_CLOEXEC);
		int pidfd = (int)syscall(SYS_pidfd_open, gs.launcher, 0);
		while (sfd >= 0 && pidfd >= 0) {
			struct pollfd pfd[2] = {{.fd = pidfd, .events = POLLIN},
						{.fd = sfd, .events = POLLIN}};
			if (poll(pfd, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (pfd[1].revents & POLLIN) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == sizeof(si) && xpid > 0)
					kill((pid_t)xpid, (int)si.ssi_signo);
			}
			if (pfd[0].revents & POLLIN)
				break;
		}
	}
	/* Detached, the guest exits 0 once the process is on its way. */
	while (waitpid(gs.launcher, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 0;
			break;
		}
	}
	code = WIFEXITED(status) ? WEXITSTATUS(status)
				 : (WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1);
	return detach ? (code ? 1 : 0) : code;
}

/* ---- ps ---- */

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

static void read_procs(const char *dir, pid_t **pids, size_t *n, size_t *cap, int depth)
{
	char path[PATH_MAX + 32], line[32];
	cleanup_fclose FILE *f = NULL;
	cleanup_dir DIR *d = NULL;
	struct dirent *de;

	if (depth > 16)
		return;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*pids = realloc(*pids, *cap * sizeof(pid_t));
			if (!*pids)
				die("out of memory");
		}
		(*pids)[(*n)++] = (pid_t)atoi(line);
	}
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		read_procs(path, pids, n, cap, depth + 1);
	}
}

int cmd_ps(int argc, char **argv)
{
	static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
					     {NULL, 0, NULL, 0}};
	const char *format = "table", *id;
	struct qmsg_in reply;
	struct qerr err;
	const msgpack_object *cg = NULL;
	pid_t *pids = NULL;
	size_t n = 0, cap = 0, u = 0;
	int c;

	while ((c = getopt_long(argc, argv, "+f:", opts, NULL)) != -1) {
		if (c == 'f')
			format = optarg;
		else
			usage_error(argv[0], "unknown option %s", argv[optind - 1]);
	}
	if (optind >= argc)
		usage_error(argv[0], "requires the container id");
	id = argv[optind++];
	if (sandbox_id_check(id, &err) < 0)
		die_err(&err);
	if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
		die("invalid format option");
	if (vmmd_call_id("inspect", id, &reply, &err) < 0)
		die_err(&err);
	if (qmsg_get_array(reply.root, "cgroups", 64, &cg, &err) == 0) {
		for (uint32_t i = 0; i < cg->via.array.size; i++) {
			char dir[PATH_MAX];
			if (qmsg_obj_str(&cg->via.array.ptr[i], dir, sizeof(dir), NULL) == 0)
				read_procs(dir, &pids, &n, &cap, 0);
		}
	}
	qmsg_in_free(&reply);
	if (n) {
		qsort(pids, n, sizeof(pid_t), pid_cmp);
		for (size_t i = 0; i < n; i++)
			if (u == 0 || pids[u - 1] != pids[i])
				pids[u++] = pids[i];
	}
	if (strcmp(format, "json") == 0) {
		printf("[");
		for (size_t i = 0; i < u; i++)
			printf("%s%d", i ? "," : "", (int)pids[i]);
		printf("]\n");
		free(pids);
		return 0;
	}
	/* runc: run ps (default -ef) and keep the header and the lines whose
	 * PID column is one of the sandbox's. */
	{
		const char *psargv[EXEC_ARGS_MAX + 2];
		int p[2], k = 0, status, pidcol = -1;
		cleanup_fclose FILE *f = NULL;
		char line[8192];
		bool header = true;
		pid_t child;

		psargv[k++] = "ps";
		if (optind < argc && strcmp(argv[optind], "--") == 0)
			optind++;
		if (optind >= argc)
			psargv[k++] = "-ef";
		while (optind < argc && k < EXEC_ARGS_MAX)
			psargv[k++] = argv[optind++];
		psargv[k] = NULL;
		if (pipe2(p, O_CLOEXEC) < 0)
			die("pipe: %s", strerror(errno));
		child = fork();
		if (child < 0)
			die("fork: %s", strerror(errno));
		if (child == 0) {
			dup2(p[1], 1);
			execvp("ps", (char *const *)psargv);
			_exit(127);
		}
		close(p[1]);
		f = fdopen(p[0], "r");
		while (f && fgets(line, sizeof(line), f)) {
			char copy[sizeof(line)], *tok, *save;
			int col = 0;
			if (header) {
				fputs(line, stdout);
				snprintf(copy, sizeof(copy), "%s", line);
				for (tok = strtok_r(copy, " \t\n", &save); tok;
				     tok = strtok_r(NULL, " \t\n", &save), col++)
					if (strcmp(tok, "PID") == 0)
						pidcol = col;
				header = false;
				if (pidcol < 0) {
					waitpid(child, NULL, 0);
					die("couldn't find PID field in ps output");
				}
				continue;
			}
			snprintf(copy, sizeof(copy), "%s", line);
			for (tok = strtok_r(copy, " \t\n", &save); tok && col < pidcol;
			     tok = strtok_r(NULL, " \t\n", &save))
				col++;
			if (tok) {
				pid_t v = (pid_t)atoi(tok);
				if (bsearch(&v, pids, u, sizeof(pid_t), pid_cmp))
					fputs(line, stdout);
			}
		}
		waitpid(child, &status, 0);
		free(pids);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			die("ps failed with status %d",
			    WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	return 0;
}
