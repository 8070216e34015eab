/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Self-test of the test helper: SHA-256 vectors, writer layout, merged view. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/helpers/storegen.h"

static const char *hash_of(const void *data, size_t len, char hex[65])
{
	struct storegen_sha256 s;
	uint8_t d[32];

	storegen_sha256_init(&s);
	storegen_sha256_update(&s, data, len);
	storegen_sha256_final(&s, d);
	return storegen_hex(d, hex);
}

static void test_sha256_vectors(void **state)
{
	char hex[65];
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	struct storegen_sha256 s;
	uint8_t d[32], *mil;

	assert_string_equal(hash_of("", 0, hex),
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_string_equal(hash_of("abc", 3, hex),
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_string_equal(hash_of(two, strlen(two), hex),
			    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* One million 'a', fed in odd-sized pieces to exercise the block buffering. */
	mil = malloc(1000000);
	assert_non_null(mil);
	memset(mil, 'a', 1000000);
	storegen_sha256_init(&s);
	for (size_t off = 0; off < 1000000;) {
		size_t n = 1000000 - off < 777 ? 1000000 - off : 777;

		storegen_sha256_update(&s, mil + off, n);
		off += n;
	}
	storegen_sha256_final(&s, d);
	assert_string_equal(storegen_hex(d, hex),
			    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(mil);
}

static uint64_t rd64(int fd, uint64_t off)
{
	uint8_t b[8];
	uint64_t v = 0;

	assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

/* 4 KiB chunks: epa 256; areas at chunks 1, 258, 515. */
static void test_writer_layout(void **state)
{
	int fd = memfd_create("sg", MFD_CLOEXEC);
	struct storegen *sg;
	uint64_t n;

	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 8, false, &sg), 0);
	assert_int_equal(sg->size, 8192);
	assert_int_equal(rd64(fd, 0), 0x0000000170416e53ULL);
	assert_int_equal(rd64(fd, 8), 0x0000000800000001ULL);
	for (uint64_t i = 0; i < 256; i++) {
		assert_int_equal(storegen_add_pattern(sg, 1000 + i, i, &n), 0);
		assert_int_equal(n, 2 + i);
	}
	/* Area 0 exactly full: area 1 (chunk 258) exists and is zero. */
	assert_int_equal(sg->area, 1);
	assert_int_equal(sg->count, 0);
	assert_int_equal(sg->next_free, 259);
	assert_int_equal(sg->size, 259 * 4096);
	assert_int_equal(rd64(fd, 4096 + 255 * 16), 1255);
	assert_int_equal(rd64(fd, 4096 + 255 * 16 + 8), 257);
	assert_int_equal(storegen_add_buf(sg, 7, NULL, &n), 0);
	assert_int_equal(n, 259);
	assert_int_equal(rd64(fd, 258 * 4096), 7);
	assert_int_equal(rd64(fd, 258 * 4096 + 8), 259);
	assert_int_equal(sg->size, 260 * 4096);
	storegen_free(sg);
	close(fd);
}

/* storegen_open() picks up where storegen_create() + adds left off. */
static void test_reopen(void **state)
{
	int fd = memfd_create("sg", MFD_CLOEXEC);
	struct storegen *sg, *again;
	uint64_t n1, n2;

	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 8, true, &sg), 0);
	for (uint64_t i = 0; i < 300; i++)
		assert_int_equal(storegen_add_buf(sg, i, NULL, NULL), 0);
	assert_int_equal(storegen_open(fd, true, &again), 0);
	assert_int_equal(again->next_free, sg->next_free);
	assert_int_equal(again->area, sg->area);
	assert_int_equal(again->count, sg->count);
	assert_int_equal(again->exceptions, 300);
	assert_int_equal(again->size, sg->size);
	assert_int_equal(storegen_add_buf(sg, 1000, NULL, &n1), 0);
	assert_int_equal(storegen_add_buf(again, 1000, NULL, &n2), 0);
	assert_int_equal(n1, n2);
	storegen_free(again);
	/* Not a store: refused. */
	assert_int_equal(storegen_write_le32(fd, 0, 0), 0);
	assert_int_equal(storegen_open(fd, true, &again), -EBADMSG);
	storegen_free(sg);
	close(fd);
}

static void test_merged_view(void **state)
{
	int cow = memfd_create("cow", MFD_CLOEXEC), base = memfd_create("base", MFD_CLOEXEC);
	uint8_t chunk[4096], got[3 * 4096], want[3 * 4096];
	struct storegen_view *v;
	struct storegen *sg;

	assert_true(cow >= 0 && base >= 0);
	/* Base: 2 chunks of 0xbb; virtual disk: 4 chunks. */
	memset(chunk, 0xbb, sizeof(chunk));
	assert_int_equal(pwrite(base, chunk, 4096, 0), 4096);
	assert_int_equal(pwrite(base, chunk, 4096, 4096), 4096);
	assert_int_equal(storegen_create(cow, 8, true, &sg), 0);
	storegen_pattern(chunk, sizeof(chunk), 5);
	assert_int_equal(storegen_add_buf(sg, 1, chunk, NULL), 0);
	assert_int_equal(storegen_add_buf(sg, 3, NULL, NULL), 0);
	assert_int_equal(storegen_view_open(cow, base, 4 * 4096, &v), 0);
	assert_int_equal(storegen_view_exceptions(v), 2);
	/* Bytes 2048 .. 14336: half base chunk 0, COW chunk for 1, zeros past base, hole. */
	assert_int_equal(storegen_view_read(v, got, sizeof(got), 2048), 0);
	memset(want, 0xbb, 2048);
	memcpy(want + 2048, chunk, 4096);
	memset(want + 2048 + 4096, 0, sizeof(want) - 2048 - 4096);
	assert_memory_equal(got, want, sizeof(got));
	assert_int_equal(storegen_view_read(v, got, 4096, 4096 * 4), 0);
	storegen_view_free(v);
	storegen_free(sg);
	close(cow);
	close(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_writer_layout),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_merged_view),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
