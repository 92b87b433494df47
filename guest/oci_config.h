/* An OCI runtime-spec config.json (v1.0/v1.1), parsed and validated once by
 * the launcher into plain C structures, so that the rest of the guest never
 * touches JSON (the one exception is linux.seccomp, handed to trap.h as is).
 *
 * Every error is one line naming the file, the JSON path and the problem:
 *   config.json: mounts[2].destination: must be an absolute path
 * Everything read is bounded (file size, string lengths, array sizes).
 *
 * Conventions: arrays are (pointer, count) pairs; string arrays are also
 * NULL-terminated so that args/env can be handed to execve directly.  An
 * optional scalar has a has_X flag next to it. */
#ifndef QUIVER_GUEST_OCI_CONFIG_H
#define QUIVER_GUEST_OCI_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "libcommon/err.h"

/* Bounds on what config.json may contain. */
#define GUEST_CONFIG_FILE_MAX	(4u << 20) /* bytes of config.json / process.json */
#define GUEST_CONFIG_STRING_MAX 65536u	   /* bytes of any one string (args, env, data) */
#define GUEST_CONFIG_PATH_MAX	4096u	   /* bytes of a path (PATH_MAX) */
#define GUEST_CONFIG_MOUNTS_MAX 1024u
#define GUEST_CONFIG_ENV_MAX	4096u
#define GUEST_CONFIG_ARGS_MAX	4096u
#define GUEST_CONFIG_ARRAY_MAX	4096u /* any other array or map */

struct guest_user {
	uid_t uid;
	gid_t gid;
	bool has_umask;
	mode_t umask;
	gid_t *additional_gids;
	size_t n_additional_gids;
};

/* Capability sets as bit masks: bit N set means capability number N (as
 * cap_from_name() gives it, e.g. CAP_SYS_ADMIN = 21) is in the set. */
struct guest_caps {
	uint64_t bounding;
	uint64_t effective;
	uint64_t inheritable;
	uint64_t permitted;
	uint64_t ambient;
};

struct guest_rlimit {
	int type; /* RLIMIT_* */
	uint64_t soft;
	uint64_t hard; /* soft <= hard is checked */
};

struct guest_process {
	bool terminal;
	bool has_console_size;
	unsigned int console_height;
	unsigned int console_width;
	struct guest_user user;
	char **args; /* n_args >= 1, NULL-terminated */
	size_t n_args;
	char **env; /* "K=V", NULL-terminated (env may be empty: {NULL}) */
	size_t n_env;
	char *cwd;	       /* absolute */
	bool has_capabilities; /* false: process.capabilities absent */
	struct guest_caps caps;
	struct guest_rlimit *rlimits;
	size_t n_rlimits;
	bool no_new_privileges;
	bool has_oom_score_adj;
	int oom_score_adj;
	char *apparmor_profile; /* kept, not applied; NULL if absent */
	char *selinux_label;	/* kept, not applied; NULL if absent */
};

/* One entry of mounts[], with options split as runc splits them. */
struct guest_mount {
	char *destination; /* absolute, inside the rootfs */
	char *type;	   /* NULL if absent (bind mounts) */
	char *source;	   /* NULL if absent */
	char **options;	   /* as given, NULL-terminated */
	size_t n_options;
	unsigned long flags;	   /* MS_* to set (MS_RDONLY, MS_NOSUID, MS_BIND|MS_REC, ...) */
	unsigned long clear_flags; /* MS_* cleared by an option (rw, suid, dev, exec, atime, ...) */
	unsigned long propagation; /* 0, or MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE [|MS_REC];
				      the last propagation option wins */
	uint64_t rec_attr_set;	   /* MOUNT_ATTR_* to apply recursively (rro, rnosuid, ...) */
	uint64_t rec_attr_clr;	   /* MOUNT_ATTR_* to clear recursively (rrw, rsuid, ...) */
	char *data;		   /* unknown options joined with ',' (e.g. "mode=755,size=65536k");
				      "" if none */
	bool is_bind;		   /* MS_BIND set (bind or rbind) */
	bool tmpcopyup;		   /* "tmpcopyup" (a runc extension for tmpfs): copy the
				      directory's old contents into the new tmpfs */
};

enum guest_ns_type {
	GUEST_NS_PID,
	GUEST_NS_NETWORK,
	GUEST_NS_MOUNT,
	GUEST_NS_IPC,
	GUEST_NS_UTS,
	GUEST_NS_USER,
	GUEST_NS_CGROUP,
	GUEST_NS_TIME,
	GUEST_NS_COUNT
};

struct guest_namespace {
	enum guest_ns_type type;
	int clone_flag; /* CLONE_NEWPID, ... */
	char *path;	/* join this namespace (setns) instead of creating one; NULL: create */
};

struct guest_idmap {
	uint32_t container_id;
	uint32_t host_id;
	uint32_t size;
};

struct guest_hugepage_limit {
	char *page_size; /* "2MB", "1GB" as in the hugetlb file names */
	uint64_t limit;	 /* bytes */
};

struct guest_device_rule {
	bool allow;
	char type;	/* 'a', 'b' or 'c' */
	int64_t major;	/* -1: any ('*') */
	int64_t minor;	/* -1: any ('*') */
	char access[4]; /* subset of "rwm", NUL-terminated; "rwm" when absent */
};

struct guest_resources {
	bool has_memory_limit;
	int64_t memory_limit; /* bytes; -1: unlimited */
	bool has_memory_reservation;
	int64_t memory_reservation; /* bytes; -1: unlimited */
	bool has_memory_swap;
	int64_t memory_swap; /* memory+swap bytes (runtime-spec meaning); -1: unlimited */

	bool has_cpu_shares;
	uint64_t cpu_shares;
	bool has_cpu_quota;
	int64_t cpu_quota; /* microseconds per period; -1: unlimited */
	bool has_cpu_period;
	uint64_t cpu_period; /* microseconds */
	char *cpu_cpus;	     /* cpuset list ("0-3,5"), NULL if absent */
	char *cpu_mems;	     /* NULL if absent */

	bool has_pids_limit;
	int64_t pids_limit; /* > 0: a limit; <= 0: unlimited ("max") */

	struct guest_hugepage_limit *hugepage_limits;
	size_t n_hugepage_limits;

	bool has_devices; /* false: linux.resources.devices absent (use the default list) */
	struct guest_device_rule *devices;
	size_t n_devices;
};

/* linux.devices: a device node to create in the container's /dev. */
struct guest_device_node {
	char *path; /* absolute, inside the rootfs */
	char type;  /* 'c', 'b', 'u' (= 'c') or 'p' (fifo) */
	int64_t major;
	int64_t minor;
	bool has_file_mode;
	mode_t file_mode; /* permission bits */
	bool has_uid;
	uid_t uid;
	bool has_gid;
	gid_t gid;
};

struct guest_kv {
	char *key;
	char *value;
};

struct guest_hook {
	char *path;  /* absolute */
	char **args; /* NULL-terminated; may be empty */
	size_t n_args;
	char **env; /* NULL-terminated; may be empty */
	size_t n_env;
	bool has_timeout;
	int timeout; /* seconds, > 0 */
};

struct guest_hook_list {
	struct guest_hook *v;
	size_t n;
};

struct guest_hooks {
	struct guest_hook_list prestart; /* deprecated in the spec, still honoured */
	struct guest_hook_list create_runtime;
	struct guest_hook_list create_container;
	struct guest_hook_list start_container;
	struct guest_hook_list poststart;
	struct guest_hook_list poststop;
};

struct guest_config {
	char *oci_version;
	char *bundle_dir;  /* absolute, as resolved by realpath() */
	char *config_path; /* bundle_dir + "/config.json" */

	char *root_path; /* absolute, realpath()'d; an existing directory */
	bool root_readonly;

	bool has_process; /* the spec allows a config without process for create */
	struct guest_process process;

	char *hostname;	  /* NULL if absent */
	char *domainname; /* NULL if absent */

	struct guest_mount *mounts;
	size_t n_mounts;

	struct guest_namespace namespaces[GUEST_NS_COUNT];
	size_t n_namespaces;
	int clone_flags; /* CLONE_NEW* of the namespaces to create (without a path) */
	bool ns_present[GUEST_NS_COUNT];

	struct guest_idmap *uid_mappings;
	size_t n_uid_mappings;
	struct guest_idmap *gid_mappings;
	size_t n_gid_mappings;

	bool has_resources;
	struct guest_resources resources;

	char *cgroups_path; /* NULL if absent */

	char **masked_paths; /* NULL-terminated */
	size_t n_masked_paths;
	char **readonly_paths; /* NULL-terminated */
	size_t n_readonly_paths;

	struct guest_kv *sysctl;
	size_t n_sysctl;

	struct guest_device_node *devices; /* linux.devices */
	size_t n_devices;

	unsigned long rootfs_propagation; /* linux.rootfsPropagation as MS_* flags; 0 if absent */

	json_t *seccomp; /* linux.seccomp (a reference we own), NULL if absent */

	struct guest_kv *annotations;
	size_t n_annotations;

	struct guest_hooks hooks;
};

/* Read BUNDLE_DIR/config.json, parse and validate it (including the seccomp
 * profile, through trap_oci_seccomp_check).  On success *out owns a new
 * config (guest_config_free).  Errors: -ENOENT, -EINVAL, -E2BIG, ... */
int guest_config_load(const char *bundle_dir, struct guest_config **out, struct qerr *err);

/* Parse a config from memory; name is used as the file name in messages
 * ("config.json").  root.path is resolved against bundle_dir. */
int guest_config_parse(const char *bundle_dir, const char *name, const char *json, size_t len,
		       struct guest_config **out, struct qerr *err);

void guest_config_free(struct guest_config *cfg);

static inline void guest_config_freep(struct guest_config **cfg)
{
	guest_config_free(*cfg);
}
#define cleanup_config __attribute__((cleanup(guest_config_freep)))

/* Parse a standalone OCI `process` object (qctl exec --process FILE) with
 * the same rules as config.json's process.  *out is filled (zeroed first);
 * release it with guest_process_free. */
int guest_process_load(const char *path, struct guest_process *out, struct qerr *err);
void guest_process_free(struct guest_process *p);

/* Lookups shared with other modules (and the tests). */
const char *guest_ns_name(enum guest_ns_type type); /* "pid", "network", ... */
int guest_rlimit_from_name(const char *name);	    /* "RLIMIT_NOFILE" -> 7; -1 if unknown */

#endif
