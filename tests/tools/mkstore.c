/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mkstore: builds dm-snapshot COW files (valid or damaged) for CLI tests and
 * benchmarks, on top of tests/unit/helpers/storegen.  Operations run in the order
 * given; add one by adding a row to the ops table.  See usage().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/helpers/storegen.h"

#define MAX_ARGS 8

struct op {
	const char *name;
	int min_args, max_args;
	int (*run)(struct storegen *sg, const uint64_t *a, int n, const char *raw);
	const char *help;
};

/* Content of a chunk for add= and random=. */
enum kind { KIND_DATA, KIND_ZERO, KIND_HOLE };

struct fill_ctx {
	enum kind kind;
	uint64_t seed;
};

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	struct fill_ctx *c = opaque;

	switch (c->kind) {
	case KIND_DATA:
		storegen_pattern(buf, len, c->seed ^ (old_chunk * 0x9e3779b97f4a7c15ULL));
		return STOREGEN_DATA;
	case KIND_ZERO:
		return STOREGEN_DATA; /* buf comes zeroed: written zeros */
	default:
		return STOREGEN_HOLE;
	}
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* add=OLD[,COUNT[,KIND]]: KIND 0 data (default), 1 written zeros, 2 hole. */
static int op_add(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	uint64_t count = n > 1 ? a[1] : 1;
	struct fill_ctx c = {n > 2 ? (enum kind)a[2] : KIND_DATA, 1};

	if (n > 2 && a[2] > KIND_HOLE)
		return -EINVAL;
	for (uint64_t i = 0; i < count; i++) {
		int r = storegen_add(sg, a[0] + i, fill, &c, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}

static uint64_t gcd(uint64_t x, uint64_t y)
{
	while (y) {
		uint64_t t = x % y;

		x = y;
		y = t;
	}
	return x;
}

/*
 * random=COUNT,SEED[,ZERO_PCT[,HOLE_PCT[,ORIGIN_CHUNKS]]]: COUNT exceptions for
 * distinct origin chunks in 0..ORIGIN_CHUNKS-1 (default 4 * COUNT) in a scattered
 * order; each chunk is written zeros with ZERO_PCT % chance, a hole with HOLE_PCT %,
 * else random data.
 */
static int op_random(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	uint64_t count = a[0], seed = a[1], zero = n > 2 ? a[2] : 0, hole = n > 3 ? a[3] : 0;
	uint64_t origin = n > 4 ? a[4] : 4 * count, mult, start, rng = seed;

	if (count > origin || zero + hole > 100 || origin == 0)
		return count == 0 ? 0 : -EINVAL;
	/* old = (start + i * mult) mod origin with gcd(mult, origin) = 1: distinct. */
	mult = rng_next(&rng) % origin | 1;
	while (gcd(mult, origin) != 1)
		mult++;
	start = rng_next(&rng) % origin;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t old = (uint64_t)((start + (unsigned __int128)i * mult) % origin);
		uint64_t dice = rng_next(&rng) % 100;
		struct fill_ctx c = {dice < zero	  ? KIND_ZERO
				     : dice < zero + hole ? KIND_HOLE
							  : KIND_DATA,
				     rng_next(&rng)};
		int r = storegen_add(sg, old, fill, &c, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}

static int op_entry(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_put_entry(sg, a[0], a[1], a[2], a[3]);
}

static int op_header(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_write_header(sg->fd, (uint32_t)a[0], (uint32_t)a[1], (uint32_t)a[2],
				     (uint32_t)a[3]);
}

static int op_u32(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_write_le32(sg->fd, a[0], (uint32_t)a[1]);
}

static int op_u64(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_write_le64(sg->fd, a[0], a[1]);
}

static int op_byte(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	uint8_t b = (uint8_t)a[1];

	return storegen_write_raw(sg->fd, a[0], &b, 1);
}

static int op_punch(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_punch(sg->fd, a[0], a[1]);
}

static int op_size(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	return storegen_set_size(sg, sg->fd, a[0]);
}

/* sha256=VIRT_SIZE[,BASE]: prints the merged view's SHA-256 (BASE: path after the comma). */
static int op_sha256(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	const char *comma = strchr(raw, ',');
	int base = -1, r;
	uint8_t d[32];
	char hex[65];

	if (comma) {
		base = open(comma + 1, O_RDONLY | O_CLOEXEC);
		if (base < 0)
			return -errno;
	}
	r = storegen_merged_sha256(sg->fd, base, a[0], d);
	if (base >= 0)
		close(base);
	if (r < 0)
		return r;
	printf("%s\n", storegen_hex(d, hex));
	return 0;
}

static int op_info(struct storegen *sg, const uint64_t *a, int n, const char *raw)
{
	printf("chunk_bytes=%" PRIu64 " epa=%" PRIu64 " exceptions=%" PRIu64 " next_free=%" PRIu64
	       " area=%" PRIu64 " count=%" PRIu64 " size=%" PRIu64 "\n",
	       sg->chunk_bytes, sg->epa, sg->exceptions, sg->next_free, sg->area, sg->count,
	       sg->size);
	return 0;
}

static const struct op ops[] = {
	{"add", 1, 3, op_add,
	 "add=OLD[,COUNT[,KIND]]   COUNT (1) exceptions for origin chunks OLD.., kernel-style;\n"
	 "                          KIND 0 = pattern data (default), 1 = written zeros, 2 = hole"},
	{"random", 2, 5, op_random,
	 "random=COUNT,SEED[,ZERO%[,HOLE%[,ORIGIN]]]  COUNT exceptions for distinct scattered\n"
	 "                          origin chunks < ORIGIN (4*COUNT); ZERO% written zeros, HOLE%\n"
	 "                          holes, the rest random data"},
	{"entry", 4, 4, op_entry, "entry=AREA,SLOT,OLD,NEW  write a raw 16-byte entry"},
	{"header", 4, 4, op_header, "header=MAGIC,VALID,VERSION,CHUNK_SECTORS  rewrite the header"},
	{"u32", 2, 2, op_u32, "u32=OFFSET,VALUE         write a little-endian u32"},
	{"u64", 2, 2, op_u64, "u64=OFFSET,VALUE         write a little-endian u64"},
	{"byte", 2, 2, op_byte, "byte=OFFSET,VALUE        write one byte"},
	{"punch", 2, 2, op_punch, "punch=OFFSET,LEN         punch a hole (KEEP_SIZE)"},
	{"size", 1, 1, op_size, "size=BYTES               truncate or extend the file"},
	{"sha256", 1, 2, op_sha256,
	 "sha256=VIRT_SIZE[,BASE]  print the SHA-256 of the merged view (COW over BASE)"},
	{"info", 0, 0, op_info, "info                     print the writer's state"},
};

static void usage(FILE *out)
{
	fputs("Usage: mkstore [-c SECTORS] [-H] [-a] FILE [OP...]\n"
	      "Builds a dm-snapshot persistent COW store in FILE (test tool).\n"
	      "  -c, --chunk-sectors N  chunk size in 512-byte sectors (default 8)\n"
	      "  -H, --metadata-holes   zero metadata areas by punching holes\n"
	      "  -a, --append           open FILE's existing store instead of creating one\n"
	      "Numbers: decimal, 0x hex, or with a k/m/g suffix (binary).  Operations:\n",
	      out);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		fprintf(out, "  %s\n", ops[i].help);
}

static int parse_num(const char *s, uint64_t *ret)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end && *end != ',')
		return -EINVAL;
	*ret = v;
	return 0;
}

static int run_op(struct storegen *sg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
	uint64_t a[MAX_ARGS];
	int n = 0;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const char *p = eq ? eq + 1 : NULL;

		if (strlen(ops[i].name) != name_len || strncmp(ops[i].name, arg, name_len))
			continue;
		while (p && *p && n < ops[i].max_args) {
			if (parse_num(p, &a[n]) < 0) {
				/* Non-numeric trailing argument (a path): left to the op. */
				if (n >= ops[i].min_args)
					break;
				return -EINVAL;
			}
			n++;
			p = strchr(p, ',');
			p = p ? p + 1 : NULL;
		}
		if (n < ops[i].min_args)
			return -EINVAL;
		return ops[i].run(sg, a, n, arg);
	}
	return -ENOENT;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"chunk-sectors", required_argument, NULL, 'c'},
		{"metadata-holes", no_argument, NULL, 'H'},
		{"append", no_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	uint64_t chunk = 8;
	bool holes = false, append = false;
	struct storegen *sg;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "c:Hah", lopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_num(optarg, &chunk) < 0 || chunk > UINT32_MAX) {
				fprintf(stderr, "mkstore: bad chunk size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'H':
			holes = true;
			break;
		case 'a':
			append = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	fd = open(argv[optind], O_RDWR | O_CLOEXEC | (append ? 0 : O_CREAT), 0644);
	if (fd < 0) {
		fprintf(stderr, "mkstore: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	r = append ? storegen_open(fd, holes, &sg)
		   : storegen_create(fd, (uint32_t)chunk, holes, &sg);
	if (r < 0) {
		fprintf(stderr, "mkstore: %s: %s\n", argv[optind], strerror(-r));
		close(fd);
		return 1;
	}
	for (int i = optind + 1; i < argc; i++) {
		r = run_op(sg, argv[i]);
		if (r < 0) {
			fprintf(stderr, "mkstore: %s: %s\n", argv[i],
				r == -ENOENT ? "unknown operation" : strerror(-r));
			storegen_free(sg);
			close(fd);
			return r == -ENOENT || r == -EINVAL ? 2 : 1;
		}
	}
	storegen_free(sg);
	if (close(fd) < 0) {
		fprintf(stderr, "mkstore: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	return 0;
}
