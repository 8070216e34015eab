/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A token bucket over bytes, with the clock injected so that tests (and the
 * agent's cycle) decide what "now" is.  The library never sleeps by itself:
 * ratelimit_reserve() says how long the caller must wait, and only
 * ratelimit_throttle() waits, through a sleep function the caller passes.
 *
 * Model: the bucket holds at most `burst` bytes and fills at `rate` bytes per
 * second; it starts full.  A reservation takes its bytes at once and may drive
 * the bucket below zero (a debt); the caller then waits until the debt is paid
 * back, i.e. until the bucket would be at zero again.  So a request larger than
 * the burst is allowed, and waits (n - burst) / rate on a full bucket; and over
 * any time T, at most burst + rate * T bytes are granted.  The arithmetic is
 * exact (integer nanoseconds with the remainder kept), so there is no drift
 * however long it runs.
 */
#ifndef COWPUNCH_COMMON_RATELIMIT_H
#define COWPUNCH_COMMON_RATELIMIT_H

#include <stdint.h>

struct ratelimit_clock {
	uint64_t (*now_ns)(void *ctx); /* a monotonic clock in nanoseconds */
	void *ctx;
};

/* Sleeps ns nanoseconds; 0, or a -errno that ratelimit_throttle() hands back. */
typedef int (*ratelimit_sleep_fn)(void *ctx, uint64_t ns);

struct ratelimit {
	uint64_t rate;	/* bytes per second; 0 = unlimited */
	uint64_t burst; /* bytes the bucket holds when full */
	struct ratelimit_clock clock;
	/*
	 * The time at which the bucket is full again, in nanoseconds of the clock,
	 * as full_ns + full_rem / rate (full_rem < rate).  0 = full from the start.
	 * 128 bits: a single request of 2^64 - 1 bytes at 1 B/s is 2^94 ns away.
	 */
	unsigned __int128 full_ns;
	uint64_t full_rem;
};

/* CLOCK_MONOTONIC, for ratelimit_clock.now_ns (ctx unused). */
uint64_t ratelimit_monotonic_ns(void *ctx);

/* clock_nanosleep on CLOCK_MONOTONIC, for ratelimit_throttle(); -EINTR when a signal handler ran. */
int ratelimit_sleep_monotonic(void *ctx, uint64_t ns);

/* Sets up a full bucket.  rate 0 = unlimited (burst is then ignored). */
void ratelimit_init(struct ratelimit *rl, uint64_t rate, uint64_t burst,
		    const struct ratelimit_clock *clock);

/*
 * How long, in nanoseconds from now, a reservation of n bytes would have to
 * wait.  Changes nothing.  Always 0 when unlimited.
 */
uint64_t ratelimit_wait_ns(const struct ratelimit *rl, uint64_t n);

/*
 * Takes n bytes from the bucket now and returns how long, in nanoseconds from
 * now, the caller must wait before using them (0 when the bucket held them).
 * Saturates at UINT64_MAX (584 years) instead of overflowing.
 */
uint64_t ratelimit_reserve(struct ratelimit *rl, uint64_t n);

/*
 * ratelimit_reserve(), then waits through sleep_fn(sleep_ctx, ns) when needed.
 * Returns 0, or what sleep_fn returned when it failed (the bytes stay taken).
 */
int ratelimit_throttle(struct ratelimit *rl, uint64_t n, ratelimit_sleep_fn sleep_fn,
		       void *sleep_ctx);

#endif
