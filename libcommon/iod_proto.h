/* The iod protocol: what a guest kernel and iod exchange.
 *
 * Control: a SOCK_SEQPACKET connection to ROOT/iod.sock, one per sandbox.
 *   guest -> iod   struct iod_hello, with the sandbox's root directory fd
 *                  (opened by the supervisor inside the sandbox's mount
 *                  namespace, after pivot_root) as SCM_RIGHTS
 *   iod -> guest   struct iod_welcome, with the ring's memfd, sq_efd and
 *                  cq_efd (iod creates the ring: the hostile side does not
 *                  choose its geometry), or an error code and no fds
 *                  and, when the hello asked for IOD_HELLO_OFFLOAD_ALL, the
 *                  data area's memfd as a fourth fd (IOD_WELCOME_DATA)
 *   iod -> guest   later, one struct iod_fdmsg per opened file, carrying
 *                  that fd, sent before the completion that announces it
 *   guest -> iod   one struct iod_fdmsg ahead of each request that carries
 *                  a file (IOD_REQ_FD: LINK of an fd, FILE_ADD)
 * The connection's end is the sandbox's end (iod drops the ring) or iod's
 * (the guest fails what is in flight with EIO and reconnects later).
 *
 * Data: the ring pair of libcommon/ring.h, IOD_RING_ENTRIES entries of
 * IOD_ENTRY_SIZE bytes per queue.  A request is struct iod_req followed by
 * its paths (each NUL-terminated, path_len/path2_len bytes counting the NUL);
 * a completion is struct iod_resp followed by its data (a struct statx,
 * struct statfs, link text or xattr bytes).
 *
 * Offload-all (docs/iod.md): the workload's reads and writes of regular
 * files go through iod too.  The guest registers the file once (FILE_ADD,
 * the fd sent ahead; a handle that is an index the guest chooses), then
 * READ and WRITE name the handle and a slot of the data area, a sealed
 * memfd of IOD_DATA_SLOTS slots of IOD_DATA_SLOT_SIZE bytes that iod
 * creates and both map: iod reads into the slot or writes from it, the
 * guest copies between the slot and the workload's memory.
 *
 * Paths are the sandbox's: absolute from the sandbox's root (the guest has
 * already joined a relative path to the cwd or dirfd it is relative to).
 * iod resolves them under the root fd with openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS), with the workload's credentials (struct
 * iod_creds), and never trusts anything else in the entry: every field is
 * checked by iod_req_valid() on iod's private copy. */
#ifndef QUIVER_IOD_PROTO_H
#define QUIVER_IOD_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "libcommon/ring.h"

#define IOD_SOCK_NAME	  "iod.sock"
#define IOD_PROTO_VERSION 3u

#define IOD_RING_ENTRIES 8u    /* per queue: the in-flight bound per sandbox */
#define IOD_ENTRY_SIZE	 4096u /* bytes per entry, both queues */
#define IOD_GROUPS_MAX	 32u   /* supplementary groups carried per request */

/* Offload-all: the data area and the files a sandbox may register. */
#define IOD_DATA_SLOTS	   IOD_RING_ENTRIES /* one per request in flight */
#define IOD_DATA_SLOT_SIZE (128u * 1024u)
#define IOD_DATA_SIZE	   ((uint64_t)IOD_DATA_SLOTS * IOD_DATA_SLOT_SIZE)
#define IOD_FILES_MAX	   256u	      /* handles 0..IOD_FILES_MAX-1 per sandbox */
#define IOD_OFFSET_CURRENT UINT64_MAX /* READ, WRITE: at the file position */

enum iod_op {
	IOD_OP_OPEN = 1,  /* flags: open(2) flags; mode -> an fd (IOD_RESP_FD) */
	IOD_OP_STAT,	  /* at_flags: AT_SYMLINK_NOFOLLOW; arg0: statx mask -> struct statx */
	IOD_OP_ACCESS,	  /* mode: R_OK|W_OK|X_OK|F_OK; at_flags: AT_EACCESS, AT_SYMLINK_NOFOLLOW */
	IOD_OP_READLINK,  /* arg0: the caller's buffer size -> link bytes (res = length) */
	IOD_OP_MKDIR,	  /* mode */
	IOD_OP_MKNOD,	  /* mode: S_IFREG or S_IFIFO (or no type) plus permissions */
	IOD_OP_UNLINK,	  /* at_flags: AT_REMOVEDIR */
	IOD_OP_RENAME,	  /* path -> path2; flags: RENAME_NOREPLACE|EXCHANGE|WHITEOUT */
	IOD_OP_LINK,	  /* path (existing) -> path2 (new); at_flags: AT_SYMLINK_FOLLOW */
	IOD_OP_SYMLINK,	  /* path: the link's text (not resolved); path2: where */
	IOD_OP_CHMOD,	  /* mode; at_flags: AT_SYMLINK_NOFOLLOW */
	IOD_OP_CHOWN,	  /* arg0: uid, arg1: gid ((u32)-1: unchanged); at_flags */
	IOD_OP_UTIMENS,	  /* times[2] (IOD_UTIME_NULL in flags: now); at_flags */
	IOD_OP_TRUNCATE,  /* arg0: length */
	IOD_OP_CHDIR,	  /* check only: a searchable directory (the kernel keeps the cwd) */
	IOD_OP_STATFS,	  /* -> struct statfs */
	IOD_OP_GETXATTR,  /* path2: the name; arg0: size; at_flags -> value bytes */
	IOD_OP_LISTXATTR, /* arg0: size; at_flags -> the name list */
	/* Offload-all; path is "" for these. */
	IOD_OP_FILE_ADD,  /* arg0: handle; the fd came ahead (IOD_REQ_FD): a regular file */
	IOD_OP_FILE_DROP, /* arg0: handle: iod closes its copy */
	IOD_OP_READ,	  /* arg0: handle; arg1: offset or IOD_OFFSET_CURRENT; arg2: bytes
			   * (<= IOD_DATA_SLOT_SIZE); slot: data slot -> bytes read */
	IOD_OP_WRITE,	  /* the same, from the slot -> bytes written */
	IOD_OP_FSYNC,	  /* arg0: handle; flags: IOD_FSYNC_DATA */
	IOD_OP_MAX_,
};

/* iod_req.hdr.flags */
#define IOD_REQ_CACHE                                                                              \
	2u /* STAT, ACCESS, OPEN: the guest would cache the answer                                 \
	    * (docs/iod.md, "The metadata cache"); iod first resolves                              \
	    * with RESOLVE_NO_XDEV and says IOD_RESP_CACHEABLE when the                            \
	    * walk stayed on a read-only root */
#define IOD_REQ_FD                                                                                 \
	1u /* LINK with AT_SYMLINK_FOLLOW: the file to link is not                                 \
	    * path (which is ""), but the fd that came before this                                 \
	    * request on the connection, as an iod_fdmsg with its                                  \
	    * user_data (linkat of an fd, the O_TMPFILE idiom) */

/* iod_req.flags bits for IOD_OP_UTIMENS. */
#define IOD_UTIME_NULL 1u /* times == NULL: both now */
/* iod_req.flags bits for IOD_OP_FSYNC. */
#define IOD_FSYNC_DATA 1u /* fdatasync */

/* The workload's filesystem credentials, as the guest read them from
 * /proc/<tid>/status.  iod applies them to every step of the request. */
struct iod_creds {
	uint32_t fsuid, fsgid;
	uint64_t cap_eff; /* effective capabilities; iod keeps only the file ones */
	uint32_t umask;	  /* applied by iod to the mode of what it creates */
	uint32_t ngroups; /* <= IOD_GROUPS_MAX */
	uint32_t groups[IOD_GROUPS_MAX];
};

struct iod_req {
	struct ring_entry_hdr hdr; /* opcode: enum iod_op; flags: IOD_REQ_* */
	uint32_t flags;		   /* open flags, rename flags, IOD_UTIME_* */
	uint32_t at_flags;	   /* AT_* */
	uint32_t mode;
	uint32_t path_len;  /* bytes of paths[] in the first path, NUL included */
	uint32_t path2_len; /* bytes of the second, NUL included; 0: none */
	uint32_t slot;	    /* READ, WRITE: the data slot */
	uint64_t arg0, arg1, arg2;
	int64_t times[4]; /* UTIMENS: atime sec, nsec, mtime sec, nsec */
	struct iod_creds creds;
	char paths[]; /* path, then path2 */
};

/* Longest path + path2, NULs included, that fits an entry. */
#define IOD_PATHS_MAX (IOD_ENTRY_SIZE - (uint32_t)sizeof(struct iod_req))

/* iod_resp.hdr.flags */
#define IOD_RESP_FD	   1u /* res is 0 and the fd came before, as an iod_fdmsg */
#define IOD_RESP_CACHEABLE 2u /* the answer came from the read-only root mount alone */

struct iod_resp {
	struct ring_entry_hdr hdr; /* opcode and user_data echo the request's */
	int64_t res;		   /* >= 0: the result; < 0: -errno */
	uint32_t data_len;	   /* bytes of data[] */
	uint32_t pad_;
	unsigned char data[];
};

#define IOD_RESP_DATA_MAX (IOD_ENTRY_SIZE - (uint32_t)sizeof(struct iod_resp))

/* iod_hello.flags */
#define IOD_HELLO_OFFLOAD_ALL 1u /* reads and writes of regular files through iod too */

/* iod_welcome.flags */
#define IOD_WELCOME_ROOT_RO 1u /* the root is a read-only mount: IOD_REQ_CACHE is worth sending */
#define IOD_WELCOME_DATA    2u /* the data area's memfd is the fourth fd (offload-all) */

struct iod_hello {
	uint32_t version; /* IOD_PROTO_VERSION */
	uint32_t flags;
	char id[128]; /* the sandbox id, NUL-terminated (for logs and metrics) */
};

struct iod_welcome {
	uint32_t version;
	int32_t error; /* 0: the three fds are attached; else an errno, no fds */
	uint32_t entries, entry_size;
	uint32_t flags; /* IOD_WELCOME_* */
	uint32_t pad_;
};

struct iod_fdmsg {
	uint64_t user_data; /* the request this fd answers (or goes with) */
};

/* A whole ring entry, for a request or a completion built or read in
 * place: the header and its data after it, IOD_ENTRY_SIZE bytes in all. */
union iod_req_entry {
	struct iod_req req;
	unsigned char raw[IOD_ENTRY_SIZE];
};

union iod_resp_entry {
	struct iod_resp resp;
	unsigned char raw[IOD_ENTRY_SIZE];
};

/* Checks of a request copied out of the ring (iod) and of a completion
 * (guest): sizes, NULs, opcode ranges.  Meaning is checked by the caller. */
bool iod_req_valid(const void *entry, void *ctx);
bool iod_resp_valid(const void *entry, void *ctx);
/* STAT, ACCESS and OPEN: the ops whose answers may be cached. */
bool iod_op_cacheable(unsigned op);
/* FILE_ADD .. FSYNC: the offload-all ops, which name a handle, not a path. */
bool iod_op_on_handle(unsigned op);
/* Whether files of this filesystem (statfs f_type) may be read and written
 * by iod for a sandbox: filesystems of plain data (tmpfs, overlayfs, xfs,
 * ext4, btrfs, ...).  Not procfs, sysfs, cgroupfs and the like, whose
 * contents can depend on who reads (cgroup.procs lists pids in the
 * reader's pid namespace: iod's would be the host's), nor FUSE (its
 * daemon sees the caller). */
bool iod_fs_offloadable(long f_type);
/* The request's second path, or NULL when it has none (after
 * iod_req_valid). */
const char *iod_req_path2(const struct iod_req *r);
const char *iod_op_name(unsigned op); /* "open", ...; "?" out of range */

#endif
