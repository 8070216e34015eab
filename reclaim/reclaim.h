/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Zero-chunk (and fs-free-chunk) reclaim of a validated dm-snapshot COW file,
 * and the same scan over any regular file (reclaim/sparsify.h).  See
 * docs/reclaim.md.
 *
 * The engine is the only code that writes to a COW file, and it only punches
 * whole data chunks the store lists.  Punching an all-zero chunk never changes
 * what a reader of the snapshot sees, so a crash at any point leaves a valid store.
 */
#ifndef COWPUNCH_RECLAIM_RECLAIM_H
#define COWPUNCH_RECLAIM_RECLAIM_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "reclaim/snapstore.h"

enum reclaim_engine_kind {
	RECLAIM_ENGINE_AUTO = 0, /* io_uring, else libaio, else sync */
	RECLAIM_ENGINE_URING,
	RECLAIM_ENGINE_AIO,
	RECLAIM_ENGINE_SYNC,
};

/* "auto", "uring", "aio", "sync" <-> enum; parse returns -EINVAL on an unknown name. */
int reclaim_engine_parse(const char *name, enum reclaim_engine_kind *ret);
const char *reclaim_engine_name(enum reclaim_engine_kind kind);

/*
 * How the reclaimable chunks are given back (docs/reclaim.md, "Two strategies"):
 * punched in place, or left out of a new copy of the file that is renamed over
 * it; auto measures both costs on this host and takes the cheaper.
 */
enum reclaim_strategy {
	RECLAIM_STRATEGY_AUTO = 0,
	RECLAIM_STRATEGY_PUNCH,
	RECLAIM_STRATEGY_REWRITE,
};

/* "auto", "punch", "rewrite" <-> enum; parse returns -EINVAL on an unknown name. */
int reclaim_strategy_parse(const char *name, enum reclaim_strategy *ret);
const char *reclaim_strategy_name(enum reclaim_strategy s);

/*
 * Bytes per read: 256 KiB through the page cache (larger requests took the
 * kernel's order-0 readahead path and read cold files at half the speed,
 * docs/benchmarks.md run 16), 1 MiB with direct_reads.
 */
#define RECLAIM_DEFAULT_READ_BYTES	  (256u << 10)
#define RECLAIM_DEFAULT_DIRECT_READ_BYTES (1u << 20)
#define RECLAIM_DEFAULT_QUEUE_DEPTH	  16u
#define RECLAIM_DEFAULT_GAP_BYTES	  (64u << 10)

struct reclaim_opts {
	enum reclaim_engine_kind engine;
	bool dry_run;
	/*
	 * PUNCH (also when path is NULL or in a dry run), REWRITE, or AUTO.  A
	 * rewrite makes .NAME.cowpunch-rewrite beside path (the file fd is open on,
	 * whose lock the caller holds), renames it over path and fsyncs the
	 * directory: afterwards fd is the old, unlinked inode, which the caller
	 * closes to free its blocks.  Any run with a path and not a dry run first
	 * removes a temp file a killed rewrite left.
	 */
	enum reclaim_strategy strategy;
	const char *path;
	/*
	 * Optional: COW chunks to punch without reading them (bit c = COW chunk c),
	 * geom.file_chunks bits, e.g. chunks whose origin range is free in the guest
	 * filesystem.  Only bits that are also listed data chunks are honoured.
	 */
	const uint8_t *free_bitmap;
	/*
	 * I/O tuning, 0 = default: bytes per read (rounded up to a power of two,
	 * 4 KiB .. 4 MiB), reads in flight (at most 256), and the longest run of
	 * chunks not to judge (metadata, unlisted, holes) that one read spans
	 * rather than being split in two.
	 */
	uint32_t read_bytes;
	uint32_t queue_depth;
	uint32_t gap_bytes;
	/*
	 * How the punch strategy's scan reads (docs/reclaim.md, "The scan").  false
	 * (the default): through the page cache, what is judged dropped from it 4 MiB
	 * at a time, and ranges punched beside the reads, whatever fd's O_DIRECT says
	 * (it is cleared for the scan and set again before returning).  true: with
	 * O_DIRECT where fd has it, spans already cached copied from the cache, and
	 * what is to be punched while a read is out to the device put off until
	 * after the last read (an ext4 punch waits for every direct I/O in flight).
	 */
	bool direct_reads;
	/*
	 * Optional progress callbacks, called at most a few times a second: the
	 * scan (bytes of listed data chunks judged so far), then the punches put
	 * off until after the scan (chunks handed to the engine so far).
	 */
	void (*progress)(void *opaque, uint64_t done_bytes, uint64_t total_bytes);
	void (*punch_progress)(void *opaque, uint64_t done_chunks, uint64_t total_chunks);
	void *progress_opaque;
	/*
	 * Optional cancellation (a signal handler may set it): once *stop is
	 * non-zero, no further read is sent and no further batch of punches is
	 * handed to the engine; the reads in flight complete, the punches already
	 * handed over are waited for, and the run returns -ECANCELED.  What was
	 * punched stays punched (whole ranges of chunks that read as zeros, or
	 * fs-free), nothing else was written: the file reads as before.
	 */
	const volatile sig_atomic_t *stop;
	/*
	 * Optional read throttle: called before each read of the scan, from the
	 * device or the page cache, with its length in bytes (on success the calls
	 * add up to bytes_read).  It may sleep, e.g. for a token bucket.  A negative
	 * return stops the run as *stop does, with that error (-ECANCELED to cancel).
	 */
	int (*throttle)(void *opaque, uint64_t bytes);
	void *throttle_opaque;
};

/* "Listed data chunks": the chunks the layout lets be punched (every chunk of a plain file). */
struct reclaim_report {
	uint64_t exceptions; /* of the store; 0 from reclaim_scan() */
	uint64_t chunk_bytes;
	uint64_t chunks_scanned;   /* listed data chunks that held data and were read */
	uint64_t zero_chunks;	   /* listed data chunks found all zero (punched unless dry run) */
	uint64_t hole_chunks;	   /* listed data chunks already entirely holes */
	uint64_t fs_free_chunks;   /* punched because free_bitmap said so (not read) */
	uint64_t punched_ranges;   /* coalesced fallocate calls (would-be, in a dry run) */
	uint64_t hole_bridges;	   /* ranges grown across chunks already holes: calls saved */
	uint64_t allocated_before; /* st_blocks * 512 before */
	uint64_t allocated_after;  /* st_blocks * 512 after */
	uint64_t reclaimed_bytes;  /* allocated_before - allocated_after */
	uint64_t bytes_read;
	uint64_t cached_bytes; /* of bytes_read, copied from the page cache (already there) */
	bool direct_reads;     /* the scan read with O_DIRECT (reclaim_opts.direct_reads) */
	double seconds;
	enum reclaim_engine_kind engine; /* the engine actually used (never AUTO) */
	bool dry_run;
	enum reclaim_strategy strategy; /* the strategy that ran (never AUTO) */
	char strategy_reason[256];	/* why it ran (auto: the figures compared) */
	uint64_t bytes_written;		/* rewrite: bytes written to the new file */
	double punch_probe_us;		/* auto: one punch, measured (0: not measured) */
	double write_probe_mbps;	/* auto: write bandwidth measured, MB/s (0: not) */
};

/*
 * What a scan may punch: the file seen as chunks of chunk_bytes, chunk c at byte
 * c * chunk_bytes.  A chunk that holds data is read and punched when it reads as
 * all zeros (or is in reclaim_opts.free_bitmap), if may_punch allows it.
 */
struct reclaim_layout {
	uint64_t chunk_bytes; /* a power of two, 512 .. 1 GiB */
	uint64_t chunks;      /* chunks [0, chunks); bytes after them are never read or punched */
	/*
	 * chunks bits: bit c set when chunk c may be punched (a listed data chunk of
	 * a COW store).  NULL: every chunk may (a plain file).
	 */
	const uint8_t *may_punch;
	/*
	 * A COW store's geometry, or NULL for a plain file.  With it, chunk 0 and
	 * the metadata areas are never punched nor spanned by a punch, whatever
	 * may_punch says (the coalescer refuses them).
	 */
	const struct snapstore_geometry *store;
};

/* The temp file a rewrite of path writes: .NAME.cowpunch-rewrite in its directory. */
int reclaim_rewrite_temp_path(const char *path, char *buf, size_t len);

/* The layout of a validated store: its listed data chunks, its header and metadata kept. */
void reclaim_layout_of_store(const struct snapstore_info *info, struct reclaim_layout *ret);

/*
 * Scans the chunks of fd that layout allows and that hold data (holes are never
 * read), and punches those that read as all zeros, plus those in
 * opts->free_bitmap.  fd is opened O_RDWR, ideally O_DIRECT; the caller makes
 * sure nobody else writes the file meanwhile.  report.exceptions is 0.
 * Returns 0 and fills *ret; -EINVAL for a bad layout; -ECANCELED when
 * opts->stop or opts->throttle stopped it; -ENOTSUP when a forced engine is
 * unavailable; -EPERM when a forced rewrite is refused or not permitted (nothing
 * written; ret->strategy_reason, the only field set, says why: the rule the
 * file breaks, more than one link, path no longer naming it, a shared extent
 * (FIEMAP_EXTENT_SHARED: a rewrite would unshare it and take more space), less
 * free space than its allocated bytes plus a margin of 1/16 and at least 64
 * MiB; or "PATH: not permitted"); or another -errno.  A rewrite stopped or failed before its
 * rename leaves the file as it was (the temp file removed).
 */
int reclaim_scan(int fd, const struct reclaim_layout *layout, const struct reclaim_opts *opts,
		 struct reclaim_report *ret);

/*
 * Scans the listed data chunks of the COW file fd (opened O_RDWR, ideally
 * O_DIRECT; the caller holds the lock and has checked nothing has it attached)
 * and punches those that are all zero, plus those in opts->free_bitmap.
 * info comes from snapstore_load() on the same fd.  reclaim_scan() over
 * reclaim_layout_of_store(info), with report.exceptions filled in.
 * Returns 0 and fills *ret, or -errno (-ENOTSUP when a forced engine is
 * unavailable, -ECANCELED when stopped).
 */
int reclaim_run(int fd, const struct snapstore_info *info, const struct reclaim_opts *opts,
		struct reclaim_report *ret);

#endif
