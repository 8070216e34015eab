/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pcload: the guest workload of the power-cut tests (tests/vm/powercut.sh).
 *
 *   pcload write DEV SEED [TAG [LAST]]
 *   pcload check DEV BASE SEED ACKED
 *
 * write runs a fixed sequence of 4 KiB O_DIRECT writes over block device DEV
 * (a VM disk: /dev/mapper/overlay-ID), derived from SEED and DEV's size, in four
 * phases: "first" writes to blocks never written (each one a new exception and
 * a metadata commit of the snapshot store), "overwrite" of blocks written
 * before, "zero" (all-zero writes, half over written blocks, half over fresh
 * ones: what reclaim gives back) and "mixed".  After every batch of 1 to 8
 * writes it calls fdatasync(DEV) and then prints
 *
 *   PCLOAD TAG ack OP
 *
 * meaning every write up to and including OP was acknowledged after a flush.
 * A data write's block starts with a header (magic, seed, op, block) and is
 * filled from a generator seeded by (seed, op), so check can tell exactly which
 * write a block holds.  Lines "PCLOAD TAG phase NAME OP" mark each phase's
 * first op and "PCLOAD TAG done OP" the end.  LAST stops after op LAST (the
 * tests of check itself use it for a disk left at an earlier point).
 *
 * check reads every block of DEV after the power cut and compares it with the
 * sequence: given ACKED (the last op whose ack line the host saw; -1 for none),
 * a block must hold the last acknowledged write to it, or a later write to it
 * (written, not yet acknowledged), or, when no write to it was acknowledged,
 * its BASE content (zeros past BASE's end) or any write to it.  Anything else
 * (an older write, a torn or foreign block) is a lost acknowledged write.
 * Exit status: 0 every block is right, 1 some block is not (each one printed),
 * 2 usage or I/O errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK	    4096
#define READ_BLOCKS 64			  /* check reads 256 KiB at a time */
#define MAGIC	    0x44414f4c43504350ull /* "PCPCLOAD" */
#define NPHASES	    4

static const char *const phase_name[NPHASES] = {"first", "overwrite", "zero", "mixed"};

struct op {
	uint64_t block;
	int zero;  /* all-zero write */
	int flush; /* fdatasync and ack after this op */
	int phase;
};

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ull + 1;
	if (!rng_state)
		rng_state = 1;
	for (int i = 0; i < 8; i++)
		rng();
}

/* The op sequence for a device of nb blocks: the same in write and check. */
static struct op *make_ops(uint64_t seed, uint64_t nb, size_t *nops)
{
	size_t n_first, n_over, n_zero, n_mixed, total, i = 0;
	uint64_t *perm, fresh, used_first;
	struct op *ops;
	int left = 0;

	if (nb < 512)
		return NULL;
	n_first = nb / 12 < 700 ? nb / 12 : 700; /* > 256: crosses a metadata area */
	n_over = n_first / 2;
	n_zero = n_first / 2;
	n_mixed = n_first * 2 / 3;
	total = n_first + n_over + n_zero + n_mixed;
	perm = malloc(nb * sizeof(*perm));
	ops = calloc(total, sizeof(*ops));
	if (!perm || !ops) {
		free(perm);
		free(ops);
		return NULL;
	}
	rng_seed(seed);
	for (uint64_t b = 0; b < nb; b++)
		perm[b] = b;
	for (uint64_t b = nb - 1; b > 0; b--) {
		uint64_t j = rng() % (b + 1), t = perm[b];

		perm[b] = perm[j];
		perm[j] = t;
	}
	for (size_t k = 0; k < n_first; k++, i++)
		ops[i] = (struct op){.block = perm[k], .phase = 0};
	used_first = n_first;
	for (size_t k = 0; k < n_over; k++, i++)
		ops[i] = (struct op){.block = perm[rng() % used_first], .phase = 1};
	fresh = used_first;
	for (size_t k = 0; k < n_zero; k++, i++) {
		uint64_t b = k % 2 ? perm[rng() % used_first] : perm[fresh++];

		ops[i] = (struct op){.block = b, .zero = 1, .phase = 2};
	}
	for (size_t k = 0; k < n_mixed; k++, i++) {
		uint64_t r = rng() % 4, b;

		if (r < 2)
			b = perm[rng() % fresh];
		else if (fresh < nb)
			b = perm[fresh++];
		else
			b = perm[rng() % nb];
		ops[i] = (struct op){.block = b, .zero = r == 3, .phase = 3};
	}
	for (i = 0; i < total; i++) {
		if (!left)
			left = 1 + (int)(rng() % 8);
		ops[i].flush = --left == 0 || i + 1 == total ||
			       (i + 1 < total && ops[i + 1].phase != ops[i].phase);
		if (ops[i].flush)
			left = 0;
	}
	free(perm);
	*nops = total;
	return ops;
}

/* The content of op k's write into buf (zeros for a zero write). */
static void fill(unsigned char *buf, uint64_t seed, uint64_t k, const struct op *op)
{
	uint64_t *w = (uint64_t *)buf;

	if (op->zero) {
		memset(buf, 0, BLK);
		return;
	}
	rng_seed(seed ^ (k + 1) * 0xD1B54A32D192ED03ull);
	for (size_t j = 0; j < BLK / 8; j++)
		w[j] = rng();
	w[0] = MAGIC;
	w[1] = seed;
	w[2] = k;
	w[3] = op->block;
}

static int dev_blocks(int fd, uint64_t *nb)
{
	struct stat st;
	uint64_t bytes;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
	} else {
		bytes = (uint64_t)st.st_size;
	}
	*nb = bytes / BLK;
	return 0;
}

static int all_zero(const unsigned char *b)
{
	for (size_t i = 0; i < BLK; i++)
		if (b[i])
			return 0;
	return 1;
}

static int do_write(const char *dev, uint64_t seed, const char *tag, long long stop)
{
	unsigned char *buf = NULL;
	struct op *ops = NULL;
	size_t nops;
	uint64_t nb;
	int fd, r, rc = 2;

	fd = open(dev, O_RDWR | O_DIRECT);
	if (fd < 0 || dev_blocks(fd, &nb) < 0) {
		fprintf(stderr, "pcload: %s: %s\n", dev, strerror(errno));
		goto out;
	}
	ops = make_ops(seed, nb, &nops);
	if (!ops || posix_memalign((void **)&buf, BLK, BLK)) {
		fprintf(stderr, "pcload: %s: too small (%" PRIu64 " blocks) or out of memory\n",
			dev, nb);
		goto out;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (stop >= 0 && (size_t)stop + 1 < nops)
		nops = (size_t)stop + 1;
	printf("PCLOAD %s start %zu ops over %" PRIu64 " blocks\n", tag, nops, nb);
	for (size_t k = 0; k < nops; k++) {
		if (k == 0 || ops[k].phase != ops[k - 1].phase)
			printf("PCLOAD %s phase %s %zu\n", tag, phase_name[ops[k].phase], k);
		fill(buf, seed, k, &ops[k]);
		r = (int)pwrite(fd, buf, BLK, (off_t)(ops[k].block * BLK));
		if (r != BLK) {
			fprintf(stderr, "pcload: %s: write of block %" PRIu64 ": %s\n", dev,
				ops[k].block, r < 0 ? strerror(errno) : "short write");
			goto out;
		}
		if (ops[k].flush || k + 1 == nops) {
			if (fdatasync(fd) < 0) {
				fprintf(stderr, "pcload: %s: fdatasync: %s\n", dev,
					strerror(errno));
				goto out;
			}
			printf("PCLOAD %s ack %zu\n", tag, k);
		}
	}
	printf("PCLOAD %s done %zu\n", tag, nops - 1);
	rc = 0;
out:
	free(buf);
	free(ops);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* What block b of the device holds, as an op index, or -1 base, -2 zeros, -3 unknown. */
static long long identify(const unsigned char *got, const unsigned char *base, uint64_t seed,
			  uint64_t b, const struct op *ops, size_t nops, unsigned char *tmp)
{
	const uint64_t *w = (const uint64_t *)got;

	if (all_zero(got))
		return -2;
	if (w[0] == MAGIC && w[1] == seed && w[2] < nops && w[3] == b && ops[w[2]].block == b) {
		fill(tmp, seed, w[2], &ops[w[2]]);
		if (!memcmp(tmp, got, BLK))
			return (long long)w[2];
	}
	if (!memcmp(got, base, BLK))
		return -1;
	return -3;
}

static int do_check(const char *dev, const char *basepath, uint64_t seed, long long acked)
{
	unsigned char *win = NULL, *got, *base = NULL, *tmp = NULL;
	size_t nops, *last = NULL, bad = 0, newer = 0, withack = 0;
	uint64_t nb, base_nb;
	struct op *ops = NULL;
	int fd, bfd, rc = 2;

	fd = open(dev, O_RDONLY | O_DIRECT);
	bfd = open(basepath, O_RDONLY);
	if (fd < 0 || bfd < 0 || dev_blocks(fd, &nb) < 0 || dev_blocks(bfd, &base_nb) < 0) {
		fprintf(stderr, "pcload: %s or %s: %s\n", dev, basepath, strerror(errno));
		goto out;
	}
	ops = make_ops(seed, nb, &nops);
	if (!ops || posix_memalign((void **)&win, BLK, (size_t)BLK * READ_BLOCKS) ||
	    !(base = malloc(BLK)) || !(tmp = malloc(BLK)) || !(last = calloc(nb, sizeof(*last)))) {
		fprintf(stderr, "pcload: %s: too small or out of memory\n", dev);
		goto out;
	}
	if (acked >= (long long)nops) {
		fprintf(stderr, "pcload: acked op %lld is past the sequence's end (%zu ops)\n",
			acked, nops);
		goto out;
	}
	/* last[b]: 1 + the last acknowledged op on block b, 0 for none. */
	for (long long k = 0; k <= acked; k++)
		last[ops[k].block] = (size_t)k + 1;
	for (uint64_t b = 0; b < nb; b++) {
		long long id, need = (long long)last[b] - 1;
		int ok = 0;

		if (b % READ_BLOCKS == 0) {
			size_t want = (size_t)BLK * (nb - b < READ_BLOCKS ? nb - b : READ_BLOCKS);

			if (pread(fd, win, want, (off_t)(b * BLK)) != (ssize_t)want) {
				fprintf(stderr, "pcload: %s: read at block %" PRIu64 " failed\n",
					dev, b);
				goto out;
			}
		}
		got = win + (b % READ_BLOCKS) * BLK;
		if (b < base_nb) {
			if (pread(bfd, base, BLK, (off_t)(b * BLK)) != BLK) {
				fprintf(stderr, "pcload: %s: read of block %" PRIu64 " failed\n",
					basepath, b);
				goto out;
			}
		} else {
			memset(base, 0, BLK);
		}
		id = identify(got, base, seed, b, ops, nops, tmp);
		if (need >= 0)
			withack++;
		if (id >= 0) {
			ok = id >= need;
			newer += ok && id > need && id > acked;
		} else if (id == -2) {
			/* Zeros: a zero write at or after the acknowledged one, or the base's zeros. */
			for (size_t k = need >= 0 ? (size_t)need : 0; k < nops && !ok; k++)
				ok = ops[k].block == b && ops[k].zero;
			if (!ok && need < 0)
				ok = all_zero(base);
		} else if (id == -1) {
			ok = need < 0;
		}
		if (!ok) {
			if (bad < 20)
				printf("PCLOAD check block %" PRIu64
				       ": holds %s %lld, but op %lld (%s) was acknowledged\n",
				       b,
				       id >= 0	  ? "op"
				       : id == -1 ? "the base (-1)"
				       : id == -2 ? "zeros (-2)"
						  : "unknown bytes (-3)",
				       id, need, need >= 0 ? phase_name[ops[need].phase] : "none");
			bad++;
		}
	}
	printf("PCLOAD check %s: %" PRIu64
	       " blocks, %zu with an acknowledged write (ops 0-%lld of %zu), %zu hold a later unacknowledged write, %zu wrong\n",
	       bad ? "FAILED" : "ok", nb, withack, acked, nops, newer, bad);
	rc = bad ? 1 : 0;
out:
	free(ops);
	free(win);
	free(base);
	free(tmp);
	free(last);
	if (fd >= 0)
		close(fd);
	if (bfd >= 0)
		close(bfd);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && argc <= 6 && !strcmp(argv[1], "write"))
		return do_write(argv[2], strtoull(argv[3], NULL, 0), argc >= 5 ? argv[4] : "x",
				argc == 6 ? strtoll(argv[5], NULL, 0) : -1);
	if (argc == 6 && !strcmp(argv[1], "check"))
		return do_check(argv[2], argv[3], strtoull(argv[4], NULL, 0),
				strtoll(argv[5], NULL, 0));
	fputs("usage: pcload write DEV SEED [TAG [LAST]]\n       pcload check DEV BASE SEED ACKED\n",
	      stderr);
	return 2;
}
