/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_format_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
