/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fsaware_scan on real ext2/3/4 images built with mkfs.ext4 -d and edited with
 * debugfs (never mounted).  A "guest" writes and deletes a big file; every chunk
 * that differs from the base becomes an exception, as the kernel's COW would hold.
 * The chunks the scan calls free are then zeroed in an exported copy of the view
 * (what punching them does to the guest's disk): e2fsck -fn must stay clean and
 * every remaining file must read back byte for byte.
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

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/fsaware.h"
#include "reclaim/mergedview.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/helpers/storegen.h"
#include "tests/unit/helpers/fsimg.h"

#include "fakedio.c"

/* The base is right by construction: trust its bitmaps, as `reclaim ID` does after the identity check. */
#define VERIFIED FSAWARE_BASE_VERIFIED

#define KiB 1024ull
#define MiB (1024ull * 1024)

struct scenario {
	const char *mkfs;    /* command and options, without -d and the size */
	uint64_t fs_bytes;   /* size of the base image (the filesystem) */
	uint64_t disk_bytes; /* size of the VM's disk, >= fs_bytes */
	uint64_t chunk;
	uint64_t big;	/* the file the guest writes and deletes */
	uint32_t block; /* expected fs block size */
};

static char dir[256];

static int group_setup(void **state)
{
	if (!fsimg_tools_present()) {
		print_message(
			"skipped: mkfs.ext4, debugfs or e2fsck missing (package e2fsprogs)\n");
		exit(77);
	}
	assert_int_equal(fsimg_tmpdir(dir, sizeof(dir)), 0);
	assert_int_equal(fsimg_sh("mkdir -p %s/src/sub", dir), 0);
	assert_int_equal(
		fsimg_random_file(strcat(strcpy((char[300]){0}, dir), "/src/keep1"), 200 * KiB, 1),
		0);
	char p[300];
	snprintf(p, sizeof(p), "%s/src/keep2", dir);
	assert_int_equal(fsimg_random_file(p, 1 * MiB + 123, 2), 0);
	snprintf(p, sizeof(p), "%s/src/sub/keep3", dir);
	assert_int_equal(fsimg_random_file(p, 50 * KiB, 3), 0);
	snprintf(p, sizeof(p), "%s/big.src", dir);
	assert_int_equal(fsimg_random_file(p, 8 * MiB, 4), 0);
	snprintf(p, sizeof(p), "%s/keep4", dir);
	assert_int_equal(fsimg_random_file(p, 100 * KiB, 5), 0);
	snprintf(p, sizeof(p), "%s/keep5", dir);
	assert_int_equal(fsimg_random_file(p, 300 * KiB + 7, 6), 0);
	return 0;
}

static int group_teardown(void **state)
{
	fsimg_rmtree(dir);
	return 0;
}

static int debugfs_w(const char *img, const char *req)
{
	return fsimg_sh("debugfs -w -R '%s' %s >/dev/null 2>&1", req, img);
}

static void diff_to_store(const char *base, const char *guest, int cfd, uint64_t chunk,
			  uint64_t disk)
{
	assert_int_equal(fsimg_diff_store(base, guest, cfd, chunk, disk), 0);
}

/* Files the guest keeps: path in the fs, path of the original under dir. */
static const char *const keep[][2] = {
	{"keep1", "src/keep1"}, {"keep2", "src/keep2"}, {"sub/keep3", "src/sub/keep3"},
	{"keep4", "keep4"},	{"keep5", "keep5"},
};

static void run_scenario(const struct scenario *s)
{
	char base[300], guest[300], cow[300], out[300], req[400];
	struct mergedview_list l = {0};
	struct mergedview *mv = NULL;
	struct snapstore_info info;
	struct snapstore_error serr;
	struct fsaware_result res;
	struct reclaim_report rep;
	_cleanup_free_ uint8_t *bm = NULL;
	const struct snapstore_exception *v;
	uint64_t tail_new = UINT64_MAX, set = 0, bits = 0;
	int64_t before, after;
	size_t n;

	snprintf(base, sizeof(base), "%s/base.img", dir);
	snprintf(guest, sizeof(guest), "%s/guest.img", dir);
	snprintf(cow, sizeof(cow), "%s/cow", dir);
	snprintf(out, sizeof(out), "%s/out.img", dir);

	assert_int_equal(fsimg_sh("rm -f %s; %s -q -F -d %s/src %s %lluk >/dev/null 2>&1", base,
				  s->mkfs, dir, base, (unsigned long long)(s->fs_bytes / KiB)),
			 0);
	/* The guest: a big file written, a small one, the big one deleted, another written. */
	assert_int_equal(fsimg_sh("cp %s %s && truncate -s %llu %s", base, guest,
				  (unsigned long long)s->disk_bytes, guest),
			 0);
	snprintf(req, sizeof(req), "write %s/big.src big", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	snprintf(req, sizeof(req), "write %s/keep4 keep4", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	assert_int_equal(debugfs_w(guest, "rm big"), 0);
	snprintf(req, sizeof(req), "write %s/keep5 keep5", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	/* The deleted file's data is still there: its chunks differ from the base. */
	assert_int_equal(fsimg_sh("e2fsck -fn %s >/dev/null 2>&1", guest), 0);
	if (s->disk_bytes > s->fs_bytes)
		/* The guest wrote past its filesystem (another partition, raw data): never free. */
		assert_int_equal(fsimg_sh("head -c 65536 /dev/urandom | dd of=%s bs=4096 seek=%llu "
					  "conv=notrunc status=none",
					  guest, (unsigned long long)(s->fs_bytes / 4096)),
				 0);

	_cleanup_close_ int cfd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_CLOEXEC);
	assert_true(cfd >= 0 && bfd >= 0);
	diff_to_store(base, guest, cfd, s->chunk, s->disk_bytes);

	/* One pass over the store yields both the data bitmap and the view's exceptions. */
	assert_int_equal(snapstore_load(cfd, &info, mergedview_list_add, &l, &serr), 0);
	assert_int_equal(mergedview_open(cfd, bfd, s->disk_bytes, info.geom.chunk_bytes, &l, &mv),
			 0);
	n = mergedview_exceptions(mv, &v);
	assert_int_equal(n, info.exceptions);
	for (size_t i = 0; i < n; i++)
		if (v[i].old_chunk * s->chunk >= s->fs_bytes && tail_new == UINT64_MAX)
			tail_new = v[i].new_chunk;
	assert_true(s->disk_bytes == s->fs_bytes || tail_new != UINT64_MAX);

	/* The view is the guest's disk, byte for byte. */
	{
		_cleanup_close_ int gfd = open(guest, O_RDONLY | O_CLOEXEC);
		_cleanup_free_ uint8_t *x = malloc(MiB), *y = malloc(MiB);

		for (uint64_t off = 0; off < s->disk_bytes; off += MiB) {
			ssize_t r = util_pread_full(gfd, x, MiB, off);

			assert_true(r > 0);
			assert_int_equal(mergedview_pread(mv, y, MiB, off), r);
			assert_memory_equal(x, y, (size_t)r);
		}
	}

	assert_int_equal(fsaware_scan(mv, info.geom.file_chunks, VERIFIED, &bm, &res), 0);
	if (res.status != FSAWARE_DONE)
		fail_msg("refused: %s", res.reason);
	assert_non_null(bm);
	assert_int_equal(res.fs_block_size, s->block);
	assert_int_equal(res.fs_blocks * res.fs_block_size, s->fs_bytes);
	assert_true(res.free_blocks_seen * res.fs_block_size >= s->big);
	/* Bitmaps and descriptors only: far less than the file's data was read. */
	assert_true(res.bytes_read < s->big / 4);
	if (tail_new != UINT64_MAX)
		assert_false(snapstore_bitmap_test(bm, tail_new));
	/* Bits only for listed data chunks. */
	for (uint64_t c = 0; c < info.geom.file_chunks; c++) {
		if (!snapstore_bitmap_test(bm, c))
			continue;
		bits++;
		assert_true(snapstore_bitmap_test(info.data_bitmap, c));
	}
	for (size_t i = 0; i < n; i++)
		set += snapstore_bitmap_test(bm, v[i].new_chunk);
	assert_int_equal(bits, res.fs_free_chunks);
	assert_int_equal(set, bits);

	/* Punch them, with zero-chunk reclaim in the same pass. */
	before = storegen_allocated(cfd);
	{
		struct reclaim_opts o = {.engine = RECLAIM_ENGINE_AUTO, .free_bitmap = bm};

		assert_int_equal(reclaim_run(cfd, &info, &o, &rep), 0);
	}
	after = storegen_allocated(cfd);
	assert_true(before > 0 && after >= 0);
	assert_int_equal(rep.fs_free_chunks, res.fs_free_chunks);
	if ((uint64_t)(before - after) < s->big * 95 / 100)
		fail_msg("st_blocks dropped by %lld bytes, the deleted file was %llu bytes",
			 (long long)(before - after), (unsigned long long)s->big);

	/* The disk the guest now sees, read the kernel's way by storegen's independent reader. */
	{
		struct storegen_view *sv;
		_cleanup_close_ int ofd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		_cleanup_free_ uint8_t *y = malloc(MiB);

		assert_true(ofd >= 0 && y);
		assert_int_equal(storegen_view_open(cfd, bfd, s->disk_bytes, &sv), 0);
		for (uint64_t off = 0; off < s->disk_bytes; off += MiB) {
			size_t len =
				s->disk_bytes - off < MiB ? (size_t)(s->disk_bytes - off) : MiB;

			assert_int_equal(storegen_view_read(sv, y, len, off), 0);
			assert_int_equal(util_pwrite_full(ofd, y, len, off), (ssize_t)len);
		}
		storegen_view_free(sv);
	}
	assert_int_equal(fsimg_sh("e2fsck -fn %s >%s/fsck.log 2>&1", out, dir), 0);
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		assert_int_equal(fsimg_sh("rm -f %s/dumped && debugfs -R 'dump /%s %s/dumped' %s "
					  ">/dev/null 2>&1 && cmp -s %s/dumped %s/%s",
					  dir, keep[i][0], dir, out, dir, dir, keep[i][1]),
				 0);
	}
	mergedview_free(mv);
	snapstore_info_free(&info);
}

/*
 * The file systems: block smaller than, equal to and larger than the chunk (64 KiB blocks
 * over 4 KiB chunks: a free block frees the chunks inside it), with and without
 * metadata_csum, 64bit and flex_bg, ext2, and a disk larger than its file system.
 */
static const struct scenario scenarios[] = {
	{"mkfs.ext4 -b 1024 -O metadata_csum,64bit,flex_bg", 24 * MiB, 24 * MiB, 4 * KiB, 8 * MiB,
	 1024},
	{"mkfs.ext4 -b 1024 -O ^metadata_csum,^64bit,^flex_bg", 24 * MiB, 32 * MiB, 64 * KiB,
	 8 * MiB, 1024},
	{"mkfs.ext4 -b 4096 -O metadata_csum,64bit,flex_bg", 32 * MiB, 40 * MiB, 4 * KiB, 8 * MiB,
	 4096},
	{"mkfs.ext4 -b 4096 -O ^metadata_csum,^flex_bg", 32 * MiB, 32 * MiB, 16 * KiB, 8 * MiB,
	 4096},
	{"mkfs.ext2 -b 4096", 32 * MiB, 32 * MiB, 4 * KiB, 8 * MiB, 4096},
	{"mkfs.ext4 -b 65536 -O metadata_csum,64bit,flex_bg", 64 * MiB, 64 * MiB, 4 * KiB, 8 * MiB,
	 65536},
	{"mkfs.ext4 -b 4096 -O bigalloc -C 65536", 64 * MiB, 64 * MiB, 4 * KiB, 8 * MiB, 4096},
};

static void test_scenario(void **state)
{
	const struct scenario *s = *state;

	print_message("%s, fs %llu MiB, disk %llu MiB, chunk %llu KiB\n", s->mkfs,
		      (unsigned long long)(s->fs_bytes / MiB),
		      (unsigned long long)(s->disk_bytes / MiB),
		      (unsigned long long)(s->chunk / KiB));
	run_scenario(s);
}

/* Refusals: a fs at offset 0 of an empty store's view (disk = base). */
static void expect_refused(const char *img, uint64_t disk, const char *why)
{
	_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);
	struct mergedview_list l = {0};
	struct snapstore_exception e = {0, 2};
	struct mergedview *mv;
	struct fsaware_result res;
	uint8_t *bm = (uint8_t *)&res;

	assert_true(bfd >= 0);
	assert_int_equal(mergedview_list_add(&l, &e), 0);
	/* COW chunk 2 of "no file": every exception reads zeros, chunk 0 read from nowhere. */
	l.n = 0;
	assert_int_equal(mergedview_open(-1, bfd, disk, 4096, &l, &mv), 0);
	assert_int_equal(fsaware_scan(mv, 16, VERIFIED, &bm, &res), 0);
	assert_int_equal(res.status, FSAWARE_REFUSED);
	assert_null(bm);
	if (!strstr(res.reason, why))
		fail_msg("reason '%s' does not mention '%s'", res.reason, why);
	mergedview_free(mv);
}

static void make_small(const char *img, const char *features)
{
	assert_int_equal(fsimg_sh("rm -f %s; mkfs.ext4 -q -F -b 1024 -O %s -d %s/src %s 8M "
				  ">/dev/null 2>&1",
				  img, features, dir, img),
			 0);
}

/* Overwrites one byte of img at off with its complement. */
static void flip(const char *img, uint64_t off)
{
	_cleanup_close_ int fd = open(img, O_RDWR | O_CLOEXEC);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(util_pread_full(fd, &b, 1, off), 1);
	b = (uint8_t)~b;
	assert_int_equal(util_pwrite_full(fd, &b, 1, off), 1);
}

/* The block number of group 0's block bitmap, from dumpe2fs. */
static uint64_t first_block_bitmap(const char *img)
{
	char cmd[400];
	FILE *p;
	unsigned long long blk = 0;

	snprintf(cmd, sizeof(cmd),
		 "dumpe2fs %s 2>/dev/null | sed -n 's/.*Block bitmap at \\([0-9]*\\).*/\\1/p' "
		 "| head -1",
		 img);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%llu", &blk), 1);
	pclose(p);
	assert_true(blk > 0);
	return blk;
}

static void test_refusals(void **state)
{
	char img[300];

	snprintf(img, sizeof(img), "%s/r.img", dir);

	/* Sanity: the untouched image is accepted. */
	make_small(img, "metadata_csum");
	{
		_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);
		struct mergedview_list l = {0};
		struct mergedview *mv;
		struct fsaware_result res;
		_cleanup_free_ uint8_t *bm = NULL;

		assert_int_equal(mergedview_open(-1, bfd, 8 * MiB, 4096, &l, &mv), 0);
		assert_int_equal(fsaware_scan(mv, 16, VERIFIED, &bm, &res), 0);
		assert_int_equal(res.status, FSAWARE_DONE);
		assert_int_equal(res.fs_free_chunks, 0);
		mergedview_free(mv);
	}

	/* Journal needs recovery: mounted, not frozen. */
	assert_int_equal(debugfs_w(img, "feature needs_recovery"), 0);
	expect_refused(img, 8 * MiB, "journal needs recovery");

	/*
	 * s_state: errors recorded (ERROR_FS), with and without a journal; VALID_FS clear on
	 * a file system without a journal (mounted, not unmounted) and on one with a journal
	 * (mounted while it needed e2fsck).  debugfs rewrites the superblock checksum.
	 */
	make_small(img, "metadata_csum");
	assert_int_equal(debugfs_w(img, "ssv state 3"), 0);
	expect_refused(img, 8 * MiB, "records file system errors");
	make_small(img, "^has_journal");
	assert_int_equal(debugfs_w(img, "ssv state 3"), 0);
	expect_refused(img, 8 * MiB, "records file system errors");
	assert_int_equal(debugfs_w(img, "ssv state 0"), 0);
	expect_refused(img, 8 * MiB, "no journal and was not cleanly unmounted");
	make_small(img, "metadata_csum");
	assert_int_equal(debugfs_w(img, "ssv state 0"), 0);
	expect_refused(img, 8 * MiB, "not marked clean");

	/* Superblock checksum (metadata_csum): s_wtime changed without fixing s_checksum. */
	make_small(img, "metadata_csum");
	flip(img, 1024 + 0x30);
	expect_refused(img, 8 * MiB, "superblock checksum");

	/* Group descriptor 0 (block 2 of a 1 KiB-block fs): bg_free_blocks_count_lo changed. */
	make_small(img, "metadata_csum");
	flip(img, 2048 + 0x0c);
	expect_refused(img, 8 * MiB, "group descriptor 0 checksum");

	/* The same with the older uninit_bg crc16 checksums. */
	make_small(img, "^metadata_csum,uninit_bg");
	flip(img, 2048 + 0x0c);
	expect_refused(img, 8 * MiB, "group descriptor 0 checksum");

	/* Not ext2/3/4. */
	assert_int_equal(fsimg_random_file(img, 8 * MiB, 9), 0);
	expect_refused(img, 8 * MiB, "not an ext2/3/4");

	/* The filesystem claims more blocks than the disk holds. */
	make_small(img, "metadata_csum");
	expect_refused(img, 8 * MiB - 4096, "more than the");

	/* A block bitmap whose checksum fails: libext2fs refuses to read it. */
	make_small(img, "metadata_csum,^flex_bg");
	flip(img, first_block_bitmap(img) * 1024 + 1000);
	expect_refused(img, 8 * MiB, "block bitmaps");

	/*
	 * A bitmap marking the file system's own metadata free (fuzz-fsaware found one
	 * calling the superblock's chunk free, which a reclaim would then have punched):
	 * the primary superblock (block 1), a block bitmap.  No checksums, so only the
	 * rule can tell.
	 */
	make_small(img, "^metadata_csum,^flex_bg");
	assert_int_equal(debugfs_w(img, "freeb 1"), 0);
	expect_refused(img, 8 * MiB, "marks metadata block 1 ");
	make_small(img, "^metadata_csum,^flex_bg");
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "freeb %llu",
			 (unsigned long long)first_block_bitmap(img));
		assert_int_equal(debugfs_w(img, cmd), 0);
	}
	expect_refused(img, 8 * MiB, "marks metadata block");
}

/* SHA-256 of a whole file's bytes. */
static void file_sha256(int fd, uint8_t out[32])
{
	struct storegen_sha256 h;
	_cleanup_free_ uint8_t *buf = malloc(MiB);
	ssize_t r;

	assert_non_null(buf);
	storegen_sha256_init(&h);
	for (uint64_t off = 0; (r = util_pread_full(fd, buf, MiB, off)) > 0; off += (uint64_t)r)
		storegen_sha256_update(&h, buf, (size_t)r);
	assert_true(r == 0);
	storegen_sha256_final(&h, out);
}

/*
 * fsaware_reclaim(), the entry point of the CLI: a refusal writes nothing (bytes
 * and st_blocks of the COW unchanged), the same store once safe is reclaimed.
 */
static void test_reclaim_entry_point(void **state)
{
	char base[300], guest[300], cow[300], req[400];
	uint8_t sha_before[32], sha_after[32];
	struct reclaim_opts o = {.engine = RECLAIM_ENGINE_SYNC};
	struct reclaim_report rep;
	struct fsaware_result res;
	struct snapstore_error err;
	int64_t before;

	snprintf(base, sizeof(base), "%s/e-base.img", dir);
	snprintf(guest, sizeof(guest), "%s/e-guest.img", dir);
	snprintf(cow, sizeof(cow), "%s/e-cow", dir);
	make_small(base, "metadata_csum");
	assert_int_equal(fsimg_sh("cp %s %s", base, guest), 0);
	snprintf(req, sizeof(req), "write %s/src/keep2 big", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	assert_int_equal(debugfs_w(guest, "rm big"), 0);
	/* Mounted, not frozen, when the snapshot was taken. */
	assert_int_equal(debugfs_w(guest, "feature needs_recovery"), 0);

	_cleanup_close_ int cfd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_CLOEXEC);
	assert_true(cfd >= 0 && bfd >= 0);
	diff_to_store(base, guest, cfd, 4096, 8 * MiB);
	before = storegen_allocated(cfd);
	file_sha256(cfd, sha_before);

	memset(&rep, 0xa5, sizeof(rep));
	assert_int_equal(fsaware_reclaim(cfd, bfd, 8 * MiB, VERIFIED, &o, &rep, &res, &err), 0);
	assert_int_equal(res.status, FSAWARE_REFUSED);
	assert_non_null(strstr(res.reason, "journal needs recovery"));
	assert_int_equal(storegen_allocated(cfd), before);
	file_sha256(cfd, sha_after);
	assert_memory_equal(sha_before, sha_after, 32);

	/* A disk too small for the store's exceptions: invalid, nothing written. */
	assert_int_equal(fsaware_reclaim(cfd, bfd, 4096, VERIFIED, &o, &rep, &res, &err), -EBADMSG);
	assert_non_null(strstr(err.rule, "past the end"));
	/* No base at all: the fs reads as zeros past the COW's chunks, not ext4. */
	assert_int_equal(fsaware_reclaim(cfd, -1, 8 * MiB, VERIFIED, &o, &rep, &res, &err), 0);
	assert_int_equal(res.status, FSAWARE_REFUSED);
	file_sha256(cfd, sha_after);
	assert_memory_equal(sha_before, sha_after, 32);

	/* Frozen after all: the same store is reclaimed. */
	assert_int_equal(debugfs_w(guest, "feature -needs_recovery"), 0);
	diff_to_store(base, guest, cfd, 4096, 8 * MiB);
	before = storegen_allocated(cfd);
	assert_int_equal(fsaware_reclaim(cfd, bfd, 8 * MiB, VERIFIED, &o, &rep, &res, &err), 0);
	assert_int_equal(res.status, FSAWARE_DONE);
	assert_true(res.fs_free_chunks > 0);
	assert_int_equal(rep.fs_free_chunks, res.fs_free_chunks);
	assert_true((uint64_t)(before - storegen_allocated(cfd)) >= (1 * MiB) * 95 / 100);
}

/* fsaware_scan() of the store in cfd over the base img, with flags. */
static void scan_store(int cfd, const char *img, unsigned flags, struct fsaware_result *res)
{
	_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);
	struct mergedview_list l = {0};
	struct mergedview *mv;
	struct snapstore_info info;
	struct snapstore_error serr;
	_cleanup_free_ uint8_t *bm = NULL;

	assert_true(bfd >= 0);
	assert_int_equal(snapstore_load(cfd, &info, mergedview_list_add, &l, &serr), 0);
	assert_int_equal(mergedview_open(cfd, bfd, 8 * MiB, info.geom.chunk_bytes, &l, &mv), 0);
	assert_int_equal(fsaware_scan(mv, info.geom.file_chunks, flags, &bm, res), 0);
	assert_int_equal(res->status, FSAWARE_DONE);
	assert_int_equal(res->base_verified, !!(flags & VERIFIED));
	mergedview_free(mv);
	snapstore_info_free(&info);
}

/*
 * Without a verified base (--base, no record) only metadata the guest wrote decides.
 * A guest that allocates and frees loses nothing to that rule; a guest that rewrote
 * a file in place, judged over a wrong base whose bitmaps call those blocks free, has
 * them punched when the base is trusted and kept when it is not.
 */
static void test_unverified_base(void **state)
{
	char base[300], guest[300], wrong[300], cow[300], req[400];
	struct fsaware_result v, u;
	_cleanup_close_ int cfd = -1;
	int n;

	snprintf(base, sizeof(base), "%s/u-base.img", dir);
	snprintf(guest, sizeof(guest), "%s/u-guest.img", dir);
	snprintf(wrong, sizeof(wrong), "%s/u-wrong.img", dir);
	snprintf(cow, sizeof(cow), "%s/u-cow", dir);
	cfd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(cfd >= 0);

	/* A guest that wrote a file, then deleted it: the same chunks free either way. */
	make_small(base, "metadata_csum");
	assert_int_equal(fsimg_sh("cp %s %s", base, guest), 0);
	snprintf(req, sizeof(req), "write %s/src/keep2 big", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	snprintf(req, sizeof(req), "write %s/src/keep1 small", dir);
	assert_int_equal(debugfs_w(guest, req), 0);
	assert_int_equal(debugfs_w(guest, "rm big"), 0);
	diff_to_store(base, guest, cfd, 4096, 8 * MiB);
	scan_store(cfd, base, VERIFIED, &v);
	scan_store(cfd, base, 0, &u);
	assert_true(v.fs_free_chunks * 4096 >= MiB * 95 / 100);
	assert_int_equal(u.fs_free_chunks, v.fs_free_chunks);
	assert_int_equal(u.unverified_chunks, 0);
	assert_int_equal(v.unverified_chunks, 0);

	/* The guest rewrote sub/keep3 in place: no metadata changed, the bitmaps are the base's. */
	assert_int_equal(fsimg_sh("cp %s %s", base, guest), 0);
	n = fsimg_rewrite_file(base, "sub/keep3", guest, 1024);
	assert_true(n >= 50);
	diff_to_store(base, guest, cfd, 4096, 8 * MiB);
	/* Over the right base: used, never free. */
	scan_store(cfd, base, VERIFIED, &v);
	assert_int_equal(v.fs_free_chunks, 0);
	/* Over a wrong base (an empty file system of the same geometry): trusted, it frees them. */
	assert_int_equal(fsimg_sh("rm -f %s; mkfs.ext4 -q -F -b 1024 -O metadata_csum %s 8M "
				  ">/dev/null 2>&1",
				  wrong, wrong),
			 0);
	scan_store(cfd, wrong, VERIFIED, &v);
	assert_true(v.fs_free_chunks >= 12);
	/* Not trusted: kept, and counted. */
	scan_store(cfd, wrong, 0, &u);
	assert_int_equal(u.fs_free_chunks, 0);
	assert_int_equal(u.unverified_chunks, v.fs_free_chunks);
}

/* fsaware_scan() over a base that fails to read: an I/O error, not a refusal. */
static int scan_base(const char *img, int bfd, struct fsaware_result *res, uint8_t **bm)
{
	struct mergedview_list l = {0};
	struct mergedview *mv;
	int r;

	assert_int_equal(mergedview_open(-1, bfd, 8 * MiB, 4096, &l, &mv), 0);
	r = fsaware_scan(mv, 16, VERIFIED, bm, res);
	mergedview_free(mv);
	return r;
}

/*
 * A disk that cannot be read is an I/O error (-EIO: exit 1), never a refusal (exit 5)
 * and never zeros: the superblock, the descriptors or the bitmaps failing to read,
 * and a base truncated under the scan.  Nothing is punched.
 */
static void test_io_errors(void **state)
{
	char img[300], cow[300], req[400];
	uint8_t *bm = (uint8_t *)1, sha_before[32], sha_after[32];
	struct reclaim_opts o = {.engine = RECLAIM_ENGINE_SYNC};
	struct reclaim_report rep;
	struct fsaware_result res = {.status = FSAWARE_DONE};
	struct snapstore_error err;
	uint64_t bitmap;
	int64_t before;

	snprintf(img, sizeof(img), "%s/io.img", dir);
	make_small(img, "metadata_csum,^flex_bg");
	bitmap = first_block_bitmap(img) * 1024;
	{
		_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);

		assert_true(bfd >= 0);
		/* Sanity: readable, it is scanned. */
		assert_int_equal(scan_base(img, bfd, &res, &bm), 0);
		assert_int_equal(res.status, FSAWARE_DONE);
		free(bm);
		bm = (uint8_t *)1;
		res.status = FSAWARE_DONE;
		/* The superblock does not read. */
		fakedio_eio(bfd, 0);
		assert_int_equal(scan_base(img, bfd, &res, &bm), -EIO);
		/* Superblock and descriptors read, the block bitmap does not. */
		fakedio_eio(bfd, bitmap);
		assert_int_equal(scan_base(img, bfd, &res, &bm), -EIO);
		fakedio_off();
		/* Untouched on error. */
		assert_ptr_equal(bm, (uint8_t *)1);
		assert_int_equal(res.status, FSAWARE_DONE);
	}

	/* The base shrinks under the scan (after the view measured it). */
	{
		_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);
		struct mergedview_list l = {0};
		struct mergedview *mv;

		assert_true(bfd >= 0);
		assert_int_equal(mergedview_open(-1, bfd, 8 * MiB, 4096, &l, &mv), 0);
		assert_int_equal(truncate(img, (off_t)bitmap), 0);
		assert_int_equal(fsaware_scan(mv, 16, VERIFIED, &bm, &res), -EIO);
		assert_ptr_equal(bm, (uint8_t *)1);
		mergedview_free(mv);
	}

	/* Through fsaware_reclaim(): -EIO, and the COW keeps every byte and block. */
	make_small(img, "metadata_csum,^flex_bg");
	snprintf(cow, sizeof(cow), "%s/io-guest.img", dir);
	assert_int_equal(fsimg_sh("cp %s %s", img, cow), 0);
	snprintf(req, sizeof(req), "write %s/src/keep2 big", dir);
	assert_int_equal(debugfs_w(cow, req), 0);
	assert_int_equal(debugfs_w(cow, "rm big"), 0);
	{
		char guest[300];
		_cleanup_close_ int cfd = -1;
		_cleanup_close_ int bfd = open(img, O_RDONLY | O_CLOEXEC);

		snprintf(guest, sizeof(guest), "%s", cow);
		snprintf(cow, sizeof(cow), "%s/io-cow", dir);
		cfd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(cfd >= 0 && bfd >= 0);
		diff_to_store(img, guest, cfd, 4096, 8 * MiB);
		before = storegen_allocated(cfd);
		file_sha256(cfd, sha_before);
		fakedio_eio(bfd, 0);
		assert_int_equal(fsaware_reclaim(cfd, bfd, 8 * MiB, VERIFIED, &o, &rep, &res, &err),
				 -EIO);
		fakedio_off();
		assert_int_equal(storegen_allocated(cfd), before);
		file_sha256(cfd, sha_after);
		assert_memory_equal(sha_before, sha_after, 32);
		/* Readable again: the same store is reclaimed. */
		assert_int_equal(fsaware_reclaim(cfd, bfd, 8 * MiB, VERIFIED, &o, &rep, &res, &err),
				 0);
		assert_int_equal(res.status, FSAWARE_DONE);
		assert_true(res.fs_free_chunks > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[0]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[1]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[2]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[3]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[4]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[5]),
		cmocka_unit_test_prestate(test_scenario, (void *)&scenarios[6]),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_reclaim_entry_point),
		cmocka_unit_test(test_io_errors),
		cmocka_unit_test(test_unverified_base),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
