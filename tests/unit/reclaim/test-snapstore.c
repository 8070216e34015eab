/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The exception-store reader: every refusal rule on its own (-EBADMSG, the byte
 * offset, the file's bytes and st_blocks unchanged), valid stores of many shapes,
 * and the (buf, len) parsers.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "reclaim/snapstore.h"
#include "tests/unit/helpers/storegen.h"

#include "fakedio.c"

struct fixture {
	char path[64];
	int fd; /* O_RDWR, for building */
	struct storegen *sg;
};

static struct fixture *fx_new(uint32_t chunk_sectors, bool metadata_holes)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	assert_non_null(f);
	snprintf(f->path, sizeof(f->path), "%.40s/snapstore-XXXXXX", tmp);
	f->fd = mkostemp(f->path, O_CLOEXEC);
	assert_true(f->fd >= 0);
	assert_int_equal(storegen_create(f->fd, chunk_sectors, metadata_holes, &f->sg), 0);
	return f;
}

static void fx_free(struct fixture *f)
{
	storegen_free(f->sg);
	close(f->fd);
	unlink(f->path);
	free(f);
}

static void file_digest(int fd, uint8_t out[32], int64_t *blocks)
{
	struct storegen_sha256 s;
	uint8_t buf[65536];
	ssize_t n;
	off_t off = 0;

	storegen_sha256_init(&s);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		storegen_sha256_update(&s, buf, (size_t)n);
		off += n;
	}
	assert_true(n == 0);
	storegen_sha256_final(&s, out);
	*blocks = storegen_allocated(fd);
}

/* Loads the store read-only; returns snapstore_load()'s result. */
static int fx_load(struct fixture *f, struct snapstore_info *info, struct snapstore_error *err)
{
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	int r;

	assert_true(fd >= 0);
	r = snapstore_load(fd, info, NULL, NULL, err);
	close(fd);
	return r;
}

/* Asserts a refusal at `offset` whose rule mentions `word`, and that nothing changed. */
static void expect_refusal(struct fixture *f, uint64_t offset, const char *word)
{
	struct snapstore_info info = {0};
	struct snapstore_error err = {0};
	uint8_t before[32], after[32];
	int64_t bb, ba;

	file_digest(f->fd, before, &bb);
	assert_int_equal(fx_load(f, &info, &err), -EBADMSG);
	if (err.offset != offset || !strstr(err.rule, word))
		fail_msg("refusal at %llu (want %llu): %s (want a rule about '%s')",
			 (unsigned long long)err.offset, (unsigned long long)offset, err.rule,
			 word);
	assert_null(info.data_bitmap);
	file_digest(f->fd, after, &ba);
	assert_memory_equal(before, after, 32);
	assert_int_equal(bb, ba);
}

static void expect_valid(struct fixture *f, struct snapstore_info *info)
{
	struct snapstore_error err = {0};
	int r = fx_load(f, info, &err);

	if (r != 0)
		fail_msg("load: %d at %llu: %s", r, (unsigned long long)err.offset, err.rule);
}

static void add_n(struct fixture *f, uint64_t n, uint64_t old_base)
{
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(storegen_add_pattern(f->sg, old_base + i, i, NULL), 0);
}

/* ---- header rules ---- */

static void test_refuse_magic_zero(void **state)
{
	struct fixture *f = fx_new(8, false);

	assert_int_equal(storegen_write_header(f->fd, 0, 0, 0, 0), 0);
	expect_refusal(f, 0, "never activated");
	fx_free(f);
}

static void test_refuse_bad_magic(void **state)
{
	struct fixture *f = fx_new(8, false);

	assert_int_equal(storegen_write_le32(f->fd, 0, 0x70416e54), 0);
	expect_refusal(f, 0, "bad magic");
	fx_free(f);
}

static void test_refuse_version(void **state)
{
	struct fixture *f = fx_new(8, false);

	assert_int_equal(storegen_write_le32(f->fd, 8, 2), 0);
	expect_refusal(f, 8, "version 2");
	fx_free(f);
}

static void test_refuse_invalid(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 3, 0);
	assert_int_equal(storegen_write_le32(f->fd, 4, 0), 0);
	expect_refusal(f, 4, "valid is 0");
	fx_free(f);
}

static void test_refuse_chunk_size(void **state)
{
	static const uint32_t bad[] = {0, 12, 24, 4, 1, 1u << 22, 0x80000000u, 0xffffffffu};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fixture *f = fx_new(8, false);

		assert_int_equal(storegen_write_le32(f->fd, 12, bad[i]), 0);
		expect_refusal(f, 12, "chunk size");
		fx_free(f);
	}
}

static void test_refuse_short_files(void **state)
{
	struct fixture *f = fx_new(8, false);

	/* Under 16 bytes: no header at all. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 10), 0);
	expect_refusal(f, 0, "16-byte header");
	/* Header chunk but no area 0. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 0), 0);
	assert_int_equal(storegen_write_header(f->fd, SNAPSTORE_MAGIC, 1, 1, 8), 0);
	assert_int_equal(storegen_set_size(f->sg, f->fd, 4096), 0);
	expect_refusal(f, 4096, "truncated");
	/* One byte short of area 0. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 8191), 0);
	expect_refusal(f, 8191, "truncated");
	fx_free(f);
	/* 64 KiB chunks: a 100 KiB file is short too. */
	f = fx_new(128, true);
	assert_int_equal(storegen_set_size(f->sg, f->fd, 100 * 1024), 0);
	expect_refusal(f, 100 * 1024, "truncated");
	fx_free(f);
}

static void test_refuse_header_rest(void **state)
{
	struct fixture *f = fx_new(16, false);
	uint8_t b = 1;

	assert_int_equal(storegen_write_raw(f->fd, 16, &b, 1), 0);
	expect_refusal(f, 16, "header chunk");
	fx_free(f);
	f = fx_new(16, false);
	assert_int_equal(storegen_write_raw(f->fd, 8191, &b, 1), 0);
	expect_refusal(f, 8191, "header chunk");
	fx_free(f);
}

/* ---- entry rules ---- */

static void test_refuse_new_beyond_file(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 5, 100);
	/* Entry 2 now points at chunk 4000; the file has 7 chunks. */
	assert_int_equal(storegen_put_entry(f->sg, 0, 2, 102, 4000), 0);
	expect_refusal(f, 4096 + 2 * 16 + 8, "beyond the end of the file");
	fx_free(f);
	/* A file truncated through its last data chunk. */
	f = fx_new(8, false);
	add_n(f, 5, 100);
	assert_int_equal(storegen_set_size(f->sg, f->fd, 6 * 4096 + 100), 0);
	expect_refusal(f, 4096 + 4 * 16 + 8, "beyond the end of the file");
	fx_free(f);
}

static void test_refuse_new_is_metadata(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 300, 0); /* two areas, file holds chunk 258 (area 1) */
	assert_int_equal(storegen_put_entry(f->sg, 0, 7, 7, 1), 0);
	expect_refusal(f, 4096 + 7 * 16 + 8, "metadata");
	assert_int_equal(storegen_put_entry(f->sg, 0, 7, 7, 9), 0);
	assert_int_equal(storegen_put_entry(f->sg, 1, 3, 259, 258), 0);
	/* Area 0's entry 7 must be back to its own chunk first, else it is a duplicate. */
	expect_refusal(f, storegen_entry_offset(f->sg, 1, 3) + 8, "metadata");
	fx_free(f);
}

static void test_refuse_duplicate_new(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 10, 50);
	assert_int_equal(storegen_put_entry(f->sg, 0, 8, 58, 4), 0);
	expect_refusal(f, 4096 + 8 * 16 + 8, "already used");
	fx_free(f);
}

static void test_refuse_duplicate_old(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 10, 50);
	assert_int_equal(storegen_put_entry(f->sg, 0, 9, 52, 11), 0);
	expect_refusal(f, 4096 + 9 * 16, "old_chunk 52 already");
	fx_free(f);
	/* Far apart values and across areas: the hashed set must still catch it. */
	f = fx_new(8, true);
	assert_int_equal(storegen_add_pattern(f->sg, 1ULL << 50, 1, NULL), 0);
	add_n(f, 300, 1000);
	assert_int_equal(storegen_add_pattern(f->sg, 1ULL << 50, 2, NULL), 0);
	expect_refusal(f, storegen_entry_offset(f->sg, 1, 45), "already has an exception");
	fx_free(f);
}

static void test_refuse_old_overflow(void **state)
{
	struct fixture *f = fx_new(8, false);
	uint64_t last_ok = UINT64_MAX / 4096;

	add_n(f, 2, 0);
	assert_int_equal(storegen_put_entry(f->sg, 0, 0, last_ok, 2), 0);
	assert_int_equal(storegen_put_entry(f->sg, 0, 1, last_ok + 1, 3), 0);
	expect_refusal(f, 4096 + 16, "beyond 2^64");
	fx_free(f);
}

static void test_refuse_after_terminator(void **state)
{
	struct fixture *f = fx_new(8, false);
	uint8_t b = 0x40;

	add_n(f, 4, 0);
	/* An entry two slots after the terminator. */
	assert_int_equal(storegen_put_entry(f->sg, 0, 6, 77, 5), 0);
	expect_refusal(f, 4096 + 6 * 16, "after the end of the list");
	fx_free(f);

	/* The last byte of the area. */
	f = fx_new(8, false);
	add_n(f, 4, 0);
	assert_int_equal(storegen_write_raw(f->fd, 2 * 4096 - 1, &b, 1), 0);
	expect_refusal(f, 2 * 4096 - 1, "damaged");
	fx_free(f);

	/* The terminator's own old_chunk. */
	f = fx_new(8, false);
	add_n(f, 4, 0);
	assert_int_equal(storegen_put_entry(f->sg, 0, 4, 99, 0), 0);
	expect_refusal(f, 4096 + 4 * 16, "old_chunk 99");
	fx_free(f);
}

/*
 * The discard corruption (docs/kernel-facts.md): an unaligned discard zeroes 1 KiB of a
 * metadata area in the middle of the list.  The kernel would silently drop every
 * exception after the hole; we must refuse.
 */
static void test_refuse_discard_damage(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 200, 0);
	assert_int_equal(storegen_punch(f->fd, 4096 + 1024, 1024), 0);
	expect_refusal(f, 4096 + 2048, "discard");
	fx_free(f);
	/* Same in a later area, reached through a full area 0. */
	f = fx_new(8, false);
	add_n(f, 400, 0);
	assert_int_equal(storegen_punch(f->fd, storegen_area_offset(f->sg, 1), 512), 0);
	expect_refusal(f, storegen_area_offset(f->sg, 1) + 512, "area 1");
	fx_free(f);
}

static void test_refuse_missing_next_area(void **state)
{
	struct fixture *f = fx_new(8, false);

	add_n(f, 256, 0); /* area 0 full, area 1 at chunk 258 zeroed */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 258 * 4096), 0);
	expect_refusal(f, 258 * 4096, "full last area whose next area is missing");
	/* Partly there: still missing. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 258 * 4096 + 4095), 0);
	expect_refusal(f, 258 * 4096, "full last area whose next area is missing");
	fx_free(f);
}

/* ---- valid stores ---- */

static void test_valid_empty(void **state)
{
	static const uint32_t sizes[] = {8, 16, 32, 128, 1024};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct fixture *f = fx_new(sizes[i], i & 1);
		struct snapstore_info info;

		expect_valid(f, &info);
		assert_int_equal(info.hdr.magic, SNAPSTORE_MAGIC);
		assert_int_equal(info.hdr.version, 1);
		assert_int_equal(info.geom.chunk_sectors, sizes[i]);
		assert_int_equal(info.geom.chunk_bytes, sizes[i] * 512ULL);
		assert_int_equal(info.geom.epa, sizes[i] * 512ULL / 16);
		assert_int_equal(info.geom.file_chunks, 2);
		assert_int_equal(info.exceptions, 0);
		assert_int_equal(info.metadata_areas, 1);
		assert_int_equal(info.next_free_chunk, 2);
		assert_int_equal(info.max_old_chunk, 0);
		assert_int_equal(info.file_size, 2 * sizes[i] * 512ULL);
		assert_int_equal(info.data_bitmap[0], 0);
		snapstore_info_free(&info);
		fx_free(f);
	}
}

struct collect {
	uint64_t n;
	uint64_t *olds, *news;
	int fail_at;
};

static int collect_cb(void *opaque, const struct snapstore_exception *e)
{
	struct collect *c = opaque;

	if (c->fail_at >= 0 && c->n == (uint64_t)c->fail_at)
		return -ECANCELED;
	c->olds[c->n] = e->old_chunk;
	c->news[c->n] = e->new_chunk;
	c->n++;
	return 0;
}

/* Builds `count` exceptions with shuffled old chunks; checks everything load reports. */
static void check_shape(uint32_t chunk_sectors, uint64_t count, bool holes, bool data)
{
	struct fixture *f = fx_new(chunk_sectors, holes);
	uint64_t *olds = calloc(count + 1, 8), *news = calloc(count + 1, 8), max_old = 0;
	struct collect c = {0, calloc(count + 1, 8), calloc(count + 1, 8), -1};
	struct snapstore_error err;
	struct snapstore_info info;
	uint64_t listed = 0, epa = chunk_sectors * 512ULL / 16;
	int fd;

	assert_true(olds && news && c.olds && c.news);
	for (uint64_t i = 0; i < count; i++) {
		/* A permutation-ish spread: distinct, far apart, not in order. */
		olds[i] = (i * 2654435761ULL) % (count * 7 + 1) + (i & 1 ? 1ULL << 40 : 0);
		if (data)
			assert_int_equal(storegen_add_pattern(f->sg, olds[i], i, &news[i]), 0);
		else
			assert_int_equal(storegen_add_buf(f->sg, olds[i], NULL, &news[i]), 0);
		if (olds[i] > max_old)
			max_old = olds[i];
	}
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(snapstore_load(fd, &info, collect_cb, &c, &err), 0);
	close(fd);
	assert_int_equal(info.exceptions, count);
	assert_int_equal(c.n, count);
	assert_memory_equal(c.olds, olds, count * 8);
	assert_memory_equal(c.news, news, count * 8);
	/* Areas read: every full one plus the one holding the terminator. */
	assert_int_equal(info.metadata_areas, count / epa + 1);
	assert_int_equal(info.next_free_chunk, f->sg->next_free);
	assert_int_equal(info.max_old_chunk, max_old);
	for (uint64_t ch = 0; ch < info.geom.file_chunks; ch++)
		listed += snapstore_bitmap_test(info.data_bitmap, ch);
	assert_int_equal(listed, count);
	for (uint64_t i = 0; i < count; i++)
		assert_true(snapstore_bitmap_test(info.data_bitmap, news[i]));
	snapstore_info_free(&info);
	free(olds);
	free(news);
	free(c.olds);
	free(c.news);
	fx_free(f);
}

static void test_valid_shapes(void **state)
{
	check_shape(8, 1, false, true);
	check_shape(8, 255, false, true);
	check_shape(8, 256, false, true); /* exactly full area 0, zeroed area 1 */
	check_shape(8, 257, true, true);
	check_shape(8, 512, true, false); /* two full areas */
	check_shape(8, 3000, true, false);
	check_shape(16, 700, false, false);
	check_shape(16, 1024, true, true);
	check_shape(32, 1024, false, false); /* exactly full */
	check_shape(32, 2500, true, false);
	check_shape(128, 4096, true, false);
	check_shape(128, 9000, true, false);
}

static void test_valid_extra_room(void **state)
{
	struct fixture *f = fx_new(8, true);
	struct snapstore_info info;

	add_n(f, 10, 0);
	/* Spare room and a partial tail chunk, as `truncate -s` leaves. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 1000 * 4096 + 123), 0);
	expect_valid(f, &info);
	assert_int_equal(info.geom.file_chunks, 1000);
	assert_int_equal(info.next_free_chunk, 12);
	assert_int_equal(info.exceptions, 10);
	snapstore_info_free(&info);
	fx_free(f);
}

/* next_free skips a metadata chunk: max(new) = 257 -> 258 is area 1 -> 259. */
static void test_next_free_skips_metadata(void **state)
{
	struct fixture *f = fx_new(8, false);
	struct snapstore_info info;

	add_n(f, 255, 0);
	expect_valid(f, &info);
	assert_int_equal(info.next_free_chunk, 257);
	snapstore_info_free(&info);
	add_n(f, 1, 1000);
	expect_valid(f, &info);
	assert_int_equal(info.next_free_chunk, 259);
	assert_int_equal(info.metadata_areas, 2);
	snapstore_info_free(&info);
	fx_free(f);
}

/* Listed chunks entirely in holes; a half-punched chunk still holds data. */
static void test_hole_chunks(void **state)
{
	struct fixture *f = fx_new(32, true); /* 16 KiB chunks: whole fs blocks */
	struct snapstore_info info;
	uint64_t holes = 99, n;

	for (uint64_t i = 0; i < 40; i++)
		assert_int_equal(i % 4 == 0 ? storegen_add_buf(f->sg, i, NULL, &n)
					    : storegen_add_pattern(f->sg, i, i, &n),
				 0);
	/* 10 hole chunks so far; punch all of chunk 3 (data) and half of chunk 4. */
	assert_int_equal(storegen_punch(f->fd, 3 * 16384, 16384), 0);
	assert_int_equal(storegen_punch(f->fd, 4 * 16384, 8192), 0);
	/* Spare room past the store is a hole but not a listed chunk. */
	assert_int_equal(storegen_set_size(f->sg, f->fd, 100 * 16384), 0);
	expect_valid(f, &info);
	assert_int_equal(snapstore_hole_chunks(f->fd, &info, &holes), 0);
	assert_int_equal(holes, 11);
	snapstore_info_free(&info);
	fx_free(f);
}

static void test_callback_error_stops(void **state)
{
	struct fixture *f = fx_new(8, false);
	struct collect c = {0, calloc(10, 8), calloc(10, 8), 3};
	struct snapstore_info info = {0};
	struct snapstore_error err;

	add_n(f, 10, 0);
	assert_int_equal(snapstore_load(f->fd, &info, collect_cb, &c, &err), -ECANCELED);
	assert_int_equal(c.n, 3);
	assert_null(info.data_bitmap);
	free(c.olds);
	free(c.news);
	fx_free(f);
}

static void test_odirect(void **state)
{
	struct fixture *f = fx_new(8, false);
	struct snapstore_info info;
	struct snapstore_error err;
	int fd;

	add_n(f, 600, 0);
	fd = open(f->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		fx_free(f);
		skip(); /* the temporary directory's file system refuses O_DIRECT */
	}
	assert_int_equal(snapstore_load(fd, &info, NULL, NULL, &err), 0);
	assert_int_equal(info.exceptions, 600);
	snapstore_info_free(&info);
	close(fd);
	fx_free(f);
}

/*
 * A file whose O_DIRECT wants 16 KiB offsets and 8 KiB buffers (a device with
 * 16 KiB logical blocks), with the alignment reported by statx or not: loads
 * the same.  chunk_sectors 8 (4 KiB chunks, smaller than the alignment: read
 * through the page cache) and 128 (64 KiB: stays O_DIRECT).
 */
static void load_aligned(uint32_t chunk_sectors, bool report, bool stays_direct)
{
	struct fixture *f = fx_new(chunk_sectors, false);
	struct snapstore_info info;
	struct snapstore_error err;
	int fd, r;

	add_n(f, 600, 0);
	fd = open(f->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		fx_free(f);
		skip(); /* the temporary directory's file system refuses O_DIRECT */
	}
	fakedio_set(report, 8192, 16384);
	r = snapstore_load(fd, &info, NULL, NULL, &err);
	if (r != 0)
		fail_msg("chunk %u sectors, alignment %s: load %d", chunk_sectors,
			 report ? "reported" : "unknown", r);
	assert_int_equal(info.exceptions, 600);
	/* Refused only when guessed; O_DIRECT kept where the chunks allow it. */
	assert_int_equal(fakedio.refused > 0, !report);
	assert_int_equal(!!(fcntl(fd, F_GETFL) & O_DIRECT), stays_direct);
	if (stays_direct)
		assert_true(fakedio.direct_reads > 0);
	fakedio_off();
	snapstore_info_free(&info);
	close(fd);
	fx_free(f);
}

static void test_odirect_alignment(void **state)
{
	load_aligned(8, true, false);
	load_aligned(128, true, true);
	load_aligned(8, false, false);
	load_aligned(128, false, false);
}

static void test_not_a_file(void **state)
{
	struct snapstore_info info;
	struct snapstore_error err;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(snapstore_load(fd, &info, NULL, NULL, &err), -EINVAL);
	close(fd);
	assert_int_equal(snapstore_load(-1, &info, NULL, NULL, &err), -EBADF);
}

/* ---- parsers over buffers ---- */

static void test_parse_header_buf(void **state)
{
	uint8_t buf[8192] = {0};
	struct snapstore_header h;
	struct snapstore_geometry g;
	struct snapstore_error err;

	storegen_put_le32(buf, SNAPSTORE_MAGIC);
	storegen_put_le32(buf + 4, 1);
	storegen_put_le32(buf + 8, 1);
	storegen_put_le32(buf + 12, 16);
	/* Only the 16 header bytes given. */
	assert_int_equal(snapstore_parse_header(buf, 16, 1 << 20, &h, &g, &err), 0);
	assert_int_equal(g.chunk_bytes, 8192);
	assert_int_equal(g.epa, 512);
	assert_int_equal(g.file_chunks, 128);
	assert_int_equal(h.valid, 1);
	/* valid is any non-zero value for the kernel. */
	storegen_put_le32(buf + 4, 7);
	assert_int_equal(snapstore_parse_header(buf, sizeof(buf), 1 << 20, &h, &g, &err), 0);
	assert_int_equal(h.valid, 7);
	buf[5000] = 1;
	assert_int_equal(snapstore_parse_header(buf, sizeof(buf), 1 << 20, &h, &g, &err), -EBADMSG);
	assert_int_equal(err.offset, 5000);
	buf[5000] = 0;
	assert_int_equal(snapstore_parse_header(buf, 15, 1 << 20, &h, &g, &err), -EBADMSG);
	assert_int_equal(snapstore_parse_header(buf, 16, 16383, &h, &g, &err), -EBADMSG);
	assert_int_equal(err.offset, 16383);
	storegen_put_le32(buf + 12, 3u << 3);
	assert_int_equal(snapstore_parse_header(buf, 16, 1 << 20, &h, &g, &err), -EBADMSG);
	assert_int_equal(err.offset, 12);
}

static int count_cb(void *opaque, const struct snapstore_exception *e)
{
	(*(uint64_t *)opaque)++;
	return 0;
}

static void test_parse_area_buf(void **state)
{
	struct snapstore_geometry g = {8, 4096, 256, 1000};
	uint8_t area[4096] = {0};
	struct snapstore_area a;
	struct snapstore_error err;
	uint64_t n = 0;

	assert_int_equal(snapstore_parse_area(area, sizeof(area), &g, 0, &a, NULL, NULL, &err), 0);
	assert_int_equal(a.count, 0);
	assert_false(a.full);
	for (int i = 0; i < 256; i++) {
		storegen_put_le64(area + 16 * i, 5000 + i);
		storegen_put_le64(area + 16 * i + 8, 2 + i);
	}
	assert_int_equal(snapstore_parse_area(area, sizeof(area), &g, 0, &a, count_cb, &n, &err),
			 0);
	assert_int_equal(a.count, 256);
	assert_true(a.full);
	assert_int_equal(n, 256);
	/* Area 2 lives at chunk 515: offsets are file offsets. */
	storegen_put_le64(area + 16 * 9 + 8, 258);
	assert_int_equal(snapstore_parse_area(area, sizeof(area), &g, 2, &a, NULL, NULL, &err),
			 -EBADMSG);
	assert_int_equal(err.offset, 515 * 4096 + 16 * 9 + 8);
	storegen_put_le64(area + 16 * 9 + 8, 0);
	storegen_put_le64(area + 16 * 9, 0);
	assert_int_equal(snapstore_parse_area(area, sizeof(area), &g, 0, &a, NULL, NULL, &err),
			 -EBADMSG);
	assert_int_equal(err.offset, 4096 + 16 * 10);
	assert_int_equal(snapstore_parse_area(area, 100, &g, 0, &a, NULL, NULL, &err), -EINVAL);
}

static void test_geometry_helpers(void **state)
{
	struct snapstore_geometry g = {8, 4096, 256, 100000};

	assert_int_equal(snapstore_area_chunk(&g, 0), 1);
	assert_int_equal(snapstore_area_chunk(&g, 1), 258);
	assert_int_equal(snapstore_area_chunk(&g, 2), 515);
	assert_true(snapstore_is_metadata_chunk(&g, 0));
	assert_true(snapstore_is_metadata_chunk(&g, 1));
	assert_false(snapstore_is_metadata_chunk(&g, 2));
	assert_false(snapstore_is_metadata_chunk(&g, 257));
	assert_true(snapstore_is_metadata_chunk(&g, 258));
	assert_false(snapstore_is_metadata_chunk(&g, 259));
	assert_true(snapstore_is_metadata_chunk(&g, 515));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refuse_magic_zero),
		cmocka_unit_test(test_refuse_bad_magic),
		cmocka_unit_test(test_refuse_version),
		cmocka_unit_test(test_refuse_invalid),
		cmocka_unit_test(test_refuse_chunk_size),
		cmocka_unit_test(test_refuse_short_files),
		cmocka_unit_test(test_refuse_header_rest),
		cmocka_unit_test(test_refuse_new_beyond_file),
		cmocka_unit_test(test_refuse_new_is_metadata),
		cmocka_unit_test(test_refuse_duplicate_new),
		cmocka_unit_test(test_refuse_duplicate_old),
		cmocka_unit_test(test_refuse_old_overflow),
		cmocka_unit_test(test_refuse_after_terminator),
		cmocka_unit_test(test_refuse_discard_damage),
		cmocka_unit_test(test_refuse_missing_next_area),
		cmocka_unit_test(test_valid_empty),
		cmocka_unit_test(test_valid_shapes),
		cmocka_unit_test(test_valid_extra_room),
		cmocka_unit_test(test_next_free_skips_metadata),
		cmocka_unit_test(test_hole_chunks),
		cmocka_unit_test(test_callback_error_stops),
		cmocka_unit_test(test_odirect),
		cmocka_unit_test(test_odirect_alignment),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_parse_header_buf),
		cmocka_unit_test(test_parse_area_buf),
		cmocka_unit_test(test_geometry_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
