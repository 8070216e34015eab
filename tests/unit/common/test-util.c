/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

/*
 * pwrite(2) as util.c sees it (test-util.ldflags wraps pwrite64, its name
 * with a 64-bit off_t): the real one, or with fake_zero one that writes
 * nothing and returns 0, or with short_max one that writes at most that many
 * bytes a call.  A call past max_calls fails the test: the caller is looping.
 */
ssize_t __real_pwrite64(int fd, const void *buf, size_t count, off_t offset);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t count, off_t offset);

static bool fake_zero;
static size_t short_max;
static unsigned calls, max_calls = 1000;
static bool in_child; /* a forked child: _exit(3) rather than fail into cmocka */

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
	if (++calls > max_calls) {
		fake_zero = false;
		short_max = 0;
		if (in_child)
			_exit(3);
		fail_msg("pwrite called %u times for one util_pwrite_full(): it loops", calls);
	}
	if (fake_zero)
		return 0;
	return __real_pwrite64(fd, buf, short_max && count > short_max ? short_max : count, offset);
}

static int tmpfile_fd(void)
{
	char path[] = "/tmp/cowpunch-test-util-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void test_parse_size(void **state)
{
	uint64_t v;

	assert_int_equal(util_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util_parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util_parse_size("4KiB", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util_parse_size("10G", &v), 0);
	assert_int_equal(v, 10ULL << 30);
	assert_int_equal(util_parse_size("1.5GiB", &v), 0);
	assert_int_equal(v, 3ULL << 29);
	assert_int_equal(util_parse_size("", &v), -EINVAL);
	assert_int_equal(util_parse_size("-1", &v), -EINVAL);
	assert_int_equal(util_parse_size("12Q", &v), -EINVAL);
	assert_int_equal(util_parse_size("1.5", &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(util_parse_size("17000000P", &v), -ERANGE);
}

static void test_is_zero(void **state)
{
	size_t len = 1 << 20;
	unsigned char *buf = calloc(1, len);

	assert_non_null(buf);
	assert_true(util_is_zero(buf, len));
	assert_true(util_is_zero(buf, 0));
	assert_true(util_is_zero(buf, 7));
	/* A single non-zero byte anywhere must be found: head, middle, last. */
	size_t where[] = {0, 15, 16, 17, 4095, len / 2, len - 1};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		buf[where[i]] = 0x80;
		assert_false(util_is_zero(buf, len));
		buf[where[i]] = 0;
	}
	buf[3] = 1;
	assert_false(util_is_zero(buf, 7));
	free(buf);
}

static void test_format_bytes(void **state)
{
	char b[32];

	assert_string_equal(util_format_bytes(512, b, sizeof(b)), "512 B");
	assert_string_equal(util_format_bytes(1536, b, sizeof(b)), "1.50 KiB");
	assert_string_equal(util_format_bytes(3ULL << 30, b, sizeof(b)), "3.00 GiB");
}

/* A pwrite that writes nothing (and sets no error) is an I/O error, not a retry. */
static void test_pwrite_full_zero(void **state)
{
	char buf[100] = {1};
	int fd = tmpfile_fd();

	calls = 0;
	fake_zero = true;
	assert_int_equal(util_pwrite_full(fd, buf, sizeof(buf), 0), -EIO);
	fake_zero = false;
	assert_int_equal(calls, 1);
	close(fd);
}

/* Short writes are carried on from where they stopped; the bytes land in place. */
static void test_pwrite_full_short(void **state)
{
	char buf[100], back[100];
	int fd = tmpfile_fd();

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i + 1);
	calls = 0;
	short_max = 7;
	assert_int_equal(util_pwrite_full(fd, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
	short_max = 0;
	assert_int_equal(calls, (sizeof(buf) + 6) / 7);
	assert_int_equal(pread(fd, back, sizeof(back), 4096), (ssize_t)sizeof(back));
	assert_memory_equal(buf, back, sizeof(buf));
	close(fd);
}

/*
 * The real kernel: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) cuts a
 * write short at the limit, and the next call fails with EFBIG, which is
 * returned.  Runs in a child, so the limit does not outlive the test.
 */
static void test_pwrite_full_fsize_limit(void **state)
{
	char buf[8192] = {1};
	int fd = tmpfile_fd(), status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {4096 + 100, 4096 + 100};

		in_child = true;
		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(2);
		calls = 0;
		_exit(util_pwrite_full(fd, buf, sizeof(buf), 4096) == -EFBIG && calls == 2 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(lseek(fd, 0, SEEK_END), 4096 + 100);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_pwrite_full_zero),
		cmocka_unit_test(test_pwrite_full_short),
		cmocka_unit_test(test_pwrite_full_fsize_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
