/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmdisk/loopdev/dmdev against the fake kernel (fakekernel.c, -Wl,--wrap=):
 * all-or-nothing attach with a failure injected at every step, the shared
 * base loop's reference counting, refusals, the LOOP_CONFIGURE race and the
 * pre-5.8 fallback, and udev cookies always waited for.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fakekernel.c"

#include "common/cleanup.h"
#include "dmops/table.h"
#include "dmops/vmdisk.h"

static char tmp[64], base_path[128], cow_path[3][128];

static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int setup(void **state)
{
	snprintf(tmp, sizeof(tmp), "/tmp/cowpunch-vmdisk-XXXXXX");
	assert_non_null(mkdtemp(tmp));
	snprintf(base_path, sizeof(base_path), "%s/base.img", tmp);
	make_file(base_path, 4 << 20);
	for (int i = 0; i < 3; i++) {
		snprintf(cow_path[i], sizeof(cow_path[i]), "%s/cow%d", tmp, i);
		unlink(cow_path[i]);
		assert_int_equal(vmdisk_cow_create(cow_path[i], 32 << 20, 8), 0);
	}
	fake_setup();
	return 0;
}

static int teardown(void **state)
{
	unlink(base_path);
	for (int i = 0; i < 3; i++)
		unlink(cow_path[i]);
	rmdir(tmp);
	fake_teardown();
	return 0;
}

static struct vmdisk_spec spec(const char *id, int cow)
{
	return (struct vmdisk_spec){
		.id = id,
		.base_path = base_path,
		.cow_path = cow_path[cow],
		.virt_bytes = 32 << 20,
		.chunk_sectors = 8,
		.cow_dio = LOOPDEV_DIO_AUTO,
	};
}

static uint32_t loop_flags(const char *path)
{
	return fake.loop[atoi(strrchr(path, '/') + 5)].flags;
}

static void assert_nothing_left(void)
{
	assert_int_equal(fake_live_devs(), 0);
	assert_int_equal(fake_live_loops(), 0);
	assert_int_equal(fake.cookies_set, fake.cookies_waited);
}

static void test_attach_detach(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct fake_dev *b, *o;
	char want[600];

	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_false(a.already);
	assert_false(a.base_loop_shared);
	assert_string_equal(a.overlay_path, "/dev/mapper/overlay-vm1");
	assert_int_equal(fake_live_loops(), 2);
	b = fake_dev_find("base-vm1");
	o = fake_dev_find("overlay-vm1");
	assert_non_null(b);
	assert_non_null(o);
	/* linear over the base loop for 4 MiB, zero tail to 32 MiB; snapshot P 8 over base-ID. */
	assert_int_equal(b->ntargets, 2);
	assert_string_equal(b->t[0].type, "linear");
	snprintf(want, sizeof(want), "%s 0", a.base_loop);
	assert_string_equal(b->t[0].params, want);
	assert_int_equal(b->t[0].len, 8192);
	assert_string_equal(b->t[1].type, "zero");
	assert_int_equal(b->t[1].start, 8192);
	assert_int_equal(b->t[1].len, 65536 - 8192);
	assert_string_equal(o->t[0].type, "snapshot");
	snprintf(want, sizeof(want), "253:%u %s P 8", b->minor, a.cow_loop);
	assert_string_equal(o->t[0].params, want);
	/* The base loop is read-only and every loop autoclears; the COW loop does direct I/O. */
	assert_true(loop_flags(a.base_loop) & LO_FLAGS_READ_ONLY);
	assert_false(loop_flags(a.cow_loop) & LO_FLAGS_READ_ONLY);
	assert_false(loop_flags(a.base_loop) & LO_FLAGS_DIRECT_IO);
	assert_true(loop_flags(a.cow_loop) & LO_FLAGS_DIRECT_IO);
	assert_true(a.cow_direct_io);

	/* Attach of an attached VM: nothing done. */
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_true(a.already);
	assert_int_equal(fake_live_devs(), 2);

	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
	/* Detach of a detached VM: fine. */
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
}

static void test_shared_base_refcount(void **state)
{
	struct vmdisk_spec s[3] = {spec("a", 0), spec("b", 1), spec("c", 2)};
	struct vmdisk_attached a[3];

	for (int i = 0; i < 3; i++)
		assert_int_equal(vmdisk_attach(&s[i], &a[i]), 0);
	assert_false(a[0].base_loop_shared);
	assert_true(a[1].base_loop_shared);
	assert_true(a[2].base_loop_shared);
	assert_string_equal(a[0].base_loop, a[1].base_loop);
	assert_string_equal(a[0].base_loop, a[2].base_loop);
	assert_int_equal(fake_live_loops(), 4); /* one base + three COWs */
	assert_int_equal(fake.loops_configured, 4);

	assert_int_equal(vmdisk_detach("a", cow_path[0]), 0);
	assert_int_equal(vmdisk_detach("b", cow_path[1]), 0);
	assert_int_equal(fake_live_loops(), 2); /* the base loop stays for c */
	assert_int_equal(vmdisk_detach("c", cow_path[2]), 0);
	assert_nothing_left();
}

/*
 * Counts the steps of a good attach, then fails each one in turn: nothing may
 * stay behind.  On three kernels: direct I/O taken by LOOP_CONFIGURE, refused
 * by it (a second LOOP_CONFIGURE without), and before 5.8 (LOOP_SET_DIRECT_IO).
 */
static void test_failure_at_every_step(void **state)
{
	static const struct {
		int dio;
		bool no_configure;
	} kernels[] = {{FAKE_DIO_OK, false}, {FAKE_DIO_EINVAL, false}, {FAKE_DIO_OK, true}};
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	unsigned steps, fds;

	fds = fake_count_fds();
	for (size_t kn = 0; kn < ARRAY_SIZE(kernels); kn++) {
		fake.dio = kernels[kn].dio;
		fake.no_configure = kernels[kn].no_configure;
		fake.steps = 0;
		assert_int_equal(vmdisk_attach(&s, &a), 0);
		steps = fake.steps;
		assert_true(steps >= 8);
		print_message("attach on kernel %zu: %u faked kernel operations, each failed in "
			      "turn\n",
			      kn, steps);
		assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
		assert_nothing_left();

		for (unsigned k = 1; k <= steps; k++) {
			fake.steps = 0;
			fake.fail_at = k;
			assert_int_equal(vmdisk_attach(&s, &a), -EIO);
			fake.fail_at = 0;
			assert_nothing_left();
			assert_int_equal(fake_count_fds(), fds);
		}
		/* And after all that, an attach works. */
		assert_int_equal(vmdisk_attach(&s, &a), 0);
		assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
		assert_nothing_left();
	}
}

/* With another VM on the same base, a failed attach must leave that VM's devices alone. */
static void test_failure_keeps_other_vm(void **state)
{
	struct vmdisk_spec s1 = spec("one", 0), s2 = spec("two", 1);
	struct vmdisk_attached a;
	unsigned steps;

	assert_int_equal(vmdisk_attach(&s1, &a), 0);
	fake.steps = 0;
	assert_int_equal(vmdisk_attach(&s2, &a), 0);
	steps = fake.steps;
	assert_int_equal(vmdisk_detach("two", cow_path[1]), 0);
	for (unsigned k = 1; k <= steps; k++) {
		fake.steps = 0;
		fake.fail_at = k;
		assert_int_equal(vmdisk_attach(&s2, &a), -EIO);
		fake.fail_at = 0;
		assert_int_equal(fake_live_devs(), 2);
		assert_int_equal(fake_live_loops(), 2);
		assert_non_null(fake_dev_find("overlay-one"));
	}
	assert_int_equal(vmdisk_detach("one", cow_path[0]), 0);
	assert_nothing_left();
}

static void test_detach_refuses_while_open(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;

	assert_int_equal(vmdisk_attach(&s, &a), 0);
	fake_dev_find("overlay-vm1")->open_count = 1;
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), -EBUSY);
	assert_int_equal(fake_live_devs(), 2);
	assert_int_equal(fake_live_loops(), 2);
	fake_dev_find("overlay-vm1")->open_count = 0;
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
}

/*
 * Detach fsyncs the COW file once every device and loop is gone (what the guest
 * wrote without a flush is durable only then), and fails when the fsync does.
 */
static void test_detach_syncs_cow(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct stat st;

	assert_int_equal(stat(cow_path[0], &st), 0);
	fake.sync_dev = st.st_dev;
	fake.sync_ino = st.st_ino;
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_int_equal(fake.syncs, 0);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_int_equal(fake.syncs, 1);
	assert_int_equal(fake.live_at_sync, 0);
	/* A detach of a detached VM syncs too: the one before may have been killed before it. */
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_int_equal(fake.syncs, 2);
	/* An fsync error is a failed detach: the guest's writes may not be on disk. */
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	fake.sync_errno = EIO;
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), -EIO);
	fake.sync_errno = 0;
	assert_nothing_left();
}

static void test_leftover_base_is_removed(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;

	/* What an attach killed between the two tables leaves: base-ID alone. */
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_int_equal(dmops_dev_remove("overlay-vm1"), 0);
	assert_int_equal(fake_live_devs(), 1);
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_false(a.already);
	assert_int_equal(fake_live_devs(), 2);
	assert_int_equal(fake_live_loops(), 2);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
}

/* A create killed between DM_DEV_CREATE and the table going live leaves an empty device. */
static void test_leftover_overlay_without_table(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct dmops_table empty = {0};
	struct dmops_dev_info info;

	assert_int_equal(dmops_dev_create("overlay-vm1", &empty), 0);
	assert_int_equal(dmops_dev_info("overlay-vm1", &info), 0);
	assert_true(info.exists);
	assert_false(info.live_table);
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_false(a.already);
	assert_int_equal(fake_dev_find("overlay-vm1")->ntargets, 1);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
}

static void test_loop_configure_race(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;

	fake.configure_ebusy = 3; /* three lost races, then a win */
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
	fake.configure_ebusy = 100000; /* always lost: bounded, and nothing left */
	assert_int_equal(vmdisk_attach(&s, &a), -EBUSY);
	fake.configure_ebusy = 0;
	assert_nothing_left();
}

static void test_loop_old_kernel_fallback(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	uint32_t bf, cf;

	fake.no_configure = true;
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	bf = loop_flags(a.base_loop);
	cf = loop_flags(a.cow_loop);
	assert_int_equal(bf, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
	assert_int_equal(cf, LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
	fake.no_configure = false;
}

/*
 * The COW loop's direct I/O as asked (auto, on, off) on kernels that take it,
 * drop it silently (6.1 on tmpfs) or refuse LOOP_CONFIGURE with it, and before
 * LOOP_CONFIGURE (5.8): the mode in effect is what the kernel reports, "on"
 * fails where it is not in effect, the shared base loop never does it.
 */
static void test_cow_direct_io(void **state)
{
	static const struct {
		int dio;
		bool no_configure;
		enum loopdev_dio ask;
		int want; /* 1 direct, 0 buffered, or the error */
	} cases[] = {
		{FAKE_DIO_OK, false, LOOPDEV_DIO_AUTO, 1},
		{FAKE_DIO_OK, false, LOOPDEV_DIO_ON, 1},
		{FAKE_DIO_OK, false, LOOPDEV_DIO_OFF, 0},
		{FAKE_DIO_DROP, false, LOOPDEV_DIO_AUTO, 0},
		{FAKE_DIO_DROP, false, LOOPDEV_DIO_ON, -EOPNOTSUPP},
		{FAKE_DIO_EINVAL, false, LOOPDEV_DIO_AUTO, 0},
		{FAKE_DIO_EINVAL, false, LOOPDEV_DIO_ON, -EOPNOTSUPP},
		{FAKE_DIO_EINVAL, false, LOOPDEV_DIO_OFF, 0},
		{FAKE_DIO_OK, true, LOOPDEV_DIO_AUTO, 1},
		{FAKE_DIO_OK, true, LOOPDEV_DIO_OFF, 0},
		{FAKE_DIO_DROP, true, LOOPDEV_DIO_AUTO, 0},
		{FAKE_DIO_DROP, true, LOOPDEV_DIO_ON, -EOPNOTSUPP},
	};
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		fake.dio = cases[i].dio;
		fake.no_configure = cases[i].no_configure;
		s.cow_dio = cases[i].ask;
		if (cases[i].want < 0) {
			assert_int_equal(vmdisk_attach(&s, &a), cases[i].want);
			assert_nothing_left();
			continue;
		}
		assert_int_equal(vmdisk_attach(&s, &a), 0);
		assert_int_equal(a.cow_direct_io, cases[i].want);
		assert_int_equal(!!(loop_flags(a.cow_loop) & LO_FLAGS_DIRECT_IO), cases[i].want);
		assert_false(loop_flags(a.base_loop) & LO_FLAGS_DIRECT_IO);
		assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
		assert_nothing_left();
	}
}

static void test_refusals(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct loopdev lo;

	/* COW too small for the virtual size (LVM2's formula): refused before anything. */
	s.virt_bytes = 64 << 20;
	assert_int_equal(vmdisk_attach(&s, &a), -EINVAL);
	/* Virtual size below the base image. */
	s.virt_bytes = 1 << 20;
	assert_int_equal(vmdisk_attach(&s, &a), -EINVAL);
	assert_int_equal(fake.steps, 0);
	/* A COW some other loop serves. */
	s = spec("vm1", 0);
	assert_int_equal(loopdev_attach(cow_path[0], false, &lo), 0);
	assert_int_equal(vmdisk_attach(&s, &a), -EBUSY);
	assert_int_equal(fake_live_devs(), 0);
	loopdev_close(&lo);
	/* The base image attached writable somewhere. */
	assert_int_equal(loopdev_attach(base_path, false, &lo), 0);
	assert_int_equal(vmdisk_attach(&s, &a), -EBUSY);
	assert_int_equal(fake_live_devs(), 0);
	loopdev_close(&lo);
	assert_nothing_left();
}

static void test_state_and_status(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct vmdisk_state st;

	assert_int_equal(vmdisk_get_state("vm1", &st), 0);
	assert_false(st.attached);
	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_int_equal(vmdisk_get_state("vm1", &st), 0);
	assert_true(st.attached);
	assert_true(st.base_exists);
	assert_true(st.has_status);
	assert_false(st.status.invalid);
	assert_int_equal(st.status.used_sectors, 16);
	assert_int_equal(st.status.total_sectors, 65800);
	assert_int_equal(st.status.metadata_sectors, 16);
	snprintf(fake.snapshot_status, sizeof(fake.snapshot_status), "Invalid");
	assert_int_equal(vmdisk_get_state("vm1", &st), 0);
	assert_true(st.status.invalid);
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
}

/* A table reload that fails anywhere never leaves the device suspended (I/O would hang). */
static void test_reload_always_resumes(void **state)
{
	struct vmdisk_spec s = spec("vm1", 0);
	struct vmdisk_attached a;
	struct dmops_table t;
	struct dmops_dev_info info;
	unsigned steps;

	assert_int_equal(vmdisk_attach(&s, &a), 0);
	assert_int_equal(dmops_table_base(a.base_loop, 8192, 65536, NULL, &t), 0);
	fake.steps = 0;
	assert_int_equal(dmops_dev_reload("base-vm1", &t), 0);
	steps = fake.steps;
	for (unsigned k = 1; k <= steps; k++) {
		fake.steps = 0;
		fake.fail_at = k;
		assert_int_equal(dmops_dev_reload("base-vm1", &t), -EIO);
		fake.fail_at = 0;
		assert_int_equal(dmops_dev_info("base-vm1", &info), 0);
		assert_true(info.exists);
		assert_false(info.suspended);
	}
	assert_int_equal(vmdisk_detach("vm1", cow_path[0]), 0);
	assert_nothing_left();
}

static void test_bad_ids(void **state)
{
	char b[VMDISK_NAME_MAX], o[VMDISK_NAME_MAX];

	assert_int_equal(vmdisk_names("", b, o), -EINVAL);
	assert_int_equal(vmdisk_names(NULL, b, o), -EINVAL);
	assert_int_equal(vmdisk_names("x", b, o), 0);
	assert_string_equal(b, "base-x");
	assert_string_equal(o, "overlay-x");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_base_refcount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_at_every_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_keeps_other_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_refuses_while_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_syncs_cow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_base_is_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_overlay_without_table, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_loop_configure_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_old_kernel_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cow_direct_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_and_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_always_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
