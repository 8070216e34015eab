/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Range coalescing: adjacent zero chunks merge; with a hole oracle, ranges grow
 * across chunks that are already holes, never across metadata or data; chunks
 * that must never be punched are refused.
 */
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

/* A fake hole oracle: chunks whose bit is set in holes[] are holes. */
static uint8_t holes[1024 / 8];
static unsigned oracle_calls;

static void set_holes(uint64_t from, uint64_t to)
{
	for (uint64_t c = from; c < to; c++)
		holes[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool fake_is_hole(void *opaque, uint64_t from, uint64_t to)
{
	assert_ptr_equal(opaque, holes);
	oracle_calls++;
	assert_true(from < to);
	for (uint64_t c = from; c < to; c++)
		if (!(holes[c >> 3] & (1u << (c & 7))))
			return false;
	return true;
}

static void holes_init(struct reclaim_coalescer *co, struct reclaim_range *batch, size_t cap)
{
	list_all_data();
	memset(holes, 0, sizeof(holes));
	oracle_calls = 0;
	reclaim_coalescer_init(co, &geom, listed, batch, cap);
	reclaim_coalescer_set_holes(co, fake_is_hole, holes);
}

/* The batch holds exactly the chunk ranges want[i] = {first, end}. */
static void expect_ranges(const struct reclaim_coalescer *co, const uint64_t (*want)[2], size_t n)
{
	assert_int_equal(co->n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(co->batch[i].off, want[i][0] * 4096);
		assert_int_equal(co->batch[i].len, (want[i][1] - want[i][0]) * 4096);
	}
}

static void test_bridge_holes(void **state)
{
	struct reclaim_range batch[8];
	struct reclaim_coalescer co;

	holes_init(&co, batch, 8);
	/* 10 | holes 11, 12 | 13, 14: one range [10, 15), the gap asked about exactly. */
	set_holes(11, 13);
	/* 20 | hole 21 | 22 (listed, not a hole: data) | 23: 20, 23 apart. */
	set_holes(21, 22);
	/* 30 | holes 31..39, 40 unlisted and a hole | 41. */
	set_holes(31, 41);
	listed[40 >> 3] &= (uint8_t) ~(1u << (40 & 7));
	assert_int_equal(reclaim_coalescer_add(&co, 10), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 13), 0);
	assert_int_equal(oracle_calls, 1);
	assert_int_equal(reclaim_coalescer_add(&co, 14), 0);
	assert_int_equal(oracle_calls, 1); /* adjacent: no question */
	assert_int_equal(reclaim_coalescer_add(&co, 20), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 23), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 30), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 41), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.bridged, 2);
	expect_ranges(&co, (const uint64_t[][2]){{10, 15}, {20, 21}, {23, 24}, {30, 42}}, 4);
}

static void test_bridge_never_metadata(void **state)
{
	struct reclaim_range batch[8];
	struct reclaim_coalescer co;

	holes_init(&co, batch, 8);
	/* Everything from 200 to 300 is a hole, metadata chunk 258 included. */
	set_holes(200, 300);
	/* 250 | holes 251..256 | 257: up to the chunk before area 1, one range. */
	assert_int_equal(reclaim_coalescer_add(&co, 250), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 257), 0);
	/* 257 | area 1 at 258 | 259: never across it, and the oracle is not even asked. */
	assert_int_equal(reclaim_coalescer_add(&co, 259), 0);
	/* 259 | 260..269 | 270 across holes again, then area 2 (515) from 280 to 520. */
	assert_int_equal(reclaim_coalescer_add(&co, 270), 0);
	set_holes(300, 1024);
	assert_int_equal(reclaim_coalescer_add(&co, 514), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 516), 0);
	assert_int_equal(oracle_calls, 3); /* 251..256, 260..269, 271..513 */
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.bridged, 3);
	expect_ranges(&co, (const uint64_t[][2]){{250, 258}, {259, 515}, {516, 517}}, 3);
	/* No range of the batch holds a metadata chunk. */
	for (size_t i = 0; i < co.n; i++)
		for (uint64_t c = batch[i].off / 4096; c < (batch[i].off + batch[i].len) / 4096;
		     c++)
			assert_false(snapstore_is_metadata_chunk(&geom, c));
}

static void test_bridge_break(void **state)
{
	struct reclaim_range batch[8];
	struct reclaim_coalescer co;

	holes_init(&co, batch, 8);
	set_holes(1, 1024); /* the oracle would say yes to anything but metadata */
	/* A chunk judged non-zero between 10 and 12: no bridge, no question. */
	assert_int_equal(reclaim_coalescer_add(&co, 10), 0);
	reclaim_coalescer_break(&co);
	assert_int_equal(reclaim_coalescer_add(&co, 12), 0);
	assert_int_equal(oracle_calls, 0);
	/* The break is spent: 12 | hole 13 | 14 bridges. */
	assert_int_equal(reclaim_coalescer_add(&co, 14), 0);
	assert_int_equal(oracle_calls, 1);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.bridged, 1);
	expect_ranges(&co, (const uint64_t[][2]){{10, 11}, {12, 15}}, 2);
	/* Without an oracle, gaps never bridge (holes or not). */
	co.n = 0;
	reclaim_coalescer_init(&co, &geom, listed, batch, 8);
	assert_int_equal(reclaim_coalescer_add(&co, 20), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 22), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.n, 2);
	assert_int_equal(co.bridged, 0);
	/* Refusals are the same with an oracle. */
	holes_init(&co, batch, 8);
	set_holes(1, 1024);
	assert_int_equal(reclaim_coalescer_add(&co, 0), -EINVAL);
	assert_int_equal(reclaim_coalescer_add(&co, 258), -EINVAL);
	listed[300 >> 3] &= (uint8_t) ~(1u << (300 & 7));
	assert_int_equal(reclaim_coalescer_add(&co, 300), -EINVAL);
}

/*
 * A store's layout keeps its refusals whatever may_punch says: chunk 0 and the
 * metadata areas are never taken, even when a (buggy) bitmap lists them.
 */
static void test_store_layout_keeps_metadata(void **state)
{
	struct reclaim_layout l = {
		.chunk_bytes = 4096, .chunks = 1024, .may_punch = listed, .store = &geom};
	struct reclaim_range batch[4];
	struct reclaim_coalescer co;

	memset(listed, 0xff, sizeof(listed));
	reclaim_coalescer_init_layout(&co, &l, batch, 4);
	reclaim_coalescer_set_holes(&co, fake_is_hole, holes);
	memset(holes, 0xff, sizeof(holes));
	assert_int_equal(reclaim_coalescer_add(&co, 0), -EINVAL);
	assert_int_equal(reclaim_coalescer_add(&co, 1), -EINVAL);
	assert_int_equal(reclaim_coalescer_add(&co, 258), -EINVAL);
	assert_int_equal(reclaim_coalescer_add(&co, 250), 0);
	/* All holes from 251 to 300, but area 1 (258) lies between: no bridge. */
	assert_int_equal(reclaim_coalescer_add(&co, 300), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	expect_ranges(&co, (const uint64_t[][2]){{250, 251}, {300, 301}}, 2);
}

/*
 * A plain file's layout (no store, no bitmap): every chunk may be punched,
 * chunk 0 and the chunks where a store keeps its metadata included, and ranges
 * grow across holes anywhere; past the end and going backwards stay refused.
 * With a bitmap, chunks outside it are refused.
 */
static void test_plain_layout(void **state)
{
	struct reclaim_layout l = {.chunk_bytes = 4096, .chunks = 600};
	struct reclaim_range batch[4];
	struct reclaim_coalescer co;

	memset(holes, 0, sizeof(holes));
	oracle_calls = 0;
	reclaim_coalescer_init_layout(&co, &l, batch, 4);
	reclaim_coalescer_set_holes(&co, fake_is_hole, holes);
	assert_int_equal(reclaim_coalescer_add(&co, 0), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 1), 0);
	set_holes(251, 300); /* 258 would be area 1 of a store */
	assert_int_equal(reclaim_coalescer_add(&co, 250), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 300), 0);
	assert_int_equal(oracle_calls, 2); /* [2, 250): data; [251, 300): holes */
	assert_int_equal(reclaim_coalescer_add(&co, 600), -EINVAL); /* past the end */
	assert_int_equal(reclaim_coalescer_add(&co, 300), -EINVAL); /* not increasing */
	assert_int_equal(reclaim_coalescer_add(&co, 599), 0);
	assert_int_equal(reclaim_coalescer_flush(&co), 1);
	assert_int_equal(co.bridged, 1);
	expect_ranges(&co, (const uint64_t[][2]){{0, 2}, {250, 301}, {599, 600}}, 3);

	memset(listed, 0, sizeof(listed));
	listed[0] = 0x0f; /* chunks 0..3 only */
	l.may_punch = listed;
	reclaim_coalescer_init_layout(&co, &l, batch, 4);
	assert_int_equal(reclaim_coalescer_add(&co, 3), 0);
	assert_int_equal(reclaim_coalescer_add(&co, 4), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adjacent_merge),
		cmocka_unit_test(test_metadata_splits),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_batch_full),
		cmocka_unit_test(test_bridge_holes),
		cmocka_unit_test(test_bridge_never_metadata),
		cmocka_unit_test(test_bridge_break),
		cmocka_unit_test(test_store_layout_keeps_metadata),
		cmocka_unit_test(test_plain_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
