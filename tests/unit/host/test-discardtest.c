/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The discard self-test of cowpunch doctor leaves nothing behind, whatever
 * fails: against dmops' link-time fake kernel (tests/unit/dmops/fakekernel.c),
 * every faked loop and dm operation of a run is failed in turn, and after each
 * no fake loop is bound, no fake dm device exists, the scratch folder is gone,
 * no result is recorded (create --discard stays refused) and no descriptor is
 * leaked.  (The fake makes no /dev/mapper node: an unfailed run stops at the
 * open of its device, which is also a failure to clean up after.)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../dmops/fakekernel.c"

#include "common/cleanup.h"
#include "host/doctor.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/cowpunch-discardtest-XXXXXX");
	assert_non_null(mkdtemp(dir));
	fake_setup();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fake_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* Nothing of the self-test is left: devices, loops, scratch files, a result. */
static void assert_nothing_left(const struct doctor_check *c)
{
	char path[128];
	struct host_error err = {""};

	if (fake_live_devs() || fake_live_loops())
		fail_msg("%u dm devices, %u loops left after: %s", fake_live_devs(),
			 fake_live_loops(), c->reason);
	snprintf(path, sizeof(path), "%s/.doctor", dir);
	if (rmdir(path) < 0) /* empty: no scratch folder, no record */
		fail_msg("%s is not empty (%s) after: %s", path, strerror(errno), c->reason);
	assert_int_equal(c->status, DOCTOR_FAIL);
	assert_int_equal(doctor_discard_verdict(dir, "r", "v", &err), -EPERM);
}

/* After a failed removal: the self-test's devices are the ones left; removed here. */
static void assert_cleanup_failure_reported(const struct doctor_check *c)
{
	char name[64];

	snprintf(name, sizeof(name), "cowpunch-doctor-%ld-snap", (long)getpid());
	assert_non_null(strstr(c->reason, "CLEAN-UP FAILED"));
	assert_non_null(strstr(c->reason, name));
	assert_int_equal(c->status, DOCTOR_FAIL);
	for (int i = 0; i < FAKE_DEVS; i++)
		if (fake.dev[i].exists) {
			assert_non_null(strstr(fake.dev[i].name, "cowpunch-doctor-"));
			fake.dev[i].exists = false;
		}
	fake_gc();
	assert_int_equal(fake_live_loops(), 0);
}

static void test_every_failure_cleans_up(void **state)
{
	struct doctor_check c = {0};
	unsigned steps, fds = fake_count_fds(), removal_failures = 0;
	char cmd[160];

	fake.steps = 0;
	doctor_discard_selftest(dir, &c);
	steps = fake.steps;
	assert_string_equal(c.name, "discard-selftest");
	assert_non_null(strstr(c.reason, "could not run"));
	assert_nothing_left(&c);
	/* Two loops, two dm devices, their infos: the set-up the faults are injected into. */
	assert_true(steps >= 8);
	assert_int_equal(fake.loops_configured, 2);
	print_message("self-test: %u faked kernel operations, each failed in turn\n", steps);
	for (unsigned k = 1; k <= steps; k++) {
		fake.steps = 0;
		fake.fail_at = k;
		memset(&c, 0, sizeof(c));
		doctor_discard_selftest(dir, &c);
		fake.fail_at = 0;
		if (strstr(c.reason, "CLEAN-UP FAILED")) {
			/* A failed removal cannot be undone: it is said, and what is left named. */
			assert_cleanup_failure_reported(&c);
			removal_failures++;
			snprintf(cmd, sizeof(cmd), "rm -rf '%s/.doctor/selftest-'*", dir);
			assert_int_equal(system(cmd), 0);
		}
		assert_nothing_left(&c);
		assert_int_equal(fake_count_fds(), fds);
	}
	/* Only the removals themselves (snapshot, origin: info and remove each) may leave any. */
	assert_true(removal_failures >= 1 && removal_failures <= 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_failure_cleans_up, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
