/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch doctor's checks that need no device-mapper: the discard verdict
 * `create --discard` asks, io_uring's blocks told apart (io_uring_queue_init
 * wrapped, /proc faked), O_DIRECT and PUNCH_HOLE on a real file system, stale
 * locks and records found and fixed in a real folder, and leftover loops
 * found in a faked /sys.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <cmocka.h>
#include <liburing.h>

#include "common/cleanup.h"
#include "host/doctor.h"
#include "host/vmstore.h"

static char dir[64];
static int uring_result; /* what the wrapped io_uring_queue_init returns (0: the real one) */

int __real_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	if (uring_result)
		return uring_result;
	return __real_io_uring_queue_init(entries, ring, flags);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/cowpunch-doctor-XXXXXX");
	assert_non_null(mkdtemp(dir));
	uring_result = 0;
	doctor_proc_dir = "/proc";
	doctor_sys_dir = "/sys";
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void put_file(const char *path, const char *text)
{
	char cmd[PATH_MAX];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(cmd), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return access(path, F_OK) == 0;
}

static void free_check(struct doctor_check *c)
{
	free(c->items);
	memset(c, 0, sizeof(*c));
}

/* The item of c named name (NULL when none). */
static const struct doctor_item *item(const struct doctor_check *c, const char *name)
{
	for (unsigned i = 0; i < c->nitems; i++)
		if (strcmp(c->items[i].name, name) == 0)
			return &c->items[i];
	return NULL;
}

static void test_verdict(void **state)
{
	struct host_error err = {""};
	char path[PATH_MAX];

	/* No result kept: refused, saying what to run. */
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#1 Debian", &err),
			 -EPERM);
	assert_non_null(strstr(err.msg, "has not run"));
	assert_non_null(strstr(err.msg, "cowpunch doctor"));
	assert_false(exists("%s/.doctor", dir)); /* asking makes nothing */

	assert_int_equal(doctor_discard_record(dir, "6.1.0-56-cloud-amd64", "#1 Debian",
					       DOCTOR_DISCARD_SAFE, "left chunk 200 as written"),
			 0);
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#1 Debian", &err), 0);
	/* Another build of the same release, another release: refused. */
	err.msg[0] = '\0';
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#2 Debian", &err),
			 -EPERM);
	assert_non_null(strstr(err.msg, "another build"));
	assert_int_equal(doctor_discard_verdict(dir, "6.12.57-cloud-amd64", "#1 Debian", &err),
			 -EPERM);

	assert_int_equal(doctor_discard_record(dir, "6.1.0-56-cloud-amd64", "#1 Debian",
					       DOCTOR_DISCARD_CORRUPTS, "changed 1024 bytes"),
			 0);
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#1 Debian", &err),
			 -EPERM);
	assert_non_null(strstr(err.msg, "corrupts"));
	assert_non_null(strstr(err.msg, "changed 1024 bytes"));

	assert_int_equal(doctor_discard_record(dir, "6.1.0-56-cloud-amd64", "#1 Debian",
					       DOCTOR_DISCARD_UNSUPPORTED, "no discard_zeroes_cow"),
			 0);
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#1 Debian", &err),
			 -EPERM);
	assert_non_null(strstr(err.msg, "no discard_zeroes_cow"));

	/* Damaged: refused as such.  A '/' in a release cannot leave .doctor. */
	snprintf(path, sizeof(path), "%s/.doctor/discard-6.1.0-56-cloud-amd64.json", dir);
	put_file(path, "{\"result\": \"safe\"");
	assert_int_equal(doctor_discard_verdict(dir, "6.1.0-56-cloud-amd64", "#1 Debian", &err),
			 -EBADMSG);
	assert_int_equal(doctor_discard_record(dir, "a/../b", "v", DOCTOR_DISCARD_SAFE, ""), 0);
	assert_true(exists("%s/.doctor/discard-a_.._b.json", dir));
	assert_int_equal(doctor_discard_verdict(dir, "a/../b", "v", &err), 0);
}

static void uring_case(int r, const char *disabled, const char *seccomp, const char *want)
{
	char path[PATH_MAX], text[64];
	struct doctor_check c = {0};

	snprintf(path, sizeof(path), "%s/proc/sys/kernel/io_uring_disabled", dir);
	put_file(path, disabled);
	snprintf(path, sizeof(path), "%s/proc/self/status", dir);
	snprintf(text, sizeof(text), "Name:\tcowpunch\nSeccomp:\t%s\n", seccomp);
	put_file(path, text);
	snprintf(path, sizeof(path), "%s/proc", dir);
	doctor_proc_dir = path;
	uring_result = r;
	doctor_check_io_uring(&c);
	assert_string_equal(c.name, "io_uring");
	assert_int_equal(c.status, DOCTOR_WARNING);
	if (!strstr(c.reason, want))
		fail_msg("reason '%s' lacks '%s'", c.reason, want);
	assert_non_null(strstr(c.action, "libaio"));
	doctor_proc_dir = "/proc";
}

static void test_io_uring(void **state)
{
	uring_case(-EPERM, "2\n", "0", "kernel.io_uring_disabled is 2");
	uring_case(-EPERM, "1\n", "0", "kernel.io_uring_disabled is 1");
	uring_case(-EPERM, "0\n", "2", "seccomp filter");
	uring_case(-ENOSYS, "0\n", "2", "seccomp filter");
	uring_case(-ENOSYS, "0\n", "0", "CONFIG_IO_URING");
}

static void test_state_fs(void **state)
{
	struct doctor_check dio = {0}, punch = {0};
	char state_dir[PATH_MAX];

	/* A state directory that does not exist yet is made, as create would. */
	snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
	doctor_check_state_fs(state_dir, &dio, &punch);
	assert_string_equal(punch.name, "punch-hole");
	if (punch.status != DOCTOR_OK)
		fail_msg("punch-hole on %s: %s", dir, punch.reason);
	assert_non_null(strstr(punch.reason, "dropped st_blocks 128 -> 64"));
	assert_int_not_equal(dio.status, DOCTOR_FAIL);
	/* Nothing left but the (empty) scratch folder. */
	assert_true(exists("%s/.doctor", state_dir));
	assert_int_equal(rmdir(strcat(state_dir, "/.doctor")), 0);
}

static void mkrecord(const char *state, const char *id, const char *base)
{
	struct vmstore_record rec;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	snprintf(rec.base_path, sizeof(rec.base_path), "%s", base);
	rec.base.size = 4096;
	memset(rec.base.fingerprint, 'a', VMSTORE_FINGERPRINT_LEN);
	rec.virt_bytes = 8 << 20;
	rec.chunk_bytes = 4096;
	rec.cow_bytes = 9 << 20;
	rec.cow_dio = LOOPDEV_DIO_AUTO;
	rec.cow_dio_active = -1;
	rec.created = 1;
	assert_int_equal(vmstore_record_save(state, &rec), 0);
}

static void test_locks(void **state)
{
	struct doctor_check c = {0};
	char path[PATH_MAX];
	_cleanup_close_ int held = -1;

	/* A VM with its record, a temp record of a dead writer and one of a live one (us). */
	mkrecord(dir, "vm1", "/base.img");
	snprintf(path, sizeof(path), "%s/vm1/lock", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/vm1/vm.json.tmp.999999999", dir);
	put_file(path, "{");
	snprintf(path, sizeof(path), "%s/vm1/vm.json.tmp.%ld", dir, (long)getpid());
	put_file(path, "{");
	/* A lock alone, a killed create (marker + COW), a lock held now (a create under way). */
	snprintf(path, sizeof(path), "%s/gone/lock", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/half/lock", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/half/creating", dir);
	put_file(path, "{}");
	snprintf(path, sizeof(path), "%s/half/cow", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/busy/lock", dir);
	put_file(path, "");
	held = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(held >= 0 && flock(held, LOCK_EX) == 0);
	/* A killed self-test's scratch folder, and a live one's (ours). */
	snprintf(path, sizeof(path), "%s/.doctor/selftest-999999999-abc/cow", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/.doctor/selftest-%ld-abc/cow", dir, (long)getpid());
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/.doctor/fscheck-999999999", dir);
	put_file(path, "x");

	doctor_check_locks(dir, false, &c);
	assert_string_equal(c.name, "stale-locks");
	assert_int_equal(c.status, DOCTOR_WARNING);
	assert_int_equal(c.nitems, 5);
	snprintf(path, sizeof(path), "%s/vm1/vm.json.tmp.999999999", dir);
	assert_non_null(item(&c, path));
	assert_string_equal(item(&c, path)->kind, "temp");
	snprintf(path, sizeof(path), "%s/gone/lock", dir);
	assert_string_equal(item(&c, path)->kind, "lock");
	snprintf(path, sizeof(path), "%s/half/creating", dir);
	assert_string_equal(item(&c, path)->kind, "create");
	snprintf(path, sizeof(path), "%s/.doctor/selftest-999999999-abc", dir);
	assert_string_equal(item(&c, path)->kind, "selftest");
	assert_true(exists("%s/gone/lock", dir)); /* without --fix nothing goes */
	free_check(&c);

	doctor_check_locks(dir, true, &c);
	assert_int_equal(c.status, DOCTOR_OK);
	assert_int_equal(c.nitems, 5);
	for (unsigned i = 0; i < c.nitems; i++)
		assert_true(c.items[i].fixed);
	free_check(&c);
	assert_false(exists("%s/gone", dir));
	assert_false(exists("%s/half", dir));
	assert_false(exists("%s/vm1/vm.json.tmp.999999999", dir));
	assert_false(exists("%s/.doctor/selftest-999999999-abc", dir));
	assert_false(exists("%s/.doctor/fscheck-999999999", dir));
	/* What is in use or explained stays. */
	assert_true(exists("%s/vm1/vm.json", dir));
	assert_true(exists("%s/vm1/lock", dir));
	assert_true(exists("%s/vm1/vm.json.tmp.%ld", dir, (long)getpid()));
	assert_true(exists("%s/busy/lock", dir));
	assert_true(exists("%s/.doctor/selftest-%ld-abc/cow", dir, (long)getpid()));

	doctor_check_locks(dir, false, &c);
	assert_int_equal(c.status, DOCTOR_OK);
	assert_int_equal(c.nitems, 0);
	free_check(&c);
}

static void test_records(void **state)
{
	struct doctor_check c = {0};
	char path[PATH_MAX], base[PATH_MAX];

	snprintf(base, sizeof(base), "%s/base.img", dir);
	put_file(base, "");
	mkrecord(dir, "ok1", base);
	snprintf(path, sizeof(path), "%s/ok1/cow", dir);
	put_file(path, "");
	doctor_check_records(dir, &c);
	if (c.status != DOCTOR_OK)
		fail_msg("records: %s: %s", c.reason, c.nitems ? c.items[0].detail : "");
	free_check(&c);

	mkrecord(dir, "nocow", base);			  /* its COW is gone */
	mkrecord(dir, "nobase", "/nonexistent/base.img"); /* its base is gone */
	snprintf(path, sizeof(path), "%s/nobase/cow", dir);
	put_file(path, "");
	snprintf(path, sizeof(path), "%s/lost/cow", dir); /* a COW without a record */
	put_file(path, "");
	doctor_check_records(dir, &c);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_int_equal(c.nitems, 3);
	assert_non_null(strstr(item(&c, "nocow")->detail, "is gone"));
	assert_non_null(strstr(item(&c, "nobase")->detail, "/nonexistent/base.img"));
	assert_string_equal(item(&c, path)->kind, "cow");
	assert_non_null(strstr(c.action, "never touches"));
	free_check(&c);
}

/* /sys/block/NAME/... of a faked loop backed by file. */
static void fake_loop(const char *sys, const char *name, const char *file, int minor,
		      bool autoclear, bool held)
{
	char path[PATH_MAX], text[PATH_MAX + 2];

	snprintf(path, sizeof(path), "%s/block/%s/loop/backing_file", sys, name);
	snprintf(text, sizeof(text), "%s\n", file);
	put_file(path, text);
	snprintf(path, sizeof(path), "%s/block/%s/loop/autoclear", sys, name);
	put_file(path, autoclear ? "1\n" : "0\n");
	snprintf(path, sizeof(path), "%s/block/%s/dev", sys, name);
	snprintf(text, sizeof(text), "7:%d\n", minor);
	put_file(path, text);
	snprintf(path, sizeof(path), "%s/block/%s/holders/%s", sys, name, held ? "dm-0" : ".keep");
	put_file(path, "");
}

static void test_loops(void **state)
{
	struct doctor_check c = {0};
	char sys[PATH_MAX], st[PATH_MAX], real[PATH_MAX], file[PATH_MAX + 16];

	snprintf(sys, sizeof(sys), "%s/sys", dir);
	snprintf(st, sizeof(st), "%s/state", dir);
	assert_int_equal(mkdir(st, 0700), 0);
	assert_non_null(realpath(st, real));
	snprintf(file, sizeof(file), "%s/stray.img", real);
	fake_loop(sys, "loop40", file, 40, false, false); /* the leftover */
	fake_loop(sys, "loop41", file, 41, false, true);  /* a dm device holds it */
	fake_loop(sys, "loop42", file, 42, true, false);  /* autoclear: being set up */
	fake_loop(sys, "loop43", "/srv/images/base.img", 43, false, false); /* not ours */
	snprintf(file, sizeof(file), "%s-other/cow", real); /* a prefix, not under */
	fake_loop(sys, "loop44", file, 44, false, false);
	doctor_sys_dir = sys;
	doctor_check_devices(st, false, &c);
	doctor_sys_dir = "/sys";
	assert_string_equal(c.name, "leftover-devices");
	assert_int_equal(c.nitems, 1);
	assert_string_equal(c.items[0].kind, "loop");
	assert_string_equal(c.items[0].name, "/dev/loop40");
	assert_true(c.items[0].fixable);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_non_null(strstr(c.action, "--fix"));
	free_check(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_verdict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loops, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
