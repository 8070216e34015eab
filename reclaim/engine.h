/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal to reclaim/: the I/O backends behind reclaim_run(), as an ops table
 * chosen at run time (after fio's ioengines.h).  An engine reads spans of the
 * COW file asynchronously (or not) and punches byte ranges; the scanner in
 * reclaim.c decides what to read and what to punch.
 */
#ifndef COWPUNCH_RECLAIM_ENGINE_H
#define COWPUNCH_RECLAIM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reclaim/reclaim.h"

/* One read in flight.  The engine sets res and then done. */
struct reclaim_io {
	void *buf;    /* aligned for O_DIRECT */
	uint64_t off; /* byte offset in the file */
	uint32_t len;
	int32_t res; /* bytes read, or -errno */
	bool done;
};

/* A byte range to punch. */
struct reclaim_range {
	uint64_t off;
	uint64_t len;
};

struct reclaim_engine {
	const struct reclaim_engine_ops *ops;
	int fd;
	unsigned depth; /* most reads in flight at once */
	void *priv;
};

struct reclaim_engine_ops {
	enum reclaim_engine_kind kind;
	/* Sets up e (fd and depth filled in).  -errno when the backend is unavailable. */
	int (*init)(struct reclaim_engine *e);
	/* Queues a read; it may complete at once (io->done set) or in a later reap. */
	int (*submit)(struct reclaim_engine *e, struct reclaim_io *io);
	/*
	 * Sends what is queued and waits until at least one more read is done.
	 * 0, or -errno when it cannot wait; never a punch error (poll, punch and
	 * drain report those), so that reads can be waited for after one.
	 */
	int (*reap)(struct reclaim_engine *e);
	/*
	 * Optional (NULL: nothing to do): between reads, takes what has completed
	 * without waiting, so that queued punches keep going.  0 or a punch error.
	 */
	int (*poll)(struct reclaim_engine *e);
	/*
	 * Punches the n ranges (PUNCH_HOLE|KEEP_SIZE).  An asynchronous engine may
	 * return before they are done; ranges may be reused at once.
	 */
	int (*punch)(struct reclaim_engine *e, const struct reclaim_range *r, size_t n);
	/* Waits for every queued punch; returns the first punch error, if any. */
	int (*drain)(struct reclaim_engine *e);
	void (*exit)(struct reclaim_engine *e);
};

extern const struct reclaim_engine_ops reclaim_engine_uring;
extern const struct reclaim_engine_ops reclaim_engine_aio;
extern const struct reclaim_engine_ops reclaim_engine_sync;

/*
 * Starts the engine asked for on e (fd and depth filled in), or under AUTO the
 * first that works.  0, or -errno (-ENOTSUP for a forced engine that cannot run).
 */
int reclaim_engine_start(struct reclaim_engine *e, enum reclaim_engine_kind kind);

/* fallocate(2) PUNCH_HOLE|KEEP_SIZE over each range, in order.  0 or -errno. */
int reclaim_punch_fallocate(int fd, const struct reclaim_range *r, size_t n);

/*
 * Answers whether chunks [from, to) hold no data at all in the file (all
 * holes, as SEEK_DATA sees it).  True only when certain.
 */
typedef bool (*reclaim_hole_fn)(void *opaque, uint64_t from, uint64_t to);

/*
 * Coalesces zero chunks, fed in increasing order, into byte ranges, and
 * collects them into a batch for the engine.  Refuses (-EINVAL) to take a chunk
 * past the layout's end, a chunk the layout does not let be punched, a chunk
 * not above the last one, and for a COW store chunk 0 or a metadata chunk: the
 * engine must never punch anything else, whatever the scanner's bugs.  With a
 * hole oracle, a range also grows across chunks that are already holes
 * (punching them again changes nothing), but never across a store's header or
 * metadata chunk, nor across anything the oracle does not call a hole.
 */
struct reclaim_coalescer {
	struct reclaim_layout layout;
	uint64_t start, end;	 /* pending chunk range [start, end); empty when start == end */
	uint64_t last;		 /* last chunk added + 1, 0 before the first */
	bool broken;		 /* a chunk with data came after end: the range cannot grow */
	reclaim_hole_fn is_hole; /* NULL: only adjacent chunks merge */
	void *hole_opaque;
	uint64_t bridged; /* gaps of hole chunks a range was grown across */
	struct reclaim_range *batch;
	size_t n, cap;
};

/* Points co at batch (cap entries, cap >= 1) and clears it, for the chunks layout allows. */
void reclaim_coalescer_init_layout(struct reclaim_coalescer *co,
				   const struct reclaim_layout *layout, struct reclaim_range *batch,
				   size_t cap);

/* The same for a COW store: its listed data chunks (data_bitmap), never its metadata. */
void reclaim_coalescer_init(struct reclaim_coalescer *co, const struct snapstore_geometry *geom,
			    const uint8_t *data_bitmap, struct reclaim_range *batch, size_t cap);

/*
 * Lets ranges grow across runs of chunks that is_hole(opaque, from, to) says are
 * holes.  Without it only adjacent chunks merge.
 */
void reclaim_coalescer_set_holes(struct reclaim_coalescer *co, reclaim_hole_fn is_hole,
				 void *opaque);

/*
 * Tells the coalescer that a chunk after the last one added holds data (was
 * judged not zero): the pending range is not grown across it, and the oracle
 * is not asked.  Optional (the oracle would say "data"), it saves a query.
 */
void reclaim_coalescer_break(struct reclaim_coalescer *co);

/*
 * True when a range whose last chunk is end - 1 may grow to take chunk c: c is
 * end itself, or the gap [end, c) holds no header or metadata chunk of a store
 * and is_hole (may be NULL: never) says it holds no data.  The one rule for
 * growing a range, for the coalescer and for the scanner's choice between
 * punching now and later.
 */
bool reclaim_range_can_grow(const struct reclaim_layout *l, reclaim_hole_fn is_hole, void *opaque,
			    uint64_t end, uint64_t c);

/* True when adding chunk c to co would grow its pending range, not start a new one. */
bool reclaim_coalescer_extends(const struct reclaim_coalescer *co, uint64_t c);

/*
 * Adds zero chunk c.  Returns 1 when the batch is full and must be taken
 * (co->batch[0..co->n)) and reset with co->n = 0 before the next add, 0 when
 * not, -EINVAL for a chunk that must never be punched.
 */
int reclaim_coalescer_add(struct reclaim_coalescer *co, uint64_t c);

/* Closes the pending range into the batch.  Returns 1 when the batch holds ranges. */
int reclaim_coalescer_flush(struct reclaim_coalescer *co);

#endif
