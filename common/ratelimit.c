/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <time.h>

#include "common/ratelimit.h"

#define NSEC_PER_SEC 1000000000ULL

uint64_t ratelimit_monotonic_ns(void *ctx)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

int ratelimit_sleep_monotonic(void *ctx, uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / NSEC_PER_SEC),
		.tv_nsec = (long)(ns % NSEC_PER_SEC),
	};

	/* clock_nanosleep returns the error number instead of setting errno. */
	return -clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}

void ratelimit_init(struct ratelimit *rl, uint64_t rate, uint64_t burst,
		    const struct ratelimit_clock *clock)
{
	*rl = (struct ratelimit){.rate = rate, .burst = burst, .clock = *clock};
}

/* Past this the full time stops growing: every wait is then UINT64_MAX anyway. */
#define RATELIMIT_FULL_CAP ((unsigned __int128)1 << 120)

/*
 * The bucket's full time after taking n bytes at now: F' = max(F, now) + n / rate,
 * kept as whole nanoseconds (128 bits: n / rate alone can pass 2^64 ns) plus a
 * remainder in 1/rate ns.
 */
static void ratelimit_advance(const struct ratelimit *rl, uint64_t now, uint64_t n,
			      unsigned __int128 *full_ns, uint64_t *full_rem)
{
	unsigned __int128 f = rl->full_ns, total;
	uint64_t rem = rl->full_rem;

	if (f < now) {
		f = now;
		rem = 0;
	}
	total = (unsigned __int128)n * NSEC_PER_SEC + rem;
	f += total / rl->rate;
	*full_ns = f < RATELIMIT_FULL_CAP ? f : RATELIMIT_FULL_CAP;
	*full_rem = (uint64_t)(total % rl->rate);
}

/*
 * The wait for a bucket full at F: the time until it is back at zero, i.e.
 * ceil((F - now) - burst / rate), 0 when that is not positive, UINT64_MAX when
 * it does not fit.  F >= now.
 */
static uint64_t ratelimit_wait_for(const struct ratelimit *rl, uint64_t now,
				   unsigned __int128 full_ns, uint64_t full_rem)
{
	unsigned __int128 t = (unsigned __int128)rl->burst * NSEC_PER_SEC;
	unsigned __int128 d = full_ns - now, tau = t / rl->rate, w;
	uint64_t tau_rem = (uint64_t)(t % rl->rate);

	if (tau > d || (tau == d && full_rem <= tau_rem))
		return 0;
	/* d > tau here, or d == tau with full_rem > tau_rem: the result is >= 1. */
	w = d - tau + (full_rem > tau_rem ? 1 : 0);
	return w < UINT64_MAX ? (uint64_t)w : UINT64_MAX;
}

uint64_t ratelimit_wait_ns(const struct ratelimit *rl, uint64_t n)
{
	unsigned __int128 full_ns;
	uint64_t now, full_rem;

	if (!rl->rate)
		return 0;
	now = rl->clock.now_ns(rl->clock.ctx);
	ratelimit_advance(rl, now, n, &full_ns, &full_rem);
	return ratelimit_wait_for(rl, now, full_ns, full_rem);
}

uint64_t ratelimit_reserve(struct ratelimit *rl, uint64_t n)
{
	uint64_t now;

	if (!rl->rate)
		return 0;
	now = rl->clock.now_ns(rl->clock.ctx);
	ratelimit_advance(rl, now, n, &rl->full_ns, &rl->full_rem);
	return ratelimit_wait_for(rl, now, rl->full_ns, rl->full_rem);
}

int ratelimit_throttle(struct ratelimit *rl, uint64_t n, ratelimit_sleep_fn sleep_fn,
		       void *sleep_ctx)
{
	uint64_t wait = ratelimit_reserve(rl, n);

	return wait ? sleep_fn(sleep_ctx, wait) : 0;
}
