/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/helpers/fuzzreplay.h"

int fuzz_replay_main(int argc, char **argv, const char *name, size_t max,
		     int (*one)(const uint8_t *data, size_t size))
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rbe");
		uint8_t *buf = malloc(max + 1);
		size_t n;

		if (!f || !buf) {
			fprintf(stderr, "%s: %s: cannot read\n", name, argv[i]);
			if (f)
				fclose(f);
			free(buf);
			return 1;
		}
		n = fread(buf, 1, max + 1, f);
		fclose(f);
		one(buf, n);
		free(buf);
	}
	printf("%s: %d input(s) replayed\n", name, argc - 1);
	return 0;
}
