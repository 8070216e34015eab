/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ext4-aware reclaim: libext2fs reads the guest filesystem through a read-only
 * io_manager over the merged view; the block bitmaps say which origin chunks
 * are free.  All filesystem parsing is e2fsprogs'.  See docs/fsaware.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/fsaware.h"

/*
 * The io_manager.  An io_manager's open() only gets a name; the view travels in
 * a thread-local slot set around ext2fs_open2(), so no pointer is encoded in a string.
 */
struct view_io {
	const struct mergedview *mv;
	uint64_t bytes_read;
	int io_error; /* the first -errno of the view: the scan fails with it, no refusal */
};

static _Thread_local struct view_io *view_io_pending;

static struct struct_io_manager view_io_manager;

static errcode_t view_open(const char *name, int flags, io_channel *channel)
{
	io_channel io;

	if (!view_io_pending || !name)
		return EXT2_ET_BAD_DEVICE_NAME;
	/* Read-only by construction: a channel asked for writing is refused outright. */
	if (flags & IO_FLAG_RW)
		return EXT2_ET_RO_FILSYS;
	io = calloc(1, sizeof(*io));
	if (!io)
		return EXT2_ET_NO_MEMORY;
	io->name = strdup(name);
	if (!io->name) {
		free(io);
		return EXT2_ET_NO_MEMORY;
	}
	io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	io->manager = &view_io_manager;
	io->block_size = 1024; /* what unix_io starts with; ext2fs_open2 sets the real size */
	io->refcount = 1;
	io->private_data = view_io_pending;
	*channel = io;
	return 0;
}

static errcode_t view_close(io_channel channel)
{
	if (channel->magic != EXT2_ET_MAGIC_IO_CHANNEL)
		return EXT2_ET_MAGIC_IO_CHANNEL;
	/* Channels are shared (fs->io, fs->image_io): the last close frees, as unix_io does. */
	if (--channel->refcount > 0)
		return 0;
	free(channel->name);
	free(channel);
	return 0;
}

static errcode_t view_set_blksize(io_channel channel, int blksize)
{
	if (channel->magic != EXT2_ET_MAGIC_IO_CHANNEL)
		return EXT2_ET_MAGIC_IO_CHANNEL;
	if (blksize <= 0)
		return EXT2_ET_INVALID_ARGUMENT;
	channel->block_size = blksize;
	return 0;
}

static errcode_t view_read_blk64(io_channel channel, unsigned long long block, int count,
				 void *data)
{
	struct view_io *vio = channel->private_data;
	uint64_t bs = (uint64_t)channel->block_size, size, off;
	errcode_t err = 0;
	ssize_t r;

	if (channel->magic != EXT2_ET_MAGIC_IO_CHANNEL)
		return EXT2_ET_MAGIC_IO_CHANNEL;
	/* count < 0 means -count bytes (unix_io's convention), else count blocks. */
	size = count < 0 ? (uint64_t)(-(int64_t)count) : (uint64_t)count * bs;
	if (bs == 0 || block > UINT64_MAX / bs || size > SSIZE_MAX)
		return EXT2_ET_BAD_BLOCK_NUM;
	off = block * bs;
	r = mergedview_pread(vio->mv, data, (size_t)size, off);
	if (r < 0) {
		/*
		 * The disk cannot be read: an I/O error of the caller, not a verdict on the
		 * file system (libext2fs would turn it into "cannot open" or "bad bitmap").
		 */
		if (!vio->io_error)
			vio->io_error = (int)r;
		err = (errcode_t)-r;
		r = 0;
	} else if ((uint64_t)r < size) {
		err = EXT2_ET_SHORT_READ;
	}
	if (err) {
		memset((char *)data + r, 0, (size_t)(size - (uint64_t)r));
		if (channel->read_error)
			err = channel->read_error(channel, (unsigned long)block, count, data,
						  (size_t)size, (int)r, err);
	}
	vio->bytes_read += (uint64_t)r;
	return err;
}

static errcode_t view_read_blk(io_channel channel, unsigned long block, int count, void *data)
{
	return view_read_blk64(channel, block, count, data);
}

static errcode_t view_write_blk64(io_channel channel, unsigned long long block, int count,
				  const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t view_write_blk(io_channel channel, unsigned long block, int count,
				const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t view_write_byte(io_channel channel, unsigned long offset, int count,
				 const void *data)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t view_discard(io_channel channel, unsigned long long block,
			      unsigned long long count)
{
	return EXT2_ET_RO_FILSYS;
}

static errcode_t view_flush(io_channel channel)
{
	return 0;
}

static errcode_t view_set_option(io_channel channel, const char *option, const char *arg)
{
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t view_cache_readahead(io_channel channel, unsigned long long block,
				      unsigned long long count)
{
	return 0;
}

static struct struct_io_manager view_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "cowpunch merged view (read-only)",
	.open = view_open,
	.close = view_close,
	.set_blksize = view_set_blksize,
	.read_blk = view_read_blk,
	.write_blk = view_write_blk,
	.flush = view_flush,
	.write_byte = view_write_byte,
	.set_option = view_set_option,
	.read_blk64 = view_read_blk64,
	.write_blk64 = view_write_blk64,
	.discard = view_discard,
	.cache_readahead = view_cache_readahead,
	.zeroout = view_discard,
};

const char *fsaware_status_name(enum fsaware_status status)
{
	return status == FSAWARE_DONE ? "done" : "refused";
}

static void refuse(struct fsaware_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void refuse(struct fsaware_result *res, const char *fmt, ...)
{
	va_list ap;

	res->status = FSAWARE_REFUSED;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

static void refuse_open(struct fsaware_result *res, errcode_t err)
{
	switch (err) {
	case EXT2_ET_BAD_MAGIC:
		refuse(res,
		       "not an ext2/3/4 filesystem at offset 0 of the disk (bad superblock magic)");
		break;
	case EXT2_ET_SB_CSUM_INVALID:
		refuse(res, "superblock checksum does not match (metadata_csum)");
		break;
	default:
		refuse(res, "libext2fs cannot open the filesystem: %s", error_message(err));
		break;
	}
}

/*
 * A group descriptor table larger than this is refused before libext2fs reads it:
 * a forged superblock could otherwise make it allocate and read gigabytes.  Real
 * file systems stay far below (a 16 TiB ext4 with 4 KiB blocks has an 8 MiB table).
 */
#define FSAWARE_MAX_DESC_BYTES (64ull << 20)

/*
 * The rules that need the superblock only (opened with EXT2_FLAG_SUPER_ONLY, so
 * nothing it claims has been acted on yet).  Returns true if safe to go on.
 */
static bool check_super(ext2_filsys fs, uint64_t disk_size, struct fsaware_result *res)
{
	uint64_t blocks = ext2fs_blocks_count(fs->super);

	if (ext2fs_has_feature_journal_needs_recovery(fs->super)) {
		refuse(res,
		       "the journal needs recovery (INCOMPAT_RECOVER set): the filesystem was "
		       "mounted and neither frozen nor cleanly unmounted when the snapshot was "
		       "taken, so its on-disk bitmaps cannot be trusted");
		return false;
	}
	if (ext2fs_has_feature_metadata_csum(fs->super) &&
	    !ext2fs_superblock_csum_verify(fs, fs->super)) {
		refuse(res, "superblock checksum does not match (metadata_csum)");
		return false;
	}
	/*
	 * s_state, as the kernel keeps it (fs/ext4/super.c, fs/ext2/super.c): ERROR_FS is
	 * set when it finds the file system inconsistent, and stays until e2fsck.
	 * VALID_FS: without a journal the kernel clears it on a read-write mount and sets
	 * it again on unmount (the old ext2 driver also on freeze; the ext4 driver, which
	 * mounts ext2 on Debian's kernels, does not).  With a journal it stays set while
	 * mounted (RECOVER says "mounted" instead), so it is clear only on a file system
	 * mounted while it needed e2fsck, which the kernel leaves so until e2fsck.
	 */
	if (fs->super->s_state & EXT2_ERROR_FS) {
		refuse(res,
		       "the superblock records file system errors (s_state has EXT2_ERROR_FS): "
		       "the kernel found it inconsistent, so its block bitmaps may be wrong "
		       "until e2fsck repairs them");
		return false;
	}
	if (!(fs->super->s_state & EXT2_VALID_FS)) {
		if (ext2fs_has_feature_journal(fs->super))
			refuse(res, "the file system is not marked clean (s_state lacks "
				    "EXT2_VALID_FS): it was mounted while it needed e2fsck, so its "
				    "block bitmaps cannot be trusted until e2fsck");
		else
			refuse(res,
			       "the file system has no journal and was not cleanly unmounted "
			       "(s_state lacks EXT2_VALID_FS): it was mounted (or frozen by the "
			       "ext4 driver, which cannot be told apart) or it crashed when the "
			       "snapshot was taken, so its block bitmaps cannot be trusted");
		return false;
	}
	if (blocks > disk_size / fs->blocksize) {
		refuse(res,
		       "the filesystem claims %" PRIu64 " blocks of %u bytes, more than the "
		       "%" PRIu64 "-byte disk holds",
		       blocks, fs->blocksize, disk_size);
		return false;
	}
	if ((uint64_t)fs->desc_blocks * fs->blocksize > FSAWARE_MAX_DESC_BYTES) {
		refuse(res,
		       "the group descriptor table would take %" PRIu64 " bytes (more than %llu)",
		       (uint64_t)fs->desc_blocks * fs->blocksize, FSAWARE_MAX_DESC_BYTES);
		return false;
	}
	return true;
}

/* The rules on the group descriptors, once libext2fs has read them.  Returns true if safe. */
static bool check_desc(ext2_filsys fs, struct fsaware_result *res)
{
	errcode_t err;

	if (ext2fs_has_group_desc_csum(fs)) {
		for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
			if (!ext2fs_group_desc_csum_verify(fs, g)) {
				refuse(res, "group descriptor %" PRIu32 " checksum does not match",
				       (uint32_t)g);
				return false;
			}
		}
	}
	err = ext2fs_check_desc(fs);
	if (err) {
		refuse(res, "group descriptors fail libext2fs's checks: %s", error_message(err));
		return false;
	}
	return true;
}

/*
 * The rule on the block bitmap: every block of the file system's own metadata (the
 * superblock and descriptor copies, reserved descriptor blocks, each group's bitmaps
 * and inode table) is marked in use.  A bitmap calling one of them free is damaged,
 * and a chunk mapped from it could hold the superblock itself.  Returns 1 if safe,
 * 0 refused, -ENOMEM.
 */
static int check_meta_in_use(ext2_filsys fs, struct fsaware_result *res)
{
	blk64_t end = ext2fs_blocks_count(fs->super), b, hit;
	ext2fs_block_bitmap meta = NULL;
	int ok = 1;

	if (ext2fs_allocate_block_bitmap(fs, "cowpunch metadata", &meta))
		return -ENOMEM;
	for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
		ext2fs_reserve_super_and_bgd(fs, g, meta);
		ext2fs_mark_block_bitmap2(meta, ext2fs_block_bitmap_loc(fs, g));
		ext2fs_mark_block_bitmap2(meta, ext2fs_inode_bitmap_loc(fs, g));
		ext2fs_mark_block_bitmap_range2(meta, ext2fs_inode_table_loc(fs, g),
						fs->inode_blocks_per_group);
	}
	for (b = fs->super->s_first_data_block;
	     b < end && ext2fs_find_first_set_block_bitmap2(meta, b, end - 1, &hit) == 0;
	     b = hit + 1) {
		if (!ext2fs_test_block_bitmap2(fs->block_map, hit)) {
			refuse(res,
			       "the block bitmap marks metadata block %llu (superblock, group "
			       "descriptors, bitmaps or inode table) free: the file system is "
			       "damaged (e2fsck would repair it), so its bitmaps cannot be trusted",
			       (unsigned long long)hit);
			ok = 0;
			break;
		}
	}
	ext2fs_free_block_bitmap(meta);
	return ok;
}

/* ext2fs_open2() read-only on the view in vio. */
static errcode_t open_view(struct view_io *vio, int flags, ext2_filsys *ret)
{
	errcode_t err;

	view_io_pending = vio;
	err = ext2fs_open2("cowpunch-merged-view", NULL, flags, 0, 0, &view_io_manager, ret);
	view_io_pending = NULL;
	return err;
}

/* Free blocks in [first, end) of the bitmap, by runs. */
static uint64_t count_free(ext2fs_block_bitmap bm, blk64_t first, blk64_t end)
{
	uint64_t n = 0;
	blk64_t b = first;

	while (b < end) {
		blk64_t zero, set;

		if (ext2fs_find_first_zero_block_bitmap2(bm, b, end - 1, &zero))
			break;
		if (ext2fs_find_first_set_block_bitmap2(bm, zero, end - 1, &set)) {
			n += end - zero;
			break;
		}
		n += set - zero;
		b = set;
	}
	return n;
}

/*
 * Whether group g's block bitmap, as libext2fs has it, comes from what the guest
 * wrote: its group descriptor, and its bitmap unless the descriptor marks it
 * BLOCK_UNINIT (then libext2fs builds it from the descriptor), lie in the COW.
 */
static bool group_from_cow(ext2_filsys fs, const struct mergedview *mv, dgrp_t g)
{
	uint64_t bs = fs->blocksize, dsz = EXT2_DESC_SIZE(fs->super);
	uint64_t per = EXT2_DESC_PER_BLOCK(fs->super);
	blk64_t desc =
		ext2fs_descriptor_block_loc2(fs, fs->super->s_first_data_block, (dgrp_t)(g / per));

	if (!mergedview_range_in_cow(mv, desc * bs + (g % per) * dsz, dsz))
		return false;
	if (ext2fs_has_group_desc_csum(fs) && ext2fs_bg_flags_test(fs, g, EXT2_BG_BLOCK_UNINIT))
		return true;
	return mergedview_range_in_cow(mv, ext2fs_block_bitmap_loc(fs, g) * bs,
				       EXT2_CLUSTERS_PER_GROUP(fs->super) / 8);
}

/* Per scan: which groups' bitmaps the guest wrote, decided once per group. */
struct cow_groups {
	bool super; /* the primary superblock lies in the COW */
	dgrp_t last;
	bool last_ok, have_last;
};

/* Whether every group blocks b0..b1 lie in has a bitmap the guest wrote. */
static bool blocks_from_cow(ext2_filsys fs, const struct mergedview *mv, struct cow_groups *cg,
			    blk64_t b0, blk64_t b1)
{
	if (!cg->super)
		return false;
	for (dgrp_t g = ext2fs_group_of_blk2(fs, b0); g <= ext2fs_group_of_blk2(fs, b1); g++) {
		if (!cg->have_last || cg->last != g) {
			cg->last = g;
			cg->last_ok = group_from_cow(fs, mv, g);
			cg->have_last = true;
		}
		if (!cg->last_ok)
			return false;
	}
	return true;
}

int fsaware_scan(const struct mergedview *mv, uint64_t file_chunks, unsigned flags,
		 uint8_t **ret_free_bitmap, struct fsaware_result *ret)
{
	struct fsaware_result res = {.status = FSAWARE_DONE,
				     .base_verified = flags & FSAWARE_BASE_VERIFIED};
	struct cow_groups cg = {0};
	struct view_io vio = {.mv = mv};
	_cleanup_free_ uint8_t *bitmap = NULL;
	const struct snapstore_exception *v;
	uint64_t chunk = mergedview_chunk_bytes(mv);
	ext2_filsys fs = NULL;
	blk64_t first, end;
	errcode_t err;
	double t0 = util_now();
	size_t n;
	int r;

	initialize_ext2_error_table();

	/* Superblock first: nothing it claims is acted on before it passes. */
	err = open_view(&vio, EXT2_FLAG_64BITS | EXT2_FLAG_SUPER_ONLY, &fs);
	if (err) {
		refuse_open(&res, err);
		goto out;
	}
	res.fs_block_size = fs->blocksize;
	res.fs_blocks = ext2fs_blocks_count(fs->super);
	if (!check_super(fs, mergedview_disk_size(mv), &res))
		goto out;
	ext2fs_free(fs);
	fs = NULL;
	err = open_view(&vio, EXT2_FLAG_64BITS, &fs);
	if (err) {
		refuse_open(&res, err);
		goto out;
	}
	if (!check_desc(fs, &res))
		goto out;
	err = ext2fs_read_block_bitmap(fs);
	if (err) {
		refuse(&res, "cannot read the block bitmaps: %s", error_message(err));
		goto out;
	}

	r = check_meta_in_use(fs, &res);
	if (r <= 0) {
		if (r < 0)
			vio.io_error = r;
		goto out;
	}
	first = fs->super->s_first_data_block;
	end = ext2fs_blocks_count(fs->super);
	res.free_blocks_seen = count_free(fs->block_map, first, end);

	bitmap = calloc(1, file_chunks / 8 + 1);
	if (!bitmap) {
		vio.io_error = -ENOMEM;
		goto out;
	}
	/* The primary superblock: bytes 1024..2047 of the disk, whatever the block size. */
	cg.super = mergedview_range_in_cow(mv, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
	n = mergedview_exceptions(mv, &v);
	for (size_t i = 0; i < n; i++) {
		/* No overflow: old_chunk * chunk < disk size, checked by mergedview_open(). */
		uint64_t start = v[i].old_chunk * chunk;
		blk64_t b0 = start / fs->blocksize, b1 = (start + chunk - 1) / fs->blocksize, hit;

		if (v[i].new_chunk >= file_chunks)
			continue;
		/* Outside the bitmap (boot block of a 1 KiB-block fs, past the end): never free. */
		if (b0 < first || b1 >= end)
			continue;
		/* The boot block and the primary superblock are never free, whatever the bitmap. */
		if (start < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
			continue;
		if (ext2fs_find_first_set_block_bitmap2(fs->block_map, b0, b1, &hit) != ENOENT)
			continue;
		/* Free, but said so by metadata of a base nobody vouched for: kept. */
		if (!(flags & FSAWARE_BASE_VERIFIED) && !blocks_from_cow(fs, mv, &cg, b0, b1)) {
			res.unverified_chunks++;
			continue;
		}
		bitmap[v[i].new_chunk >> 3] |= (uint8_t)(1u << (v[i].new_chunk & 7));
		res.fs_free_chunks++;
	}

out:
	if (fs)
		ext2fs_free(fs); /* not ext2fs_close(): nothing is ever flushed */
	if (vio.io_error)
		return vio.io_error;
	res.bytes_read = vio.bytes_read;
	res.seconds = util_now() - t0;
	*ret_free_bitmap = res.status == FSAWARE_DONE ? TAKE_PTR(bitmap) : NULL;
	*ret = res;
	return 0;
}

int fsaware_reclaim(int cow_fd, int base_fd, uint64_t disk_size, unsigned flags,
		    const struct reclaim_opts *opts, struct reclaim_report *ret_report,
		    struct fsaware_result *ret_fs, struct snapstore_error *err)
{
	struct mergedview_list list = {0};
	struct snapstore_info info = {0};
	struct mergedview *mv = NULL;
	struct fsaware_result res;
	struct reclaim_opts o = *opts;
	_cleanup_free_ uint8_t *free_bm = NULL;
	double t0;
	int r;

	r = snapstore_load(cow_fd, &info, mergedview_list_add, &list, err);
	if (r < 0)
		goto out;
	t0 = util_now();
	r = mergedview_open(cow_fd, base_fd, disk_size, info.geom.chunk_bytes, &list, &mv);
	if (r == -EBADMSG) {
		err->offset = 0;
		snprintf(err->rule, sizeof(err->rule),
			 "the store has an exception past the end of the %" PRIu64
			 "-byte disk (wrong --size, or not this VM's store)",
			 disk_size);
	}
	if (r < 0)
		goto out;
	r = fsaware_scan(mv, info.geom.file_chunks, flags, &free_bm, &res);
	if (r < 0)
		goto out;
	res.seconds = util_now() - t0; /* the view's sort counts too */
	if (res.status == FSAWARE_DONE) {
		o.free_bitmap = free_bm;
		r = reclaim_run(cow_fd, &info, &o, ret_report);
		if (r < 0)
			goto out;
	}
	*ret_fs = res;
	r = 0;
out:
	mergedview_free(mv);
	mergedview_list_free(&list);
	snapstore_info_free(&info);
	return r;
}
