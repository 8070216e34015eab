/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ext4-aware reclaim: find the COW chunks whose origin range is free in the
 * guest's ext2/3/4 filesystem, reading the filesystem through a merged view with
 * libext2fs (a custom, read-only io_manager), never mounting it.  Only the
 * superblock, group descriptors and block bitmaps are read, never file data.
 * See docs/fsaware.md for when this is safe.
 */
#ifndef COWPUNCH_RECLAIM_FSAWARE_H
#define COWPUNCH_RECLAIM_FSAWARE_H

#include <stdint.h>

#include "reclaim/mergedview.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"

/* fsaware_scan() and fsaware_reclaim() flags. */
enum {
	/*
	 * The base image is known to be the VM's (its recorded identity was checked on
	 * the descriptor read): block bitmaps read from it are trusted.  Without it only
	 * bitmaps the guest wrote (read from the COW) decide; see fsaware_scan().
	 */
	FSAWARE_BASE_VERIFIED = 1u << 0,
};

enum fsaware_status {
	FSAWARE_DONE = 0,
	FSAWARE_REFUSED, /* unsafe or unreadable: no chunk may be punched as free */
};

/* "done" / "refused". */
const char *fsaware_status_name(enum fsaware_status status);

struct fsaware_result {
	enum fsaware_status status;
	char reason[256];	    /* why refused; empty when done */
	uint32_t fs_block_size;	    /* 0 when the superblock could not be read */
	uint64_t fs_blocks;	    /* blocks the filesystem claims */
	uint64_t free_blocks_seen;  /* free blocks in the on-disk block bitmaps */
	uint64_t fs_free_chunks;    /* exceptions whose whole origin range is free */
	bool base_verified;	    /* FSAWARE_BASE_VERIFIED was given */
	uint64_t unverified_chunks; /* free only in metadata read from an unverified base: kept */
	uint64_t bytes_read;	    /* bytes libext2fs read through the view */
	double seconds; /* wall time: view sort (fsaware_reclaim), open, checks, bitmaps, mapping */
};

/*
 * Opens the filesystem at offset 0 of the merged view mv (read-only) and applies
 * the safety rules: refuses when the journal needs recovery (INCOMPAT_RECOVER:
 * mounted and neither frozen nor unmounted when the snapshot was taken), when the
 * superblock or a group descriptor fails its checksum or sanity check, when it is
 * not ext2/3/4, when it claims more blocks than the disk holds, or when libext2fs
 * cannot open it or read its block bitmaps.
 *
 * When done, *ret_free_bitmap (file_chunks bits, one per COW chunk, as
 * reclaim_opts.free_bitmap wants) has bit new_chunk set for every exception whose
 * origin range lies inside the filesystem and is entirely free: every fs block it
 * touches is free (a block larger than a chunk frees the chunks it covers only
 * when it is free).  Bits past file_chunks are never set.
 *
 * Without FSAWARE_BASE_VERIFIED in flags (a base given by path, no recorded
 * identity), an exception is free only when the metadata that says so was written
 * by the guest: the primary superblock, and for each group its blocks lie in, the
 * group descriptor and the block bitmap (unless the descriptor says BLOCK_UNINIT)
 * all lie in origin chunks with an exception.  The decision then never rests on a
 * byte of the base, so a wrong base cannot free a used block; exceptions free only
 * by base metadata are counted in unverified_chunks.
 *
 * Returns 0 and fills *ret (check ret->status; when refused *ret_free_bitmap is
 * NULL); -ENOMEM; or the view's -errno (-EIO: a file shorter than it should be,
 * or a read error) when any read of the disk failed: that is no verdict on the
 * file system, and *ret and *ret_free_bitmap are left untouched.  Never writes
 * anything.
 */
int fsaware_scan(const struct mergedview *mv, uint64_t file_chunks, unsigned flags,
		 uint8_t **ret_free_bitmap, struct fsaware_result *ret);

/*
 * The whole fs-aware reclaim of one COW file, for `cowpunch reclaim --fs-aware`
 * in both its forms (paths given, or taken from a VM record):
 * snapstore_load() (collecting the exceptions), the merged view over the base
 * image open at base_fd (-1: no base, zeros) for a disk of disk_size bytes,
 * fsaware_scan() with flags, then, only
 * when the scan is done, reclaim_run() with its free_bitmap: zero-chunk and
 * fs-free reclaim in the same pass.  opts->free_bitmap is ignored (replaced).
 *
 * cow_fd: opened O_RDWR (O_DIRECT welcome); the caller holds the lock and has
 * checked nothing has the COW attached, as for reclaim_run().
 *
 * Returns 0 with *ret_fs filled: when ret_fs->status is FSAWARE_REFUSED nothing
 * was written and *ret_report is left untouched; when done *ret_report is filled.
 * Returns -EBADMSG with *err filled for an invalid store or a store that does not
 * fit disk_size; -errno for I/O (a read of the COW or the base that fails or comes
 * back short: nothing written) or memory; reclaim_run()'s errors.
 */
int fsaware_reclaim(int cow_fd, int base_fd, uint64_t disk_size, unsigned flags,
		    const struct reclaim_opts *opts, struct reclaim_report *ret_report,
		    struct fsaware_result *ret_fs, struct snapstore_error *err);

#endif
