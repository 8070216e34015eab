/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/ratelimit.h"

#define SEC 1000000000ULL
#define MS  1000000ULL

struct fake_clock {
	uint64_t now;
	uint64_t slept; /* total of the fake sleeps */
	int sleeps;
	int sleep_ret;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake_clock *)ctx)->now;
}

/* A sleep that advances the fake clock, as a real one would. */
static int fake_sleep(void *ctx, uint64_t ns)
{
	struct fake_clock *c = ctx;

	c->sleeps++;
	if (c->sleep_ret)
		return c->sleep_ret;
	c->now += ns;
	c->slept += ns;
	return 0;
}

static void setup_rl(struct ratelimit *rl, struct fake_clock *c, uint64_t rate, uint64_t burst)
{
	struct ratelimit_clock clock = {.now_ns = fake_now, .ctx = c};

	ratelimit_init(rl, rate, burst, &clock);
}

/* Waits for a hand-computed sequence at 1000 B/s with a 2000-byte bucket. */
static void test_sequence(void **state)
{
	struct fake_clock c = {.now = 1000 * SEC};
	struct ratelimit rl;

	setup_rl(&rl, &c, 1000, 2000);
	assert_int_equal(ratelimit_reserve(&rl, 1500), 0);	  /* 500 left */
	assert_int_equal(ratelimit_reserve(&rl, 1000), 500 * MS); /* 500 owed */
	/* A query changes nothing: twice the same answer, 500 owed + 1 byte. */
	assert_int_equal(ratelimit_wait_ns(&rl, 1), 501 * MS);
	assert_int_equal(ratelimit_wait_ns(&rl, 1), 501 * MS);
	c.now += 2 * SEC; /* -500 + 2000 = 1500 */
	assert_int_equal(ratelimit_reserve(&rl, 1500), 0);
	assert_int_equal(ratelimit_reserve(&rl, 1), 1 * MS);
	c.now += 250 * MS; /* -1 + 250 = 249 */
	assert_int_equal(ratelimit_reserve(&rl, 300), 51 * MS);
	assert_int_equal(ratelimit_reserve(&rl, 0), 51 * MS);
}

/* A long idle time fills the bucket to the burst, not beyond. */
static void test_burst_cap(void **state)
{
	struct fake_clock c = {.now = 5 * SEC};
	struct ratelimit rl;

	setup_rl(&rl, &c, 1000, 2000);
	assert_int_equal(ratelimit_reserve(&rl, 2000), 0);
	assert_int_equal(ratelimit_reserve(&rl, 2000), 2 * SEC);
	c.now += 3600 * SEC;
	assert_int_equal(ratelimit_reserve(&rl, 2000), 0);
	assert_int_equal(ratelimit_reserve(&rl, 1000), 1 * SEC);
	/* Burst 0: every byte waits for its own time. */
	setup_rl(&rl, &c, 1000, 0);
	assert_int_equal(ratelimit_reserve(&rl, 1), 1 * MS);
	assert_int_equal(ratelimit_reserve(&rl, 1), 2 * MS);
}

static void test_unlimited(void **state)
{
	struct fake_clock c = {.now = 7};
	struct ratelimit rl;

	setup_rl(&rl, &c, 0, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ratelimit_reserve(&rl, UINT64_MAX), 0);
		assert_int_equal(ratelimit_wait_ns(&rl, UINT64_MAX), 0);
		assert_int_equal(ratelimit_throttle(&rl, 1ULL << 40, fake_sleep, &c), 0);
	}
	assert_int_equal(c.sleeps, 0);
}

/* A request larger than the burst is granted, and pays for what the bucket lacks. */
static void test_larger_than_burst(void **state)
{
	struct fake_clock c = {.now = SEC};
	struct ratelimit rl;

	setup_rl(&rl, &c, 1000, 100);
	assert_int_equal(ratelimit_wait_ns(&rl, 10000), 9900 * MS);
	assert_int_equal(ratelimit_reserve(&rl, 10000), 9900 * MS);
	/* The next one waits behind the whole debt: 9.9 s + 0.1 s. */
	assert_int_equal(ratelimit_reserve(&rl, 100), 10 * SEC);
	c.now += 10 * SEC;
	assert_int_equal(ratelimit_reserve(&rl, 1), 1 * MS);
}

/* Rate 3 B/s: a third of a second is not a whole nanosecond; nothing drifts. */
static void test_no_drift(void **state)
{
	struct fake_clock c = {.now = 42};
	struct ratelimit rl;

	setup_rl(&rl, &c, 3, 0);
	for (uint64_t k = 1; k <= 3000000; k++) {
		uint64_t w = ratelimit_reserve(&rl, 1);
		/* ceil(k * 1e9 / 3) */
		uint64_t want = (k * SEC + 2) / 3;

		if (w != want)
			fail_msg("reservation %llu: waited %llu ns, expected %llu",
				 (unsigned long long)k, (unsigned long long)w,
				 (unsigned long long)want);
	}
	assert_int_equal(ratelimit_wait_ns(&rl, 0), 1000000 * SEC);
}

/* Clocks centuries in, idle gaps of decades, and absurd sizes neither wrap nor trap. */
static void test_long_times(void **state)
{
	const uint64_t year = 365 * 86400 * SEC;
	struct fake_clock c = {.now = 1ULL << 62}; /* 146 years */
	struct ratelimit rl;

	setup_rl(&rl, &c, 50ULL << 20, 50ULL << 20);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(ratelimit_reserve(&rl, 50ULL << 20), 0);
		assert_int_equal(ratelimit_reserve(&rl, 50ULL << 20), SEC);
		c.now += 10 * year;
	}
	/* 2^64 - 1 bytes at 1 B/s is 2^94 ns away: the wait saturates, and stays so. */
	setup_rl(&rl, &c, 1, 1000);
	assert_true(ratelimit_reserve(&rl, UINT64_MAX) == UINT64_MAX);
	for (int i = 0; i < 1000; i++)
		assert_true(ratelimit_reserve(&rl, UINT64_MAX) == UINT64_MAX);
	/* A bucket that holds 2^64 - 1 bytes (2^94 ns of filling) grants them at once. */
	setup_rl(&rl, &c, 1, UINT64_MAX);
	assert_int_equal(ratelimit_reserve(&rl, UINT64_MAX), 0);
	assert_int_equal(ratelimit_reserve(&rl, 1), SEC);
	c.now += 1001 * SEC; /* -1 + 1001 */
	assert_int_equal(ratelimit_wait_ns(&rl, 1000), 0);
	assert_int_equal(ratelimit_wait_ns(&rl, 1001), SEC);
	/* At 2^64 - 1 B/s, a byte costs less than a nanosecond: the remainders add up. */
	setup_rl(&rl, &c, UINT64_MAX, 0);
	assert_int_equal(ratelimit_reserve(&rl, 1), 1);
	assert_int_equal(ratelimit_reserve(&rl, 1ULL << 40), 60);
	assert_int_equal(ratelimit_reserve(&rl, UINT64_MAX), 1000000060);
}

/* ratelimit_throttle sleeps exactly the wait, through the injected function only. */
static void test_throttle(void **state)
{
	struct fake_clock c = {.now = SEC};
	struct ratelimit rl;

	setup_rl(&rl, &c, 1 << 20, 1 << 20);
	for (int i = 0; i < 11; i++)
		assert_int_equal(ratelimit_throttle(&rl, 1 << 20, fake_sleep, &c), 0);
	/* The first MiB came from the full bucket, the other ten at 1 MiB/s. */
	assert_int_equal(c.slept, 10 * SEC);
	assert_int_equal(c.sleeps, 10);
	c.sleep_ret = -EINTR;
	assert_int_equal(ratelimit_throttle(&rl, 1, fake_sleep, &c), -EINTR);
}

/*
 * Random requests and clock steps against an independent model that counts
 * tokens (in 1e-9 bytes) instead of the bucket's full time: every wait equal.
 */
static void test_against_token_model(void **state)
{
	static const uint64_t rates[] = {1, 3, 1000, 7777777, 50ULL << 20, 3ULL << 30};
	unsigned seed = 12345;

	for (size_t ri = 0; ri < sizeof(rates) / sizeof(rates[0]); ri++) {
		uint64_t rate = rates[ri], burst = rate / 2 + 17;
		struct fake_clock c = {.now = 1ULL << 40};
		__int128 tokens = (__int128)burst * SEC, cap = (__int128)burst * SEC;
		uint64_t last = c.now;
		struct ratelimit rl;

		setup_rl(&rl, &c, rate, burst);
		for (int i = 0; i < 200000; i++) {
			uint64_t n = (uint64_t)rand_r(&seed) % (2 * burst + 2);
			uint64_t step = (uint64_t)rand_r(&seed) % 4 == 0
						? (uint64_t)rand_r(&seed) % (3 * SEC)
						: (uint64_t)rand_r(&seed) % 1000;
			uint64_t want, got;

			c.now += step;
			tokens += (__int128)rate * (c.now - last);
			if (tokens > cap)
				tokens = cap;
			last = c.now;
			tokens -= (__int128)n * SEC;
			want = tokens >= 0 ? 0 : (uint64_t)((-tokens + rate - 1) / rate);
			got = ratelimit_reserve(&rl, n);
			if (got != want)
				fail_msg(
					"rate %llu, request %d (%llu bytes): waited %llu, model %llu",
					(unsigned long long)rate, i, (unsigned long long)n,
					(unsigned long long)got, (unsigned long long)want);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequence),  cmocka_unit_test(test_burst_cap),
		cmocka_unit_test(test_unlimited), cmocka_unit_test(test_larger_than_burst),
		cmocka_unit_test(test_no_drift),  cmocka_unit_test(test_long_times),
		cmocka_unit_test(test_throttle),  cmocka_unit_test(test_against_token_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
