/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The scanner: walks the chunks a layout lets be punched (a COW store's listed
 * data chunks, or every chunk of a plain file) in file order, skips what is
 * already a hole, reads the rest in large spans through an engine, tests each
 * chunk for zeros and punches coalesced runs of zero chunks.  See docs/reclaim.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/engine.h"
#include "reclaim/extent.h"
#include "reclaim/reclaim.h"
#include "reclaim/rewrite.h"

#define IO_ALIGN    4096u
#define PUNCH_BATCH 256u
#define DROP_BYTES  (4u << 20) /* buffered scan: judged bytes dropped from the cache at a time */
/* A span never holds more chunks than this (4 MiB of 4 KiB chunks). */
#define SPAN_MAX_CHUNKS 1024u

static const struct {
	const char *name;
	enum reclaim_engine_kind kind;
} engine_names[] = {
	{"auto", RECLAIM_ENGINE_AUTO},
	{"uring", RECLAIM_ENGINE_URING},
	{"aio", RECLAIM_ENGINE_AIO},
	{"sync", RECLAIM_ENGINE_SYNC},
};

int reclaim_engine_parse(const char *name, enum reclaim_engine_kind *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(engine_names); i++)
		if (name && !strcmp(name, engine_names[i].name)) {
			*ret = engine_names[i].kind;
			return 0;
		}
	return -EINVAL;
}

const char *reclaim_engine_name(enum reclaim_engine_kind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(engine_names); i++)
		if (engine_names[i].kind == kind)
			return engine_names[i].name;
	return "unknown";
}

static const char *const strategy_names[] = {
	[RECLAIM_STRATEGY_AUTO] = "auto",
	[RECLAIM_STRATEGY_PUNCH] = "punch",
	[RECLAIM_STRATEGY_REWRITE] = "rewrite",
};

int reclaim_strategy_parse(const char *name, enum reclaim_strategy *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(strategy_names); i++)
		if (name && !strcmp(name, strategy_names[i])) {
			*ret = (enum reclaim_strategy)i;
			return 0;
		}
	return -EINVAL;
}

const char *reclaim_strategy_name(enum reclaim_strategy s)
{
	return (size_t)s < ARRAY_SIZE(strategy_names) ? strategy_names[s] : "unknown";
}

/* A read of the scan: whole chunks [first, first + n), or a piece of one big chunk. */
struct span {
	struct reclaim_io io;
	uint64_t first;
	uint32_t n;
	bool piece;  /* io covers part of chunk `first` (chunk larger than a read) */
	bool last;   /* ... and it is that chunk's last piece */
	bool cached; /* copied from the page cache (it was all there already) */
	uint8_t want[SPAN_MAX_CHUNKS / 8]; /* chunks of the span to judge; others are ignored */
};

struct scan {
	int fd;
	const struct reclaim_layout *l;
	const struct reclaim_opts *opts;
	struct reclaim_report *rep;
	struct reclaim_engine eng;
	bool direct;   /* fd has O_DIRECT */
	int cached_fd; /* buffered fd on the same file for spans already in the page cache, or -1 */
	uint64_t cb;   /* chunk bytes */
	uint64_t read_bytes, gap_bytes;

	/* planner */
	uint64_t next;	   /* next chunk to classify */
	uint64_t piece_at; /* byte offset inside chunk `next` of the next piece, big chunks */
	/*
	 * Bit c set: COW chunk c holds data, from SEEK_DATA/SEEK_HOLE before the scan
	 * (clear: all hole).  Taken up front, so that no lseek waits on the inode lock
	 * behind a punch; only this run's punches change the file after that, and they
	 * only add holes, so a chunk seen as a hole stays one.
	 */
	uint8_t *data_map;

	/* retirement */
	struct span *spans;
	unsigned depth, head, inflight;
	bool big_zero; /* all pieces so far of the current big chunk were zero */

	struct reclaim_coalescer zero_co, free_co;
	struct reclaim_range zero_batch[PUNCH_BATCH], free_batch[PUNCH_BATCH];

	/*
	 * Punches and direct reads from the device do not mix: an ext4 punch waits
	 * for every direct read in flight on the inode (inode_dio_wait), and reads
	 * wait for the punch's inode lock, so each punch would stall the scan for a
	 * read's latency and the reads would reach the device one small group at a
	 * time.  Buffered reads take neither (their I/O is the page cache's), so
	 * without O_DIRECT what the scan finds is punched at once, alongside.  With
	 * it, the same holds while no read is out to the device (the scan is served
	 * from the page cache); while one is (device_inflight), each chunk to punch
	 * is marked in `later` instead and punched after the last read, in COW
	 * order through later_co (one bit per chunk of the file).
	 */
	unsigned device_inflight; /* spans sent to the engine, not yet retired */
	uint8_t *later;
	uint64_t later_tail; /* last chunk marked + 1, 0 when a chunk with data came after it */
	struct reclaim_coalescer later_co;
	struct reclaim_range later_batch[PUNCH_BATCH];

	uint64_t total_bytes, done_bytes;
	uint64_t drop_from; /* buffered: judged spans before this are dropped from the cache */
	double last_progress;

	/*
	 * auto (NULL otherwise): until it chooses (scan_decide()) every chunk to
	 * punch is put off (collecting), or, in a scan through the page cache,
	 * punched provisionally until its timed punches find punches dear; a
	 * rewrite abandons the scan, with nothing punched unless provisionally.
	 * runs and taken_bytes count what punching would cost: runs of zero
	 * chunks [0] and of fs-free chunks [1].
	 */
	struct auto_state *autos;
	uint64_t decide_at;
	bool collecting, provisional, abandon;
	uint64_t provisional_to; /* done_bytes when provisional punching stopped, 0: none */
	/*
	 * auto: the data chunks sent to be punched, of zero_co and free_co: a
	 * rewrite after the scan finds them holes, so they count as its zero and
	 * free chunks (scan_rewrite()).
	 */
	uint64_t punched_data[2];
	bool run_open[2];
	uint64_t run_end[2], runs, taken_bytes;
	double t0;
};

static uint64_t bitmap_next_set(const uint8_t *bm, uint64_t from, uint64_t nbits)
{
	uint64_t i = from;

	while (i < nbits) {
		if ((i & 63) == 0 && i + 64 <= nbits) {
			uint64_t w;

			memcpy(&w, bm + (i >> 3), sizeof(w));
			if (!w) {
				i += 64;
				continue;
			}
			return i + (uint64_t)__builtin_ctzll(w);
		}
		if (snapstore_bitmap_test(bm, i))
			return i;
		i++;
	}
	return nbits;
}

/*
 * Fills s->data_map from the file's data extents.  Where the file system cannot
 * tell, the rest is marked as data: a chunk is then read, never assumed a hole.
 */
static void map_data(struct scan *s)
{
	uint64_t limit = s->l->chunks * s->cb, pos = 0, d, h;

	while (reclaim_next_data_extent(s->fd, pos, limit, &d, &h) == 1) {
		uint64_t first = d / s->cb;
		uint64_t last = (h - 1) / s->cb; /* inclusive: a partly filled chunk holds data */

		for (uint64_t c = first; c <= last; c++)
			s->data_map[c >> 3] |= (uint8_t)(1u << (c & 7));
		pos = h;
	}
}

/* True when chunk c lies wholly in a hole of the file. */
static bool chunk_is_hole(struct scan *s, uint64_t c)
{
	return !snapstore_bitmap_test(s->data_map, c);
}

/*
 * The coalescers' hole oracle: true when COW chunks [from, to) hold no data, so a
 * range may be grown across them (see data_map for why the map taken before the
 * scan answers for the file as it is when the range is punched).
 */
static bool gap_is_hole(void *opaque, uint64_t from, uint64_t to)
{
	struct scan *s = opaque;

	return bitmap_next_set(s->data_map, from, to) >= to;
}

/* -ECANCELED once the caller has asked the run to stop (reclaim_opts.stop). */
static int scan_stopped(const struct scan *s)
{
	return s->abandon || (s->opts->stop && *s->opts->stop) ? -ECANCELED : 0;
}

/* Hands a batch to the engine, unless the run is to stop: then nothing is punched. */
/*
 * The engine punches r[0..n); with auto where the scan reads through the page
 * cache, its first punches are made one by one on this thread instead, and
 * timed: auto's punch cost (auto_punch_timed()).
 */
static int punch_ranges(struct scan *s, const struct reclaim_range *r, size_t n)
{
	size_t i = 0;

	for (; s->autos && i < n && auto_wants_punch_time(s->autos); i++) {
		double t0 = util_now();
		int e = reclaim_punch_fallocate(s->eng.fd, &r[i], 1);

		if (e < 0)
			return e;
		auto_punch_timed(s->autos, util_now() - t0);
	}
	return i < n ? s->eng.ops->punch(&s->eng, r + i, n - i) : 0;
}

/* The data chunks (not holes) in r[0..n). */
static uint64_t data_chunks_in(const struct scan *s, const struct reclaim_range *r, size_t n)
{
	uint64_t k = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t to = (r[i].off + r[i].len) / s->cb;

		for (uint64_t c = bitmap_next_set(s->data_map, r[i].off / s->cb, to); c < to;
		     c = bitmap_next_set(s->data_map, c + 1, to))
			k++;
	}
	return k;
}

static int punch_batch(struct scan *s, struct reclaim_coalescer *co)
{
	int r = scan_stopped(s);

	if (r == 0) {
		s->rep->punched_ranges += co->n;
		if (s->autos)
			s->punched_data[co == &s->free_co] += data_chunks_in(s, co->batch, co->n);
		if (!s->opts->dry_run)
			r = punch_ranges(s, co->batch, co->n);
	}
	co->n = 0;
	return r;
}

/*
 * Sends chunk c to be punched now (co) or after the scan (later): later while a
 * read is out to the device.  A run of chunks is not split between the two: a
 * chunk that extends the range pending in co stays with it, and one that
 * extends the last run marked for later (nothing judged not zero since, only
 * holes between) joins that.
 */
static int coalesce(struct scan *s, struct reclaim_coalescer *co, uint64_t c)
{
	bool later = (s->direct && s->device_inflight > 0) || s->collecting;
	int k = co == &s->free_co;
	int r;

	if (s->autos) {
		if (!s->run_open[k] ||
		    !reclaim_range_can_grow(s->l, gap_is_hole, s, s->run_end[k], c))
			s->runs++;
		s->run_open[k] = true;
		s->run_end[k] = c + 1;
		s->taken_bytes += s->cb;
	}

	if (later && reclaim_coalescer_extends(co, c))
		later = false;
	else if (!later && s->later_tail &&
		 reclaim_range_can_grow(s->l, gap_is_hole, s, s->later_tail, c))
		later = true;
	if (later) {
		s->later[c >> 3] |= (uint8_t)(1u << (c & 7));
		s->later_tail = c + 1;
		return 0;
	}
	r = reclaim_coalescer_add(co, c);

	return r > 0 ? punch_batch(s, co) : r;
}

static void progress(struct scan *s, bool force)
{
	double now;

	if (!s->opts->progress)
		return;
	now = util_now();
	if (!force && now - s->last_progress < 0.25)
		return;
	s->last_progress = now;
	s->opts->progress(s->opts->progress_opaque, s->done_bytes, s->total_bytes);
}

/*
 * The next chunk from s->next on that may be punched.  In a plain file (no
 * may_punch) that is the next chunk holding data: the holes skipped on the way
 * are counted here, and s->next moves past them.
 */
static uint64_t next_candidate(struct scan *s)
{
	uint64_t c;

	if (s->l->may_punch)
		return bitmap_next_set(s->l->may_punch, s->next, s->l->chunks);
	c = bitmap_next_set(s->data_map, s->next, s->l->chunks);
	s->rep->hole_chunks += c - s->next;
	s->done_bytes += (c - s->next) * s->cb;
	s->next = c;
	return c;
}

/*
 * Fills sp with the next read, classifying chunks on the way (holes counted,
 * fs-free chunks sent to their punches).  Returns 1 with a read, 0 at the end,
 * or -errno.
 */
static int plan_next(struct scan *s, struct span *sp)
{
	uint64_t nbits = s->l->chunks;
	const uint8_t *freebm = s->opts->free_bitmap;

	sp->n = 0;
	sp->piece = false;
	for (;;) {
		uint64_t c = next_candidate(s);
		int r;

		if (c >= nbits)
			break;
		if (s->piece_at == 0 && chunk_is_hole(s, c)) {
			s->rep->hole_chunks++;
			s->done_bytes += s->cb;
			s->next = c + 1;
			continue;
		}
		if (s->piece_at == 0 && freebm && snapstore_bitmap_test(freebm, c)) {
			s->rep->fs_free_chunks++;
			s->done_bytes += s->cb;
			s->next = c + 1;
			r = coalesce(s, &s->free_co, c);
			if (r < 0)
				return r;
			continue;
		}
		/* c is read, so it may hold data: no fs-free range grows across it. */
		if (s->piece_at == 0) {
			reclaim_coalescer_break(&s->free_co);
			s->run_open[1] = false;
		}
		if (s->cb > s->read_bytes) {
			/* A chunk larger than one read: read it in pieces, in order. */
			if (sp->n)
				break;
			sp->first = c;
			sp->n = 1;
			sp->piece = true;
			sp->io.off = c * s->cb + s->piece_at;
			sp->io.len = (uint32_t)s->read_bytes;
			s->piece_at += s->read_bytes;
			sp->last = s->piece_at == s->cb;
			if (sp->last) {
				s->piece_at = 0;
				s->next = c + 1;
			} else {
				s->next = c;
			}
			return 1;
		}
		if (sp->n) {
			uint64_t end = sp->first + sp->n;

			/*
			 * Read across a short gap (a metadata chunk, an unlisted or hole
			 * chunk) rather than split the read: one large request costs less
			 * than two.  The gap's bytes are read and ignored.
			 */
			if ((c + 1 - sp->first) * s->cb > s->read_bytes ||
			    c + 1 - sp->first > SPAN_MAX_CHUNKS || (c - end) * s->cb > s->gap_bytes)
				break;
		} else {
			sp->first = c;
			memset(sp->want, 0, sizeof(sp->want));
		}
		sp->n = (uint32_t)(c + 1 - sp->first);
		sp->want[(c - sp->first) >> 3] |= (uint8_t)(1u << ((c - sp->first) & 7));
		s->next = c + 1;
	}
	if (!sp->n)
		return 0;
	sp->io.off = sp->first * s->cb;
	sp->io.len = (uint32_t)(sp->n * s->cb);
	return 1;
}

/*
 * Finishes a read the engine left short or refused.  EINVAL under O_DIRECT means
 * the file system wants another alignment: drop O_DIRECT for the rest of the run
 * (later reads are then buffered and their pages dropped after use).
 */
static int finish_read(struct scan *s, struct reclaim_io *io)
{
	uint32_t got = io->res > 0 ? (uint32_t)io->res : 0;
	ssize_t n;

	if (io->res < 0 && io->res != -EINVAL)
		return io->res;
	if (io->res == -EINVAL) {
		int fl = fcntl(s->fd, F_GETFL);

		if (!s->direct || fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0)
			return -EINVAL;
		s->direct = false;
	}
	n = util_pread_full(s->fd, (char *)io->buf + got, io->len - got, io->off + got);
	if (n == -EINVAL && s->direct) {
		int fl = fcntl(s->fd, F_GETFL);

		if (fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0)
			return -EINVAL;
		s->direct = false;
		n = util_pread_full(s->fd, (char *)io->buf + got, io->len - got, io->off + got);
	}
	if (n < 0)
		return (int)n;
	/* The store was validated against the file size: a short file now is an I/O error. */
	if ((uint64_t)n != io->len - got)
		return -EIO;
	return 0;
}

static int judge_chunk(struct scan *s, uint64_t c, bool zero)
{
	s->rep->chunks_scanned++;
	s->done_bytes += s->cb;
	if (!zero) {
		reclaim_coalescer_break(&s->zero_co);
		s->run_open[0] = false;
		if (c >= s->later_tail)
			s->later_tail = 0;
		return 0;
	}
	s->rep->zero_chunks++;
	return coalesce(s, &s->zero_co, c);
}

/*
 * Drops the file's pages before byte `end` from the page cache once DROP_BYTES
 * of them are judged, so that the scan holds no more of the cache than that,
 * the reads in flight and what the kernel reads ahead:
 * clean pages of this file only (it was written back before the scan).  In
 * batches, not a span at a time: POSIX_FADV_DONTNEED drains this CPU's LRU
 * batches, and every CPU's (lru_add_drain_all) when a page would not go, then
 * walks the range again; a call per 256 KiB span took a cold run from about
 * 0.65 s to 1.1 s (docs/benchmarks.md, run 16).  Pages dropped before their
 * range is punched also make the punch cheaper: it has none to remove.
 */
static void drop_behind(struct scan *s, uint64_t end)
{
	if (end <= s->drop_from || end - s->drop_from < DROP_BYTES)
		return;
	(void)posix_fadvise(s->fd, (off_t)s->drop_from, (off_t)(end - s->drop_from),
			    POSIX_FADV_DONTNEED);
	s->drop_from = end;
}

/* Retires a completed read: judges its chunks in order. */
static int retire(struct scan *s, struct span *sp)
{
	const char *buf = sp->io.buf;
	int r;

	if (sp->io.res != (int32_t)sp->io.len) {
		r = finish_read(s, &sp->io);
		if (r < 0)
			return r;
	}
	s->rep->bytes_read += sp->io.len;
	/*
	 * Spans read through the page cache (no O_DIRECT) are dropped from it again
	 * (drop_behind()).  A span copied from the cache under O_DIRECT was there
	 * before us and stays (a punch drops the pages it frees itself); an O_DIRECT
	 * read cached nothing.
	 */
	if (!sp->cached && !s->direct)
		drop_behind(s, sp->io.off + sp->io.len);
	if (sp->piece) {
		s->big_zero = s->big_zero && util_is_zero(buf, sp->io.len);
		if (!sp->last)
			return 0;
		r = judge_chunk(s, sp->first, s->big_zero);
		s->big_zero = true;
		return r;
	}
	r = 0;
	for (uint32_t i = 0; i < sp->n && r >= 0; i++)
		if (sp->want[i >> 3] & (1u << (i & 7)))
			r = judge_chunk(s, sp->first + i,
					util_is_zero(buf + (uint64_t)i * s->cb, s->cb));
	return r;
}

/*
 * A span whose pages are all in the page cache already (the file was just
 * written or read) is copied from there: no device I/O, and nothing is evicted
 * since nothing new is cached.  cachestat(2) tells without touching the pages;
 * on kernels without it (ENOSYS) every span goes to the engine.  The copy is
 * a pread(2), not a mapping: a mapped page that goes away (the file cut short
 * by another process, or a page evicted since cachestat and then failing to
 * read) is a SIGBUS, where pread comes back short or with an error, and the
 * span then goes to the engine, which reports it.  Returns true when sp was
 * read here.
 */
static bool read_from_cache(struct scan *s, struct span *sp)
{
	ssize_t n;
	int r;

	if (s->cached_fd < 0)
		return false;
	r = util_cached(s->cached_fd, sp->io.off, sp->io.len);
	if (r == -ENOSYS || r == -EPERM || r == -EOPNOTSUPP)
		s->cached_fd = -1; /* never mind: s->cached_fd is closed by reclaim_run */
	if (r <= 0)
		return false;
	n = util_pread_full(s->cached_fd, sp->io.buf, sp->io.len, sp->io.off);
	if (n != (ssize_t)sp->io.len)
		return false;
	sp->io.res = (int32_t)sp->io.len;
	sp->io.done = true;
	sp->cached = true;
	s->rep->cached_bytes += sp->io.len;
	return true;
}

/*
 * Punches what was put off (see struct scan), in COW order: after the last read,
 * or (report false: no punch progress) when auto has chosen to punch during a
 * buffered scan, which then goes on punching beside its reads.
 */
static int punch_later(struct scan *s, bool report)
{
	uint64_t nbits = s->l->chunks, done = 0, total = 0;
	double last = 0;
	int r;

	if (report && s->opts->punch_progress)
		for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
			uint64_t v;

			memcpy(&v, s->later + w * 8, sizeof(v));
			total += (uint64_t)__builtin_popcountll(v);
		}

	for (uint64_t c = bitmap_next_set(s->later, 0, nbits); c < nbits;
	     c = bitmap_next_set(s->later, c + 1, nbits)) {
		r = reclaim_coalescer_add(&s->later_co, c);
		if (r > 0) {
			r = punch_batch(s, &s->later_co);
			if (report && s->opts->punch_progress && util_now() - last >= 0.25) {
				last = util_now();
				s->opts->punch_progress(s->opts->progress_opaque, done, total);
			}
		}
		if (r < 0)
			return r;
		done++;
	}
	if (report && s->opts->punch_progress && total)
		s->opts->punch_progress(s->opts->progress_opaque, done, total);
	return reclaim_coalescer_flush(&s->later_co) ? punch_batch(s, &s->later_co) : 0;
}

/* auto chose to punch: a buffered scan punches what it put off now (see scan_decide()). */
static int punch_collected(struct scan *s, bool at_end)
{
	int r;

	if (at_end || s->direct)
		return 0;
	r = punch_later(s, false);
	memset(s->later, 0, (s->l->chunks + 7) / 8 + 8);
	s->later_tail = 0;
	return r;
}

/* What auto_decide() is told: the scan so far. */
static struct rewrite_decide_in decide_in(const struct scan *s)
{
	return (struct rewrite_decide_in){
		.done_bytes = s->done_bytes,
		.total_bytes = s->total_bytes,
		.runs = s->runs,
		.taken_bytes = s->taken_bytes,
		.bytes_read = s->rep->bytes_read,
		.cached_bytes = s->rep->cached_bytes,
		.allocated_before = s->rep->allocated_before,
		.seconds = util_now() - s->t0,
	};
}

/*
 * What auto_decide() is told at the choice, the scan having punched every run
 * before punched_to provisionally: those are done, and only the runs left are
 * weighed against a rewrite (and the reason says so).
 */
static struct rewrite_decide_in decide_in_left(const struct scan *s, uint64_t punched_to,
					       double *ret_left)
{
	struct rewrite_decide_in in = decide_in(s);

	*ret_left =
		s->total_bytes ? (double)(s->total_bytes - punched_to) / (double)s->total_bytes : 0;
	if (punched_to)
		in.runs = (uint64_t)((double)in.runs * *ret_left);
	return in;
}

static void reason_left(struct scan *s, uint64_t punched_to, double left)
{
	size_t n = strlen(s->autos->reason);

	if (punched_to)
		snprintf(s->autos->reason + n, sizeof(s->autos->reason) - n,
			 "; runs left only: %.0f%% of the scan punched provisionally",
			 (1 - left) * 100);
}

/*
 * auto: chooses once decide_at bytes are judged and the figures it needs are
 * in (or at the end); a rewrite abandons the scan.  The scan does not wait
 * for the probe thread (its writes take tens of milliseconds, more on a busy
 * disk): it goes on judging until the punch cost alone settles it
 * (auto_decide_early()) or the write probe is done too, and a scan that ends
 * having punched every run provisionally does not wait for it at all: it
 * could not change that.  Meanwhile a direct scan puts off what it would
 * punch; a scan through the page cache punches it, provisionally, timing its
 * first punches (punch_ranges()), until they find punches dear (more than 20
 * us: a discard each), and then puts off the rest: what it punched is its
 * first batch, and the choice weighs only the runs left.  A buffered scan
 * that is to punch then punches what it put off at once.
 */
static int scan_decide(struct scan *s, bool at_end)
{
	struct rewrite_decide_in in;
	uint64_t punched_to;
	double left;
	int chose;

	if (!s->collecting && !s->provisional)
		return 0;
	/* Punching provisionally: put off again once the punch cost is found dear. */
	if (s->provisional && !at_end && auto_punch_dear(s->autos)) {
		s->provisional = false;
		s->collecting = true;
		s->provisional_to = s->done_bytes;
	}
	if (!at_end && s->done_bytes < s->decide_at)
		return 0;
	punched_to = s->provisional ? s->done_bytes : s->provisional_to;
	if (!at_end && !auto_probe_done(s->autos)) {
		in = decide_in_left(s, punched_to, &left);
		if (auto_decide_early(s->autos, &in) < 0)
			return 0;
		reason_left(s, punched_to, left);
		s->collecting = s->provisional = false;
		return punch_collected(s, false);
	}
	if (at_end && s->provisional && !auto_probe_done(s->autos)) {
		/*
		 * Every run is punched: nothing the probes say can change that, so
		 * they are not waited for (auto_done() stops them).
		 */
		s->autos->punched_all = true;
		s->provisional = false;
		return 0;
	}
	s->collecting = s->provisional = false;
	/* The probes ran beside the scan so far (auto_probe_start()); failed, they say punch. */
	if (auto_probe_wait(s->autos) < 0) {
		char why[sizeof(s->autos->reason)];

		memcpy(why, s->autos->reason, sizeof(why));
		snprintf(s->autos->reason, sizeof(s->autos->reason), "auto: punch: %.200s", why);
		return punch_collected(s, at_end);
	}
	in = decide_in_left(s, punched_to, &left);
	chose = auto_decide(s->autos, &in);
	reason_left(s, punched_to, left);
	if (chose > 0) {
		s->abandon = true;
		return 0;
	}
	return punch_collected(s, at_end);
}

static int scan_loop(struct scan *s)
{
	bool planned_all = false;
	int r;

	for (;;) {
		while (!planned_all && s->inflight < s->depth) {
			struct span *sp = &s->spans[(s->head + s->inflight) % s->depth];

			r = scan_stopped(s);
			if (r == 0)
				r = plan_next(s, sp);
			if (r < 0)
				return r;
			if (r == 0) {
				planned_all = true;
				break;
			}
			if (s->opts->throttle) {
				r = s->opts->throttle(s->opts->throttle_opaque, sp->io.len);
				if (r < 0)
					return r;
			}
			sp->io.res = 0;
			sp->cached = false;
			if (!read_from_cache(s, sp)) {
				s->device_inflight++;
				r = s->eng.ops->submit(&s->eng, &sp->io);
				if (r < 0)
					return r;
			}
			s->inflight++;
		}
		if (!s->inflight)
			return 0;
		while (!s->spans[s->head].io.done) {
			r = s->eng.ops->reap(&s->eng);
			if (r < 0)
				return r;
		}
		s->inflight--;
		if (!s->spans[s->head].cached)
			s->device_inflight--;
		r = retire(s, &s->spans[s->head]);
		s->head = (s->head + 1) % s->depth;
		if (r >= 0 && s->autos)
			r = scan_decide(s, false);
		if (r >= 0 && s->eng.ops->poll)
			r = s->eng.ops->poll(&s->eng);
		if (r < 0)
			return r;
		progress(s, false);
	}
}

/*
 * Waits for every read still in flight, whatever became of the punches: the
 * read buffers are freed when reclaim_run() returns, and the kernel writes
 * into a buffer until its read completes.  Returns false when the engine
 * cannot wait (reap failed): the reads are then in an unknown state.
 */
static bool scan_quiesce(struct scan *s)
{
	while (s->inflight) {
		if (!s->spans[s->head].io.done) {
			if (s->eng.ops->reap(&s->eng) < 0)
				return false;
			continue;
		}
		s->head = (s->head + 1) % s->depth;
		s->inflight--;
	}
	return true;
}

static const struct reclaim_engine_ops *engine_ops(enum reclaim_engine_kind kind)
{
	switch (kind) {
	case RECLAIM_ENGINE_URING:
		return &reclaim_engine_uring;
	case RECLAIM_ENGINE_AIO:
		return &reclaim_engine_aio;
	case RECLAIM_ENGINE_SYNC:
		return &reclaim_engine_sync;
	default:
		return NULL;
	}
}

int reclaim_engine_start(struct reclaim_engine *e, enum reclaim_engine_kind kind)
{
	static const enum reclaim_engine_kind order[] = {RECLAIM_ENGINE_URING, RECLAIM_ENGINE_AIO,
							 RECLAIM_ENGINE_SYNC};
	int r = -ENOTSUP;

	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		if (kind != RECLAIM_ENGINE_AUTO && kind != order[i])
			continue;
		e->ops = engine_ops(order[i]);
		e->priv = NULL;
		r = e->ops->init(e);
		if (r >= 0)
			return 0;
		if (r == -ENOMEM && kind == RECLAIM_ENGINE_AUTO && order[i] != RECLAIM_ENGINE_URING)
			return r; /* out of memory for real, not io_uring's memlock limit */
	}
	e->ops = NULL;
	/* A forced engine that cannot start is "not supported here", whatever the cause. */
	return kind == RECLAIM_ENGINE_AUTO ? r : -ENOTSUP;
}

static uint64_t pow2_clamp(uint64_t v, uint64_t def, uint64_t lo, uint64_t hi)
{
	uint64_t p = lo;

	if (!v)
		v = def;
	while (p < v && p < hi)
		p <<= 1;
	return p;
}

void reclaim_layout_of_store(const struct snapstore_info *info, struct reclaim_layout *ret)
{
	*ret = (struct reclaim_layout){
		.chunk_bytes = info->geom.chunk_bytes,
		.chunks = info->geom.file_chunks,
		.may_punch = info->data_bitmap,
		.store = &info->geom,
	};
}

static bool layout_valid(const struct reclaim_layout *l)
{
	uint64_t cb = l->chunk_bytes;

	return cb >= 512 && cb <= (1ULL << 30) && !(cb & (cb - 1)) &&
	       l->chunks <= UINT64_MAX / cb && (!l->store || l->may_punch);
}

/* scan_punch() with fd's O_DIRECT as the scan is to read. */
static int scan_punch_fd(int fd, const struct reclaim_layout *layout,
			 const struct reclaim_opts *opts, struct auto_state *autos,
			 struct reclaim_report *ret)
{
	struct reclaim_report rep = {0};
	_cleanup_free_ void *bufs = NULL;
	_cleanup_free_ struct span *spans = NULL;
	_cleanup_free_ uint8_t *data_map = NULL, *later = NULL;
	_cleanup_close_ int cached_fd = -1;
	struct scan s = {0};
	struct stat st;
	double t0 = util_now();
	int fl, r, r2;

	if (fd < 0 || !layout || !layout_valid(layout) || !opts || !ret)
		return -EINVAL;
	/*
	 * Write back anything dirty first, so that st_blocks already counts the blocks
	 * delayed allocation would add (O_DIRECT reads flush them anyway) and
	 * reclaimed_bytes measures the punches alone.
	 */
	if (fdatasync(fd) < 0 || fstat(fd, &st) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;

	rep.chunk_bytes = layout->chunk_bytes;
	rep.allocated_before = (uint64_t)st.st_blocks * 512;
	rep.dry_run = opts->dry_run;

	s.fd = fd;
	s.l = layout;
	s.opts = opts;
	s.rep = &rep;
	s.direct = fl & O_DIRECT;
	s.cb = layout->chunk_bytes;
	s.read_bytes = pow2_clamp(opts->read_bytes,
				  s.direct ? RECLAIM_DEFAULT_DIRECT_READ_BYTES
					   : RECLAIM_DEFAULT_READ_BYTES,
				  IO_ALIGN, (uint64_t)SPAN_MAX_CHUNKS * IO_ALIGN);
	s.gap_bytes = opts->gap_bytes ? opts->gap_bytes : RECLAIM_DEFAULT_GAP_BYTES;
	s.depth = opts->queue_depth ? opts->queue_depth : RECLAIM_DEFAULT_QUEUE_DEPTH;
	if (s.depth > 256)
		s.depth = 256;
	s.big_zero = true;
	s.t0 = t0;
	s.autos = autos;
	/*
	 * auto: a scan through the page cache punches from the start, provisionally,
	 * until its timed punches find punches dear; a direct one puts off until it
	 * chooses, since its punches wait for the reads (see struct scan).
	 */
	s.provisional = autos && !s.direct;
	s.collecting = autos && s.direct;
	if (!layout->may_punch)
		s.total_bytes = layout->chunks * s.cb;
	else
		for (uint64_t c = bitmap_next_set(layout->may_punch, 0, layout->chunks);
		     c < layout->chunks;
		     c = bitmap_next_set(layout->may_punch, c + 1, layout->chunks))
			s.total_bytes += s.cb;

	/* Reads are never larger than a chunk span or a piece: one buffer per slot. */
	{
		uint64_t bufsz = s.cb > s.read_bytes ? s.read_bytes : (s.read_bytes / s.cb) * s.cb;

		if (posix_memalign(&bufs, IO_ALIGN, bufsz * s.depth))
			return -ENOMEM;
		spans = calloc(s.depth, sizeof(*spans));
		if (!spans)
			return -ENOMEM;
		for (unsigned i = 0; i < s.depth; i++)
			spans[i].io.buf = (char *)bufs + bufsz * i;
	}
	s.spans = spans;
	data_map = calloc(1, (layout->chunks + 7) / 8 + 8);
	if (!data_map)
		return -ENOMEM;
	s.data_map = data_map;
	later = calloc(1, (layout->chunks + 7) / 8 + 8);
	if (!later)
		return -ENOMEM;
	s.later = later;
	map_data(&s);
	/* auto chooses after 1/16 of the scan, and not before 32 MiB of it. */
	s.decide_at = s.total_bytes / 16 > (32u << 20) ? s.total_bytes / 16 : (32u << 20);
	reclaim_coalescer_init_layout(&s.zero_co, layout, s.zero_batch, PUNCH_BATCH);
	reclaim_coalescer_init_layout(&s.free_co, layout, s.free_batch, PUNCH_BATCH);
	reclaim_coalescer_init_layout(&s.later_co, layout, s.later_batch, PUNCH_BATCH);
	reclaim_coalescer_set_holes(&s.zero_co, gap_is_hole, &s);
	reclaim_coalescer_set_holes(&s.free_co, gap_is_hole, &s);
	reclaim_coalescer_set_holes(&s.later_co, gap_is_hole, &s);

	s.cached_fd = -1;
	if (s.direct) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		cached_fd = open(path, O_RDONLY | O_CLOEXEC);
		s.cached_fd = cached_fd;
	}

	s.eng.fd = fd;
	s.eng.depth = s.depth;
	r = reclaim_engine_start(&s.eng, opts->engine);
	if (r < 0)
		return r;
	rep.engine = s.eng.ops->kind;

	r = scan_loop(&s);
	if (r >= 0 && s.autos) {
		r = scan_decide(&s, true);
		if (r >= 0 && s.abandon)
			r = -ECANCELED;
	}
	if (r >= 0)
		progress(&s, true);
	if (r >= 0 && reclaim_coalescer_flush(&s.zero_co))
		r = punch_batch(&s, &s.zero_co);
	if (r >= 0 && reclaim_coalescer_flush(&s.free_co))
		r = punch_batch(&s, &s.free_co);
	if (!scan_quiesce(&s)) {
		/*
		 * Reads may still land in the buffers: leave them allocated rather
		 * than hand memory the kernel writes into back to the allocator.
		 */
		(void)TAKE_PTR(bufs);
		if (r >= 0)
			r = -EIO;
	}
	if (r >= 0)
		r = punch_later(&s, true);
	r2 = s.eng.ops->drain(&s.eng);
	if (r >= 0)
		r = r2;
	s.eng.ops->exit(&s.eng);
	if (r < 0 && s.abandon) {
		/*
		 * auto chose a rewrite: nothing was punched but provisionally; what
		 * was read counts, so do the zero and free chunks punched (holes to
		 * the rewrite), and the rewrite's reclaimed_bytes starts from the
		 * allocation before the scan.
		 */
		ret->bytes_read = rep.bytes_read;
		ret->cached_bytes = rep.cached_bytes;
		ret->allocated_before = rep.allocated_before;
		ret->zero_chunks = s.punched_data[0];
		ret->fs_free_chunks = s.punched_data[1];
	}
	if (r < 0)
		return r;

	if (fstat(fd, &st) < 0)
		return -errno;
	rep.allocated_after = (uint64_t)st.st_blocks * 512;
	rep.hole_bridges = s.zero_co.bridged + s.free_co.bridged + s.later_co.bridged;
	rep.reclaimed_bytes = rep.allocated_before > rep.allocated_after
				      ? rep.allocated_before - rep.allocated_after
				      : 0;
	rep.direct_reads = s.direct;
	rep.seconds = util_now() - t0;
	*ret = rep;
	return 0;
}

/*
 * The punch strategy; with autos, auto's choice too (-ECANCELED, autos->chose_rewrite).
 * Unless opts->direct_reads, the scan reads through the page cache (see struct
 * scan): fd's O_DIRECT is cleared for it and set again after, and what it left
 * in the cache (read ahead past the last span, say) is dropped at the end.
 */
static int scan_punch(int fd, const struct reclaim_layout *layout, const struct reclaim_opts *opts,
		      struct auto_state *autos, struct reclaim_report *ret)
{
	int fl = fd >= 0 ? fcntl(fd, F_GETFL) : 0;
	bool cleared = false;
	int r;

	if (fl < 0)
		return -errno;
	if (opts && !opts->direct_reads && (fl & O_DIRECT)) {
		if (fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
			return -errno;
		cleared = true;
	}
	r = scan_punch_fd(fd, layout, opts, autos, ret);
	if (fd >= 0 && (cleared || !(fl & O_DIRECT)))
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (cleared && fcntl(fd, F_SETFL, fl) < 0 && r >= 0)
		r = -errno;
	return r;
}

/* The rewrite strategy over the whole file; rep has what ran before (auto's scan). */
static int scan_rewrite(int fd, const struct reclaim_layout *layout,
			const struct reclaim_opts *opts, struct reclaim_report *rep)
{
	struct reclaim_report w = {0};
	struct stat st;
	double t0 = util_now();
	int r;

	if (fdatasync(fd) < 0 || fstat(fd, &st) < 0)
		return -errno;
	w.chunk_bytes = layout->chunk_bytes;
	/* After auto's scan: from before it (it may have punched, provisionally). */
	w.allocated_before =
		rep->allocated_before ? rep->allocated_before : (uint64_t)st.st_blocks * 512;
	r = rewrite_run(fd, opts->path, layout, opts, &w);
	if (r < 0)
		return r;
	w.reclaimed_bytes =
		w.allocated_before > w.allocated_after ? w.allocated_before - w.allocated_after : 0;
	w.strategy = RECLAIM_STRATEGY_REWRITE;
	w.bytes_read += rep->bytes_read;
	w.cached_bytes += rep->cached_bytes;
	/* After auto's scan: the chunks it punched provisionally are holes to the rewrite. */
	w.zero_chunks += rep->zero_chunks;
	w.fs_free_chunks += rep->fs_free_chunks;
	w.seconds = rep->seconds + util_now() - t0;
	w.punch_probe_us = rep->punch_probe_us;
	w.write_probe_mbps = rep->write_probe_mbps;
	memcpy(w.strategy_reason, rep->strategy_reason, sizeof(w.strategy_reason));
	*rep = w;
	return 0;
}

int reclaim_scan(int fd, const struct reclaim_layout *layout, const struct reclaim_opts *opts,
		 struct reclaim_report *ret)
{
	struct auto_state st = {.tmp_fd = -1};
	struct reclaim_report rep = {0};
	char why[200], reason[sizeof(rep.strategy_reason)];
	double t0 = util_now();
	int r;

	if (fd < 0 || !layout || !layout_valid(layout) || !opts || !ret)
		return -EINVAL;
	if (!opts->path || opts->dry_run || opts->strategy == RECLAIM_STRATEGY_PUNCH) {
		/* A killed rewrite's temp file goes with any run that may write. */
		if (opts->path && !opts->dry_run)
			(void)rewrite_remove_stale(opts->path);
		r = scan_punch(fd, layout, opts, NULL, &rep);
		if (r < 0)
			return r;
		rep.strategy = RECLAIM_STRATEGY_PUNCH;
		snprintf(rep.strategy_reason, sizeof(rep.strategy_reason), "%s",
			 opts->dry_run ? "dry run: counted as punches"
			 : opts->path  ? "asked for (--strategy punch)"
				       : "no path to rewrite beside");
		*ret = rep;
		return 0;
	}
	(void)rewrite_remove_stale(opts->path);
	r = rewrite_refusal(fd, opts->path, why, sizeof(why), &st.extents);
	if (opts->strategy == RECLAIM_STRATEGY_REWRITE) {
		if (r == 0) {
			snprintf(rep.strategy_reason, sizeof(rep.strategy_reason),
				 "asked for (--strategy rewrite)");
			r = scan_rewrite(fd, layout, opts, &rep);
		}
		/* Refused or not permitted: why, for the caller's message (*ret otherwise unset). */
		if (r == 1)
			snprintf(ret->strategy_reason, sizeof(ret->strategy_reason), "%s", why);
		else if (r == -EPERM)
			snprintf(ret->strategy_reason, sizeof(ret->strategy_reason),
				 "%s: not permitted", opts->path);
		if (r == 1 || r < 0)
			return r == 1 ? -EPERM : r;
		*ret = rep;
		return 0;
	}
	if (r < 0)
		return r;

	/* auto */
	if (r == 1) {
		snprintf(reason, sizeof(reason), "auto: punch: %.200s", why);
	} else if ((st.punch_from_scan = !opts->direct_reads,
		    auto_probe_start(&st, opts->path) < 0) &&
		   auto_probe(&st, opts->path) < 0) {
		auto_done(&st);
		snprintf(reason, sizeof(reason), "auto: punch: %.200s", st.reason);
	} else {
		r = scan_punch(fd, layout, opts, &st, &rep);
		auto_done(&st);
		rep.punch_probe_us = st.punch_s * 1e6;
		rep.write_probe_mbps = st.write_bps / 1e6;
		snprintf(rep.strategy_reason, sizeof(rep.strategy_reason), "%s", st.reason);
		if (r == -ECANCELED && st.chose_rewrite && !(opts->stop && *opts->stop)) {
			/* The scan stopped with nothing punched: its time and reads count too. */
			rep.seconds = util_now() - t0;
			r = scan_rewrite(fd, layout, opts, &rep);
		} else if (r >= 0) {
			rep.strategy = RECLAIM_STRATEGY_PUNCH;
			rep.seconds = util_now() - t0;
		}
		if (r < 0)
			return r;
		*ret = rep;
		return 0;
	}
	r = scan_punch(fd, layout, opts, NULL, &rep);
	if (r < 0)
		return r;
	rep.strategy = RECLAIM_STRATEGY_PUNCH;
	memcpy(rep.strategy_reason, reason, sizeof(reason));
	*ret = rep;
	return 0;
}

int reclaim_run(int fd, const struct snapstore_info *info, const struct reclaim_opts *opts,
		struct reclaim_report *ret)
{
	struct reclaim_layout l;
	struct reclaim_report rep = {0};
	int r;

	if (!info || !info->data_bitmap || !ret)
		return -EINVAL;
	reclaim_layout_of_store(info, &l);
	r = reclaim_scan(fd, &l, opts, &rep);
	if (r == -EPERM)
		memcpy(ret->strategy_reason, rep.strategy_reason, sizeof(ret->strategy_reason));
	if (r < 0)
		return r;
	rep.exceptions = info->exceptions;
	*ret = rep;
	return 0;
}
