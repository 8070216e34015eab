/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Device-mapper tables for a VM disk (docs/kernel-facts.md), built as data so
 * they can be checked without a kernel, and COW sizing (section 1).
 */
#ifndef COWPUNCH_DMOPS_TABLE_H
#define COWPUNCH_DMOPS_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#define DMOPS_TABLE_MAX_TARGETS	    2
#define DMOPS_SECTOR		    512u
#define DMOPS_DEFAULT_CHUNK_SECTORS 8u /* 4 KiB */

struct dmops_target {
	uint64_t start;	 /* sectors */
	uint64_t length; /* sectors */
	char type[16];
	char params[512];
};

struct dmops_table {
	unsigned count;
	struct dmops_target targets[DMOPS_TABLE_MAX_TARGETS];
};

/*
 * base-ID: `linear` over base_dev (the base image's read-only loop) for
 * base_sectors, then a tail up to virt_sectors: `zero`, or when tail_dev is not
 * NULL a `linear` map of it (a sparse file's loop, for discard support on
 * kernels whose `zero` target has none).  Returns 0, or -EINVAL when
 * base_sectors is 0 or exceeds virt_sectors, or a name does not fit.
 */
int dmops_table_base(const char *base_dev, uint64_t base_sectors, uint64_t virt_sectors,
		     const char *tail_dev, struct dmops_table *ret);

/*
 * overlay-ID: persistent snapshot of origin_dev with its store on cow_dev.
 * discard adds `1 discard_zeroes_cow` (never passdown: the origin is shared).
 * Returns 0, or -EINVAL on a chunk size that is not a power of two >= 8
 * sectors, or a name that does not fit.
 */
int dmops_table_overlay(const char *origin_dev, const char *cow_dev, uint64_t virt_sectors,
			uint32_t chunk_sectors, bool discard, struct dmops_table *ret);

/*
 * Bytes a persistent COW store needs so that every origin chunk can get an
 * exception: LVM2's 1 + chunks + (chunks + epa) / epa chunks (header, data,
 * metadata areas).  A guest writing its whole disk then never overflows.
 * Returns 0 and writes *ret_bytes, -EINVAL on a bad chunk size, -ERANGE.
 */
int dmops_cow_bytes(uint64_t virt_bytes, uint32_t chunk_sectors, uint64_t *ret_bytes);

/* True for a chunk size dm-snapshot accepts here: power of two, 8 .. 2^21 sectors. */
bool dmops_chunk_sectors_valid(uint64_t chunk_sectors);

#endif
