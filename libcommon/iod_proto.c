/* Validation of iod's ring entries (libcommon/iod_proto.h). */
#include <fcntl.h>
#include <linux/magic.h>
#include <stddef.h>
#include <string.h>

#include "libcommon/iod_proto.h"

static const char *const op_names[IOD_OP_MAX_] = {
    [IOD_OP_OPEN] = "open",	    [IOD_OP_STAT] = "stat",
    [IOD_OP_ACCESS] = "access",	    [IOD_OP_READLINK] = "readlink",
    [IOD_OP_MKDIR] = "mkdir",	    [IOD_OP_MKNOD] = "mknod",
    [IOD_OP_UNLINK] = "unlink",	    [IOD_OP_RENAME] = "rename",
    [IOD_OP_LINK] = "link",	    [IOD_OP_SYMLINK] = "symlink",
    [IOD_OP_CHMOD] = "chmod",	    [IOD_OP_CHOWN] = "chown",
    [IOD_OP_UTIMENS] = "utimens",   [IOD_OP_TRUNCATE] = "truncate",
    [IOD_OP_CHDIR] = "chdir",	    [IOD_OP_STATFS] = "statfs",
    [IOD_OP_GETXATTR] = "getxattr", [IOD_OP_LISTXATTR] = "listxattr",
    [IOD_OP_FILE_ADD] = "file_add", [IOD_OP_FILE_DROP] = "file_drop",
    [IOD_OP_READ] = "read",	    [IOD_OP_WRITE] = "write",
    [IOD_OP_FSYNC] = "fsync",
};

const char *iod_op_name(unsigned op)
{
	return op > 0 && op < IOD_OP_MAX_ && op_names[op] ? op_names[op] : "?";
}

static bool has_two_paths(unsigned op)
{
	return op == IOD_OP_RENAME || op == IOD_OP_LINK || op == IOD_OP_SYMLINK ||
	       op == IOD_OP_GETXATTR;
}

/* A string of exactly len bytes whose last (and only last) byte is NUL. */
static bool one_string(const char *s, uint32_t len)
{
	return len > 0 && s[len - 1] == '\0' && memchr(s, '\0', len) == s + len - 1;
}

bool iod_op_cacheable(unsigned op)
{
	return op == IOD_OP_STAT || op == IOD_OP_ACCESS || op == IOD_OP_OPEN;
}

bool iod_op_on_handle(unsigned op)
{
	return op >= IOD_OP_FILE_ADD && op <= IOD_OP_FSYNC;
}

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
#ifndef F2FS_SUPER_MAGIC
#define F2FS_SUPER_MAGIC 0xF2F52010
#endif

bool iod_fs_offloadable(long f_type)
{
	switch ((unsigned long)f_type & 0xffffffffu) {
	case TMPFS_MAGIC:
	case RAMFS_MAGIC:
	case OVERLAYFS_SUPER_MAGIC:
	case XFS_SUPER_MAGIC:
	case EXT4_SUPER_MAGIC: /* ext2, ext3 too */
	case BTRFS_SUPER_MAGIC:
	case F2FS_SUPER_MAGIC:
		return true;
	}
	return false;
}

bool iod_req_valid(const void *entry, void *ctx)
{
	const struct iod_req *r = entry;
	uint32_t total;

	(void)ctx;
	if (r->hdr.opcode == 0 || r->hdr.opcode >= IOD_OP_MAX_ ||
	    (r->hdr.flags & ~(IOD_REQ_FD | IOD_REQ_CACHE)))
		return false;
	if ((r->hdr.flags & IOD_REQ_CACHE) && !iod_op_cacheable(r->hdr.opcode))
		return false;
	if ((r->hdr.flags & IOD_REQ_FD) &&
	    !(r->hdr.opcode == IOD_OP_FILE_ADD ||
	      (r->hdr.opcode == IOD_OP_LINK && (r->at_flags & AT_SYMLINK_FOLLOW))))
		return false;
	if (r->hdr.opcode == IOD_OP_FILE_ADD && !(r->hdr.flags & IOD_REQ_FD))
		return false;
	if (iod_op_on_handle(r->hdr.opcode)) {
		if (r->arg0 >= IOD_FILES_MAX)
			return false;
		if ((r->hdr.opcode == IOD_OP_READ || r->hdr.opcode == IOD_OP_WRITE) &&
		    (r->slot >= IOD_DATA_SLOTS || r->arg2 > IOD_DATA_SLOT_SIZE ||
		     (r->arg1 != IOD_OFFSET_CURRENT && r->arg1 > (uint64_t)INT64_MAX)))
			return false;
		if (r->hdr.opcode == IOD_OP_FSYNC && (r->flags & ~IOD_FSYNC_DATA))
			return false;
	}
	if (r->creds.ngroups > IOD_GROUPS_MAX)
		return false;
	if (r->path_len > IOD_PATHS_MAX || r->path2_len > IOD_PATHS_MAX)
		return false;
	total = r->path_len + r->path2_len;
	if (total > IOD_PATHS_MAX ||
	    r->hdr.len != (uint32_t)(offsetof(struct iod_req, paths) - sizeof(r->hdr)) + total)
		return false;
	if (!one_string(r->paths, r->path_len))
		return false;
	if (has_two_paths(r->hdr.opcode) != (r->path2_len > 0))
		return false;
	if (r->path2_len && !one_string(r->paths + r->path_len, r->path2_len))
		return false;
	return true;
}

const char *iod_req_path2(const struct iod_req *r)
{
	return r->path2_len ? r->paths + r->path_len : NULL;
}

bool iod_resp_valid(const void *entry, void *ctx)
{
	const struct iod_resp *r = entry;

	(void)ctx;
	if (r->hdr.opcode == 0 || r->hdr.opcode >= IOD_OP_MAX_)
		return false;
	if (r->hdr.flags & ~(IOD_RESP_FD | IOD_RESP_CACHEABLE))
		return false;
	/* Only answers without an fd: a stat, an access, a failed open. */
	if ((r->hdr.flags & IOD_RESP_CACHEABLE) &&
	    (!iod_op_cacheable(r->hdr.opcode) || (r->hdr.flags & IOD_RESP_FD) ||
	     (r->hdr.opcode == IOD_OP_OPEN && r->res >= 0)))
		return false;
	if (r->data_len > IOD_RESP_DATA_MAX ||
	    r->hdr.len !=
		(uint32_t)(offsetof(struct iod_resp, data) - sizeof(r->hdr)) + r->data_len)
		return false;
	/* An errno is 1..4095; a result with data is no bigger than it. */
	if (r->res < -4095 ||
	    (r->res > 0 && r->data_len && (uint64_t)r->res > r->data_len &&
	     r->hdr.opcode != IOD_OP_GETXATTR && r->hdr.opcode != IOD_OP_LISTXATTR))
		return false;
	if ((r->hdr.flags & IOD_RESP_FD) && (r->res != 0 || r->hdr.opcode != IOD_OP_OPEN))
		return false;
	if ((r->hdr.opcode == IOD_OP_READ || r->hdr.opcode == IOD_OP_WRITE) &&
	    r->res > (int64_t)IOD_DATA_SLOT_SIZE)
		return false;
	return true;
}
