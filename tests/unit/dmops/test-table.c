/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The dm tables of a VM disk (docs/kernel-facts.md) and LVM2's COW sizing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dmops/table.h"

static void test_base_with_zero_tail(void **state)
{
	struct dmops_table t;

	assert_int_equal(dmops_table_base("/dev/loop3", 8192, 65536, NULL, &t), 0);
	assert_int_equal(t.count, 2);
	assert_int_equal(t.targets[0].start, 0);
	assert_int_equal(t.targets[0].length, 8192);
	assert_string_equal(t.targets[0].type, "linear");
	assert_string_equal(t.targets[0].params, "/dev/loop3 0");
	assert_int_equal(t.targets[1].start, 8192);
	assert_int_equal(t.targets[1].length, 65536 - 8192);
	assert_string_equal(t.targets[1].type, "zero");
	assert_string_equal(t.targets[1].params, "");
}

static void test_base_exact_and_tail_file(void **state)
{
	struct dmops_table t;

	assert_int_equal(dmops_table_base("7:0", 8192, 8192, NULL, &t), 0);
	assert_int_equal(t.count, 1);
	/* Discard mode: the tail maps the same offsets of a sparse zero file's loop. */
	assert_int_equal(dmops_table_base("7:0", 8192, 10000, "7:9", &t), 0);
	assert_int_equal(t.count, 2);
	assert_string_equal(t.targets[1].type, "linear");
	assert_string_equal(t.targets[1].params, "7:9 8192");
	assert_int_equal(t.targets[1].length, 10000 - 8192);
	assert_int_equal(dmops_table_base("7:0", 0, 8192, NULL, &t), -EINVAL);
	assert_int_equal(dmops_table_base("7:0", 8193, 8192, NULL, &t), -EINVAL);
	assert_int_equal(dmops_table_base(NULL, 1, 8192, NULL, &t), -EINVAL);
}

static void test_overlay(void **state)
{
	struct dmops_table t;

	assert_int_equal(dmops_table_overlay("253:0", "/dev/loop4", 65536, 8, false, &t), 0);
	assert_int_equal(t.count, 1);
	assert_string_equal(t.targets[0].type, "snapshot");
	assert_string_equal(t.targets[0].params, "253:0 /dev/loop4 P 8");
	assert_int_equal(t.targets[0].length, 65536);
	assert_int_equal(dmops_table_overlay("253:0", "/dev/loop4", 65536, 8, true, &t), 0);
	assert_string_equal(t.targets[0].params, "253:0 /dev/loop4 P 8 1 discard_zeroes_cow");
	assert_int_equal(dmops_table_overlay("253:0", "/dev/loop4", 65536, 12, false, &t), -EINVAL);
	assert_int_equal(dmops_table_overlay("253:0", "/dev/loop4", 65536, 4, false, &t), -EINVAL);
	assert_int_equal(dmops_table_overlay("253:0", "/dev/loop4", 0, 8, false, &t), -EINVAL);
}

static void test_cow_bytes(void **state)
{
	uint64_t b;

	/* 32 MiB, 4 KiB chunks: 8192 data chunks, 1 header, (8192 + 256) / 256 = 33 areas. */
	assert_int_equal(dmops_cow_bytes(32 << 20, 8, &b), 0);
	assert_int_equal(b, (1 + 8192 + 33) * 4096ULL);
	/* 10 GiB, 64 KiB chunks: 163840 chunks, epa 4096, 41 areas. */
	assert_int_equal(dmops_cow_bytes(10ULL << 30, 128, &b), 0);
	assert_int_equal(b, (1 + 163840 + 41) * 65536ULL);
	/* A partial last chunk takes a whole exception. */
	assert_int_equal(dmops_cow_bytes(4096 + 512, 8, &b), 0);
	assert_int_equal(b, (1 + 2 + 1) * 4096ULL);
	/* Always larger than the origin: a COW as large as the disk overflows. */
	for (uint64_t mib = 1; mib < 4096; mib *= 3) {
		assert_int_equal(dmops_cow_bytes(mib << 20, 8, &b), 0);
		assert_true(b > (mib << 20));
	}
	assert_int_equal(dmops_cow_bytes(1 << 20, 7, &b), -EINVAL);
	assert_int_equal(dmops_cow_bytes(UINT64_MAX - 1, 8, &b), -ERANGE);
}

static void test_chunk_sizes(void **state)
{
	assert_true(dmops_chunk_sectors_valid(8));
	assert_true(dmops_chunk_sectors_valid(1u << 21));
	assert_false(dmops_chunk_sectors_valid(4));
	assert_false(dmops_chunk_sectors_valid(24));
	assert_false(dmops_chunk_sectors_valid(1u << 22));
	assert_false(dmops_chunk_sectors_valid(0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_with_zero_tail),
		cmocka_unit_test(test_base_exact_and_tail_file),
		cmocka_unit_test(test_overlay),
		cmocka_unit_test(test_cow_bytes),
		cmocka_unit_test(test_chunk_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
