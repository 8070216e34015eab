/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target for the exception-store reader: the input is the whole COW file,
 * placed in a memfd and loaded with snapstore_load(); the buffer parsers get the
 * same bytes.  Built with libFuzzer by `make fuzz` (COWPUNCH_LIBFUZZER defined);
 * otherwise main() replays the files named on the command line (`make check`).
 *
 * Invariants checked beyond "no crash": a refusal names an offset and a rule; a
 * valid store's summary is consistent with its bitmap and geometry.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "reclaim/snapstore.h"
#include "tests/unit/helpers/fuzzreplay.h"

/* Inputs above this are ignored: the interesting structure fits in a few chunks. */
#define FUZZ_MAX_INPUT (2u << 20)

static int count_cb(void *opaque, const struct snapstore_exception *e)
{
	(*(uint64_t *)opaque)++;
	return 0;
}

static void check_valid(const struct snapstore_info *info, uint64_t seen)
{
	uint64_t listed = 0;

	if (seen != info->exceptions)
		abort();
	for (uint64_t c = 0; c < info->geom.file_chunks; c++) {
		if (!snapstore_bitmap_test(info->data_bitmap, c))
			continue;
		if (snapstore_is_metadata_chunk(&info->geom, c))
			abort();
		listed++;
	}
	if (listed != info->exceptions || info->metadata_areas == 0 || info->next_free_chunk < 2 ||
	    snapstore_is_metadata_chunk(&info->geom, info->next_free_chunk) ||
	    info->file_size < 2 * info->geom.chunk_bytes)
		abort();
}

/* Returns 1 when snapstore_load() accepted the input, 0 when not (or it was too large). */
static int fuzz_one(const uint8_t *data, size_t size)
{
	struct snapstore_info info;
	struct snapstore_error err = {0};
	struct snapstore_header hdr;
	struct snapstore_geometry geom;
	uint64_t seen = 0, holes;
	int fd, r;

	if (size > FUZZ_MAX_INPUT)
		return 0;

	/* The pure parsers, straight from the buffer. */
	if (snapstore_parse_header(data, size, size, &hdr, &geom, &err) == 0 &&
	    size >= 2 * geom.chunk_bytes) {
		struct snapstore_area a;

		r = snapstore_parse_area(data + geom.chunk_bytes, geom.chunk_bytes, &geom, 0, &a,
					 count_cb, &seen, &err);
		if (r == 0 && a.count > geom.epa)
			abort();
		seen = 0;
	}

	fd = memfd_create("fuzz-snapstore", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	r = snapstore_load(fd, &info, count_cb, &seen, &err);
	if (r == 0) {
		check_valid(&info, seen);
		if (snapstore_hole_chunks(fd, &info, &holes) < 0 || holes > info.exceptions)
			abort();
		snapstore_info_free(&info);
	} else if (r == -EBADMSG) {
		if (err.rule[0] == 0 || memchr(err.rule, 0, sizeof(err.rule)) == NULL)
			abort();
	} else if (r != -ENOMEM) {
		abort();
	}
	close(fd);
	return r == 0;
}

FUZZ_TARGET("fuzz-snapstore", FUZZ_MAX_INPUT, fuzz_one)
