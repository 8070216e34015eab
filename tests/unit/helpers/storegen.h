/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test-only writer of the dm-snapshot persistent exception store (docs/format.md),
 * a kernel-semantics reader of the merged disk view, and SHA-256.  Used by unit
 * tests, property tests, fuzz seeds, tests/tools/mkstore and the benchmarks.
 *
 * The writer behaves like drivers/md/dm-snap-persistent.c: chunk 0 is the header,
 * data chunks are allocated from 2 upwards skipping metadata chunks, entries fill
 * the areas in order, and when an area fills the next one is zeroed on disk.  It
 * streams: memory is one chunk buffer whatever the store size.  Raw helpers write
 * any bytes anywhere, for damaged stores.
 *
 * Functions return >= 0 or -errno, like the rest of cowpunch.
 */
#ifndef COWPUNCH_TESTS_STOREGEN_H
#define COWPUNCH_TESTS_STOREGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storegen {
	int fd; /* not owned: the caller opens and closes it */
	uint32_t chunk_sectors;
	uint64_t chunk_bytes;
	uint64_t epa;	     /* entries per metadata area */
	uint64_t next_free;  /* COW chunk the next storegen_add() gets */
	uint64_t area;	     /* metadata area being filled */
	uint64_t count;	     /* entries in that area */
	uint64_t exceptions; /* entries written by storegen_add() */
	uint64_t size;	     /* file size as far as storegen knows it */
	/*
	 * Settable at any time: zero metadata areas by punching holes instead of writing
	 * zero bytes (both read as zeros; the kernel writes zeros).
	 */
	bool metadata_holes;
	uint8_t *buf; /* one chunk, for fill callbacks */
};

/*
 * Truncates fd to empty and writes a fresh store: header (magic, valid 1, version 1,
 * chunk_sectors) and a zeroed area 0; the file is then 2 chunks long.
 * chunk_sectors must be a power of two >= 8 (raw writers can break that afterwards).
 * metadata_holes: area 0 (and later areas) are holes rather than written zeros.
 */
int storegen_create(int fd, uint32_t chunk_sectors, bool metadata_holes, struct storegen **ret);
void storegen_free(struct storegen *sg);

/*
 * Opens an existing store in fd to add more to it: reads the header and the table
 * as the kernel does and sets next_free, area, count, exceptions and size the way
 * the kernel would after loading it.  Returns 0, -EBADMSG if the kernel would not
 * load it, or -errno.
 */
int storegen_open(int fd, bool metadata_holes, struct storegen **ret);

/* What a fill callback returns: write the buffer, or leave the chunk a hole (reads zeros). */
enum { STOREGEN_DATA = 0, STOREGEN_HOLE = 1 };

/*
 * Fills buf (len = chunk_bytes, pre-zeroed) with the content of origin chunk old_chunk,
 * which is being stored in COW chunk new_chunk.  Returns STOREGEN_DATA, STOREGEN_HOLE
 * or -errno (the add fails with it).
 */
typedef int (*storegen_fill_fn)(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf,
				size_t len);

/*
 * Adds an exception the way the kernel does: allocates the next free COW chunk,
 * writes its content (fill may be NULL: the chunk is left a hole), appends the
 * entry to the current area, and when that area is full zeroes the next area.
 * Does not check that old_chunk is unique (tests want duplicates too).
 * Returns 0 and writes *ret_new (may be NULL).
 */
int storegen_add(struct storegen *sg, uint64_t old_chunk, storegen_fill_fn fill, void *opaque,
		 uint64_t *ret_new);

/* storegen_add() with chunk_bytes of content from data (NULL: leave a hole). */
int storegen_add_buf(struct storegen *sg, uint64_t old_chunk, const void *data, uint64_t *ret_new);

/* storegen_add() with storegen_pattern(seed) as content. */
int storegen_add_pattern(struct storegen *sg, uint64_t old_chunk, uint64_t seed, uint64_t *ret_new);

/* Deterministic pseudo-random bytes from seed (never an all-zero chunk in practice). */
void storegen_pattern(void *buf, size_t len, uint64_t seed);

/* Byte offsets of metadata area `area` and of slot `slot` in it. */
uint64_t storegen_area_offset(const struct storegen *sg, uint64_t area);
uint64_t storegen_entry_offset(const struct storegen *sg, uint64_t area, uint64_t slot);

/*
 * Raw writers for damaged stores: no bookkeeping, no checks.  put_entry writes one
 * 16-byte entry at (area, slot); write_header rewrites the 16 header bytes.
 */
int storegen_put_entry(struct storegen *sg, uint64_t area, uint64_t slot, uint64_t old_chunk,
		       uint64_t new_chunk);
int storegen_write_header(int fd, uint32_t magic, uint32_t valid, uint32_t version,
			  uint32_t chunk_sectors);
/* Little-endian stores into a buffer, for building headers and areas by hand. */
void storegen_put_le32(void *buf, uint32_t v);
void storegen_put_le64(void *buf, uint64_t v);
int storegen_write_raw(int fd, uint64_t offset, const void *buf, size_t len);
int storegen_write_le32(int fd, uint64_t offset, uint32_t v);
int storegen_write_le64(int fd, uint64_t offset, uint64_t v);
/* fallocate(PUNCH_HOLE|KEEP_SIZE). */
int storegen_punch(int fd, uint64_t offset, uint64_t len);
/* ftruncate; also updates sg->size when sg is not NULL. */
int storegen_set_size(struct storegen *sg, int fd, uint64_t size);

/*
 * Merged view: what a reader of the snapshot sees.  The exception table is read as
 * the kernel reads it (the list ends at the first new_chunk == 0; a full area goes
 * on in the next area; no further checks, so it also works on damaged stores the
 * kernel would accept).  Origin chunk -> COW chunk if it has an exception, else
 * base_fd (-1: none), else zeros past the end of the base.  Memory: 16 bytes per
 * exception.
 */
struct storegen_view;

/* Returns 0, -EBADMSG (no valid header, or the table runs off the file), -errno. */
int storegen_view_open(int cow_fd, int base_fd, uint64_t virt_size, struct storegen_view **ret);
void storegen_view_free(struct storegen_view *v);
uint64_t storegen_view_exceptions(const struct storegen_view *v);
/* Reads len bytes of the merged view at offset (bytes past virt_size read as zeros). */
int storegen_view_read(struct storegen_view *v, void *buf, size_t len, uint64_t offset);
/* SHA-256 of the whole view, virt_size bytes, streamed in 1 MiB pieces. */
int storegen_view_sha256(struct storegen_view *v, uint8_t out[32]);
/* One call: open, hash, free. */
int storegen_merged_sha256(int cow_fd, int base_fd, uint64_t virt_size, uint8_t out[32]);

/* SHA-256 (FIPS 180-4). */
struct storegen_sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	size_t fill;
};
void storegen_sha256_init(struct storegen_sha256 *s);
void storegen_sha256_update(struct storegen_sha256 *s, const void *data, size_t len);
void storegen_sha256_final(struct storegen_sha256 *s, uint8_t out[32]);
/* Writes 64 hex digits and a NUL into hex; returns hex. */
char *storegen_hex(const uint8_t digest[32], char hex[65]);

/* st_blocks * 512 of fd, or -errno. */
int64_t storegen_allocated(int fd);

#endif
