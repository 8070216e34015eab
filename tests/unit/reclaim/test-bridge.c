/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reclaim_run() grows punch ranges across chunks that are already holes (listed
 * hole chunks, unlisted hole chunks), on a real file whose hole map the scanner
 * reads with SEEK_DATA: fewer fallocate calls, the same chunks punched, never a
 * range across a metadata area (even one that is a hole) or across data (listed
 * non-zero, nearly zero, unlisted).  Raw bytes unchanged; exactly the zero chunks
 * become holes, nothing else changes allocation.  Files go to $COWPUNCH_TEST_DIR
 * (default /tmp).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/*
 * Kinds of COW chunks, 4 KiB chunks (metadata areas at 1, 258, 515): Z zero data,
 * H listed hole, D listed data, P zero but one byte, U unlisted hole, V unlisted data.
 */
enum kind { D = 0, Z, H, P, U, V };
#define NCHUNKS 280u /* chunks 2..279 hold exceptions (258 is area 1) */

static enum kind kinds[NCHUNKS];

static void layout(void)
{
	for (unsigned c = 0; c < NCHUNKS; c++)
		kinds[c] = D;
	/* [2, 5): across listed hole 3 */
	kinds[2] = Z, kinds[3] = H, kinds[4] = Z;
	/* 5 data; [6, 9): across unlisted hole 7 */
	kinds[6] = Z, kinds[7] = U, kinds[8] = Z;
	/* 9 nearly zero; 10 | unlisted data 11 | [12, 16) across holes 13, 14 */
	kinds[10] = Z, kinds[11] = V, kinds[12] = Z, kinds[13] = H, kinds[14] = H, kinds[15] = Z;
	kinds[9] = P;
	/* 256 | hole 257 | area 1 (holds entries) | [259, 262) across 260 */
	kinds[256] = Z, kinds[257] = H, kinds[259] = Z, kinds[260] = H, kinds[261] = Z;
	/* 270 | nearly zero 271 | hole 272 | 273: data between, no bridge */
	kinds[270] = Z, kinds[271] = P, kinds[272] = H, kinds[273] = Z;
}

#define EXPECT_RANGES  8 /* [2,5) [6,9) [10,11) [12,16) [256,257) [259,262) [270,271) [273,274) */
#define EXPECT_BRIDGES 4

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	switch (kinds[new_chunk]) {
	case Z:
		return STOREGEN_DATA;
	case H:
	case U:
		return STOREGEN_HOLE;
	case P:
		((uint8_t *)buf)[len / 2] = 1;
		return STOREGEN_DATA;
	default:
		storegen_pattern(buf, len, new_chunk);
		return STOREGEN_DATA;
	}
}

/*
 * Writes the store: one exception per chunk in COW order; then the exceptions of
 * the U and V chunks are pointed at fresh data chunks past the end, leaving those
 * chunks unlisted with their content (hole, data).  Metadata areas are holes.
 */
static int build(uint64_t *ret_chunks)
{
	struct storegen *sg;
	uint64_t nc, i = 0, extra;
	int fd = rt_tmpfile(dir);

	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 8, true, &sg), 0);
	for (uint64_t c = 2; c < NCHUNKS; c++) {
		if (c == 258)
			continue;
		assert_int_equal(storegen_add(sg, 5000 + c, fill, NULL, &nc), 0);
		assert_int_equal(nc, c);
	}
	extra = sg->next_free;
	for (uint64_t c = 2; c < NCHUNKS; c++) {
		if (c == 258)
			continue;
		if (kinds[c] == U || kinds[c] == V) {
			char buf[4096];

			storegen_pattern(buf, sizeof(buf), extra);
			assert_int_equal(storegen_write_raw(fd, extra * 4096, buf, sizeof(buf)), 0);
			assert_int_equal(storegen_put_entry(sg, i / 256, i % 256, 5000 + c, extra),
					 0);
			extra++;
		}
		i++;
	}
	assert_int_equal(fsync(fd), 0);
	storegen_free(sg);
	*ret_chunks = extra;
	return fd;
}

static void run(enum reclaim_engine_kind kind, bool direct, bool dry_run)
{
	struct reclaim_opts opts = {.engine = kind, .dry_run = dry_run};
	struct snapstore_geometry g = {.chunk_sectors = 8, .chunk_bytes = 4096, .epa = 256};
	struct reclaim_report rep;
	uint8_t sha0[32], sha1[32];
	_cleanup_free_ uint8_t *map0 = NULL, *map1 = NULL;
	uint64_t chunks, zero = 0, holes = 0, freed = 0;
	int64_t before, after;
	int fd0, fd, r;

	layout();
	fd0 = build(&chunks);
	g.file_chunks = chunks;
	assert_int_equal(rt_file_sha(fd0, sha0), 0);
	map0 = rt_alloc_map(fd0, chunks * 4096);
	assert_non_null(map0);
	before = storegen_allocated(fd0);
	fd = rt_reopen(fd0, direct);
	assert_true(fd >= 0);
	r = rt_reclaim(fd, &opts, &rep);
	if (r == -ENOTSUP) {
		close(fd);
		close(fd0);
		rt_skip_engine(kind, r);
	}
	assert_int_equal(r, 0);
	for (unsigned c = 2; c < NCHUNKS; c++) {
		zero += kinds[c] == Z;
		holes += kinds[c] == H;
	}
	assert_int_equal(rep.zero_chunks, zero);
	assert_int_equal(rep.hole_chunks, holes);
	assert_int_equal(rep.punched_ranges, EXPECT_RANGES);
	assert_int_equal(rep.hole_bridges, EXPECT_BRIDGES);

	assert_int_equal(fsync(fd), 0);
	assert_int_equal(rt_file_sha(fd0, sha1), 0);
	assert_memory_equal(sha0, sha1, 32);
	map1 = rt_alloc_map(fd, chunks * 4096);
	assert_non_null(map1);
	for (uint64_t c = 0; c < chunks; c++) {
		bool punched = !dry_run && c < NCHUNKS && !snapstore_is_metadata_chunk(&g, c) &&
			       kinds[c] == Z;

		if (punched)
			assert_int_equal(map1[c], 0);
		else if (map1[c] != map0[c])
			fail_msg("chunk %llu changed allocation", (unsigned long long)c);
		freed += punched && map0[c] ? 4096 : 0;
	}
	/*
	 * What was freed, as this test sees it: st_blocks before and after, and the
	 * data blocks that became holes (the same where st_blocks counts data only).
	 */
	after = storegen_allocated(fd0);
	assert_int_equal(rep.allocated_before, before);
	assert_int_equal(rep.allocated_after, after);
	assert_int_equal(rep.reclaimed_bytes, before - after);
	assert_int_equal(freed, dry_run ? 0 : zero * 4096);
	if (rt_exact_blocks(dir))
		assert_int_equal(before - after, freed);
	close(fd);
	close(fd0);
}

static void test_bridge_sync(void **state)
{
	run(RECLAIM_ENGINE_SYNC, false, false);
	run(RECLAIM_ENGINE_SYNC, true, false);
}

static void test_bridge_uring(void **state)
{
	run(RECLAIM_ENGINE_URING, true, false);
}

static void test_bridge_aio(void **state)
{
	run(RECLAIM_ENGINE_AIO, true, false);
}

static void test_bridge_dry_run(void **state)
{
	/* A dry run counts the same ranges and bridges and changes nothing. */
	run(RECLAIM_ENGINE_AUTO, true, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bridge_sync),
		cmocka_unit_test(test_bridge_uring),
		cmocka_unit_test(test_bridge_aio),
		cmocka_unit_test(test_bridge_dry_run),
	};
	const char *why;

	dir = getenv("COWPUNCH_TEST_DIR");
	if (!dir || !*dir)
		dir = "/tmp";
	why = rt_dir_unusable(dir);
	if (why) {
		printf("SKIP: test-bridge: %s\n", why);
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
