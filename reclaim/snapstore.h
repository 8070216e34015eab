/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reader for the dm-snapshot persistent exception store ("P"), as written by
 * drivers/md/dm-snap-persistent.c.  See docs/format.md.
 *
 * Two layers:
 *  - pure parsers over (buf, len) that do no I/O (fuzzed, unit-tested);
 *  - snapstore_load(), which streams a COW file area by area, validates every rule
 *    and returns a summary plus a bitmap of the COW chunks the store lists as data.
 *
 * Memory: one read buffer (at most 1 MiB, whatever the chunk size), one bit per COW
 * chunk, and a hashed bitmap of the origin chunks seen (duplicate detection) whose
 * size follows the number of exceptions, never the value of old_chunk; never a list
 * of exceptions.
 */
#ifndef COWPUNCH_RECLAIM_SNAPSTORE_H
#define COWPUNCH_RECLAIM_SNAPSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPSTORE_MAGIC		  0x70416e53u /* "SnAp" */
#define SNAPSTORE_VERSION	  1u
#define SNAPSTORE_SECTOR	  512u
#define SNAPSTORE_EXCEPTION_BYTES 16u
/* Chunk sizes accepted: power of two, 8 sectors (4 KiB) .. 2^21 sectors (1 GiB), like LVM2's cap. */
#define SNAPSTORE_MIN_CHUNK_SECTORS 8u
#define SNAPSTORE_MAX_CHUNK_SECTORS (1u << 21)

/* Why a store was refused: the byte offset in the COW file and the rule broken. */
struct snapstore_error {
	uint64_t offset;
	char rule[256];
};

struct snapstore_header {
	uint32_t magic;
	uint32_t valid;
	uint32_t version;
	uint32_t chunk_sectors;
};

struct snapstore_geometry {
	uint32_t chunk_sectors;
	uint64_t chunk_bytes;
	uint64_t epa;	      /* exceptions per metadata area: chunk_bytes / 16 */
	uint64_t file_chunks; /* whole chunks in the COW file (file_size / chunk_bytes) */
};

struct snapstore_exception {
	uint64_t old_chunk; /* origin chunk */
	uint64_t new_chunk; /* COW chunk */
};

/* Chunk index of metadata area k: 1 + k * (epa + 1). */
uint64_t snapstore_area_chunk(const struct snapstore_geometry *g, uint64_t area);

/* True when COW chunk c is the header (0) or a metadata area. */
bool snapstore_is_metadata_chunk(const struct snapstore_geometry *g, uint64_t c);

/*
 * Parses and validates the header chunk (at least 16 bytes of it; the rest of the
 * chunk must be zero when given).  file_size is the COW file's size in bytes.
 * Returns 0 and fills *ret_geom, or -EBADMSG with *err filled.
 */
int snapstore_parse_header(const void *buf, size_t len, uint64_t file_size,
			   struct snapstore_header *ret_hdr, struct snapstore_geometry *ret_geom,
			   struct snapstore_error *err);

/* Result of parsing one metadata area. */
struct snapstore_area {
	uint64_t count; /* entries before the terminator (new_chunk == 0), <= epa */
	bool full;	/* no terminator: every slot used, the next area must exist */
};

/*
 * Parses metadata area `area` (buf holds exactly chunk_bytes bytes).  Checks each
 * entry (new_chunk inside the file, not metadata) and that every byte after the
 * terminator is zero.  Calls cb(opaque, &exception) for each entry in order, if cb
 * is not NULL; a negative return from cb stops parsing and is returned.
 * Returns 0, -EBADMSG with *err filled, or cb's error.
 */
int snapstore_parse_area(const void *buf, size_t len, const struct snapstore_geometry *g,
			 uint64_t area, struct snapstore_area *ret_area,
			 int (*cb)(void *opaque, const struct snapstore_exception *e), void *opaque,
			 struct snapstore_error *err);

/* Summary of a whole validated store. */
struct snapstore_info {
	struct snapstore_header hdr;
	struct snapstore_geometry geom;
	uint64_t file_size;
	uint64_t exceptions;	 /* entries before the terminator, all areas */
	uint64_t metadata_areas; /* areas read, including the one holding the terminator */
	uint64_t
		next_free_chunk; /* what the kernel would allocate next: max(new)+1, skipping metadata; 2 if empty */
	uint64_t max_old_chunk; /* highest origin chunk with an exception (0 if none) */
	uint8_t *
		data_bitmap; /* geom.file_chunks bits: bit c set iff COW chunk c is a listed data chunk */
};

/*
 * Reads and validates the whole store of the open COW file fd (any open mode).
 * O_DIRECT is fine: reads are chunk-aligned into buffers aligned as statx(2)
 * reports for the file (else 4 KiB); when the file wants a larger offset
 * alignment than a chunk, or the kernel refuses the 4 KiB guess, O_DIRECT is
 * dropped from fd (fcntl F_SETFL), as reclaim_run() does.  Refuses,
 * with -EBADMSG and *err filled, any store that breaks a rule of docs/format.md:
 * bad magic/version/chunk size, valid == 0, short file, entries out of range,
 * pointing at metadata or the header, duplicate new_chunk or old_chunk, non-zero
 * bytes after the terminator, a full last area with no next area.
 * If cb is not NULL it is called for every exception in store order, as soon as
 * that entry is validated: on a later refusal the caller must drop what it got.
 * Returns 0 and fills *ret (free with snapstore_info_free), -EBADMSG, or -errno on I/O.
 */
int snapstore_load(int fd, struct snapstore_info *ret,
		   int (*cb)(void *opaque, const struct snapstore_exception *e), void *opaque,
		   struct snapstore_error *err);

void snapstore_info_free(struct snapstore_info *info);

/*
 * Counts the listed data chunks of info (from snapstore_load() on the same fd) that
 * hold no data at all: every byte in a hole, by a SEEK_DATA/SEEK_HOLE walk (a file
 * system without SEEK_DATA reports everything as data, so the count is then 0).
 * Returns 0 and writes *ret_holes, or -errno.
 */
int snapstore_hole_chunks(int fd, const struct snapstore_info *info, uint64_t *ret_holes);

static inline bool snapstore_bitmap_test(const uint8_t *bm, uint64_t bit)
{
	return (bm[bit >> 3] >> (bit & 7)) & 1;
}

#endif
