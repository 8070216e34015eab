/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/helpers/fuzzreplay.h"

int fuzz_replay_main(int argc, char **argv, const char *name, size_t max,
		     int (*one)(const uint8_t *data, size_t size))
{
	int wrong = 0;

	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rbe");
		uint8_t *buf = malloc(max + 1);
		char *copy = strdup(argv[i]);
		bool want, got;
		size_t n;

		if (!f || !buf || !copy) {
			fprintf(stderr, "%s: %s: cannot read\n", name, argv[i]);
			if (f)
				fclose(f);
			free(buf);
			free(copy);
			return 1;
		}
		n = fread(buf, 1, max + 1, f);
		fclose(f);
		want = strncmp(basename(copy), "valid-", 6) == 0;
		got = one(buf, n) == 1;
		if (got != want) {
			fprintf(stderr, "%s: %s: %s, but %s\n", name, argv[i],
				got ? "accepted" : "refused",
				want ? "its name says valid- (must be accepted)"
				     : "only inputs named valid-* may be accepted");
			wrong++;
		}
		free(copy);
		free(buf);
	}
	printf("%s: %d input(s) replayed, %d with a verdict against its name\n", name, argc - 1,
	       wrong);
	return wrong ? 1 : 0;
}
