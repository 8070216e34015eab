/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * loopdev_find_backing() against real loop devices: attach a temporary file
 * with losetup(8), find it, detach it, no longer find it.  Skips (77) when not
 * root or the kernel has no loop support.
 */
#include <errno.h>
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

#include "dmops/loopscan.h"

static char file_path[] = "/tmp/cowpunch-loopscan-XXXXXX";
static char other_path[] = "/tmp/cowpunch-loopscan-other-XXXXXX";
static char loop_dev[64];

static int setup(void **state)
{
	int fd = mkstemp(file_path), fd2 = mkstemp(other_path);

	if (fd < 0 || fd2 < 0 || ftruncate(fd, 1 << 20) < 0 || ftruncate(fd2, 1 << 20) < 0)
		return -1;
	close(fd);
	close(fd2);
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	if (loop_dev[0]) {
		snprintf(cmd, sizeof(cmd), "losetup -d %s", loop_dev);
		if (system(cmd) != 0)
			fprintf(stderr, "could not detach %s\n", loop_dev);
	}
	unlink(file_path);
	unlink(other_path);
	return 0;
}

static int find(const char *path, char *name, size_t len)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return loopdev_find_backing(st.st_dev, st.st_ino, name, len);
}

static void test_attach_find_detach(void **state)
{
	char cmd[256], name[64] = "";
	FILE *p;

	assert_int_equal(find(file_path, name, sizeof(name)), 0);

	snprintf(cmd, sizeof(cmd), "losetup --find --show %s", file_path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(loop_dev, sizeof(loop_dev), p));
	assert_int_equal(pclose(p), 0);
	loop_dev[strcspn(loop_dev, "\n")] = 0;

	assert_int_equal(find(file_path, name, sizeof(name)), 1);
	assert_string_equal(name, loop_dev);
	/* Same file system, other inode: not attached. */
	assert_int_equal(find(other_path, name, sizeof(name)), 0);
	/* A NULL name is allowed. */
	assert_int_equal(find(file_path, NULL, 0), 1);

	snprintf(cmd, sizeof(cmd), "losetup -d %s", loop_dev);
	assert_int_equal(system(cmd), 0);
	loop_dev[0] = 0;
	assert_int_equal(find(file_path, name, sizeof(name)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_find_detach),
	};

	if (geteuid() != 0) {
		printf("SKIP: test-loopscan needs root to attach loop devices\n");
		return 77;
	}
	if (access("/dev/loop-control", F_OK) != 0 || access("/sys/block", F_OK) != 0 ||
	    system("command -v losetup >/dev/null") != 0) {
		printf("SKIP: test-loopscan: no loop support (/dev/loop-control) or no losetup\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
