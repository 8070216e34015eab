/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Randomized property test of reclaim: for random stores (chunk sizes 8, 16, 32
 * and 128 sectors, up to six metadata areas, random shares of zero, partly zero,
 * hole and half-hole chunks, unlisted zero chunks past the end, random origin
 * chunks over a base image of random length), each engine in turn, and random
 * read size, queue depth and O_DIRECT:
 *  - the merged disk view (COW over the base, zeros past it) hashes the same
 *    before and after, and so do the raw bytes of the COW file;
 *  - exactly the blocks of the all-zero listed data chunks become holes; no other
 *    block (header, metadata areas, unlisted chunks, data) changes allocation;
 *  - st_blocks drops by exactly those bytes where st_blocks counts data only
 *    (tmpfs); on file systems that also count extent-tree blocks (ext4) the
 *    exact check is the block map above;
 *  - a dry run first changes nothing, and plans the same fallocate calls;
 *  - ranges grown across holes (hole_bridges) occur among the default seeds, so the
 *    checks above cover them.
 * Runs in /tmp and /dev/shm (or $COWPUNCH_TEST_DIR).  Seeds 1..N plus one from
 * the clock; COWPUNCH_SEED=S reruns one seed, COWPUNCH_SEEDS=N sets N (default 10).
 * One case per engine runs the seeds that use it: an engine this machine lacks
 * skips its case, saying so.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/reclaim/rtest.h"

/* Data written and merged-view bytes hashed per seed at most, so the test stays quick. */
#define DATA_BUDGET (8ull << 20)
#define VIEW_BUDGET (64ull << 20)

enum kind { K_DATA, K_ZERO, K_HOLE, K_PARTIAL, K_HALF_ZERO, K_HALF_DATA, K_NKINDS };

struct gen {
	uint64_t rng;
	unsigned weight[K_NKINDS];
	unsigned wsum;
	uint64_t cb;
	enum kind last;
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static int fill(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	struct gen *g = opaque;
	unsigned p = (unsigned)(rnd(&g->rng) % g->wsum);
	enum kind k = K_DATA;

	for (int i = 0; i < K_NKINDS; i++) {
		if (p < g->weight[i]) {
			k = (enum kind)i;
			break;
		}
		p -= g->weight[i];
	}
	if ((k == K_HALF_ZERO || k == K_HALF_DATA) && len < 2 * RT_BLOCK)
		k = k == K_HALF_ZERO ? K_ZERO : K_DATA;
	g->last = k;
	switch (k) {
	case K_HOLE:
		return STOREGEN_HOLE;
	case K_DATA:
		storegen_pattern(buf, len, new_chunk ^ g->rng);
		break;
	case K_HALF_DATA:
		/* Data only in the second half; the first half is punched afterwards. */
		storegen_pattern((uint8_t *)buf + len / 2, len / 2, new_chunk);
		break;
	case K_PARTIAL:
		((uint8_t *)buf)[rnd(&g->rng) % len] = (uint8_t)(1 + rnd(&g->rng) % 255);
		break;
	default:
		break;
	}
	return STOREGEN_DATA;
}

struct store {
	int cow, base;
	uint64_t cb, virt_size, file_size, exceptions;
	uint64_t first_unlisted;
	enum kind *kinds; /* per COW chunk, for listed data chunks; K_NKINDS elsewhere */
	uint64_t nkinds;
	uint64_t zero_chunks, hole_chunks, read_chunks;
};

static void build(const char *dir, uint64_t seed, struct store *s)
{
	static const uint32_t sizes[] = {8, 16, 32, 128};
	static const unsigned max_areas[] = {6, 3, 2, 1}; /* 128: under VIEW_BUDGET */
	uint64_t x = seed * 0x9e3779b97f4a7c15ull | 1, n, span, mult, off, base_chunks;
	unsigned si = (unsigned)(rnd(&x) % 4);
	struct gen g = {.rng = rnd(&x) | 1};
	struct storegen *sg;
	uint8_t *buf;

	*s = (struct store){0};
	s->cow = rt_tmpfile(dir);
	s->base = rt_tmpfile(dir);
	assert_true(s->cow >= 0 && s->base >= 0);
	assert_int_equal(storegen_create(s->cow, sizes[si], rnd(&x) & 1, &sg), 0);
	s->cb = g.cb = sg->chunk_bytes;
	/* Up to max_areas full areas, and sometimes just past a boundary. */
	n = 1 + rnd(&x) % (max_areas[si] * sg->epa + 2);
	if (rnd(&x) % 4 == 0)
		n = sg->epa * (1 + rnd(&x) % max_areas[si]) + rnd(&x) % 3;
	if (n > VIEW_BUDGET / s->cb / 2)
		n = 1 + rnd(&x) % (VIEW_BUDGET / s->cb / 2);
	g.weight[K_ZERO] = (unsigned)(rnd(&x) % 100);
	g.weight[K_HOLE] = (unsigned)(rnd(&x) % 40);
	g.weight[K_PARTIAL] = (unsigned)(rnd(&x) % 20);
	g.weight[K_HALF_ZERO] = (unsigned)(rnd(&x) % 10);
	g.weight[K_HALF_DATA] = (unsigned)(rnd(&x) % 10);
	g.weight[K_DATA] = 1 + (unsigned)(rnd(&x) % 100);
	for (int i = 0; i < K_NKINDS; i++)
		g.wsum += g.weight[i];
	/* Keep the bytes written under budget by turning the excess into holes. */
	if (n * s->cb > DATA_BUDGET) {
		unsigned w = g.wsum - g.weight[K_HOLE];
		uint64_t keep = DATA_BUDGET / s->cb;

		g.weight[K_HOLE] = (unsigned)((uint64_t)w * (n - keep) / keep) + 1;
		g.wsum = w + g.weight[K_HOLE];
	}
	/* Unique origin chunks: an odd multiplier permutes 0..span-1. */
	for (span = 2; span <= n; span <<= 1)
		;
	mult = rnd(&x) | 1;
	off = rnd(&x);
	base_chunks = rnd(&x) % (span + 1); /* some exceptions lie past the end of the base */
	s->virt_size = span * s->cb;

	s->nkinds = 2 + n + n / sg->epa + 8;
	s->kinds = malloc(s->nkinds * sizeof(*s->kinds));
	assert_non_null(s->kinds);
	for (uint64_t c = 0; c < s->nkinds; c++)
		s->kinds[c] = K_NKINDS;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t nc;

		sg->metadata_holes = rnd(&x) & 1;
		assert_int_equal(storegen_add(sg, (i * mult + off) & (span - 1), fill, &g, &nc), 0);
		assert_true(nc < s->nkinds);
		if (g.last == K_HALF_ZERO || g.last == K_HALF_DATA)
			assert_int_equal(storegen_punch(s->cow, nc * s->cb, s->cb / 2), 0);
		s->kinds[nc] = g.last;
		if (g.last == K_HOLE)
			s->hole_chunks++;
		else
			s->read_chunks++;
		if (g.last == K_ZERO || g.last == K_HALF_ZERO)
			s->zero_chunks++;
	}
	s->exceptions = n;
	s->first_unlisted = sg->next_free;
	/* Unlisted chunks past the last exception: zeros, data, and a partial tail. */
	buf = calloc(1, s->cb);
	assert_non_null(buf);
	for (uint64_t c = 0, m = rnd(&x) % 4; c < m; c++) {
		if (rnd(&x) & 1)
			storegen_pattern(buf, s->cb, c);
		else
			memset(buf, 0, s->cb);
		assert_int_equal(
			storegen_write_raw(s->cow, (s->first_unlisted + c) * s->cb, buf, s->cb), 0);
	}
	s->file_size = (uint64_t)lseek(s->cow, 0, SEEK_END);
	if (rnd(&x) & 1) {
		memset(buf, 0, s->cb);
		assert_int_equal(storegen_write_raw(s->cow, s->file_size, buf, RT_BLOCK), 0);
		s->file_size += RT_BLOCK;
	}
	/* The base: random bytes, its length a random number of chunks. */
	for (uint64_t c = 0; c < base_chunks; c += 64) {
		size_t len = (size_t)((base_chunks - c < 64 ? base_chunks - c : 64) * s->cb);
		uint8_t *b = malloc(len);

		assert_non_null(b);
		storegen_pattern(b, len, c + seed);
		assert_int_equal(storegen_write_raw(s->base, c * s->cb, b, len), 0);
		free(b);
	}
	free(buf);
	storegen_free(sg);
	assert_int_equal(fsync(s->cow), 0);
}

struct state {
	uint8_t view[32], raw[32];
	uint8_t *map;
	int64_t allocated;
};

static void take(struct store *s, struct state *st, bool view)
{
	assert_int_equal(fsync(s->cow), 0);
	memset(st->view, 0, sizeof(st->view));
	if (view)
		assert_int_equal(storegen_merged_sha256(s->cow, s->base, s->virt_size, st->view),
				 0);
	assert_int_equal(rt_file_sha(s->cow, st->raw), 0);
	st->map = rt_alloc_map(s->cow, s->file_size);
	assert_non_null(st->map);
	st->allocated = storegen_allocated(s->cow);
}

static bool is_zero_kind(const struct store *s, uint64_t c)
{
	return c < s->nkinds && (s->kinds[c] == K_ZERO || s->kinds[c] == K_HALF_ZERO);
}

/* Compares two states; punched: the zero chunks must now be holes.  Returns bytes freed. */
static uint64_t compare(const struct store *s, const struct state *a, const struct state *b,
			bool punched)
{
	uint64_t freed = 0, nb = (s->file_size + RT_BLOCK - 1) / RT_BLOCK;

	assert_memory_equal(a->raw, b->raw, 32);
	for (uint64_t blk = 0; blk < nb; blk++) {
		uint64_t c = blk * RT_BLOCK / s->cb;

		if (punched && is_zero_kind(s, c)) {
			if (b->map[blk])
				fail_msg("block %" PRIu64 " of zero chunk %" PRIu64 " not punched",
					 blk, c);
			freed += a->map[blk] ? RT_BLOCK : 0;
		} else if (a->map[blk] != b->map[blk]) {
			fail_msg("block %" PRIu64 " (chunk %" PRIu64
				 ", kind %d) changed allocation",
				 blk, c, c < s->nkinds ? (int)s->kinds[c] : -1);
		}
	}
	return freed;
}

/* Gaps of holes that ranges were grown across, over all seeds: the property must cover them. */
static uint64_t bridges_seen;
/* An engine case skipped (engine unavailable): its seeds did not run. */
static bool engine_skipped;

static const enum reclaim_engine_kind engines[] = {RECLAIM_ENGINE_AUTO, RECLAIM_ENGINE_URING,
						   RECLAIM_ENGINE_AIO, RECLAIM_ENGINE_SYNC};

/*
 * The engine a seed's run uses: in turn by seed, so that the default seeds
 * 1..10 give each engine two or three runs (its random draw left them all to
 * uring and sync).
 */
static enum reclaim_engine_kind seed_engine(uint64_t seed)
{
	return engines[seed % ARRAY_SIZE(engines)];
}

static void one_seed(const char *dir, uint64_t seed)
{
	static const uint32_t reads[] = {0, 4096, 65536, 1u << 20, 4u << 20};
	uint64_t x = seed * 0xd1b54a32d192ed03ull | 1;
	struct reclaim_opts opts = {0};
	struct snapstore_info info;
	struct snapstore_error err;
	struct reclaim_report rep;
	struct state s0, s1, s2;
	struct store s;
	uint64_t freed, dry_ranges, dry_bridges;
	int fd, r;

	build(dir, seed, &s);
	take(&s, &s0, true);
	rnd(&x); /* was the engine's draw: kept, so a seed's other draws stay as they were */
	opts.engine = seed_engine(seed);
	opts.read_bytes = reads[rnd(&x) % 5];
	opts.queue_depth = (uint32_t)(1 + rnd(&x) % 32);
	/* Half the time out of the page cache, so that the engine reads rather than the cache. */
	if (rnd(&x) & 1)
		assert_int_equal(posix_fadvise(s.cow, 0, 0, POSIX_FADV_DONTNEED), 0);
	fd = rt_reopen(s.cow, rnd(&x) & 1);
	assert_true(fd >= 0);
	/* Both ways of reading (from the seed, so that its draws stay as they were). */
	opts.direct_reads = (seed >> 1) & 1;
	r = snapstore_load(fd, &info, NULL, NULL, &err);
	if (r < 0)
		fail_msg("store rejected at %" PRIu64 ": %s", err.offset, err.rule);

	opts.dry_run = true;
	r = reclaim_run(fd, &info, &opts, &rep);
	if (r == -ENOTSUP) {
		snapstore_info_free(&info);
		free(s0.map);
		free(s.kinds);
		close(fd);
		close(s.cow);
		close(s.base);
		engine_skipped = true;
		rt_skip_engine(opts.engine, r);
	}
	assert_int_equal(r, 0);
	take(&s, &s1, false);
	compare(&s, &s0, &s1, false);
	assert_int_equal(rep.zero_chunks, s.zero_chunks);
	assert_int_equal(rep.reclaimed_bytes, 0);
	dry_ranges = rep.punched_ranges;
	dry_bridges = rep.hole_bridges;

	opts.dry_run = false;
	assert_int_equal(reclaim_run(fd, &info, &opts, &rep), 0);
	snapstore_info_free(&info);
	take(&s, &s2, true);
	/* What the VM sees: the merged view is byte-identical. */
	assert_memory_equal(s0.view, s2.view, 32);
	freed = compare(&s, &s1, &s2, true);
	assert_int_equal(rep.exceptions, s.exceptions);
	assert_int_equal(rep.zero_chunks, s.zero_chunks);
	assert_int_equal(rep.hole_chunks, s.hole_chunks);
	assert_int_equal(rep.chunks_scanned, s.read_chunks);
	assert_int_equal(rep.reclaimed_bytes, (uint64_t)(s1.allocated - s2.allocated));
	/* The dry run planned the very same calls (ranges across holes included). */
	assert_int_equal(rep.punched_ranges, dry_ranges);
	assert_int_equal(rep.hole_bridges, dry_bridges);
	bridges_seen += rep.hole_bridges;
	if (rt_exact_blocks(dir))
		assert_int_equal(s1.allocated - s2.allocated, freed);

	free(s0.map);
	free(s1.map);
	free(s2.map);
	free(s.kinds);
	close(fd);
	close(s.cow);
	close(s.base);
}

static const char *dirs[2];
static uint64_t seeds[64];
static size_t nseeds;

/* The seeds whose engine is kind, in every directory. */
static void property(enum reclaim_engine_kind kind)
{
	size_t ran = 0;

	for (size_t d = 0; d < ARRAY_SIZE(dirs) && dirs[d]; d++)
		for (size_t i = 0; i < nseeds; i++) {
			if (seed_engine(seeds[i]) != kind)
				continue;
			ran++;
			/* cmocka prints this only when the seed fails. */
			printf("property: seed %" PRIu64 " in %s (COWPUNCH_SEED=%" PRIu64
			       " COWPUNCH_TEST_DIR=%s to rerun)\n",
			       seeds[i], dirs[d], seeds[i], dirs[d]);
			one_seed(dirs[d], seeds[i]);
		}
	if (!ran)
		rt_skip("no seed of this run picks engine %s", reclaim_engine_name(kind));
}

static void test_property_auto(void **state)
{
	property(RECLAIM_ENGINE_AUTO);
}

static void test_property_uring(void **state)
{
	property(RECLAIM_ENGINE_URING);
}

static void test_property_aio(void **state)
{
	property(RECLAIM_ENGINE_AIO);
}

static void test_property_sync(void **state)
{
	property(RECLAIM_ENGINE_SYNC);
}

/* The default seeds (1..10 and more) grow ranges across holes somewhere. */
static void test_property_bridges(void **state)
{
	if (nseeds < 10)
		rt_skip("fewer than 10 seeds: no promise that one grows a range across holes");
	if (!bridges_seen && engine_skipped)
		rt_skip("no range grown across holes, but the seeds of a skipped engine did not run");
	assert_true(bridges_seen > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_property_auto),	 cmocka_unit_test(test_property_uring),
		cmocka_unit_test(test_property_aio),	 cmocka_unit_test(test_property_sync),
		cmocka_unit_test(test_property_bridges),
	};
	const char *cand[] = {getenv("COWPUNCH_TEST_DIR"), "/tmp", "/dev/shm"};
	size_t nd = 0;

	for (size_t i = 0; i < ARRAY_SIZE(cand) && nd < ARRAY_SIZE(dirs); i++) {
		const char *why;

		if (!cand[i] || (i > 0 && cand[0]))
			continue;
		why = rt_dir_unusable(cand[i]);
		if (why)
			printf("test-property: not using %s\n", why);
		else
			dirs[nd++] = cand[i];
	}
	if (!nd) {
		printf("SKIP: test-property: no usable directory (block size <= 4096 with "
		       "PUNCH_HOLE)\n");
		return 77;
	}
	if (getenv("COWPUNCH_SEED")) {
		seeds[nseeds++] = strtoull(getenv("COWPUNCH_SEED"), NULL, 0);
	} else {
		uint64_t n =
			getenv("COWPUNCH_SEEDS") ? strtoull(getenv("COWPUNCH_SEEDS"), NULL, 0) : 10;

		for (uint64_t i = 1; i <= n && nseeds < ARRAY_SIZE(seeds) - 1; i++)
			seeds[nseeds++] = i;
		seeds[nseeds++] = (uint64_t)time(NULL);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
