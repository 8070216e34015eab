/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A read-only userspace view of what a VM's disk holds, built from plain files,
 * without device-mapper: origin chunk -> its COW chunk when the store has an
 * exception for it, else the base image, else zeros (past the end of the base,
 * like the `zero` target that extends base-ID to the disk size).  See docs/fsaware.md.
 *
 * Memory: one sorted array of exceptions, 16 bytes each (16 MiB for a million
 * written chunks).  That is the price of random access by origin chunk; the
 * zero-reclaim path itself never builds it.
 */
#ifndef COWPUNCH_RECLAIM_MERGEDVIEW_H
#define COWPUNCH_RECLAIM_MERGEDVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reclaim/snapstore.h"

/* Exceptions gathered in store order, e.g. by snapstore_load(fd, &info, mergedview_list_add, &list, &err). */
struct mergedview_list {
	struct snapstore_exception *v;
	size_t n, cap;
};

/* snapstore_load() callback: appends *e to the struct mergedview_list at opaque. Returns 0 or -ENOMEM. */
int mergedview_list_add(void *opaque, const struct snapstore_exception *e);
void mergedview_list_free(struct mergedview_list *list);

struct mergedview;

/*
 * Builds a view of a disk of disk_size bytes.  cow_fd and base_fd stay owned by
 * the caller and must stay open while the view is used (base_fd may be -1: no
 * base, everything outside the exceptions reads as zeros).  The base's size is
 * taken with lseek(SEEK_END), so a file or a block device both work; bytes past
 * that size read as zeros.  Descriptors opened O_DIRECT are read with the
 * alignment statx reports (util_dio_alignment()); when the kernel refuses the
 * guess, O_DIRECT is dropped from that descriptor (fcntl F_SETFL).  The array
 * in *list is taken over on success (list is emptied); on failure the caller still
 * owns it.  It is sorted by origin chunk either way.
 * Returns 0 and sets *ret; -EINVAL for a chunk size that is not a power of two
 * >= 512; -EBADMSG when two exceptions share an origin chunk or one lies past
 * disk_size (store and disk size do not belong together); -ENOMEM; -errno.
 */
int mergedview_open(int cow_fd, int base_fd, uint64_t disk_size, uint64_t chunk_bytes,
		    struct mergedview_list *list, struct mergedview **ret);

void mergedview_free(struct mergedview *mv);

/*
 * Reads len bytes of the virtual disk at off into buf, like pread(2): returns the
 * bytes read (short only at the end of the disk, 0 at or past it) or -errno.
 * Never writes.  Holes in the COW file read as zeros, as the kernel sees them, and
 * so do bytes past the base's end as mergedview_open() found it.  Anything else
 * that cannot be read is an error, never zeros: -EIO when the base is shorter now
 * than it was, or the COW shorter than its store says; the read's -errno.
 */
ssize_t mergedview_pread(const struct mergedview *mv, void *buf, size_t len, uint64_t off);

uint64_t mergedview_disk_size(const struct mergedview *mv);
uint64_t mergedview_chunk_bytes(const struct mergedview *mv);
uint64_t mergedview_base_size(const struct mergedview *mv);

/* The exceptions, sorted by old_chunk; returns their count and sets *ret_v. */
size_t mergedview_exceptions(const struct mergedview *mv, const struct snapstore_exception **ret_v);

/*
 * True when every byte of the disk's [off, off + len) lies in origin chunks with an
 * exception: read from the COW, i.e. written by the guest, whatever the base holds.
 */
bool mergedview_range_in_cow(const struct mergedview *mv, uint64_t off, uint64_t len);

/* True when origin chunk old_chunk has an exception; then *ret_new_chunk is its COW chunk. */
bool mergedview_lookup(const struct mergedview *mv, uint64_t old_chunk, uint64_t *ret_new_chunk);

#endif
