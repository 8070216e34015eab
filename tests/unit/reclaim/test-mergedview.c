/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The merged view: COW chunk if the store has an exception, else base, else zeros. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/mergedview.h"

#include "fakedio.c"

#define CHUNK 4096u

struct fixture {
	char dir[256];
	int cow_fd, base_fd;
};

/* Byte at origin offset off of the expected disk: COW chunks hold 0xC0 ^ chunk, base 0xB0 ^ off. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[512];
	uint8_t buf[CHUNK];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/cowpunch-mv.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/base", f->dir);
	f->base_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(f->base_fd >= 0);
	/* Base: 10.5 chunks, byte i = (uint8_t)(0xB0 ^ (i / 7)). */
	for (uint64_t off = 0; off < 10 * CHUNK + CHUNK / 2; off += CHUNK) {
		for (unsigned i = 0; i < CHUNK; i++)
			buf[i] = (uint8_t)(0xB0 ^ ((off + i) / 7));
		size_t n = off + CHUNK > 10 * CHUNK + CHUNK / 2 ? CHUNK / 2 : CHUNK;
		assert_int_equal(util_pwrite_full(f->base_fd, buf, n, off), (ssize_t)n);
	}
	snprintf(path, sizeof(path), "%s/cow", f->dir);
	f->cow_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(f->cow_fd >= 0);
	/* COW chunk c (2..5) filled with 0xC0 ^ c; chunk 6 left a hole (reads zeros). */
	for (unsigned c = 2; c <= 5; c++) {
		memset(buf, 0xC0 ^ c, CHUNK);
		assert_int_equal(util_pwrite_full(f->cow_fd, buf, CHUNK, (uint64_t)c * CHUNK),
				 CHUNK);
	}
	assert_int_equal(ftruncate(f->cow_fd, 8 * CHUNK), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[300];

	close(f->cow_fd);
	close(f->base_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* old -> new: 1->3, 4->2, 11->5 (past the base, inside the disk), 9->6 (a hole in the COW). */
static struct mergedview *open_view(struct fixture *f, uint64_t disk_size)
{
	static const struct snapstore_exception ex[] = {
		{11, 5},
		{1, 3},
		{9, 6},
		{4, 2},
	};
	struct mergedview_list l = {0};
	struct mergedview *mv = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(ex); i++)
		assert_int_equal(mergedview_list_add(&l, &ex[i]), 0);
	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, disk_size, CHUNK, &l, &mv), 0);
	assert_null(l.v);
	return mv;
}

static uint8_t expected(uint64_t off)
{
	uint64_t c = off / CHUNK;

	switch (c) {
	case 1:
		return 0xC0 ^ 3;
	case 4:
		return 0xC0 ^ 2;
	case 11:
		return 0xC0 ^ 5;
	case 9:
		return 0;
	}
	if (off < 10 * CHUNK + CHUNK / 2)
		return (uint8_t)(0xB0 ^ (off / 7));
	return 0;
}

static void test_read_every_range(void **state)
{
	struct fixture *f = *state;
	uint64_t disk = 16 * CHUNK + 100;
	struct mergedview *mv = open_view(f, disk);
	_cleanup_free_ uint8_t *buf = malloc(disk + 10);
	const struct snapstore_exception *v;
	uint64_t nc;

	assert_non_null(buf);
	assert_int_equal(mergedview_exceptions(mv, &v), 4);
	assert_int_equal(v[0].old_chunk, 1);
	assert_int_equal(v[3].old_chunk, 11);
	assert_true(mergedview_lookup(mv, 4, &nc));
	assert_int_equal(nc, 2);
	assert_false(mergedview_lookup(mv, 5, &nc));
	assert_int_equal(mergedview_base_size(mv), 10 * CHUNK + CHUNK / 2);

	/* The whole disk in one read, then odd ranges straddling chunk and base boundaries. */
	assert_int_equal(mergedview_pread(mv, buf, disk + 10, 0), (ssize_t)disk);
	for (uint64_t i = 0; i < disk; i++)
		if (buf[i] != expected(i))
			fail_msg("byte %llu: 0x%02x, expected 0x%02x", (unsigned long long)i,
				 buf[i], expected(i));
	static const uint64_t offs[] = {1, CHUNK - 3, 4 * CHUNK - 1, 10 * CHUNK + CHUNK / 2 - 5,
					9 * CHUNK + 17};
	for (size_t k = 0; k < ARRAY_SIZE(offs); k++) {
		size_t len = 2 * CHUNK + 13;

		memset(buf, 0x5a, len);
		assert_int_equal(mergedview_pread(mv, buf, len, offs[k]), (ssize_t)len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(buf[i], expected(offs[k] + i));
	}
	/* At and past the end of the disk: short, then nothing. */
	assert_int_equal(mergedview_pread(mv, buf, 200, disk - 100), 100);
	assert_int_equal(mergedview_pread(mv, buf, 200, disk), 0);
	assert_int_equal(mergedview_pread(mv, buf, 200, UINT64_MAX - 5), 0);
	mergedview_free(mv);
}

/* Every odd range reads right through the view; the fake refuses misaligned O_DIRECT. */
static void read_odd_ranges(struct mergedview *mv)
{
	static const uint64_t offs[] = {0,
					1,
					CHUNK - 3,
					4 * CHUNK - 1,
					10 * CHUNK + CHUNK / 2 - 5,
					9 * CHUNK + 17,
					11 * CHUNK + 5,
					14 * CHUNK + 1};
	uint8_t buf[3 * CHUNK];

	for (size_t k = 0; k < ARRAY_SIZE(offs); k++) {
		size_t len = 2 * CHUNK + 13;

		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(mergedview_pread(mv, buf, len, offs[k]), (ssize_t)len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(buf[i], expected(offs[k] + i));
	}
}

/* The engine opens the COW O_DIRECT; the view must still read any byte range of it. */
static void test_direct_fds(void **state)
{
	struct fixture *f = *state;
	char path[512];
	int cfd, bfd;
	uint64_t disk = 16 * CHUNK + 100;
	struct mergedview *mv;

	snprintf(path, sizeof(path), "%s/cow", f->dir);
	cfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	snprintf(path, sizeof(path), "%s/base", f->dir);
	bfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	if (cfd < 0 || bfd < 0) {
		/* tmpfs and some others refuse O_DIRECT: nothing to test there. */
		assert_int_equal(errno, EINVAL);
		skip();
	}
	close(f->cow_fd);
	close(f->base_fd);
	f->cow_fd = cfd;
	f->base_fd = bfd;
	mv = open_view(f, disk);
	read_odd_ranges(mv);
	mergedview_free(mv);
}

/*
 * Only bytes past a file's end may read as zeros: past the base's end as the view
 * found it (the zero target), never a base or COW that is shorter now than when the
 * view was opened or than the store says.  Those are I/O errors, not zeros.
 */
static void test_short_files(void **state)
{
	struct fixture *f = *state;
	uint64_t disk = 16 * CHUNK;
	struct mergedview *mv = open_view(f, disk);
	uint8_t buf[CHUNK];

	/* The base loses its last 7.5 chunks after the view measured 10.5. */
	assert_int_equal(ftruncate(f->base_fd, 3 * CHUNK), 0);
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 2 * CHUNK), CHUNK);
	assert_int_equal(buf[5], expected(2 * CHUNK + 5));
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 5 * CHUNK), -EIO);
	assert_int_equal(mergedview_pread(mv, buf, 100, 3 * CHUNK - 50), -EIO);
	assert_int_equal(mergedview_pread(mv, buf, CHUNK / 2, 10 * CHUNK), -EIO);
	/* Past the base's end as measured: the zero target, still zeros. */
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 13 * CHUNK), CHUNK);
	assert_true(util_is_zero(buf, CHUNK));
	/* Exceptions still read their COW chunks (1 -> 3, 4 -> 2). */
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 4 * CHUNK), CHUNK);
	assert_int_equal(buf[0], 0xC0 ^ 2);

	/* The COW loses chunks 5..7: origin chunk 11 (-> 5) cannot be read. */
	assert_int_equal(ftruncate(f->cow_fd, 5 * CHUNK), 0);
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 11 * CHUNK), -EIO);
	assert_int_equal(mergedview_pread(mv, buf, 10, 11 * CHUNK + CHUNK - 10), -EIO);
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 1 * CHUNK), CHUNK);
	assert_int_equal(buf[CHUNK - 1], 0xC0 ^ 3);
	/* A read error of the disk is the caller's too. */
	fakedio_eio(f->cow_fd, 0);
	assert_int_equal(mergedview_pread(mv, buf, CHUNK, 1 * CHUNK), -EIO);
	fakedio_off();
	mergedview_free(mv);
}

/* Reopens the fixture's COW with O_DIRECT; false when the file system refuses it. */
static bool cow_direct(struct fixture *f)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/cow", f->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	if (fd < 0) {
		assert_int_equal(errno, EINVAL);
		return false;
	}
	close(f->cow_fd);
	f->cow_fd = fd;
	return true;
}

/*
 * A COW whose O_DIRECT wants 16 KiB offsets and 8 KiB buffers.  Reported by statx:
 * the view reads it aligned, nothing refused.  Not reported (before Linux 6.1): the
 * 4 KiB guess is refused (EINVAL) and the view reads without O_DIRECT from then on,
 * as the scanner does.  Either way every range reads right.
 */
static void direct_alignment(struct fixture *f, bool report)
{
	struct mergedview *mv;

	if (!cow_direct(f))
		skip(); /* tmpfs before Linux 6.6 refuses O_DIRECT: nothing to test there */
	fakedio_set(report, 8192, 16384);
	mv = open_view(f, 16 * CHUNK + 100);
	read_odd_ranges(mv);
	assert_int_equal(fakedio.refused > 0, !report);
	assert_int_equal(fakedio.direct_reads > 0, report);
	assert_int_equal(!!(fcntl(f->cow_fd, F_GETFL) & O_DIRECT), report);
	fakedio_off();
	mergedview_free(mv);
}

static void test_direct_alignment_reported(void **state)
{
	direct_alignment(*state, true);
}

static void test_direct_alignment_unknown(void **state)
{
	direct_alignment(*state, false);
}

static void test_no_base(void **state)
{
	struct fixture *f = *state;
	struct mergedview_list l = {0};
	struct snapstore_exception e = {0, 4};
	struct mergedview *mv;
	uint8_t buf[2 * CHUNK];

	assert_int_equal(mergedview_list_add(&l, &e), 0);
	assert_int_equal(mergedview_open(f->cow_fd, -1, 2 * CHUNK, CHUNK, &l, &mv), 0);
	assert_int_equal(mergedview_pread(mv, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	for (size_t i = 0; i < CHUNK; i++)
		assert_int_equal(buf[i], 0xC0 ^ 4);
	assert_true(util_is_zero(buf + CHUNK, CHUNK));
	mergedview_free(mv);
}

static void test_refuses(void **state)
{
	struct fixture *f = *state;
	struct mergedview_list l = {0};
	struct snapstore_exception e;
	struct mergedview *mv = NULL;

	/* Two exceptions for one origin chunk. */
	e = (struct snapstore_exception){3, 2};
	assert_int_equal(mergedview_list_add(&l, &e), 0);
	e.new_chunk = 4;
	assert_int_equal(mergedview_list_add(&l, &e), 0);
	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, 8 * CHUNK, CHUNK, &l, &mv),
			 -EBADMSG);
	mergedview_list_free(&l);

	/* An origin chunk past the disk: store and size do not belong together. */
	e = (struct snapstore_exception){8, 2};
	assert_int_equal(mergedview_list_add(&l, &e), 0);
	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, 8 * CHUNK, CHUNK, &l, &mv),
			 -EBADMSG);
	/* The last, partial chunk of a disk is a real chunk. */
	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, 8 * CHUNK + 512, CHUNK, &l, &mv),
			 0);
	mergedview_free(mv);

	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, CHUNK, 3000, &l, &mv), -EINVAL);
	assert_int_equal(mergedview_open(f->cow_fd, f->base_fd, CHUNK, 256, &l, &mv), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_every_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_alignment_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_alignment_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
