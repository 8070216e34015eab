/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reclaim_opts' hooks for the agent: the cancel flag (stop) and the read
 * throttle, with every engine, reads from the device and from the page cache.
 * A cancelled run returns -ECANCELED having punched some whole zero chunks and
 * nothing else (raw bytes unchanged, the store still valid); the throttle sees
 * every byte read, exactly.  The throttle also watches the two ways of reading
 * (test_read_modes): through the page cache, punches run while reads are still
 * to come and nothing of the file is left cached; with direct_reads, nothing
 * is punched before the last read.  Files go to $COWPUNCH_TEST_DIR (default /tmp).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/mman.h>

#include "common/cleanup.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/* 4 KiB chunks; COW order: data, zero, data, zero, ...: every zero chunk is its own range. */
#define EXCEPTIONS 1600u
#define READ_BYTES 65536u

struct store {
	int fd;
	uint64_t file_size, zero_chunks;
	uint8_t *zero; /* byte c: COW chunk c was written as zeros */
	uint8_t sha[32];
	uint8_t *map;
};

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	struct store *st = opaque;

	if (old_chunk % 2) {
		st->zero[new_chunk] = 1;
		st->zero_chunks++;
		return STOREGEN_DATA;
	}
	storegen_pattern(buf, len, new_chunk);
	return STOREGEN_DATA;
}

static void build(struct store *st)
{
	struct storegen *sg;

	*st = (struct store){0};
	st->fd = rt_tmpfile(dir);
	assert_true(st->fd >= 0);
	st->zero = calloc(EXCEPTIONS * 2, 1);
	assert_non_null(st->zero);
	assert_int_equal(storegen_create(st->fd, 8, false, &sg), 0);
	for (uint64_t i = 0; i < EXCEPTIONS; i++)
		assert_int_equal(storegen_add(sg, i, fill, st, NULL), 0);
	st->file_size = sg->size;
	storegen_free(sg);
	assert_int_equal(fsync(st->fd), 0);
	assert_int_equal(rt_file_sha(st->fd, st->sha), 0);
	st->map = rt_alloc_map(st->fd, st->file_size);
	assert_non_null(st->map);
}

static void drop(struct store *st)
{
	free(st->zero);
	free(st->map);
	close(st->fd);
}

/*
 * The bytes are unchanged, and only zero chunks turned into holes.  Returns how
 * many did.
 */
static uint64_t check_punched(const struct store *st)
{
	uint8_t sha[32];
	uint8_t *map = rt_alloc_map(st->fd, st->file_size);
	uint64_t punched = 0;

	assert_non_null(map);
	assert_int_equal(rt_file_sha(st->fd, sha), 0);
	assert_memory_equal(sha, st->sha, 32);
	for (uint64_t c = 0; c < st->file_size / RT_BLOCK; c++) {
		if (map[c] == st->map[c])
			continue;
		if (!st->map[c] || !st->zero[c])
			fail_msg("chunk %llu changed allocation but was not a zero chunk",
				 (unsigned long long)c);
		punched++;
	}
	free(map);
	return punched;
}

/* The store still loads, with every exception. */
static void check_valid(const struct store *st)
{
	struct snapstore_info info;
	struct snapstore_error err;

	assert_int_equal(snapstore_load(st->fd, &info, NULL, NULL, &err), 0);
	assert_int_equal(info.exceptions, EXCEPTIONS);
	snapstore_info_free(&info);
}

struct counter {
	volatile sig_atomic_t stop;
	unsigned calls, stop_after; /* stop_after 0: never */
	int stop_with;		    /* 0: set stop; else return this */
	uint64_t bytes;
};

static int throttle(void *opaque, uint64_t bytes)
{
	struct counter *k = opaque;

	k->calls++;
	k->bytes += bytes;
	if (k->stop_after && k->calls == k->stop_after) {
		if (k->stop_with)
			return k->stop_with;
		k->stop = 1;
	}
	return 0;
}

static const enum reclaim_engine_kind kinds[] = {RECLAIM_ENGINE_URING, RECLAIM_ENGINE_AIO,
						 RECLAIM_ENGINE_SYNC};

/*
 * One run on a fresh store: engine kind, read from the device (direct: O_DIRECT,
 * cache dropped) or from the page cache, one read in flight so that each zero
 * chunk is handed to the coalescer (and every 256 ranges to the engine) as soon
 * as its read is judged.  Returns reclaim_run()'s result, or 1 when the engine
 * is unavailable here.
 */
static int run(struct store *st, enum reclaim_engine_kind kind, bool direct, struct counter *k,
	       struct reclaim_report *rep)
{
	struct reclaim_opts opts = {.engine = kind,
				    .read_bytes = READ_BYTES,
				    .queue_depth = 1,
				    .stop = &k->stop,
				    .throttle = throttle,
				    .throttle_opaque = k};
	_cleanup_close_ int fd = -1;
	int r;

	build(st);
	if (direct)
		assert_int_equal(posix_fadvise(st->fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	fd = rt_reopen(st->fd, true);
	assert_true(fd >= 0);
	r = rt_reclaim(fd, &opts, rep);
	return r == -ENOTSUP ? 1 : r;
}

/*
 * Stopped after 40 of about 100 reads, by the flag (stop_with 0) or by the
 * throttle's return: -ECANCELED, no read after that, some zero chunks
 * punched, not all.
 */
static void cancel_case(enum reclaim_engine_kind kind, bool direct, int stop_with)
{
	struct counter k = {.stop_after = 40, .stop_with = stop_with};
	struct reclaim_report rep;
	struct store st;
	uint64_t punched;
	int r = run(&st, kind, direct, &k, &rep);

	if (r == 1) {
		drop(&st);
		return;
	}
	assert_int_equal(r, -ECANCELED);
	assert_int_equal(k.calls, 40);
	punched = check_punched(&st);
	/* 40 reads of 16 chunks judged about 320 zero chunks: a batch of 256 punched. */
	assert_true(punched >= 256);
	assert_true(punched < st.zero_chunks);
	check_valid(&st);
	drop(&st);
}

static void test_cancel_after_reads(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds) * 2; i++)
		cancel_case(kinds[i / 2], i % 2, 0);
}

/* The throttle cancels (returns -ECANCELED) instead: the same. */
static void test_throttle_cancels(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		cancel_case(kinds[i], false, -ECANCELED);
}

/* Stopped before it starts: nothing read, nothing punched. */
static void test_cancel_before_start(void **state)
{
	struct counter k = {.stop = 1};
	struct reclaim_report rep;
	struct store st;

	assert_int_equal(run(&st, RECLAIM_ENGINE_SYNC, false, &k, &rep), -ECANCELED);
	assert_int_equal(k.calls, 0);
	assert_int_equal(check_punched(&st), 0);
	drop(&st);
}

/* A whole run: the throttle is called before every read and sees exactly bytes_read. */
static void test_throttle_exact(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds) * 2; i++) {
		struct counter k = {0};
		struct reclaim_report rep;
		struct store st;
		int r = run(&st, kinds[i / 2], i % 2, &k, &rep);

		if (r == 1) {
			drop(&st);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(k.bytes, rep.bytes_read);
		/* Every listed data chunk is read, in reads of at most 64 KiB. */
		assert_true(rep.bytes_read >= (uint64_t)EXCEPTIONS * RT_BLOCK);
		assert_true(k.calls >= rep.bytes_read / READ_BYTES);
		assert_int_equal(rep.zero_chunks, st.zero_chunks);
		assert_int_equal(check_punched(&st), st.zero_chunks);
		drop(&st);
	}
}

/*
 * A fresh store, dropped from the page cache, and an O_DIRECT fd on it (the
 * test is skipped, saying `why`, where the file system refuses O_DIRECT).
 */
static int build_cold_direct(struct store *st, const char *why)
{
	int fd;

	build(st);
	assert_int_equal(posix_fadvise(st->fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	fd = rt_reopen(st->fd, true);
	assert_true(fd >= 0);
	if (!(fcntl(fd, F_GETFL) & O_DIRECT)) {
		close(fd);
		drop(st);
		rt_skip("%s refuses O_DIRECT: %s", dir, why);
	}
	return fd;
}

static void set_stop(void *opaque, uint64_t done, uint64_t total)
{
	struct counter *k = opaque;

	k->calls++;
	k->stop = 1;
}

/*
 * Cancelled between the batches of punches put off until after the scan (the
 * reads went through the engine with O_DIRECT, 16 in flight, the cache dropped
 * first so that no span is taken from it): the first batch handed to the
 * engine is punched, the rest is not.
 */
static void test_cancel_between_later_batches(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		struct counter k = {0};
		struct reclaim_opts opts = {.engine = kinds[i],
					    .read_bytes = READ_BYTES,
					    .direct_reads = true,
					    .stop = &k.stop,
					    .punch_progress = set_stop,
					    .progress_opaque = &k};
		struct reclaim_report rep;
		struct store st;
		_cleanup_close_ int fd = -1;
		uint64_t punched;
		int r;

		fd = build_cold_direct(&st, "nothing is put off");
		r = rt_reclaim(fd, &opts, &rep);
		if (r == -ENOTSUP) {
			drop(&st);
			continue;
		}
		assert_int_equal(r, -ECANCELED);
		assert_int_equal(k.calls, 1);
		punched = check_punched(&st);
		assert_true(punched >= 256);
		assert_true(punched < st.zero_chunks);
		check_valid(&st);
		drop(&st);
	}
}

struct watch {
	int fd;
	uint64_t before, lowest; /* st_blocks * 512: at the start, least seen before a read */
	unsigned calls;
};

static int watch_blocks(void *opaque, uint64_t bytes)
{
	struct watch *w = opaque;
	struct stat sb;

	if (fstat(w->fd, &sb) < 0)
		return -errno;
	if ((uint64_t)sb.st_blocks * 512 < w->lowest)
		w->lowest = (uint64_t)sb.st_blocks * 512;
	w->calls++;
	return 0;
}

/* Pages of fd's first size bytes in the page cache (mincore(2) on a mapping). */
static uint64_t resident_pages(int fd, uint64_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t pages = (size + (uint64_t)pg - 1) / (uint64_t)pg, n = 0;
	unsigned char *vec = malloc(pages);
	void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);

	assert_non_null(vec);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, size, vec), 0);
	for (uint64_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	munmap(m, size);
	free(vec);
	return n;
}

/*
 * How the scan reads, from an O_DIRECT fd with the file cold (sync engine, 16
 * reads in flight, 1600 one-chunk zero ranges: a batch of 256 every 32 reads).
 * By default through the page cache: ranges are punched while reads are still
 * to come (blocks freed before the last read), the fd gets its O_DIRECT back,
 * and no page of the file is left in the cache.  With direct_reads: O_DIRECT,
 * nothing punched before the last read (an ext4 punch would wait for the
 * direct reads in flight).  Both give back the same blocks, no byte changed.
 */
static void test_read_modes(void **state)
{
	for (int direct = 0; direct < 2; direct++) {
		struct reclaim_opts opts = {.engine = RECLAIM_ENGINE_SYNC,
					    .read_bytes = READ_BYTES,
					    .queue_depth = 16,
					    .direct_reads = direct,
					    .throttle = watch_blocks};
		struct reclaim_report rep;
		struct store st;
		struct watch w = {0};
		_cleanup_close_ int fd = -1;
		struct stat sb;

		fd = build_cold_direct(&st, "only one way to read");
		assert_int_equal(fstat(fd, &sb), 0);
		w.fd = fd;
		w.before = w.lowest = (uint64_t)sb.st_blocks * 512;
		opts.throttle_opaque = &w;
		assert_int_equal(rt_reclaim(fd, &opts, &rep), 0);
		if (!direct)
			assert_int_equal(resident_pages(fd, st.file_size), 0);
		assert_int_equal(rep.direct_reads, direct);
		assert_true(fcntl(fd, F_GETFL) & O_DIRECT);
		assert_int_equal(check_punched(&st), st.zero_chunks);
		assert_true(w.calls >= rep.bytes_read / READ_BYTES);
		if (direct) {
			assert_int_equal(w.lowest, w.before);
		} else {
			/* At least all batches but the last two were punched during the scan. */
			assert_true(w.before - w.lowest >= (st.zero_chunks - 512) * RT_BLOCK);
		}
		check_valid(&st);
		drop(&st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_after_reads),
		cmocka_unit_test(test_throttle_cancels),
		cmocka_unit_test(test_cancel_before_start),
		cmocka_unit_test(test_throttle_exact),
		cmocka_unit_test(test_cancel_between_later_batches),
		cmocka_unit_test(test_read_modes),
	};

	dir = rt_test_dir("test-hooks");
	if (!dir)
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
