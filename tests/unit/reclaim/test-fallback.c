/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Engine selection when io_uring or libaio is unavailable, faked at link time
 * (-Wl,--wrap, see test-fallback.ldflags): io_uring_queue_init_params fails the
 * way kernel.io_uring_disabled or a seccomp profile makes it fail (EPERM), or
 * ENOSYS/ENOMEM; io_setup fails with ENOSYS or EAGAIN.  `auto` must fall back
 * and still reclaim; a forced engine must fail with -ENOTSUP and write nothing.
 */
#include <errno.h>
#include <libaio.h>
#include <liburing.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/reclaim/rtest.h"

int __real_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p);
int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p);
struct io_uring_probe *__real_io_uring_get_probe_ring(struct io_uring *ring);
struct io_uring_probe *__wrap_io_uring_get_probe_ring(struct io_uring *ring);
int __real_io_setup(int maxevents, io_context_t *ctxp);
int __wrap_io_setup(int maxevents, io_context_t *ctxp);

static int uring_fail, aio_fail; /* -errno to fake, 0 = call the real one */
static bool no_fallocate_op;	 /* the probe says IORING_OP_FALLOCATE is missing (Linux < 5.6) */
static unsigned uring_calls, aio_calls;
static const char *dir;

int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p)
{
	uring_calls++;
	return uring_fail ? uring_fail : __real_io_uring_queue_init_params(entries, ring, p);
}

struct io_uring_probe *__wrap_io_uring_get_probe_ring(struct io_uring *ring)
{
	struct io_uring_probe *p = __real_io_uring_get_probe_ring(ring);

	if (p && no_fallocate_op && p->ops_len > IORING_OP_FALLOCATE)
		p->ops[IORING_OP_FALLOCATE].flags &= (uint16_t)~IO_URING_OP_SUPPORTED;
	return p;
}

int __wrap_io_setup(int maxevents, io_context_t *ctxp)
{
	aio_calls++;
	return aio_fail ? aio_fail : __real_io_setup(maxevents, ctxp);
}

/* A small store: 200 exceptions, every other one all zeros. */
static int make_store(void)
{
	uint8_t data[4096];
	struct storegen *sg;
	int fd = rt_tmpfile(dir);

	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 8, false, &sg), 0);
	storegen_pattern(data, sizeof(data), 7);
	for (uint64_t i = 0; i < 200; i++) {
		static const uint8_t zero[4096];

		assert_int_equal(storegen_add_buf(sg, i, i & 1 ? zero : data, NULL), 0);
	}
	storegen_free(sg);
	assert_int_equal(fsync(fd), 0);
	/* Out of the page cache, so that the engine under test does the reads. */
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	return fd;
}

static int run(enum reclaim_engine_kind kind, struct reclaim_report *rep, int64_t *ret_before,
	       int64_t *ret_after)
{
	struct reclaim_opts opts = {.engine = kind};
	struct snapstore_info info;
	struct snapstore_error err;
	int fd = make_store(), r;

	*ret_before = storegen_allocated(fd);
	assert_int_equal(snapstore_load(fd, &info, NULL, NULL, &err), 0);
	uring_calls = aio_calls = 0;
	r = reclaim_run(fd, &info, &opts, rep);
	snapstore_info_free(&info);
	*ret_after = storegen_allocated(fd);
	close(fd);
	return r;
}

static void expect_engine(enum reclaim_engine_kind want)
{
	struct reclaim_report rep;
	int64_t before, after;

	assert_int_equal(run(RECLAIM_ENGINE_AUTO, &rep, &before, &after), 0);
	assert_int_equal(rep.engine, want);
	assert_int_equal(rep.zero_chunks, 100);
	assert_int_equal(rep.cached_bytes, 0);
	assert_true(after < before);
	assert_int_equal(rep.reclaimed_bytes, before - after);
}

static void expect_notsup(enum reclaim_engine_kind kind)
{
	struct reclaim_report rep;
	int64_t before, after;

	assert_int_equal(run(kind, &rep, &before, &after), -ENOTSUP);
	assert_int_equal(before, after);
}

/* Clears the AIO fake; skips the test when AIO is really unavailable on this host. */
static void real_aio_or_skip(void)
{
	io_context_t ctx = 0;
	int r;

	aio_fail = 0;
	r = __real_io_setup(1, &ctx);
	if (r < 0) /* these cases fall back to the real AIO engine */
		rt_skip("engine aio unavailable: io_setup: %s", strerror(-r));
	io_destroy(ctx);
}

static void test_uring_eperm_falls_back_to_aio(void **state)
{
	real_aio_or_skip();
	uring_fail = -EPERM;
	expect_engine(RECLAIM_ENGINE_AIO);
	assert_int_equal(uring_calls, 1);
	expect_notsup(RECLAIM_ENGINE_URING);
}

static void test_uring_enosys_enomem(void **state)
{
	real_aio_or_skip();
	uring_fail = -ENOSYS;
	expect_engine(RECLAIM_ENGINE_AIO);
	uring_fail = -ENOMEM;
	expect_engine(RECLAIM_ENGINE_AIO);
}

static void test_both_unavailable_falls_back_to_sync(void **state)
{
	uring_fail = -EPERM;
	aio_fail = -ENOSYS;
	expect_engine(RECLAIM_ENGINE_SYNC);
	assert_int_equal(uring_calls, 1);
	assert_int_equal(aio_calls, 1);
	aio_fail = -EAGAIN; /* fs.aio-max-nr used up */
	expect_engine(RECLAIM_ENGINE_SYNC);
	expect_notsup(RECLAIM_ENGINE_AIO);
	expect_notsup(RECLAIM_ENGINE_URING);
}

/* Clears the fakes; skips the test when io_uring is really unavailable on this host. */
static void real_uring_or_skip(void)
{
	struct io_uring ring;
	int r;

	uring_fail = aio_fail = 0;
	r = __real_io_uring_queue_init_params(4, &ring, &(struct io_uring_params){0});
	if (r < 0) /* the fallback itself is covered by the faked cases above */
		rt_skip("engine uring unavailable: io_uring_queue_init_params: %s", strerror(-r));
	io_uring_queue_exit(&ring);
}

static void test_opcode_missing(void **state)
{
	real_uring_or_skip();
	real_aio_or_skip();
	no_fallocate_op = true;
	expect_engine(RECLAIM_ENGINE_AIO);
	expect_notsup(RECLAIM_ENGINE_URING);
	no_fallocate_op = false;
}

static void test_real_auto_prefers_uring(void **state)
{
	real_uring_or_skip();
	expect_engine(RECLAIM_ENGINE_URING);
	assert_int_equal(aio_calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uring_eperm_falls_back_to_aio),
		cmocka_unit_test(test_uring_enosys_enomem),
		cmocka_unit_test(test_both_unavailable_falls_back_to_sync),
		cmocka_unit_test(test_opcode_missing),
		cmocka_unit_test(test_real_auto_prefers_uring),
	};

	dir = rt_test_dir("test-fallback");
	if (!dir)
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
