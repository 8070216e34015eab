/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal to reclaim/: the rewrite strategy (a new copy of the file with the
 * reclaimable chunks left out as holes, renamed over the old one) and what
 * `auto` measures to choose between it and punching.  See docs/reclaim.md.
 */
#ifndef COWPUNCH_RECLAIM_REWRITE_H
#define COWPUNCH_RECLAIM_REWRITE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "reclaim/reclaim.h"

/*
 * Copies every byte of fd (open on path, locked by the caller) into a new file
 * beside it except the chunks the layout lets be punched that read as zeros or
 * are in opts->free_bitmap, which stay holes (holes of fd stay holes too);
 * carries over owner, mode and extended attributes (ACLs and security labels
 * are extended attributes); fsyncs it, renames it over path and fsyncs the
 * directory.  Adds its counts to *rep (allocated_before must be set; sets
 * allocated_after from the new file).  On any failure or stop before the
 * rename the new file is removed and fd's file is untouched.  0 or -errno
 * (-ECANCELED when stopped; -EBUSY when path no longer names fd's file).
 */
int rewrite_run(int fd, const char *path, const struct reclaim_layout *l,
		const struct reclaim_opts *opts, struct reclaim_report *rep);

/*
 * Whether fd may be rewritten (see reclaim_run()'s -EPERM): 1 with why filled
 * when it may not, 0 when it may, -errno when that cannot be told.  Also counts
 * fd's extents (FIEMAP) on the walk it takes for shared ones: *ret_extents, 0
 * when they cannot be told (no FIEMAP) or the walk stopped early (a refusal).
 */
int rewrite_refusal(int fd, const char *path, char *why, size_t why_len, uint64_t *ret_extents);

/* Removes the temp file a killed rewrite of path left.  0 or -errno. */
int rewrite_remove_stale(const char *path);

/* What the scan knows when auto is to choose (see struct auto_state). */
struct rewrite_decide_in {
	uint64_t done_bytes,
		total_bytes;  /* of the chunks to judge: judged so far (holes too), all */
	uint64_t runs;	      /* runs of zero or fs-free chunks so far (punches) */
	uint64_t taken_bytes; /* bytes of zero or fs-free chunks so far */
	uint64_t bytes_read;
	uint64_t cached_bytes; /* of bytes_read, copied from the page cache */
	uint64_t allocated_before;
	double seconds; /* since the scan started */
};

/* Punches timed for auto's punch cost, their median. */
#define AUTO_PROBE_PUNCHES 16

/* auto's state between the probe before the scan and the choice during it. */
struct auto_state {
	const char *path;
	int tmp_fd; /* the temp file, for the probes; -1 when none */
	bool tmp_direct;
	double punch_s;	      /* one punch on this file system, median of the probe's */
	double write_bps;     /* 0 until chosen from the write probe */
	double small_write_s; /* the probe's 1 MiB written and written back */
	double big_write_s;   /* the write probe's 4 MiB written and written back; 0: not taken */
	double free_s_per_byte;
	uint64_t extents; /* of the old file: each costs a free when it goes */
	/*
	 * Set before auto_probe_start() for a scan through the page cache: it
	 * times its own first punches (auto_punch_timed()) instead of the probe
	 * file's, and the write probe waits for them (see PROBE_WRITE_DEFER_S).
	 */
	bool punch_from_scan;
	double scan_punch_s[AUTO_PROBE_PUNCHES];
	unsigned scan_punches;
	double t_start; /* when the probes started (util_now()) */
	bool chose_rewrite;
	char reason[256];
	/* auto_probe_start(): the probes run on this thread beside the scan until joined. */
	pthread_t thread;
	bool thread_running;
	/*
	 * While the thread runs: it sleeps on wake (under lock) until a flag it
	 * waits for is set (auto_punch_timed(), auto_decide_early(), auto_done())
	 * or its deadline passes.
	 */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool thread_done;    /* set (atomically) by the thread as it ends */
	bool punch_probed;   /* set (atomically) once punch_s is measured */
	bool write_unneeded; /* set (atomically) by auto_decide_early(): skip the write probe */
	bool early_seen;     /* set (atomically) once auto_decide_early() has looked */
	bool stop;	     /* set (atomically) by auto_done(): the thread ends at its next step */
	bool punched_all;    /* the scan ended with every run punched provisionally and the
				probes not done: auto_done() says so in reason */
	int probe_err;	     /* auto_probe()'s result */
};

/*
 * Before the scan: makes the temp file beside path, writes 1 MiB there and
 * times single-block punches in it, then writes 4 MiB there for the write
 * bandwidth (timed, the file emptied again).  Each write is written back with
 * sync_file_range(2), which forces no journal commit.  0, or -errno
 * (st->reason says why: auto then punches).
 */
int auto_probe(struct auto_state *st, const char *path);

/*
 * auto_probe() on a thread of its own, so that its writes and punches (tens of
 * milliseconds) overlap the scan's first part instead of coming before it; set
 * st->punch_from_scan first when the scan times its own punches.  0, or -errno when no thread could
 * be started (then nothing ran: call auto_probe()).  auto_probe_wait() joins.
 */
int auto_probe_start(struct auto_state *st, const char *path);

/* Waits for the probe thread, if any: auto_probe()'s result (0 when none ran on a thread). */
int auto_probe_wait(struct auto_state *st);

/* True when auto_probe_wait() would not wait: no probe thread, or it has ended. */
bool auto_probe_done(struct auto_state *st);

/*
 * Chooses from the figures so far: 1 for rewrite, 0 for punch; st->reason says
 * why.  The write probe's figures count only when the punches would cost more
 * than a rewrite at the best write bandwidth it could have: the rate the scan
 * read this file from the device (when it read any from there).
 */
int auto_decide(struct auto_state *st, const struct rewrite_decide_in *in);

/*
 * While the probe thread still runs: auto_decide()'s checks that need only the
 * punch cost (the punches cost too little to matter, no more than a rewrite
 * spends before its first write, or no more than writing what is kept at the
 * scan's read rate).  0 when they settle it (punch, st->reason says why; the
 * thread then skips the write probe), -EAGAIN when the punch cost is not
 * known yet or the write probe is needed.
 */
int auto_decide_early(struct auto_state *st, const struct rewrite_decide_in *in);

/*
 * With st->punch_from_scan: true until the scan has timed AUTO_PROBE_PUNCHES
 * punches of its own, one by one, and passed each to auto_punch_timed(); the
 * last sets punch_s to their median (as the probe file's punches would).
 */
bool auto_wants_punch_time(const struct auto_state *st);
void auto_punch_timed(struct auto_state *st, double seconds);

/*
 * True once the punch cost is known (the scan's timed punches, or the probe
 * file's) and dear (more than 20 us each): auto's scan then stops punching
 * provisionally and puts off the rest until it chooses (before that, what it
 * punches is its first batch, and auto_decide() then weighs only the runs left
 * against a rewrite).
 */
bool auto_punch_dear(struct auto_state *st);

/*
 * The write bandwidth (bytes/s) from the probes: big_bytes written and
 * written back in big_s, small_bytes in small_s.  The difference of the two
 * (net of a small write's fixed cost) when it is at least a quarter of big_s,
 * else big_bytes / big_s (a difference lost in the fixed cost's own jitter
 * would say any bandwidth at all); never above cap_bps when cap_bps > 0.
 */
double auto_write_bps(uint64_t big_bytes, double big_s, uint64_t small_bytes, double small_s,
		      double cap_bps);

/*
 * Tells the probe thread, if any, to end at its next step (it leaves the
 * measurements not taken by then at 0), joins it, removes the temp file, if
 * any, and closes it.
 */
void auto_done(struct auto_state *st);

#endif
