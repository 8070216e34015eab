/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reclaim_run() with each engine forced in turn, on real files: report fields,
 * bytes on disk unchanged, exactly the zero chunks turned into holes, dry run,
 * chunks larger than a read, the fs-free bitmap.  Files go to $COWPUNCH_TEST_DIR
 * (default /tmp).
 */
#include <errno.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/* Chunk kinds in COW order, repeating: data, zero, zero, hole, zero but one byte, zero. */
enum { K_DATA, K_ZERO, K_HOLE, K_PARTIAL };
static const int pattern[] = {K_DATA, K_ZERO, K_ZERO, K_HOLE, K_PARTIAL, K_ZERO};

struct fixture {
	int fd;
	uint32_t chunk_sectors;
	uint64_t cb, exceptions, file_size;
	uint64_t zero_chunks, hole_chunks, data_chunks, ranges;
	uint64_t first_unlisted; /* chunks from here on are unlisted zero data */
};

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	struct fixture *f = opaque;
	int k = pattern[f->exceptions++ % ARRAY_SIZE(pattern)];

	switch (k) {
	case K_DATA:
		storegen_pattern(buf, len, new_chunk);
		return STOREGEN_DATA;
	case K_PARTIAL:
		/* Non-zero in the very last byte: a reader stopping early would miss it. */
		((uint8_t *)buf)[len - 1] = 0x80;
		return STOREGEN_DATA;
	case K_HOLE:
		return STOREGEN_HOLE;
	default:
		return STOREGEN_DATA;
	}
}

/* A store of n exceptions in pattern order, plus 3 unlisted zero chunks at the end. */
static void build(struct fixture *f, uint32_t chunk_sectors, uint64_t n)
{
	struct storegen *sg;
	uint64_t prev_new = 0, nc;
	int prev_k = -1;

	*f = (struct fixture){.chunk_sectors = chunk_sectors};
	f->fd = rt_tmpfile(dir);
	assert_true(f->fd >= 0);
	assert_int_equal(storegen_create(f->fd, chunk_sectors, false, &sg), 0);
	f->cb = sg->chunk_bytes;
	for (uint64_t i = 0; i < n; i++) {
		int k = pattern[i % ARRAY_SIZE(pattern)];

		assert_int_equal(storegen_add(sg, 1000 + i * 7, fill, f, &nc), 0);
		if (k == K_ZERO) {
			f->zero_chunks++;
			/* A new range unless the previous COW chunk was zero too. */
			if (!(prev_k == K_ZERO && nc == prev_new + 1))
				f->ranges++;
		} else if (k == K_HOLE) {
			f->hole_chunks++;
		} else {
			f->data_chunks++;
		}
		prev_k = k;
		prev_new = nc;
	}
	/* Zeroed data past the last exception: not listed, so never punched. */
	f->first_unlisted = sg->next_free;
	{
		void *z = calloc(1, f->cb);

		for (uint64_t c = 0; c < 3; c++)
			assert_int_equal(storegen_write_raw(f->fd, (f->first_unlisted + c) * f->cb,
							    z, f->cb),
					 0);
		free(z);
	}
	f->file_size = (f->first_unlisted + 3) * f->cb;
	storegen_free(sg);
	assert_int_equal(fsync(f->fd), 0);
}

struct snapshot {
	uint8_t sha[32];
	uint8_t *map;
	int64_t allocated;
};

static void take(const struct fixture *f, struct snapshot *s)
{
	assert_int_equal(fsync(f->fd), 0);
	assert_int_equal(rt_file_sha(f->fd, s->sha), 0);
	s->map = rt_alloc_map(f->fd, f->file_size);
	assert_non_null(s->map);
	s->allocated = storegen_allocated(f->fd);
}

/* Checks that exactly the blocks of the zero chunks became holes, nothing else changed. */
static void check_after(const struct fixture *f, const struct snapshot *before,
			const struct reclaim_report *rep, bool punched)
{
	const struct snapstore_geometry g = {
		.chunk_sectors = f->chunk_sectors, .chunk_bytes = f->cb, .epa = f->cb / 16};
	struct snapshot after;
	uint64_t i = 0, zero_bytes = 0;

	take(f, &after);
	/* Punched chunks were all zero: the raw bytes, metadata included, are identical. */
	assert_memory_equal(before->sha, after.sha, 32);
	for (uint64_t c = 0; c < f->file_size / f->cb; c++) {
		bool zero = false;

		if (c >= 2 && c < f->first_unlisted && !snapstore_is_metadata_chunk(&g, c))
			zero = pattern[i++ % ARRAY_SIZE(pattern)] == K_ZERO;
		for (uint64_t b = c * f->cb / RT_BLOCK; b < (c + 1) * f->cb / RT_BLOCK; b++) {
			if (zero && punched) {
				assert_int_equal(after.map[b], 0);
				zero_bytes += before->map[b] ? RT_BLOCK : 0;
			} else {
				if (after.map[b] != before->map[b])
					fail_msg("chunk %llu block %llu changed allocation",
						 (unsigned long long)c, (unsigned long long)b);
			}
		}
	}
	if (punched && rt_exact_blocks(dir))
		assert_int_equal(before->allocated - after.allocated, zero_bytes);
	if (!punched)
		assert_int_equal(before->allocated, after.allocated);
	assert_int_equal(rep->allocated_before, before->allocated);
	assert_int_equal(rep->allocated_after, after.allocated);
	assert_int_equal(rep->reclaimed_bytes, before->allocated - after.allocated);
	free(after.map);
}

/*
 * direct: the engine reads with O_DIRECT, the page cache dropped first so that
 * the engine really reads (a cached span is copied from the cache instead);
 * cached: O_DIRECT fd but the file left in the cache (the cachestat path).
 */
/* With cached: drop the middle third of the file from the cache first (partly cached). */
static bool part_drop;

static void run_case_cache(enum reclaim_engine_kind kind, uint32_t chunk_sectors, uint64_t n,
			   uint32_t read_bytes, bool direct, bool cached, bool dry_run)
{
	struct reclaim_opts opts = {
		.engine = kind, .dry_run = dry_run, .read_bytes = read_bytes, .queue_depth = 4};
	struct reclaim_report rep;
	struct snapshot before;
	struct fixture f;
	int fd, r;

	build(&f, chunk_sectors, n);
	take(&f, &before);
	if (direct)
		assert_int_equal(posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	if (cached && part_drop)
		assert_int_equal(posix_fadvise(f.fd, (off_t)(f.file_size / 3 / 4096 * 4096),
					       (off_t)(f.file_size / 3), POSIX_FADV_DONTNEED),
				 0);
	fd = rt_reopen(f.fd, direct || cached);
	assert_true(fd >= 0);
	r = rt_reclaim(fd, &opts, &rep);
	if (r == -ENOTSUP) {
		close(fd);
		close(f.fd);
		free(before.map);
		skip();
	}
	assert_int_equal(r, 0);
	if (kind == RECLAIM_ENGINE_AUTO)
		assert_int_not_equal(rep.engine, RECLAIM_ENGINE_AUTO);
	else
		assert_int_equal(rep.engine, kind);
	assert_int_equal(rep.dry_run, dry_run);
	assert_int_equal(rep.exceptions, n);
	assert_int_equal(rep.chunk_bytes, f.cb);
	assert_int_equal(rep.zero_chunks, f.zero_chunks);
	assert_int_equal(rep.hole_chunks, f.hole_chunks);
	assert_int_equal(rep.chunks_scanned, f.zero_chunks + f.data_chunks);
	assert_int_equal(rep.punched_ranges, f.ranges);
	assert_int_equal(rep.fs_free_chunks, 0);
	assert_true(rep.bytes_read >= rep.chunks_scanned * f.cb);
	/* Dropped from the cache: the engine read everything (cachestat needs Linux 6.5). */
	if (direct)
		assert_int_equal(rep.cached_bytes, 0);
	if (cached && !part_drop && rt_has_cachestat())
		assert_int_equal(rep.cached_bytes, rep.bytes_read);
	if (cached && part_drop && rt_has_cachestat()) {
		assert_true(rep.cached_bytes > 0);
		assert_true(rep.cached_bytes < rep.bytes_read);
	}
	check_after(&f, &before, &rep, !dry_run);
	free(before.map);
	close(fd);
	close(f.fd);
}

static void run_case(enum reclaim_engine_kind kind, uint32_t chunk_sectors, uint64_t n,
		     uint32_t read_bytes, bool direct, bool dry_run)
{
	run_case_cache(kind, chunk_sectors, n, read_bytes, direct, false, dry_run);
}

static void test_uring(void **state)
{
	run_case(RECLAIM_ENGINE_URING, 8, 700, 0, true, false);
	run_case(RECLAIM_ENGINE_URING, 8, 700, 0, false, false);
}

/*
 * More ranges than the io_uring engine queues (4096) and many linked chains of
 * punches (256 each): read from the device (every punch put off to the end,
 * queued all at once) and partly from the page cache (punched while the scan
 * goes on).  Not "all from the cache": on a file this size, a punch that cannot
 * split a clean large folio drops all of it from the cache (the kernel's
 * truncate_inode_partial_folio), pages ahead of the scan included, so some
 * spans go to the device whatever the test does (1 run in 15 here).
 */
static void test_uring_many_ranges(void **state)
{
	run_case(RECLAIM_ENGINE_URING, 8, 25000, 0, true, false);
	part_drop = true;
	run_case_cache(RECLAIM_ENGINE_URING, 8, 25000, 0, false, true, false);
	part_drop = false;
}

/*
 * A punch the file system refuses (EPERM: the inode was made append-only after
 * it was opened) fails the run with that error, whichever engine punches and
 * whether the punches go alongside the scan (cached) or after it (direct), and
 * nothing changes: no byte, no block.  Needs CAP_LINUX_IMMUTABLE (root).
 */
static void test_punch_error(void **state)
{
	static const enum reclaim_engine_kind kinds[] = {RECLAIM_ENGINE_URING, RECLAIM_ENGINE_AIO,
							 RECLAIM_ENGINE_SYNC};

	for (size_t i = 0; i < ARRAY_SIZE(kinds) * 2; i++) {
		struct reclaim_opts opts = {.engine = kinds[i / 2], .queue_depth = 4};
		bool direct = i % 2;
		struct reclaim_report rep;
		struct snapshot before, after;
		struct fixture f;
		int fd, r, flags, appendonly;

		build(&f, 8, 3000);
		take(&f, &before);
		if (direct)
			assert_int_equal(posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		fd = rt_reopen(f.fd, direct);
		assert_true(fd >= 0);
		if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
			close(fd);
			close(f.fd);
			free(before.map);
			skip();
		}
		appendonly = flags | FS_APPEND_FL;
		if (ioctl(fd, FS_IOC_SETFLAGS, &appendonly) < 0) {
			close(fd);
			close(f.fd);
			free(before.map);
			skip();
		}
		r = rt_reclaim(fd, &opts, &rep);
		assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
		if (r == -ENOTSUP && kinds[i / 2] != RECLAIM_ENGINE_SYNC) {
			close(fd);
			close(f.fd);
			free(before.map);
			continue;
		}
		assert_int_equal(r, -EPERM);
		take(&f, &after);
		assert_memory_equal(before.sha, after.sha, 32);
		assert_memory_equal(before.map, after.map, f.file_size / RT_BLOCK);
		assert_int_equal(before.allocated, after.allocated);
		free(after.map);
		free(before.map);
		close(fd);
		close(f.fd);
	}
}

/*
 * Partly cached: the spans taken from the cache are punched alongside the
 * scan, those read from the device after it, and no run of zero chunks is
 * split between the two (punched_ranges stays the fewest possible).
 */
static void test_partly_cached(void **state)
{
	part_drop = true;
	run_case_cache(RECLAIM_ENGINE_URING, 8, 6000, 0, false, true, false);
	run_case_cache(RECLAIM_ENGINE_URING, 8, 6000, 16384, false, true, false);
	run_case_cache(RECLAIM_ENGINE_AIO, 8, 6000, 0, false, true, false);
	part_drop = false;
}

static void test_aio(void **state)
{
	run_case(RECLAIM_ENGINE_AIO, 8, 700, 0, true, false);
	run_case(RECLAIM_ENGINE_AIO, 8, 700, 0, false, false);
}

static void test_sync(void **state)
{
	run_case(RECLAIM_ENGINE_SYNC, 8, 700, 0, true, false);
	run_case(RECLAIM_ENGINE_SYNC, 8, 700, 0, false, false);
}

static void test_dry_run(void **state)
{
	run_case(RECLAIM_ENGINE_SYNC, 8, 700, 0, true, true);
	run_case(RECLAIM_ENGINE_AUTO, 16, 600, 0, true, true);
}

/* 16 KiB chunks read 4 KiB at a time: a chunk is judged over several reads. */
static void test_chunk_larger_than_read(void **state)
{
	run_case(RECLAIM_ENGINE_AUTO, 32, 300, 4096, true, false);
	run_case(RECLAIM_ENGINE_SYNC, 32, 300, 4096, false, false);
}

/* Small reads and a deep queue: many spans in flight, read across metadata gaps. */
static void test_small_reads(void **state)
{
	/* Left in the page cache: spans are copied from it, not read from the device. */
	run_case_cache(RECLAIM_ENGINE_URING, 8, 900, 65536, false, true, false);
	run_case_cache(RECLAIM_ENGINE_AIO, 16, 700, 0, false, true, false);
	run_case(RECLAIM_ENGINE_AUTO, 8, 900, 16384, true, false);
}

/* free_bitmap: listed data chunks punched unread; holes, metadata, unlisted chunks never. */
static void test_free_bitmap(void **state)
{
	struct snapstore_info info;
	struct snapstore_error err;
	struct reclaim_report rep;
	struct reclaim_opts opts = {.engine = RECLAIM_ENGINE_AUTO};
	struct fixture f;
	uint8_t *freebm, buf[4096], zero[4096] = {0};
	/* Chunk 2 is data (pattern[0]), 5 a hole (pattern[3]), 6 partial, 1 metadata. */
	const uint64_t marked[] = {0, 1, 2, 5, 6, 258};
	int64_t before;

	build(&f, 8, 300);
	before = storegen_allocated(f.fd);
	assert_int_equal(snapstore_load(f.fd, &info, NULL, NULL, &err), 0);
	freebm = calloc(1, (info.geom.file_chunks + 7) / 8);
	assert_non_null(freebm);
	for (size_t i = 0; i < ARRAY_SIZE(marked); i++)
		freebm[marked[i] >> 3] |= (uint8_t)(1u << (marked[i] & 7));
	freebm[f.first_unlisted >> 3] |= (uint8_t)(1u << (f.first_unlisted & 7));
	opts.free_bitmap = freebm;
	assert_int_equal(reclaim_run(f.fd, &info, &opts, &rep), 0);
	snapstore_info_free(&info);
	/* Only 2 and 6 are listed data chunks holding data. */
	assert_int_equal(rep.fs_free_chunks, 2);
	assert_int_equal(rep.zero_chunks, f.zero_chunks);
	assert_int_equal(rep.chunks_scanned, f.zero_chunks + f.data_chunks - 2);
	assert_int_equal(pread(f.fd, buf, 4096, 2 * 4096), 4096);
	assert_memory_equal(buf, zero, 4096);
	assert_int_equal(pread(f.fd, buf, 4096, 6 * 4096), 4096);
	assert_memory_equal(buf, zero, 4096);
	/* The header still reads as a header; area 0 and the unlisted chunk stay allocated. */
	assert_int_equal(pread(f.fd, buf, 4096, 0), 4096);
	assert_memory_not_equal(buf, zero, 16);
	assert_true(lseek(f.fd, 4096, SEEK_HOLE) >= 2 * 4096);
	assert_int_equal(lseek(f.fd, (off_t)(f.first_unlisted * 4096), SEEK_DATA),
			 (off_t)(f.first_unlisted * 4096));
	assert_true(lseek(f.fd, (off_t)(f.first_unlisted * 4096), SEEK_HOLE) >=
		    (off_t)((f.first_unlisted + 1) * 4096));
	if (rt_exact_blocks(dir))
		assert_int_equal(before - storegen_allocated(f.fd), (f.zero_chunks + 2) * 4096);
	free(freebm);
	close(f.fd);
}

static void test_engine_names(void **state)
{
	enum reclaim_engine_kind k;

	assert_int_equal(reclaim_engine_parse("uring", &k), 0);
	assert_int_equal(k, RECLAIM_ENGINE_URING);
	assert_int_equal(reclaim_engine_parse("auto", &k), 0);
	assert_int_equal(k, RECLAIM_ENGINE_AUTO);
	assert_int_equal(reclaim_engine_parse("io_uring", &k), -EINVAL);
	assert_string_equal(reclaim_engine_name(RECLAIM_ENGINE_AIO), "aio");
	assert_string_equal(reclaim_engine_name(RECLAIM_ENGINE_SYNC), "sync");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_names),
		cmocka_unit_test(test_uring),
		cmocka_unit_test(test_uring_many_ranges),
		cmocka_unit_test(test_punch_error),
		cmocka_unit_test(test_partly_cached),
		cmocka_unit_test(test_aio),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_dry_run),
		cmocka_unit_test(test_chunk_larger_than_read),
		cmocka_unit_test(test_small_reads),
		cmocka_unit_test(test_free_bitmap),
	};
	const char *why;

	dir = getenv("COWPUNCH_TEST_DIR") ? getenv("COWPUNCH_TEST_DIR") : "/tmp";
	why = rt_dir_unusable(dir);
	if (why) {
		printf("SKIP: test-engines: %s\n", why);
		return 77;
	}
	printf("test-engines: files in %s (st_blocks %s)\n", dir,
	       rt_exact_blocks(dir) ? "checked exactly" : "may count extent-tree blocks");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
