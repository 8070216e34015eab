/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memfile: writes a file that looks like a hibernated VM's memory snapshot, for
 * the sparsify benchmark (bench/sparsify-vs-dig-holes) and tests.
 *
 *   memfile [-s SEED] [-o MAX_ORDER] [-p PARTIAL%] FILE SIZE
 *
 * SIZE bytes (a multiple of 4 KiB) of 4 KiB pages in alternating runs: a run of
 * zero pages, then a run of data pages, and so on.  Each run's length is drawn
 * by order: an order k from 0 to MAX_ORDER (default 8), all equally likely,
 * then a length from 2^k to 2^(k+1) - 1 pages, uniformly: runs from one page to
 * just under a 2 MiB huge page, every order of size about as common, and about
 * half of the pages zero.  That is how an idle guest's memory looks: the page
 * allocator hands out and frees blocks of 2^k pages, and memory never touched
 * since boot (or freed and zeroed) shows up as runs of such blocks between the
 * kernel's, the page cache's and the processes' pages.  Of the data pages, PARTIAL% (default 10) are
 * zero but for their last byte, like the mostly empty page tables and slab pages
 * of a kernel (a zero test must read them to the end); the others are
 * pseudo-random.  Every page is written: zero pages are allocated zeros, as a
 * VMM writes a snapshot.  Prints the counts as one JSON object, among them
 * zero_bytes: what a correct sparsify gives back.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#define PAGE	  4096u
#define BUF_PAGES 256u

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A run length in pages: an order k in [0, max_order], then [2^k, 2^(k+1)). */
static uint64_t run_length(unsigned max_order)
{
	unsigned k = (unsigned)(rnd() % (max_order + 1));

	return (1ULL << k) + rnd() % (1ULL << k);
}

static void usage(void)
{
	fputs("usage: memfile [-s SEED] [-o MAX_ORDER] [-p PARTIAL%] FILE SIZE\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t seed = 1, size, pages, zero = 0, zero_runs = 0, partial = 0;
	uint64_t page = 0, fill = 0, buf_off = 0;
	unsigned partial_pct = 10, max_order = 8;
	uint8_t *buf;
	int fd, opt;
	bool zero_run = true;

	while ((opt = getopt(argc, argv, "s:o:p:")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'o':
			max_order = (unsigned)atoi(optarg);
			break;
		case 'p':
			partial_pct = (unsigned)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || util_parse_size(argv[optind + 1], &size) < 0 || size % PAGE ||
	    max_order > 20 || partial_pct > 100)
		usage();
	rng = seed * 0x9e3779b97f4a7c15ULL | 1;
	pages = size / PAGE;
	buf = malloc((size_t)BUF_PAGES * PAGE);
	fd = open(argv[optind], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (!buf || fd < 0) {
		fprintf(stderr, "memfile: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	while (page < pages) {
		uint64_t n = run_length(max_order);

		if (n > pages - page)
			n = pages - page;
		if (zero_run && n)
			zero_runs++;
		for (uint64_t i = 0; i < n; i++, page++) {
			uint8_t *p = buf + fill * PAGE;

			if (zero_run) {
				memset(p, 0, PAGE);
				zero++;
			} else if (rnd() % 100 < partial_pct) {
				memset(p, 0, PAGE);
				p[PAGE - 1] = 1;
				partial++;
			} else {
				for (unsigned w = 0; w < PAGE / 8; w++) {
					uint64_t v = rnd() | 1; /* never a zero word */

					memcpy(p + w * 8, &v, 8);
				}
			}
			if (++fill == BUF_PAGES) {
				if (util_pwrite_full(fd, buf, (size_t)fill * PAGE, buf_off) < 0)
					goto fail;
				buf_off += fill * PAGE;
				fill = 0;
			}
		}
		zero_run = !zero_run;
	}
	if ((fill && util_pwrite_full(fd, buf, (size_t)fill * PAGE, buf_off) < 0) || fsync(fd) < 0)
		goto fail;
	close(fd);
	free(buf);
	printf("{\"pages\": %" PRIu64 ", \"zero_pages\": %" PRIu64 ", \"zero_runs\": %" PRIu64
	       ", \"data_pages\": %" PRIu64 ", \"partial_pages\": %" PRIu64
	       ", \"zero_bytes\": %" PRIu64 ", \"max_order\": %u}\n",
	       pages, zero, zero_runs, pages - zero, partial, zero * PAGE, max_order);
	return 0;
fail:
	fprintf(stderr, "memfile: %s: %s\n", argv[optind], strerror(errno));
	return 1;
}
