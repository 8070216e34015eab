/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The discard self-test of cowpunch doctor leaves nothing behind, whatever
 * fails: against dmops' link-time fake kernel (tests/unit/dmops/fakekernel.c),
 * every faked loop and dm operation of a run is failed in turn, and after each
 * no fake loop is bound, no fake dm device exists, the scratch folder is gone,
 * no result is recorded (create --discard stays refused) and no descriptor is
 * leaked.  (The fake makes no /dev/mapper node: an unfailed run stops at the
 * open of its device, which is also a failure to clean up after.)
 *
 * And the dm side of the leftover check: which devices named like cowpunch's
 * it reports, which --fix removes, and which it must leave alone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <cmocka.h>

#include "../dmops/fakekernel.c"

#include "common/cleanup.h"
#include "dmops/dmdev.h"
#include "dmops/loopdev.h"
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

/* Creates fake dm device name with one target (type, params). */
static void mkdev(const char *name, const char *type, const char *params)
{
	struct dmops_table t = {.count = 1};

	t.targets[0].length = 8;
	snprintf(t.targets[0].type, sizeof(t.targets[0].type), "%s", type);
	snprintf(t.targets[0].params, sizeof(t.targets[0].params), "%s", params);
	assert_int_equal(dmops_dev_create(name, &t), 0);
}

static void put(const char *path, const char *text)
{
	char cmd[PATH_MAX + 32];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(cmd), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const struct doctor_item *find(const struct doctor_check *c, const char *name)
{
	for (unsigned i = 0; i < c->nitems; i++)
		if (strcmp(c->items[i].name, name) == 0)
			return &c->items[i];
	return NULL;
}

static void test_dm_leftovers(void **state)
{
	char st[128], sys[128], path[PATH_MAX], file[128], params[256], live[64];
	struct doctor_check c = {0};
	struct dmops_dev_info info;
	struct loopdev lo;
	_cleanup_close_ int held = -1;

	snprintf(st, sizeof(st), "%s/state", dir);
	snprintf(sys, sizeof(sys), "%s/sys", dir);
	/* vm1 has a record: its devices are explained. */
	snprintf(path, sizeof(path), "%s/vm1/vm.json", st);
	put(path, "{}");
	mkdev("base-vm1", "zero", "");
	mkdev("overlay-vm1", "zero", "");
	/* A create of vm2 under way holds vm2's lock: its base is not a leftover. */
	snprintf(path, sizeof(path), "%s/vm2/lock", st);
	put(path, "");
	held = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(held >= 0 && flock(held, LOCK_EX) == 0);
	mkdev("base-vm2", "zero", "");
	/* Leftovers: no record; one open; a dead doctor's; a live doctor's (ours) is not. */
	mkdev("base-ghost", "zero", "");
	mkdev("overlay-busy", "zero", "");
	fake_dev_find("overlay-busy")->open_count = 1;
	mkdev("cowpunch-doctor-999999999-origin", "zero", "");
	snprintf(live, sizeof(live), "cowpunch-doctor-%ld-snap", (long)getpid());
	mkdev(live, "zero", "");
	mkdev("vg0-root", "zero", "");	  /* not cowpunch's name */
	mkdev("base-bad id", "zero", ""); /* not a VM ID */
	/* Another state directory's VM: an overlay whose COW loop's file is elsewhere. */
	snprintf(file, sizeof(file), "%s/other-cow", dir);
	put(file, "");
	assert_int_equal(loopdev_attach(file, false, &lo), 0);
	mkdev("base-other", "zero", "");
	assert_int_equal(dmops_dev_info("base-other", &info), 0);
	snprintf(params, sizeof(params), "253:%u %s P 8", info.minor, lo.path);
	mkdev("overlay-other", "snapshot", params);
	fake_dev_find("base-other")->open_count = 1; /* as the kernel counts its overlay */
	loopdev_close(&lo);
	snprintf(path, sizeof(path), "%s/dev/block/7:%d/loop/backing_file", sys, lo.index);
	put(path, "/srv/other-state/vm9/cow\n");
	assert_int_equal(mkdir(st, 0700) < 0 && errno != EEXIST, 0);

	doctor_sys_dir = sys;
	doctor_check_devices(st, false, &c);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_int_equal(c.nitems, 5);
	assert_true(find(&c, "base-ghost")->fixable);
	assert_true(find(&c, "cowpunch-doctor-999999999-origin")->fixable);
	assert_false(find(&c, "overlay-busy")->fixable);
	assert_false(find(&c, "overlay-other")->fixable);
	assert_false(find(&c, "base-other")->fixable);
	assert_non_null(strstr(find(&c, "overlay-other")->detail, "/srv/other-state/vm9/cow"));
	assert_int_equal(fake_live_devs(), 11); /* nothing removed without --fix */
	free(c.items);
	memset(&c, 0, sizeof(c));

	doctor_check_devices(st, true, &c);
	doctor_sys_dir = "/sys";
	assert_int_equal(c.nitems, 5);
	assert_true(find(&c, "base-ghost")->fixed);
	assert_true(find(&c, "cowpunch-doctor-999999999-origin")->fixed);
	assert_non_null(strstr(find(&c, "overlay-busy")->error, "in use"));
	assert_non_null(strstr(find(&c, "overlay-other")->error, "outside"));
	assert_non_null(strstr(find(&c, "base-other")->error, "in use"));
	assert_int_equal(c.status, DOCTOR_FAIL);
	free(c.items);
	assert_null(fake_dev_find("base-ghost"));
	assert_null(fake_dev_find("cowpunch-doctor-999999999-origin"));
	assert_int_equal(fake_live_devs(), 9);
	{
		const char *keep[] = {"base-vm1",     "overlay-vm1", "base-vm2",
				      "overlay-busy", "base-other",  "overlay-other",
				      "vg0-root",     "base-bad id", live};

		for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
			if (!fake_dev_find(keep[i]))
				fail_msg("--fix removed %s", keep[i]);
	}
	/* Unplug what the fake still holds, for the teardown. */
	for (int i = 0; i < FAKE_DEVS; i++)
		fake.dev[i].exists = false;
	fake_gc();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_failure_cleans_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_leftovers, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
