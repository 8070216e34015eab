/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * punchlist: punches the byte ranges listed on standard input ("OFFSET LENGTH"
 * lines, as benchcow -R prints them) out of FILE with fallocate(2)
 * PUNCH_HOLE|KEEP_SIZE, one call per range, in the order given, and nothing
 * else: no reads.  The benchmark times it on a copy of the store to measure
 * the punch floor: what the punches alone cost on that file system, which
 * cowpunch and fallocate --dig-holes both pay.  The list is read in full before
 * FILE is opened, so parsing is not mixed with punching.
 *
 *   punchlist FILE < RANGES
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct range {
	uint64_t off, len;
};

int main(int argc, char **argv)
{
	struct range *r = NULL;
	size_t n = 0, cap = 0;
	uint64_t off, len;
	int fd;

	if (argc != 2) {
		fputs("usage: punchlist FILE < RANGES\n", stderr);
		return 2;
	}
	while (scanf("%" SCNu64 " %" SCNu64, &off, &len) == 2) {
		if (n == cap) {
			struct range *nr;

			cap = cap ? cap * 2 : 4096;
			nr = realloc(r, cap * sizeof(*r));
			if (!nr) {
				fputs("punchlist: out of memory\n", stderr);
				return 1;
			}
			r = nr;
		}
		r[n++] = (struct range){off, len};
	}
	if (!feof(stdin)) {
		fprintf(stderr, "punchlist: line %zu of the list: expected \"OFFSET LENGTH\"\n",
			n + 1);
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "punchlist: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r[i].off,
			      (off_t)r[i].len) < 0) {
			fprintf(stderr, "punchlist: %s: punch %" PRIu64 "+%" PRIu64 ": %s\n",
				argv[1], r[i].off, r[i].len, strerror(errno));
			return 1;
		}
	if (close(fd) < 0) {
		fprintf(stderr, "punchlist: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("%zu\n", n);
	free(r);
	return 0;
}
