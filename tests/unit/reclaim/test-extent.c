/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reclaim_next_data_extent() on a real sparse file (holes at the start, in the
 * middle and at the end, data up to the end of a second file): every extent
 * found, clamped to the limit, from inside an extent, none in a hole or past
 * the end.  Then where the file system cannot tell: a pipe (ESPIPE), and
 * lseek64 faked at link time (-Wl,--wrap=lseek64, see test-extent.ldflags) to
 * fail SEEK_DATA or SEEK_HOLE, to answer a hole at the data, or data before
 * the offset asked: the rest up to the limit is then data.  Last, rewrites
 * (sparsify_run() of a plain file with a partial last block, reclaim_run() of
 * a store of 8 MiB chunks) while SEEK_HOLE answers a hole at the data: every
 * byte is still copied (the raw bytes hash the same).  Files go to
 * $COWPUNCH_TEST_DIR (default /tmp).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "reclaim/extent.h"
#include "reclaim/sparsify.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/* Extents are laid out in units of 64 KiB: whole blocks on any file system the tests take. */
#define U	 (64u << 10)
#define SENTINEL 0x5a5a5a5a5a5a5a5aULL

/*
 * The fake: SEEK_DATA and SEEK_HOLE of descriptor fake.fd only (-1: none) fail
 * with data_errno / hole_errno when set, SEEK_HOLE answers its own offset (a
 * hole at the data) with hole_at_data, SEEK_DATA answers one byte before the
 * offset asked with data_before.  Every other call goes to the kernel.
 */
static struct {
	int fd;
	int data_errno, hole_errno;
	bool hole_at_data, data_before;
	unsigned calls; /* SEEK_DATA and SEEK_HOLE calls on fd */
} fake = {.fd = -1};

static void fake_off(void)
{
	memset(&fake, 0, sizeof(fake));
	fake.fd = -1;
}

off_t __real_lseek64(int fd, off_t off, int whence);
off_t __wrap_lseek64(int fd, off_t off, int whence);

off_t __wrap_lseek64(int fd, off_t off, int whence)
{
	if (fd != fake.fd || (whence != SEEK_DATA && whence != SEEK_HOLE))
		return __real_lseek64(fd, off, whence);
	fake.calls++;
	if (whence == SEEK_DATA && fake.data_errno) {
		errno = fake.data_errno;
		return -1;
	}
	if (whence == SEEK_HOLE && fake.hole_errno) {
		errno = fake.hole_errno;
		return -1;
	}
	if (whence == SEEK_HOLE && fake.hole_at_data)
		return off;
	if (whence == SEEK_DATA && fake.data_before && off > 0)
		return off - 1;
	return __real_lseek64(fd, off, whence);
}

/* A new file in dir: data at the units marked 'D' of layout, holes at '.', size units * U. */
static int make_file(const char *layout, uint64_t tail)
{
	_cleanup_free_ char *buf = malloc(U);
	size_t n = strlen(layout);
	int fd = rt_tmpfile(dir);

	assert_true(fd >= 0);
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		if (layout[i] != 'D')
			continue;
		storegen_pattern(buf, U, i + 1);
		assert_int_equal(pwrite(fd, buf, U, (off_t)(i * U)), (ssize_t)U);
	}
	if (tail) {
		memset(buf, 0x77, tail);
		assert_int_equal(pwrite(fd, buf, tail, (off_t)(n * U)), (ssize_t)tail);
	}
	assert_int_equal(ftruncate(fd, (off_t)(n * U + tail)), 0);
	assert_int_equal(fsync(fd), 0);
	return fd;
}

/* Asserts the extent found from pos below limit is [data, hole). */
static void expect_extent(int fd, uint64_t pos, uint64_t limit, uint64_t data, uint64_t hole)
{
	uint64_t d = SENTINEL, h = SENTINEL;
	int r = reclaim_next_data_extent(fd, pos, limit, &d, &h);

	if (r != 1 || d != data || h != hole)
		fail_msg("from %llu below %llu: %d [%llu, %llu), expected 1 [%llu, %llu)",
			 (unsigned long long)pos, (unsigned long long)limit, r,
			 (unsigned long long)d, (unsigned long long)h, (unsigned long long)data,
			 (unsigned long long)hole);
}

/* Asserts no data is found from pos below limit, the out-parameters untouched. */
static void expect_none(int fd, uint64_t pos, uint64_t limit)
{
	uint64_t d = SENTINEL, h = SENTINEL;
	int r = reclaim_next_data_extent(fd, pos, limit, &d, &h);

	if (r != 0 || d != SENTINEL || h != SENTINEL)
		fail_msg("from %llu below %llu: %d [%llu, %llu), expected 0, nothing written",
			 (unsigned long long)pos, (unsigned long long)limit, r,
			 (unsigned long long)d, (unsigned long long)h);
}

/* Skips the case when the file system reports no hole at the start of fd (no SEEK_HOLE). */
static void need_holes(int fd)
{
	off_t d = lseek(fd, 0, SEEK_DATA);

	if (d == 0)
		rt_skip("%s: the file system reports no holes (SEEK_DATA at a hole gives 0)", dir);
}

static void test_sparse(void **state)
{
	/* Holes at the start, in the middle (two units) and at the end. */
	int fd = make_file(".DD..D..", 0);
	uint64_t pos = 0, d, h, n = 0;

	(void)state;
	need_holes(fd);
	/* The walk, as the callers do it. */
	while (reclaim_next_data_extent(fd, pos, 8 * U, &d, &h) == 1) {
		assert_true(n < 2);
		assert_int_equal(d, n ? 5 * U : 1 * U);
		assert_int_equal(h, n ? 6 * U : 3 * U);
		pos = h;
		n++;
	}
	assert_int_equal(n, 2);

	expect_extent(fd, 0, 8 * U, U, 3 * U);
	/* From inside an extent; across the middle hole. */
	expect_extent(fd, U + 100, 8 * U, U + 100, 3 * U);
	expect_extent(fd, 3 * U, 8 * U, 5 * U, 6 * U);
	/* The limit inside an extent; one byte. */
	expect_extent(fd, 0, 2 * U, U, 2 * U);
	expect_extent(fd, 3 * U, 5 * U + 10, 5 * U, 5 * U + 10);
	expect_extent(fd, 2 * U, 2 * U + 1, 2 * U, 2 * U + 1);
	/* The holes at the start, in the middle, at the end; past the end (ENXIO). */
	expect_none(fd, 0, U);
	expect_none(fd, 3 * U, 5 * U);
	expect_none(fd, 6 * U, 8 * U);
	expect_none(fd, 9 * U, 10 * U);
	/* pos at the limit, past it. */
	expect_none(fd, 2 * U, 2 * U);
	expect_none(fd, 3 * U, 2 * U);
	close(fd);

	/* Data up to the end of the file, which ends inside a block: the extent ends there. */
	fd = make_file("D.", 100);
	expect_extent(fd, 0, 8 * U, 0, U);
	expect_extent(fd, U, 8 * U, 2 * U, 2 * U + 100);
	expect_none(fd, 2 * U + 100, 8 * U);
	close(fd);
}

/* lseek on a pipe fails with ESPIPE: the rest is data. */
static void test_pipe(void **state)
{
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	expect_extent(p[0], 0, U, 0, U);
	expect_extent(p[0], 100, 3 * U, 100, 3 * U);
	expect_none(p[0], U, U);
	close(p[0]);
	close(p[1]);
}

/* Whatever the fake answers wrong, the rest up to the limit is data: never a byte skipped. */
static void test_cannot_tell(void **state)
{
	int fd = make_file(".DD..D..", 0);

	(void)state;
	need_holes(fd);

	fake_off();
	fake.fd = fd;
	fake.data_errno = EIO;
	expect_extent(fd, 0, 8 * U, 0, 8 * U);
	expect_extent(fd, 3 * U, 4 * U, 3 * U, 4 * U); /* in a hole: still data */
	assert_int_equal(fake.calls, 2);

	/* SEEK_HOLE failing after SEEK_DATA found data: from pos on, the hole before it too. */
	fake_off();
	fake.fd = fd;
	fake.hole_errno = EOPNOTSUPP;
	expect_extent(fd, 0, 8 * U, 0, 8 * U);
	expect_extent(fd, 3 * U, 6 * U, 3 * U, 6 * U);
	assert_int_equal(fake.calls, 4);

	/* A hole at the data: from the data on, up to the limit. */
	fake_off();
	fake.fd = fd;
	fake.hole_at_data = true;
	expect_extent(fd, 0, 8 * U, U, 8 * U);
	expect_extent(fd, 3 * U, 7 * U, 5 * U, 7 * U);
	expect_none(fd, 6 * U, 8 * U); /* SEEK_DATA still says none: ENXIO is trusted */

	/* Data before the offset asked: from pos, up to the limit. */
	fake_off();
	fake.fd = fd;
	fake.data_before = true;
	expect_extent(fd, 3 * U, 8 * U, 3 * U, 8 * U);
	fake_off();
	close(fd);
}

/*
 * Rewrites the file fd is open on (at path) while SEEK_HOLE answers a hole at
 * the data, with sparsify_run() (plain) or reclaim_run() (a store); closes fd.
 * Then path must name a new file holding the same bytes.  Returns the chunks
 * reclaimed as zeros.
 */
static uint64_t rewrite_blind(int fd, const char *path, bool plain)
{
	struct reclaim_opts o = {.strategy = RECLAIM_STRATEGY_REWRITE, .path = path};
	struct sparsify_report srep;
	struct reclaim_report rep;
	const char *why;
	uint8_t sha[32];
	struct stat st0;

	assert_int_equal(fsync(fd), 0);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	assert_int_equal(fstat(fd, &st0), 0);
	fake_off();
	fake.fd = fd;
	fake.hole_at_data = true;
	if (plain) {
		assert_int_equal(sparsify_run(fd, &o, &srep), 0);
		rep = srep.scan;
	} else {
		assert_int_equal(rt_reclaim(fd, &o, &rep), 0);
	}
	assert_true(fake.calls > 0);
	fake_off();
	close(fd);
	assert_int_equal(rep.strategy, RECLAIM_STRATEGY_REWRITE);
	why = rt_rewritten(path, st0.st_ino, st0.st_size, sha);
	if (why)
		fail_msg("%s", why);
	unlink(path);
	return rep.zero_chunks;
}

/* A plain file with a partial last block: the rewrite's tail copy takes it whole. */
static void test_rewrite_tail(void **state)
{
	_cleanup_free_ char *buf = calloc(1, U);
	char path[512];
	int fd = rt_create(dir, "extent-plain", 0600, path, sizeof(path));

	(void)state;
	assert_true(fd >= 0);
	assert_non_null(buf);
	storegen_pattern(buf, U, 1);
	assert_int_equal(pwrite(fd, buf, U, 0), (ssize_t)U);
	memset(buf, 0, U);
	assert_int_equal(pwrite(fd, buf, U, 2 * U), (ssize_t)U);
	memset(buf, 0x77, 100);
	assert_int_equal(pwrite(fd, buf, 100, 4 * U), 100);
	/* The holes read as zeros too, taken for data. */
	assert_true(rewrite_blind(fd, path, true) >= U / RT_BLOCK);
}

/* A store of 8 MiB chunks (larger than the copy's buffer): a zero chunk, then data. */
static void test_rewrite_big_chunks(void **state)
{
	_cleanup_free_ char *buf = NULL;
	struct storegen *sg;
	char path[512];
	uint64_t nc;
	int fd = rt_create(dir, "extent-big", 0600, path, sizeof(path));

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 16384, false, &sg), 0);
	buf = calloc(1, sg->chunk_bytes);
	assert_non_null(buf);
	assert_int_equal(storegen_add_buf(sg, 0, buf, &nc), 0);
	storegen_pattern(buf, sg->chunk_bytes, 7);
	assert_int_equal(storegen_add_buf(sg, 1, buf, &nc), 0);
	storegen_free(sg);
	assert_int_equal(rewrite_blind(fd, path, false), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sparse),
		cmocka_unit_test(test_pipe),
		cmocka_unit_test(test_cannot_tell),
		cmocka_unit_test(test_rewrite_tail),
		cmocka_unit_test(test_rewrite_big_chunks),
	};

	dir = rt_test_dir("test-extent");
	if (!dir)
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
