/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Range coalescing: adjacent zero chunks merge; chunks that must never be punched are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "reclaim/engine.h"

/* 4 KiB chunks: epa 256, metadata chunks 1, 258, 515, ... */
static struct snapstore_geometry geom = {
	.chunk_sectors = 8, .chunk_bytes = 4096, .epa = 256, .file_chunks = 1024};
static uint8_t listed[1024 / 8];

static void list_all_data(void)
{
	memset(listed, 0, sizeof(listed));
	for (uint64_t c = 2; c < geom.file_chunks; c++)
		if (!snapstore_is_metadata_chunk(&geom, c))
			listed[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static void test_adjacent_merge(void **state)
{
	struct reclaim_range batch[8];
	struct reclaim_coalescer co;

	list_all_data();
	reclaim_coalescer_init(&co, &geom, listed, batch, 8);
	for (uint64_t c = 10; c < 20; c++)
		assert_int_equal(reclaim_coalescer_add(&co, c), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 30), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 32), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 33), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.n, 3);
	assert_int_equal(batch[0].off, 10 * 4096);
	assert_int_equal(batch[0].len, 10 * 4096);
	assert_int_equal(batch[1].off, 30 * 4096);
	assert_int_equal(batch[1].len, 4096);
	assert_int_equal(batch[2].off, 32 * 4096);
	assert_int_equal(batch[2].len, 2 * 4096);
	/* Flushing again adds nothing. */
	co.n = 0;
	assert_int_equal(reclaim_coalescer_flush(&co), 0);
}

static void test_metadata_splits(void **state)
{
	struct reclaim_range batch[4];
	struct reclaim_coalescer co;

	list_all_data();
	reclaim_coalescer_init(&co, &geom, listed, batch, 4);
	/* 256, 257 | metadata 258 | 259: two ranges, metadata never inside one. */
	assert_int_equal(reclaim_coalescer_add(&co, 256), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 257), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 258), -EINVAL);
	assert_int_equal(reclaim_coalescer_add(&co, 259), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.n, 2);
	assert_int_equal(batch[0].off, 256 * 4096);
	assert_int_equal(batch[0].len, 2 * 4096);
	assert_int_equal(batch[1].off, 259 * 4096);
	assert_int_equal(batch[1].len, 4096);
}

static void test_refusals(void **state)
{
	struct reclaim_range batch[4];
	struct reclaim_coalescer co;

	list_all_data();
	listed[100 >> 3] &= (uint8_t) ~(1u << (100 & 7)); /* chunk 100 unlisted */
	reclaim_coalescer_init(&co, &geom, listed, batch, 4);
	assert_int_equal(reclaim_coalescer_add(&co, 0), -EINVAL);    /* header */
	assert_int_equal(reclaim_coalescer_add(&co, 1), -EINVAL);    /* area 0 */
	assert_int_equal(reclaim_coalescer_add(&co, 515), -EINVAL);  /* area 2 */
	assert_int_equal(reclaim_coalescer_add(&co, 100), -EINVAL);  /* not listed */
	assert_int_equal(reclaim_coalescer_add(&co, 1024), -EINVAL); /* past the file */
	assert_int_equal(reclaim_coalescer_add(&co, 99), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 99), -EINVAL); /* not increasing */
	assert_int_equal(reclaim_coalescer_add(&co, 50), -EINVAL);
	/* 99 and 101 are not adjacent (100 unlisted between): two ranges. */
	assert_int_equal(reclaim_coalescer_add(&co, 101), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.n, 2);
	assert_int_equal(batch[0].len, 4096);
	assert_int_equal(batch[1].off, 101 * 4096);
}

static void test_batch_full(void **state)
{
	struct reclaim_range batch[2];
	struct reclaim_coalescer co;
	int full = 0;

	list_all_data();
	reclaim_coalescer_init(&co, &geom, listed, batch, 2);
	/* Ranges 10, 12, 14: the third range closes the second, filling the batch. */
	assert_int_equal(reclaim_coalescer_add(&co, 10), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 12), 0);
	full = reclaim_coalescer_add(&co, 14);
	assert_int_equal(full, 1);
	assert_int_equal(co.n, 2);
	/* Not taking a full batch is refused rather than overrun. */
	assert_int_equal(reclaim_coalescer_add(&co, 16), -ENOBUFS);
	co.n = 0;
	assert_int_equal(reclaim_coalescer_add(&co, 16), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.n, 2);
	assert_int_equal(batch[0].off, 14 * 4096);
	assert_int_equal(batch[1].off, 16 * 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adjacent_merge),
		cmocka_unit_test(test_metadata_splits),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_batch_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
