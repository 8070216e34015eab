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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
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

/*
 * statx(2) is wrapped at link time (test-util.ldflags): statx_mode picks what
 * the "kernel" answers, so every branch of util_dio_alignment runs here.
 */
enum { STATX_REAL, STATX_ENOSYS, STATX_NO_DIOALIGN, STATX_ANSWER };
static int statx_mode = STATX_REAL;
static uint32_t statx_mem, statx_off;

int __real_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);
int __wrap_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);

int __wrap_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
	switch (statx_mode) {
	case STATX_ENOSYS:
		errno = ENOSYS;
		return -1;
	case STATX_NO_DIOALIGN:
		memset(buf, 0, sizeof(*buf));
		buf->stx_mask = STATX_BASIC_STATS;
		return 0;
	case STATX_ANSWER:
		memset(buf, 0, sizeof(*buf));
		buf->stx_mask = STATX_BASIC_STATS | 0x2000u;
		/* The kernel's offsets, independent of the header util.c was built with. */
		memcpy((char *)buf + 152, &statx_mem, 4);
		memcpy((char *)buf + 156, &statx_off, 4);
		return 0;
	}
	return __real_statx(dirfd, path, flags, mask, buf);
}

static void expect_dio(int fd, int want_r, uint32_t want_mem, uint32_t want_off)
{
	uint32_t mem = 77, off = 77;

	assert_int_equal(util_dio_alignment(fd, &mem, &off), want_r);
	assert_int_equal(mem, want_mem);
	assert_int_equal(off, want_off);
}

static void test_dio_alignment(void **state)
{
	char path[] = "/var/tmp/cowpunch-dio.XXXXXX";
	_cleanup_close_ int fd = mkstemp(path);
	_cleanup_close_ int dfd = -1;
	_cleanup_free_ void *buf = NULL;
	uint32_t mem = 0, off = 0;
	int r;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);

	/* What the "kernel" says, exactly as said; anything doubtful is the default. */
	statx_mode = STATX_ANSWER;
	statx_mem = 512;
	statx_off = 16384;
	expect_dio(fd, 1, 512, 16384);
	statx_mem = 4;
	statx_off = 512;
	expect_dio(fd, 1, 4, 512);
	statx_mem = 0; /* no direct I/O on this file: nothing written */
	statx_off = 0;
	expect_dio(fd, -EOPNOTSUPP, 77, 77);
	statx_mem = 512; /* not a power of two: not trusted */
	statx_off = 3000;
	expect_dio(fd, 0, UTIL_DIO_ALIGN_DEFAULT, UTIL_DIO_ALIGN_DEFAULT);
	statx_mode = STATX_NO_DIOALIGN; /* before Linux 6.1, or a file system that does not say */
	expect_dio(fd, 0, UTIL_DIO_ALIGN_DEFAULT, UTIL_DIO_ALIGN_DEFAULT);
	statx_mode = STATX_ENOSYS; /* no statx at all */
	expect_dio(fd, 0, UTIL_DIO_ALIGN_DEFAULT, UTIL_DIO_ALIGN_DEFAULT);

	/* The real kernel: a bad fd is an error; a file's answer must work for O_DIRECT. */
	statx_mode = STATX_REAL;
	expect_dio(-1, -EBADF, 77, 77);
	r = util_dio_alignment(fd, &mem, &off);
	assert_true(r == 0 || r == 1);
	print_message("%s: dio alignment %s: memory %u, offset %u\n", path,
		      r ? "from statx" : "default", mem, off);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0) {
		/* Only a file system without O_DIRECT may refuse it, and it must not claim one. */
		assert_int_equal(errno, EINVAL);
		assert_int_equal(r, 0);
		return;
	}
	assert_int_equal(posix_memalign(&buf, mem < sizeof(void *) ? sizeof(void *) : mem, off), 0);
	assert_int_equal(pread(dfd, buf, off, off), (ssize_t)off);
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

/*
 * fsync(2) as util.c sees it (test-util.ldflags wraps it): the real one, noting
 * the descriptor and the inode it syncs, or with fsync_errno set a failure.
 */
int __real_fsync(int fd);
int __wrap_fsync(int fd);

static struct {
	unsigned calls;
	int fd, err;
	struct stat st;
} fsyncs;

int __wrap_fsync(int fd)
{
	fsyncs.calls++;
	fsyncs.fd = fd;
	if (fstat(fd, &fsyncs.st) < 0)
		fail_msg("fsync of a descriptor fstat refuses: %s", strerror(errno));
	if (fsyncs.err) {
		errno = fsyncs.err;
		return -1;
	}
	return __real_fsync(fd);
}

/* Asserts util_open_dir_of(path) opens the directory want, read only. */
static void expect_dir_of(const char *path, const char *want)
{
	struct stat a, b;
	int fd = util_open_dir_of(path);

	if (fd < 0)
		fail_msg("util_open_dir_of(%s): %s", path, strerror(-fd));
	assert_int_equal(fstat(fd, &a), 0);
	assert_int_equal(stat(want, &b), 0);
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail_msg("util_open_dir_of(%s) opened another folder than %s", path, want);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

/*
 * The folder holding a path: dirname(3)'s (a bare name: ".", "/NAME": "/",
 * trailing slashes ignored), its errors as -errno; the fsync is of that folder,
 * its descriptor closed after, an fsync error returned.
 */
static void test_dir_of(void **state)
{
	char top[] = "/tmp/cowpunch-test-dir-XXXXXX", sub[64], file[80], p[128];
	struct stat st;
	int fd;

	assert_non_null(mkdtemp(top));
	snprintf(sub, sizeof(sub), "%s/sub", top);
	snprintf(file, sizeof(file), "%s/file", top);
	assert_int_equal(mkdir(sub, 0700), 0);
	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);

	snprintf(p, sizeof(p), "%s/name", sub);
	expect_dir_of(p, sub);
	snprintf(p, sizeof(p), "%s//name", sub);
	expect_dir_of(p, sub);
	snprintf(p, sizeof(p), "%s/", sub); /* a folder's own path: its parent */
	expect_dir_of(p, top);
	expect_dir_of(sub, top);
	expect_dir_of("/name", "/");
	expect_dir_of("name", ".");
	snprintf(p, sizeof(p), "%s/missing/name", top);
	assert_int_equal(util_open_dir_of(p), -ENOENT);
	snprintf(p, sizeof(p), "%s/name", file);
	assert_int_equal(util_open_dir_of(p), -ENOTDIR);

	memset(&fsyncs, 0, sizeof(fsyncs));
	snprintf(p, sizeof(p), "%s/name", sub);
	assert_int_equal(util_fsync_dir_of(p), 0);
	assert_int_equal(fsyncs.calls, 1);
	assert_int_equal(stat(sub, &st), 0);
	assert_true(fsyncs.st.st_ino == st.st_ino && fsyncs.st.st_dev == st.st_dev);
	assert_int_equal(fcntl(fsyncs.fd, F_GETFD), -1); /* closed */
	assert_int_equal(errno, EBADF);
	fsyncs.err = EIO;
	assert_int_equal(util_fsync_dir_of(p), -EIO);
	assert_int_equal(fsyncs.calls, 2);
	assert_int_equal(fcntl(fsyncs.fd, F_GETFD), -1);
	fsyncs.err = 0;
	snprintf(p, sizeof(p), "%s/missing/name", top);
	assert_int_equal(util_fsync_dir_of(p), -ENOENT);
	assert_int_equal(fsyncs.calls, 2);

	assert_int_equal(unlink(file), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(rmdir(top), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_dio_alignment),
		cmocka_unit_test(test_pwrite_full_zero),
		cmocka_unit_test(test_pwrite_full_short),
		cmocka_unit_test(test_pwrite_full_fsize_limit),
		cmocka_unit_test(test_dir_of),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
