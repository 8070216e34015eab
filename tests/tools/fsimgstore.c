/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fsimgstore: turns two disk images into the COW store the kernel would hold,
 * and exports the disk a COW store shows, for the fs-aware tests and benchmark.
 *
 *   fsimgstore diff [-c CHUNK_SECTORS] BASE GUEST COW
 *
 * compares GUEST (the disk after the guest's writes) with BASE (zeros past its
 * end) chunk by chunk and writes a fresh store COW (tests/unit/helpers/storegen:
 * the kernel's allocation order and area layout) holding every differing chunk
 * as an exception, in origin order.  The disk size is GUEST's size.  Prints
 * {"exceptions": N, "chunk_bytes": B} on stdout.
 *
 *   fsimgstore export COW BASE SIZE OUT
 *
 * writes the SIZE-byte disk a reader of the snapshot sees (COW over BASE over
 * zeros, read the kernel's way by storegen's reader) to the file OUT.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "tests/unit/helpers/storegen.h"

static int usage(void)
{
	fputs("usage: fsimgstore diff [-c CHUNK_SECTORS] BASE GUEST COW\n"
	      "       fsimgstore export COW BASE SIZE OUT\n",
	      stderr);
	return 2;
}

static int fail(const char *what, int r)
{
	fprintf(stderr, "fsimgstore: %s: %s\n", what, strerror(r < 0 ? -r : r));
	return 1;
}

static int do_diff(int argc, char **argv)
{
	uint32_t sectors = 8;
	int i = 2;

	if (argc > 3 && !strcmp(argv[2], "-c")) {
		sectors = (uint32_t)strtoul(argv[3], NULL, 0);
		i = 4;
	}
	if (argc - i != 3 || sectors < 8 || (sectors & (sectors - 1)))
		return usage();

	_cleanup_close_ int bfd = open(argv[i], O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int gfd = open(argv[i + 1], O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int cfd = open(argv[i + 2], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t cb = (uint64_t)sectors * 512, n = 0;
	_cleanup_free_ uint8_t *a = malloc(cb), *b = malloc(cb);
	struct storegen *sg;
	struct stat st;
	int r;

	if (bfd < 0 || gfd < 0 || cfd < 0 || fstat(gfd, &st) < 0)
		return fail("open", errno);
	if (!a || !b)
		return fail("malloc", ENOMEM);
	r = storegen_create(cfd, sectors, false, &sg);
	if (r < 0)
		return fail("storegen_create", r);
	for (uint64_t c = 0; c * cb < (uint64_t)st.st_size; c++) {
		ssize_t ra = util_pread_full(bfd, a, cb, c * cb);
		ssize_t rb = util_pread_full(gfd, b, cb, c * cb);

		if (ra < 0 || rb < 0)
			return fail("read", (int)(ra < 0 ? ra : rb));
		memset(a + ra, 0, cb - (size_t)ra);
		memset(b + rb, 0, cb - (size_t)rb);
		if (!memcmp(a, b, cb))
			continue;
		r = storegen_add_buf(sg, c, b, NULL);
		if (r < 0)
			return fail("storegen_add", r);
		n++;
	}
	storegen_free(sg);
	printf("{\"exceptions\": %" PRIu64 ", \"chunk_bytes\": %" PRIu64 "}\n", n, cb);
	return 0;
}

static int do_export(int argc, char **argv)
{
	uint64_t size;
	struct storegen_view *v;
	int r;

	if (argc != 6 || util_parse_size(argv[4], &size) < 0)
		return usage();

	_cleanup_close_ int cfd = open(argv[2], O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int bfd = open(argv[3], O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int ofd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_free_ uint8_t *buf = malloc(1 << 20);

	if (cfd < 0 || bfd < 0 || ofd < 0)
		return fail("open", errno);
	if (!buf)
		return fail("malloc", ENOMEM);
	r = storegen_view_open(cfd, bfd, size, &v);
	if (r < 0)
		return fail("storegen_view_open", r);
	for (uint64_t off = 0; off < size; off += 1 << 20) {
		size_t len = size - off < (1 << 20) ? (size_t)(size - off) : (1 << 20);

		r = storegen_view_read(v, buf, len, off);
		if (r >= 0 && util_pwrite_full(ofd, buf, len, off) != (ssize_t)len)
			r = -EIO;
		if (r < 0) {
			storegen_view_free(v);
			return fail("export", r);
		}
	}
	storegen_view_free(v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "diff"))
		return do_diff(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "export"))
		return do_export(argc, argv);
	return usage();
}
