/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target for the fs-aware path: merged view + libext2fs io_manager + safety
 * rules + free-chunk mapping.  The input is a disk image (a small ext2/3/4 file
 * system, intact or with damaged superblock, descriptors or bitmaps).  It is the
 * base of the view, and also the COW file: every odd origin chunk has an exception
 * mapping it to the same chunk of the input, so the view shows the input byte for
 * byte while fsaware_scan() maps exceptions to COW chunks.  The last byte picks the
 * rule: odd, the base is trusted (FSAWARE_BASE_VERIFIED); even, only metadata read
 * from the COW is, and chunk 0 (superblock, descriptors) is an exception too, so
 * that rule has something to trust.  Built with libFuzzer
 * by `make fuzz` (COWPUNCH_LIBFUZZER defined); otherwise main() replays the files
 * named on the command line (`make check`).
 *
 * Invariants beyond "no crash": a refusal has a reason and no bitmap; a finished
 * scan sets exactly fs_free_chunks bits, all on exception chunks, and reports a
 * file system that fits the disk.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "reclaim/fsaware.h"
#include "reclaim/mergedview.h"
#include "tests/unit/helpers/fuzzreplay.h"

/* Inputs above this are ignored: 1 KiB-block images of a few hundred KiB say it all. */
#define FUZZ_MAX_INPUT (1u << 20)
#define FUZZ_CHUNK     4096u

/* Returns 1 when fsaware_scan() finished (accepted the file system), 0 when not. */
static int fuzz_one(const uint8_t *data, size_t size)
{
	struct mergedview_list list = {0};
	struct mergedview *mv = NULL;
	struct fsaware_result res;
	uint8_t *bm = NULL;
	uint64_t chunks = size / FUZZ_CHUNK, bits = 0;
	unsigned flags = 0;
	int fd, r, accepted = 0;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	fd = memfd_create("fuzz-fsaware", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	/*
	 * Both rules, by the last byte: trusting the base, or only metadata in the COW.
	 * For the second, chunk 0 (superblock, descriptors) is an exception too.
	 */
	if (size && (data[size - 1] & 1))
		flags = FSAWARE_BASE_VERIFIED;
	for (uint64_t c = flags ? 1 : 0; c < chunks; c += c ? 2 : 1) {
		struct snapstore_exception e = {c, c};

		if (mergedview_list_add(&list, &e) < 0)
			abort();
	}
	r = mergedview_open(fd, fd, size, FUZZ_CHUNK, &list, &mv);
	if (r < 0)
		abort();

	r = fsaware_scan(mv, chunks, flags, &bm, &res);
	if (r == -ENOMEM)
		goto out;
	if (r != 0 || !memchr(res.reason, 0, sizeof(res.reason)))
		abort();
	if (res.status == FSAWARE_REFUSED) {
		if (bm || !res.reason[0])
			abort();
		goto out;
	}
	if (res.status != FSAWARE_DONE || !bm || res.reason[0])
		abort();
	if (res.fs_block_size < 1024 || res.fs_block_size > 65536 ||
	    (res.fs_block_size & (res.fs_block_size - 1)) ||
	    res.fs_blocks * res.fs_block_size > size || res.free_blocks_seen > res.fs_blocks)
		abort();
	for (uint64_t c = 0; c < chunks; c++) {
		if (!snapstore_bitmap_test(bm, c))
			continue;
		/* Only exception chunks, and never chunk 0 (superblock). */
		if (!(c & 1))
			abort();
		bits++;
	}
	if (bits != res.fs_free_chunks)
		abort();
	accepted = 1;
out:
	free(bm);
	mergedview_free(mv);
	mergedview_list_free(&list);
	close(fd);
	return accepted;
}

FUZZ_TARGET("fuzz-fsaware", FUZZ_MAX_INPUT, fuzz_one)
