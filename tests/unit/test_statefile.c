/* statefile.h: atomic replace, bounded reads, hostile files, sweeping. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/statefile.h"

static char dir[] = "/tmp/quiver-test-state-XXXXXX";
static int dfd = -1;

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];

	close(dfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int count_entries(void)
{
	cleanup_dir DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	return n;
}

static void test_write_read_replace(void **state)
{
	(void)state;
	struct qerr err = {0};
	cleanup_free char *data = NULL;
	size_t len = 0;
	struct stat st;

	assert_int_equal(statefile_write(dfd, "state.json", "{\"a\":1}", 7, &err), 0);
	assert_int_equal(statefile_read(dfd, "state.json", 1024, &data, &len, &err), 0);
	assert_int_equal(len, 7);
	assert_string_equal(data, "{\"a\":1}");
	free(steal_ptr(data));

	assert_int_equal(statefile_write(dfd, "state.json", "new", 3, &err), 0);
	assert_int_equal(statefile_read(dfd, "state.json", 1024, &data, &len, &err), 0);
	assert_string_equal(data, "new");
	assert_int_equal(fstatat(dfd, "state.json", &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* No temporary file is left behind. */
	assert_int_equal(count_entries(), 1);
	free(steal_ptr(data));

	/* Empty contents are a valid state. */
	assert_int_equal(statefile_write(dfd, "state.json", NULL, 0, &err), 0);
	assert_int_equal(statefile_read(dfd, "state.json", 0, &data, &len, &err), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(steal_ptr(data));

	assert_int_equal(statefile_write_mode(dfd, "pub", "x", 1, 0644, &err), 0);
	assert_int_equal(fstatat(dfd, "pub", &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(statefile_remove(dfd, "pub", &err), 0);
	assert_int_equal(statefile_remove(dfd, "state.json", &err), 0);
	assert_int_equal(statefile_remove(dfd, "state.json", &err), 0); /* already gone */
	assert_int_equal(count_entries(), 0);
}

static void test_paths(void **state)
{
	(void)state;
	struct qerr err = {0};
	cleanup_free char *data = NULL;
	char path[256], sub[256];

	/* AT_FDCWD with an absolute path, and a name with a directory part. */
	snprintf(path, sizeof(path), "%s/abs", dir);
	assert_int_equal(statefile_write(AT_FDCWD, path, "1", 1, &err), 0);
	assert_int_equal(statefile_read(AT_FDCWD, path, 8, &data, NULL, &err), 0);
	assert_string_equal(data, "1");
	assert_int_equal(statefile_remove(AT_FDCWD, path, &err), 0);

	snprintf(sub, sizeof(sub), "%s/sb1", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(statefile_write(dfd, "sb1/state", "2", 1, &err), 0);
	free(steal_ptr(data));
	assert_int_equal(statefile_read(dfd, "sb1/state", 8, &data, NULL, &err), 0);
	assert_string_equal(data, "2");
	assert_int_equal(statefile_remove(dfd, "sb1/state", &err), 0);
	assert_int_equal(rmdir(sub), 0);

	/* Names that are not files, and a missing directory. */
	assert_int_equal(statefile_write(dfd, "", "x", 1, &err), -EINVAL);
	assert_int_equal(statefile_write(dfd, "a/", "x", 1, &err), -EINVAL);
	assert_int_equal(statefile_write(dfd, "..", "x", 1, &err), -EINVAL);
	assert_int_equal(statefile_write(dfd, "nodir/x", "x", 1, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nodir/x"));
	assert_int_equal(count_entries(), 0);
}

static void test_read_bounds(void **state)
{
	(void)state;
	struct qerr err = {0};
	char *data = (char *)0x1; /* must stay untouched on failure */
	size_t len = 99;
	char buf[100];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(statefile_write(dfd, "big", buf, sizeof(buf), &err), 0);
	assert_int_equal(statefile_read(dfd, "big", 99, &data, &len, &err), -EFBIG);
	assert_ptr_equal(data, (char *)0x1);
	assert_int_equal(len, 99);
	assert_int_equal(statefile_read(dfd, "missing", 99, &data, &len, &err), -ENOENT);
	assert_int_equal(statefile_read(dfd, "big", 100, &data, &len, &err), 0);
	assert_int_equal(len, 100);
	free(data);
	assert_int_equal(statefile_remove(dfd, "big", &err), 0);
}

static void test_hostile_files(void **state)
{
	(void)state;
	struct qerr err = {0};
	char *data = NULL;

	/* A symlink planted in place of a state file is not followed, for
	 * reading; writing replaces the link itself, never its target. */
	assert_int_equal(symlinkat("/etc/passwd", dfd, "link"), 0);
	assert_int_equal(statefile_read(dfd, "link", 1 << 20, &data, NULL, &err), -ELOOP);
	assert_int_equal(statefile_write(dfd, "link", "safe", 4, &err), 0);
	assert_int_equal(statefile_read(dfd, "link", 16, &data, NULL, &err), 0);
	assert_string_equal(data, "safe");
	free(data);
	assert_int_equal(statefile_remove(dfd, "link", &err), 0);

	/* A FIFO would block a naive reader forever. */
	assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
	assert_int_equal(statefile_read(dfd, "fifo", 16, &data, NULL, &err), -EINVAL);
	assert_int_equal(unlinkat(dfd, "fifo", 0), 0);
	/* A directory is not a state file either. */
	assert_int_equal(mkdirat(dfd, "d", 0700), 0);
	assert_true(statefile_read(dfd, "d", 16, &data, NULL, &err) < 0);
	assert_int_equal(unlinkat(dfd, "d", AT_REMOVEDIR), 0);
}

static void test_sweep(void **state)
{
	(void)state;
	struct qerr err = {0};
	int fd;

	/* What a crash between create and rename leaves behind. */
	fd = openat(dfd, ".state.json.tmp.ab12cd", O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = openat(dfd, ".keep.tmp.toolongsuffix", O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(statefile_write(dfd, "state.json", "x", 1, &err), 0);
	assert_int_equal(statefile_sweep(dfd, ".", &err), 1);
	assert_int_equal(faccessat(dfd, ".state.json.tmp.ab12cd", F_OK, 0), -1);
	assert_int_equal(faccessat(dfd, "state.json", F_OK, 0), 0);
	assert_int_equal(faccessat(dfd, ".keep.tmp.toolongsuffix", F_OK, 0), 0);
	assert_int_equal(statefile_sweep(dfd, ".", &err), 0);
	assert_int_equal(statefile_sweep(dfd, "nonexistent", &err), -ENOENT);
	unlinkat(dfd, ".keep.tmp.toolongsuffix", 0);
	unlinkat(dfd, "state.json", 0);
}

/* A name with no room for the temporary file's prefix and suffix. */
static void test_name_too_long(void **state)
{
	(void)state;
	struct qerr err = {0};
	char name[256];

	memset(name, 'n', 255);
	name[255] = '\0';
	assert_int_equal(statefile_write(dfd, name, "x", 1, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "temporary"));
	assert_int_equal(count_entries(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_read_replace),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_read_bounds),
	    cmocka_unit_test(test_hostile_files),
	    cmocka_unit_test(test_sweep),
	    cmocka_unit_test(test_name_too_long),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
