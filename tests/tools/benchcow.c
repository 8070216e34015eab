/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * benchcow: writes a dm-snapshot COW file with a realistic mix of chunk contents
 * for the benchmarks (bench/reclaim-vs-dig-holes), using the test-only store
 * writer (tests/unit/helpers/storegen).
 *
 *   benchcow [-c CHUNK_SECTORS] [-s SEED] [-r RUNS%] [-z SCATTERED%] [-H HOLES%]
 *            [-p PARTIAL%] FILE SIZE
 *
 * SIZE is the number of data-chunk bytes (e.g. 2G).  In COW order the chunks
 * are: runs of zero chunks (RUNS% of them, runs of 1..128 chunks), single zero
 * chunks scattered among data (SCATTERED%), runs of chunks left as holes
 * (HOLES%), chunks that are zero but for a few bytes (PARTIAL%), and random data
 * (the rest).  Origin chunks are a fixed permutation, as a guest writing all
 * over its disk leaves them.  Prints the counts as one JSON object on stdout,
 * among them zero_bytes: the bytes a correct reclaim gives back.
 *
 *   benchcow -C SRC DST
 *
 * copies SRC to DST block for block: holes stay holes and zero data stays
 * allocated (cp(1) would turn zero blocks into holes), so that every contender
 * of a benchmark starts from an identical file.  The bytes are read and
 * written, never shared: copy_file_range(2) reflinks on XFS and btrfs, and a
 * copy whose extents are shared is not what a VM's writes leave (a rewrite
 * refuses it; every punch and write would unshare first).
 *
 *   benchcow -D BEFORE AFTER
 *
 * compares two versions of a COW file: prints as JSON the bytes allocated in
 * BEFORE that are holes in AFTER, split into listed data chunks (data_chunk_bytes)
 * and everything else (other_bytes: header, metadata areas, unlisted chunks), so
 * that tools that punch blindly can be compared with cowpunch.
 *
 *   benchcow -R BEFORE AFTER
 *
 * prints the byte ranges that turned from data in BEFORE into holes in AFTER,
 * one "OFFSET LENGTH" line each, a range running on across blocks that were
 * holes in both (as cowpunch grows a punch across chunks that already are
 * holes): the punches that turned BEFORE into AFTER, for tests/tools/punchlist
 * to replay alone on another copy (the benchmark's punch floor).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "reclaim/snapstore.h"
#include "tests/unit/helpers/storegen.h"

enum kind { K_DATA, K_ZERO_RUN, K_ZERO_ONE, K_HOLE, K_PARTIAL };

struct mix {
	uint64_t rng;
	unsigned runs, scattered, holes, partial; /* percent of chunks */
	enum kind cur;
	uint64_t left; /* chunks left in the current run */
	uint64_t counts[5];
};

static uint64_t rnd(struct mix *m)
{
	m->rng ^= m->rng << 13;
	m->rng ^= m->rng >> 7;
	m->rng ^= m->rng << 17;
	return m->rng;
}

/*
 * Picks the kind of the next chunk.  Zero and hole runs are 1..64 chunks (mean
 * 32.5), data runs 1..16 (mean 8.5), the others single chunks; a run of kind k
 * starts with a probability proportional to its share over its mean length, so
 * that each kind ends up with its share of the chunks.
 */
static enum kind next_kind(struct mix *m)
{
	double w[5], sum = 0, x;
	unsigned data = 100 - m->runs - m->scattered - m->holes - m->partial;
	int k;

	if (m->left) {
		m->left--;
		return m->cur;
	}
	w[K_DATA] = data / 8.5;
	w[K_ZERO_RUN] = m->runs / 32.5;
	w[K_ZERO_ONE] = m->scattered;
	w[K_HOLE] = m->holes / 32.5;
	w[K_PARTIAL] = m->partial;
	for (k = 0; k < 5; k++)
		sum += w[k];
	x = (double)(rnd(m) % 1000000) / 1000000.0 * sum;
	for (k = 0; k < 4 && x >= w[k]; k++)
		x -= w[k];
	m->cur = (enum kind)k;
	if (k == K_DATA)
		m->left = rnd(m) % 16;
	else if (k == K_ZERO_RUN || k == K_HOLE)
		m->left = rnd(m) % 64;
	else
		m->left = 0;
	return m->cur;
}

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	struct mix *m = opaque;
	enum kind k = next_kind(m);

	m->counts[k]++;
	switch (k) {
	case K_DATA:
		storegen_pattern(buf, len, new_chunk);
		return STOREGEN_DATA;
	case K_PARTIAL:
		((uint8_t *)buf)[rnd(m) % len] = 1;
		return STOREGEN_DATA;
	case K_HOLE:
		return STOREGEN_HOLE;
	default:
		return STOREGEN_DATA; /* written zeros: what a guest's zeroing leaves */
	}
}

static int copy_exact(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	off_t size, d = 0, h;

	if (in < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size = lseek(in, 0, SEEK_END);
	if (out < 0 || size < 0 || ftruncate(out, size) < 0)
		return -errno;
	while ((d = lseek(in, d, SEEK_DATA)) >= 0) {
		h = lseek(in, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		while (d < h) {
			/* Zeros written as data. */
			static char buf[1 << 20];
			size_t len = (size_t)(h - d) < sizeof(buf) ? (size_t)(h - d) : sizeof(buf);
			ssize_t n = pread(in, buf, len, d);

			if (n > 0 && pwrite(out, buf, (size_t)n, d) != n)
				n = -1;
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			d += n;
		}
	}
	if (errno != ENXIO || fsync(out) < 0)
		return -errno;
	close(in);
	close(out);
	return 0;
}

/* 1 when byte off of fd is in a data extent.  Walks forward only, with a cache. */
struct datamap {
	int fd;
	off_t ds, de; /* current data extent, or ds = de = -1 past the last one */
};

static bool is_data(struct datamap *m, off_t off)
{
	if (m->ds == -1 && m->de == -1)
		return false;
	if (off >= m->de) {
		m->ds = lseek(m->fd, off, SEEK_DATA);
		if (m->ds < 0) {
			m->ds = m->de = -1;
			return false;
		}
		m->de = lseek(m->fd, m->ds, SEEK_HOLE);
	}
	return off >= m->ds && off < m->de;
}

static int diff_maps(const char *before, const char *after)
{
	struct snapstore_info info;
	struct snapstore_error err;
	struct datamap a = {.de = 0}, b = {.de = 0};
	uint64_t data = 0, other = 0, size;
	int r;

	a.fd = open(before, O_RDONLY | O_CLOEXEC);
	b.fd = open(after, O_RDONLY | O_CLOEXEC);
	if (a.fd < 0 || b.fd < 0)
		return -errno;
	r = snapstore_load(a.fd, &info, NULL, NULL, &err);
	if (r < 0) {
		fprintf(stderr, "benchcow: %s: byte %llu: %s\n", before,
			(unsigned long long)err.offset, err.rule);
		return r;
	}
	size = (uint64_t)lseek(a.fd, 0, SEEK_END);
	for (uint64_t off = 0; off < size; off += 4096) {
		uint64_t c = off / info.geom.chunk_bytes;

		if (!is_data(&a, (off_t)off) || is_data(&b, (off_t)off))
			continue;
		if (c < info.geom.file_chunks && snapstore_bitmap_test(info.data_bitmap, c))
			data += 4096;
		else
			other += 4096;
	}
	printf("{\"data_chunk_bytes\": %" PRIu64 ", \"other_bytes\": %" PRIu64 "}\n", data, other);
	snapstore_info_free(&info);
	return 0;
}

static int diff_ranges(const char *before, const char *after)
{
	struct datamap a = {.de = 0}, b = {.de = 0};
	uint64_t size, start = 0, end = 0; /* open range [start, end) when end > start */

	a.fd = open(before, O_RDONLY | O_CLOEXEC);
	b.fd = open(after, O_RDONLY | O_CLOEXEC);
	if (a.fd < 0 || b.fd < 0)
		return -errno;
	size = (uint64_t)lseek(a.fd, 0, SEEK_END);
	for (uint64_t off = 0; off <= size; off += 4096) {
		bool in_a = off < size && is_data(&a, (off_t)off);
		bool in_b = off < size && is_data(&b, (off_t)off);

		if (in_a && !in_b) {
			if (end == start)
				start = off;
			end = off + 4096;
		} else if ((in_b || off >= size) && end > start) {
			printf("%" PRIu64 " %" PRIu64 "\n", start, end - start);
			start = end = 0;
		}
	}
	close(a.fd);
	close(b.fd);
	return fflush(stdout) ? -errno : 0;
}

static void usage(void);

/*
 * The modes that take two files (-C, -D, -R): runs fn(first, second) and
 * names both files in its error ("VERB %s WORD %s").  -EBADMSG: fn has said why.
 */
static int two_files(int (*fn)(const char *, const char *), const char *what, int argc, char **argv,
		     const char *first)
{
	int r;

	if (argc - optind != 1)
		usage();
	r = fn(first, argv[optind]);
	if (r < 0 && r != -EBADMSG) {
		fputs("benchcow: ", stderr);
		fprintf(stderr, what, first, argv[optind]);
		fprintf(stderr, ": %s\n", strerror(-r));
	}
	return r < 0;
}

static void usage(void)
{
	fputs("usage: benchcow [-c CHUNK_SECTORS] [-s SEED] [-r RUNS%] [-z SCATTERED%] "
	      "[-H HOLES%] [-p PARTIAL%] FILE SIZE\n"
	      "       benchcow -C SRC DST\n"
	      "       benchcow -D BEFORE AFTER\n"
	      "       benchcow -R BEFORE AFTER\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	struct mix m = {.runs = 25, .scattered = 10, .holes = 10, .partial = 5};
	uint32_t chunk_sectors = 8;
	uint64_t size, chunks, seed = 1, mult;
	struct storegen *sg;
	int fd, r, opt;

	while ((opt = getopt(argc, argv, "C:D:R:c:s:r:z:H:p:")) != -1) {
		switch (opt) {
		case 'D':
			return two_files(diff_maps, "compare %s with %s", argc, argv, optarg);
		case 'R':
			return two_files(diff_ranges, "ranges from %s to %s", argc, argv, optarg);
		case 'C':
			return two_files(copy_exact, "copy %s to %s", argc, argv, optarg);
		case 'c':
			chunk_sectors = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			m.runs = (unsigned)atoi(optarg);
			break;
		case 'z':
			m.scattered = (unsigned)atoi(optarg);
			break;
		case 'H':
			m.holes = (unsigned)atoi(optarg);
			break;
		case 'p':
			m.partial = (unsigned)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || util_parse_size(argv[optind + 1], &size) < 0 ||
	    m.runs + m.holes + m.scattered + m.partial > 95)
		usage();
	m.rng = seed * 0x9e3779b97f4a7c15ULL | 1;
	fd = open(argv[optind], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(argv[optind]);
		return 1;
	}
	r = storegen_create(fd, chunk_sectors, false, &sg);
	if (r < 0)
		goto fail;
	chunks = size / sg->chunk_bytes;
	/* An odd multiplier permutes the origin chunks modulo a power of two. */
	mult = 0x9e3779b97f4a7c15ULL | 1;
	uint64_t span = 1;
	while (span < chunks)
		span <<= 1;
	for (uint64_t i = 0; i < chunks; i++) {
		r = storegen_add(sg, (i * mult) & (span - 1), fill, &m, NULL);
		if (r < 0)
			goto fail;
	}
	/* Room to grow, as a COW file is made: a sparse tail of 1/16 more. */
	r = storegen_set_size(sg, fd,
			      sg->size + (sg->size / 16 / sg->chunk_bytes) * sg->chunk_bytes);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	printf("{\"chunk_bytes\": %" PRIu64 ", \"exceptions\": %" PRIu64
	       ", \"data_chunks\": %" PRIu64 ", \"zero_run_chunks\": %" PRIu64
	       ", \"zero_single_chunks\": %" PRIu64 ", \"hole_chunks\": %" PRIu64
	       ", \"partial_chunks\": %" PRIu64 ", \"zero_bytes\": %" PRIu64
	       ", \"file_size\": %" PRIu64 "}\n",
	       sg->chunk_bytes, sg->exceptions, m.counts[K_DATA], m.counts[K_ZERO_RUN],
	       m.counts[K_ZERO_ONE], m.counts[K_HOLE], m.counts[K_PARTIAL],
	       (m.counts[K_ZERO_RUN] + m.counts[K_ZERO_ONE]) * sg->chunk_bytes, sg->size);
	storegen_free(sg);
	close(fd);
	return 0;
fail:
	fprintf(stderr, "benchcow: %s: %s\n", argv[optind], strerror(-r));
	return 1;
}
