/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VM records: IDs, JSON round trip, damaged records refused, atomic writes, locks, identity. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "host/vmstore.h"
#include "common/cleanup.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/cowpunch-vmstore-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct vmstore_record sample(void)
{
	struct vmstore_record r;

	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "vm-1.a_b");
	snprintf(r.base_path, sizeof(r.base_path), "/srv/images/base \"q\".ext4");
	r.base.size = 16 << 20;
	r.base.dev = 2049;
	r.base.ino = 123456789;
	r.base.mtime_ns = 1764240000123456789LL;
	memset(r.base.fingerprint, 'a', VMSTORE_FINGERPRINT_LEN);
	r.virt_bytes = 32 << 20;
	r.chunk_bytes = 4096;
	r.cow_bytes = (1 + 8192 + 33) * 4096ULL;
	r.discard = true;
	r.cow_dio = LOOPDEV_DIO_ON;
	r.cow_dio_active = 1;
	r.created = 1764240000;
	r.attached = 1764240100;
	r.last_reclaim.present = true;
	r.last_reclaim.time = 1764240200;
	r.last_reclaim.reclaimed_bytes = 4190208;
	r.last_reclaim.allocated_before = 8876032;
	r.last_reclaim.allocated_after = 4685824;
	r.last_reclaim.seconds = 0.25;
	return r;
}

static void test_ids(void **state)
{
	char id64[65], id65[66];

	memset(id64, 'x', 64);
	id64[64] = '\0';
	memset(id65, 'x', 65);
	id65[65] = '\0';
	assert_true(vmstore_id_valid("a"));
	assert_true(vmstore_id_valid("vm-1.a_b"));
	assert_true(vmstore_id_valid("0"));
	assert_true(vmstore_id_valid(id64));
	assert_false(vmstore_id_valid(id65));
	assert_false(vmstore_id_valid(""));
	assert_false(vmstore_id_valid(NULL));
	assert_false(vmstore_id_valid("-a"));
	assert_false(vmstore_id_valid(".a"));
	assert_false(vmstore_id_valid("_a"));
	assert_false(vmstore_id_valid("a/b"));
	assert_false(vmstore_id_valid(".."));
	assert_false(vmstore_id_valid("a b"));
	assert_false(vmstore_id_valid("a\n"));
	assert_false(vmstore_id_valid("é"));
}

static void test_round_trip(void **state)
{
	struct vmstore_record r = sample(), back;
	char *json = NULL, err[256] = "";

	assert_int_equal(vmstore_record_format(&r, &json), 0);
	assert_int_equal(vmstore_record_parse(json, strlen(json), &back, err, sizeof(err)), 0);
	assert_string_equal(back.id, r.id);
	assert_string_equal(back.base_path, r.base_path);
	assert_int_equal(back.base.size, r.base.size);
	assert_int_equal(back.base.dev, r.base.dev);
	assert_int_equal(back.base.ino, r.base.ino);
	assert_int_equal(back.base.mtime_ns, r.base.mtime_ns);
	assert_string_equal(back.base.fingerprint, r.base.fingerprint);
	assert_int_equal(back.virt_bytes, r.virt_bytes);
	assert_int_equal(back.chunk_bytes, r.chunk_bytes);
	assert_int_equal(back.cow_bytes, r.cow_bytes);
	assert_true(back.discard);
	assert_int_equal(back.cow_dio, LOOPDEV_DIO_ON);
	assert_int_equal(back.cow_dio_active, 1);
	assert_int_equal(back.created, r.created);
	assert_int_equal(back.attached, r.attached);
	assert_int_equal(back.detached, 0);
	assert_true(back.last_reclaim.present);
	assert_int_equal(back.last_reclaim.time, r.last_reclaim.time);
	assert_int_equal(back.last_reclaim.reclaimed_bytes, 4190208);
	assert_int_equal(back.last_reclaim.allocated_after, 4685824);
	free(json);
}

/* The direct I/O fields: every value round trips; a record written before them means auto. */
static void test_direct_io_fields(void **state)
{
	static const enum loopdev_dio modes[] = {LOOPDEV_DIO_OFF, LOOPDEV_DIO_AUTO, LOOPDEV_DIO_ON};
	struct vmstore_record r = sample(), back;
	char *json = NULL, err[256] = "";
	enum loopdev_dio d;
	const char *old;
	json_object *o;

	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		for (int active = -1; active <= 1; active++) {
			r.cow_dio = modes[i];
			r.cow_dio_active = active;
			assert_int_equal(vmstore_record_format(&r, &json), 0);
			assert_int_equal(
				vmstore_record_parse(json, strlen(json), &back, err, sizeof(err)),
				0);
			assert_int_equal(back.cow_dio, modes[i]);
			assert_int_equal(back.cow_dio_active, active);
			free(json);
		}
	/* Without both fields (as before they existed): auto, not known. */
	r.cow_dio = LOOPDEV_DIO_OFF;
	r.cow_dio_active = 0;
	assert_int_equal(vmstore_record_format(&r, &json), 0);
	o = json_tokener_parse(json);
	assert_non_null(o);
	json_object_object_del(o, "cow_direct_io_active");
	json_object_object_del(json_object_object_get(o, "options"), "cow_direct_io");
	old = json_object_to_json_string(o);
	assert_null(strstr(old, "cow_direct_io"));
	assert_int_equal(vmstore_record_parse(old, strlen(old), &back, err, sizeof(err)), 0);
	assert_int_equal(back.cow_dio, LOOPDEV_DIO_AUTO);
	assert_int_equal(back.cow_dio_active, -1);
	json_object_put(o);
	free(json);
	assert_int_equal(vmstore_dio_parse("auto", &d), 0);
	assert_int_equal(d, LOOPDEV_DIO_AUTO);
	assert_int_equal(vmstore_dio_parse("On", &d), -EINVAL);
	assert_int_equal(vmstore_dio_parse("", &d), -EINVAL);
	assert_string_equal(vmstore_dio_name(LOOPDEV_DIO_OFF), "off");
}

/* The fields added after version 1: mem_file and the last reclaim's details. */
static void test_new_fields(void **state)
{
	static const char *const added[] = {
		"zero_bytes", "fs_free_bytes",	 "mem_reclaimed_bytes", "bytes_read",
		"fs_aware",   "fs_aware_reason", "interrupted",		"error",
		"cow_stamp",  "mem_stamp",	 "mem_strategy",
	};
	struct vmstore_record r = sample(), back;
	struct vmstore_reclaim *l = &r.last_reclaim, *b = &back.last_reclaim;
	char *json = NULL, err[256] = "";
	const char *old;
	json_object *o, *lo;

	snprintf(r.mem_path, sizeof(r.mem_path), "/srv/vms/vm-1/mem \"snap\"");
	l->zero_bytes = 3 << 20;
	l->fs_free_bytes = 4190208 - (3 << 20);
	l->mem_reclaimed_bytes = 1ULL << 33;
	l->bytes_read = 5ULL << 30;
	snprintf(l->fs_aware, sizeof(l->fs_aware), "refused");
	snprintf(l->fs_aware_reason, sizeof(l->fs_aware_reason), "the journal needs recovery");
	l->interrupted = true;
	snprintf(l->error, sizeof(l->error), "/x/mem: sparsify failed: No space left on device");
	snprintf(l->mem_strategy, sizeof(l->mem_strategy), "rewrite");
	l->cow_stamp = (struct vmstore_filestamp){true, 2049, 77, 1 << 30, 8192, -5, 1764240201};
	l->mem_stamp = (struct vmstore_filestamp){
		true, 2050, 78, 1 << 29, 0, 1764240000000000001LL, 1764240000000000002LL};
	assert_int_equal(vmstore_record_format(&r, &json), 0);
	assert_int_equal(vmstore_record_parse(json, strlen(json), &back, err, sizeof(err)), 0);
	assert_string_equal(back.mem_path, r.mem_path);
	assert_int_equal(b->zero_bytes, l->zero_bytes);
	assert_int_equal(b->fs_free_bytes, l->fs_free_bytes);
	assert_int_equal(b->mem_reclaimed_bytes, l->mem_reclaimed_bytes);
	assert_int_equal(b->bytes_read, l->bytes_read);
	assert_string_equal(b->fs_aware, "refused");
	assert_string_equal(b->fs_aware_reason, l->fs_aware_reason);
	assert_true(b->interrupted);
	assert_string_equal(b->error, l->error);
	assert_string_equal(b->mem_strategy, "rewrite");
	assert_true(vmstore_filestamp_equal(&b->cow_stamp, &l->cow_stamp));
	assert_true(vmstore_filestamp_equal(&b->mem_stamp, &l->mem_stamp));
	assert_int_equal(b->cow_stamp.mtime_ns, -5);
	assert_int_equal(b->mem_stamp.ctime_ns, 1764240000000000002LL);
	assert_int_equal(b->reclaimed_bytes, l->reclaimed_bytes);

	/* None: mem_file and the stamps are written as null and read back as none. */
	r.mem_path[0] = 0;
	l->cow_stamp.present = l->mem_stamp.present = false;
	free(json);
	assert_int_equal(vmstore_record_format(&r, &json), 0);
	assert_non_null(strstr(json, "\"mem_file\": null"));
	assert_non_null(strstr(json, "\"mem_stamp\": null"));
	assert_int_equal(vmstore_record_parse(json, strlen(json), &back, err, sizeof(err)), 0);
	assert_string_equal(back.mem_path, "");
	assert_false(b->cow_stamp.present);
	assert_false(b->mem_stamp.present);

	/* A record written before these fields existed: none of them, and it parses. */
	o = json_tokener_parse(json);
	assert_non_null(o);
	json_object_object_del(o, "mem_file");
	lo = json_object_object_get(o, "last_reclaim");
	for (size_t i = 0; i < ARRAY_SIZE(added); i++)
		json_object_object_del(lo, added[i]);
	old = json_object_to_json_string(o);
	assert_null(strstr(old, "mem_"));
	assert_null(strstr(old, "zero_bytes"));
	assert_null(strstr(old, "stamp"));
	memset(&back, 0x5a, sizeof(back));
	assert_int_equal(vmstore_record_parse(old, strlen(old), &back, err, sizeof(err)), 0);
	assert_string_equal(back.mem_path, "");
	assert_true(b->present);
	assert_int_equal(b->reclaimed_bytes, 4190208);
	assert_int_equal(b->zero_bytes, 0);
	assert_int_equal(b->fs_free_bytes, 0);
	assert_int_equal(b->mem_reclaimed_bytes, 0);
	assert_int_equal(b->bytes_read, 0);
	assert_string_equal(b->fs_aware, "");
	assert_string_equal(b->fs_aware_reason, "");
	assert_false(b->interrupted);
	assert_string_equal(b->error, "");
	assert_string_equal(b->mem_strategy, "");
	assert_false(b->cow_stamp.present);
	assert_false(b->mem_stamp.present);
	json_object_put(o);
	free(json);
}

/* A file stamp differs once the file is written, grown, punched or replaced. */
static void test_filestamp(void **state)
{
	struct vmstore_filestamp a, b, none = {0};
	char path[128], other[128];
	int fd;

	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(other, sizeof(other), "%s/g", dir);
	assert_int_equal(vmstore_filestamp_read(path, &a), -ENOENT);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "x", 1, 0), 1);
	assert_int_equal(vmstore_filestamp_read(path, &a), 0);
	assert_true(a.present);
	assert_int_equal(a.size, 1);
	assert_int_equal(vmstore_filestamp_read(path, &b), 0);
	assert_true(vmstore_filestamp_equal(&a, &b));
	assert_false(vmstore_filestamp_equal(&a, &none));
	assert_false(vmstore_filestamp_equal(&none, &none));
	/* The same size, written later (timestamps have ns resolution here or differ in s). */
	usleep(20000);
	assert_int_equal(pwrite(fd, "y", 1, 0), 1);
	assert_int_equal(vmstore_filestamp_read(path, &b), 0);
	assert_int_equal(b.size, 1);
	assert_false(vmstore_filestamp_equal(&a, &b));
	close(fd);
	/* Replaced by another file at the path: another inode. */
	assert_int_equal(vmstore_filestamp_read(path, &a), 0);
	fd = open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "y", 1, 0), 1);
	close(fd);
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(vmstore_filestamp_read(path, &b), 0);
	assert_false(vmstore_filestamp_equal(&a, &b));
}

/* Every truncation of a good record is refused (the JSON is incomplete), never misread. */
static void test_truncated_records(void **state)
{
	struct vmstore_record r = sample(), back;
	char *json = NULL, err[256];
	size_t len;

	assert_int_equal(vmstore_record_format(&r, &json), 0);
	len = strlen(json);
	for (size_t n = 0; n < len - 1; n++) {
		err[0] = '\0';
		assert_int_equal(vmstore_record_parse(json, n, &back, err, sizeof(err)), -EBADMSG);
		assert_true(err[0] != '\0');
	}
	/* The trailing newline is optional; trailing data is not. */
	assert_int_equal(vmstore_record_parse(json, len - 1, &back, err, sizeof(err)), 0);
	free(json);
}

/* Every single-byte corruption either parses to a valid record or is refused: no crash. */
static void test_corrupted_bytes(void **state)
{
	struct vmstore_record r = sample(), back;
	char *json = NULL, err[256];
	size_t len;
	unsigned refused = 0;

	assert_int_equal(vmstore_record_format(&r, &json), 0);
	len = strlen(json);
	for (size_t i = 0; i < len; i++) {
		char saved = json[i];
		int rc;

		json[i] = '\x01';
		rc = vmstore_record_parse(json, len, &back, err, sizeof(err));
		assert_true(rc == 0 || rc == -EBADMSG);
		refused += rc == -EBADMSG;
		json[i] = saved;
	}
	assert_true(refused > len / 2);
	free(json);
}

static void expect_bad(const char *json, const char *want_in_err)
{
	struct vmstore_record back;
	char err[256] = "";

	assert_int_equal(vmstore_record_parse(json, strlen(json), &back, err, sizeof(err)),
			 -EBADMSG);
	if (!strstr(err, want_in_err))
		fail_msg("error '%s' does not name '%s'", err, want_in_err);
}

/* json with the first `from` replaced by `to` must be refused, naming `field`. */
static void expect_replaced(const char *json, const char *from, const char *to, const char *field)
{
	const char *p = strstr(json, from);
	char *bad = NULL;

	if (!p)
		fail_msg("'%s' not in the record", from);
	assert_true(asprintf(&bad, "%.*s%s%s", (int)(p - json), json, to, p + strlen(from)) > 0);
	expect_bad(bad, field);
	free(bad);
}

static void test_bad_fields(void **state)
{
	struct vmstore_record r = sample();
	char *json = NULL;

	assert_int_equal(vmstore_record_format(&r, &json), 0);
	expect_bad("", "not valid JSON");
	expect_bad("[]", "not a JSON object");
	expect_bad("{}", "version");
	expect_bad("{\"version\": 2}", "version 2");
	expect_bad("{\"version\": 1, \"id\": \"../x\"}", "id");
	/* One field at a time: wrong type, out of range. */
	expect_replaced(json, "\"virtual_size\": 33554432", "\"virtual_size\": \"x\"",
			"virtual_size");
	expect_replaced(json, "\"virtual_size\": 33554432", "\"virtual_size\": 1000",
			"virtual_size");
	expect_replaced(json, "\"chunk_size\": 4096", "\"chunk_size\": 4095", "chunk_size");
	expect_replaced(json, "\"chunk_size\": 4096", "\"chunk_size\": -4096", "chunk_size");
	expect_replaced(json, "\"sha256_sampled\": \"a", "\"sha256_sampled\": \"Z",
			"sha256_sampled");
	expect_replaced(json, "\"created\": \"2", "\"created\": \"x", "created");
	expect_replaced(json, "\"discard\": true", "\"discard\": 1", "discard");
	expect_replaced(json, "\"path\": \"/", "\"path\": \"", "path");
	expect_replaced(json, "\"options\"", "\"opts\"", "options");
	expect_replaced(json, "\"cow_direct_io\": \"on\"", "\"cow_direct_io\": \"yes\"",
			"cow_direct_io");
	expect_replaced(json, "\"cow_direct_io\": \"on\"", "\"cow_direct_io\": 1", "cow_direct_io");
	expect_replaced(json, "\"cow_direct_io_active\": true", "\"cow_direct_io_active\": 1",
			"cow_direct_io_active");
	expect_replaced(json, "\"mem_file\": null", "\"mem_file\": \"rel/mem\"", "mem_file");
	expect_replaced(json, "\"mem_file\": null", "\"mem_file\": 1", "mem_file");
	expect_replaced(json, "\"zero_bytes\": 0", "\"zero_bytes\": -1", "zero_bytes");
	expect_replaced(json, "\"fs_aware\": \"\"", "\"fs_aware\": true", "fs_aware");
	expect_replaced(json, "\"cow_stamp\": null", "\"cow_stamp\": 7", "cow_stamp");
	expect_replaced(json, "\"cow_stamp\": null", "\"cow_stamp\": { \"dev\": 1 }", "ino");
	expect_replaced(json, "\"interrupted\": false", "\"interrupted\": 0", "interrupted");
	{
		char *trail = NULL;

		assert_true(asprintf(&trail, "%s}", json) > 0);
		expect_bad(trail, "trailing");
		free(trail);
	}
	free(json);
}

static void test_atomic_write(void **state)
{
	char path[128], buf[64];
	struct dirent *de;
	DIR *d;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/file", dir);
	assert_int_equal(vmstore_write_atomic(path, "first version\n", 14), 0);
	assert_int_equal(vmstore_write_atomic(path, "second\n", 7), 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "second\n", 7);
	/* No temp file left behind. */
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			assert_string_equal(de->d_name, "file");
	closedir(d);
	snprintf(path, sizeof(path), "%s/missing/file", dir);
	assert_int_equal(vmstore_write_atomic(path, "x", 1), -ENOENT);
}

static void test_save_load_list(void **state)
{
	struct vmstore_record r = sample(), back;
	char err[256], path[128], **ids = NULL;
	int n, fd;

	assert_int_equal(vmstore_record_load(dir, r.id, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(vmstore_record_save(dir, &r), 0);
	snprintf(r.id, sizeof(r.id), "another");
	assert_int_equal(vmstore_record_save(dir, &r), 0);
	assert_int_equal(vmstore_record_load(dir, "vm-1.a_b", &back, err, sizeof(err)), 0);
	assert_string_equal(back.id, "vm-1.a_b");
	/* A damaged record on disk is refused with a reason. */
	snprintf(path, sizeof(path), "%s/another/vm.json", dir);
	assert_int_equal(truncate(path, 40), 0);
	assert_int_equal(vmstore_record_load(dir, "another", &back, err, sizeof(err)), -EBADMSG);
	/* A folder without vm.json is not a VM. */
	snprintf(path, sizeof(path), "%s/notavm", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/.hidden", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	close(fd);
	n = vmstore_list(dir, &ids);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0], "another");
	assert_string_equal(ids[1], "vm-1.a_b");
	vmstore_list_free(ids, n);
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(vmstore_list(path, &ids), 0);
}

static bool exists_in(const char *id, const char *name)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s/%s", dir, id, name);
	return access(path, F_OK) == 0;
}

/* The create marker: written, committed as the record in one rename, reverted, removed. */
static void test_marker(void **state)
{
	struct vmstore_record r = sample(), back;
	char err[256], path[160];

	snprintf(path, sizeof(path), "%s/%s", dir, r.id);
	assert_int_equal(vmstore_mkdir(path), 0);
	assert_int_equal(vmstore_mkdir(path), 0); /* exists: fine */
	assert_int_equal(vmstore_marker_exists(dir, r.id), 0);
	assert_int_equal(vmstore_marker_write(dir, &r), 0);
	assert_int_equal(vmstore_marker_exists(dir, r.id), 1);
	assert_int_equal(vmstore_record_load(dir, r.id, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(vmstore_marker_commit(dir, r.id), 0);
	assert_int_equal(vmstore_marker_exists(dir, r.id), 0);
	assert_int_equal(vmstore_record_load(dir, r.id, &back, err, sizeof(err)), 0);
	assert_string_equal(back.id, r.id);
	assert_int_equal(back.virt_bytes, r.virt_bytes);
	/* A failed create turns its record back into the marker. */
	assert_int_equal(vmstore_marker_revert(dir, r.id), 0);
	assert_int_equal(vmstore_marker_exists(dir, r.id), 1);
	assert_false(exists_in(r.id, "vm.json"));
	assert_int_equal(vmstore_marker_remove(dir, r.id), 0);
	assert_int_equal(vmstore_marker_exists(dir, r.id), 0);
	assert_int_equal(vmstore_marker_remove(dir, r.id), 0);
	assert_int_equal(vmstore_marker_commit(dir, r.id), -ENOENT);
	assert_int_equal(vmstore_marker_exists(dir, "nosuchvm"), 0);
}

/* Temp files of killed atomic writes go; nothing else does. */
static void test_stale_temps(void **state)
{
	static const char *const stale[] = {"vm.json.tmp.123", "creating.tmp.9"};
	static const char *const kept[] = {
		"vm.json",	   "cow",	  "lock",   "vm.json.tmp.",
		"vm.json.tmp.12x", "vm.json.tmp", "x.tmp.1"};
	struct vmstore_record r = sample();
	char path[160];

	assert_int_equal(vmstore_record_save(dir, &r), 0);
	for (size_t i = 0; i < ARRAY_SIZE(stale) + ARRAY_SIZE(kept); i++) {
		const char *name = i < ARRAY_SIZE(stale) ? stale[i] : kept[i - ARRAY_SIZE(stale)];
		int fd;

		snprintf(path, sizeof(path), "%s/%s/%s", dir, r.id, name);
		fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(vmstore_remove_stale_temps(dir, r.id), 2);
	for (size_t i = 0; i < ARRAY_SIZE(stale); i++)
		assert_false(exists_in(r.id, stale[i]));
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++)
		assert_true(exists_in(r.id, kept[i]));
	assert_int_equal(vmstore_remove_stale_temps(dir, r.id), 0);
	assert_int_equal(vmstore_remove_stale_temps(dir, "nosuchvm"), -ENOENT);
}

static void test_locks(void **state)
{
	struct vmstore_record r = sample();
	int a, b;

	assert_int_equal(vmstore_record_save(dir, &r), 0);
	a = vmstore_lock_vm(dir, r.id);
	assert_true(a >= 0);
	/* flock() locks belong to the open file: a second open conflicts, even in one process. */
	assert_int_equal(vmstore_lock_vm(dir, r.id), -EWOULDBLOCK);
	close(a);
	b = vmstore_lock_vm(dir, r.id);
	assert_true(b >= 0);
	close(b);
	a = vmstore_lock_host(dir);
	assert_true(a >= 0);
	close(a);
}

static void test_identity(void **state)
{
	struct vmstore_identity a, b;
	char path[128], copy[128];
	unsigned char block[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/base", dir);
	snprintf(copy, sizeof(copy), "%s/copy", dir);
	fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < 256; i++) {
		memset(block, i, sizeof(block));
		assert_int_equal(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	}
	close(fd);
	assert_int_equal(vmstore_identity_read(path, &a), 0);
	assert_int_equal(a.size, 1 << 20);
	assert_int_equal(strlen(a.fingerprint), 64);
	assert_int_equal(vmstore_identity_read(path, &b), 0);
	assert_null(vmstore_identity_mismatch(&a, &b));
	/* Same content elsewhere: same fingerprint (dev/ino are not compared). */
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "cp --preserve=timestamps '%s' '%s'", path, copy);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(vmstore_identity_read(copy, &b), 0);
	assert_string_equal(a.fingerprint, b.fingerprint);
	assert_null(vmstore_identity_mismatch(&a, &b));
	/* One byte changed in the first block, mtime forced back: the fingerprint differs. */
	b.mtime_ns = a.mtime_ns;
	fd = open(copy, O_RDWR | O_CLOEXEC);
	assert_int_equal(pwrite(fd, "X", 1, 100), 1);
	close(fd);
	assert_int_equal(vmstore_identity_read(copy, &b), 0);
	b.mtime_ns = a.mtime_ns;
	assert_string_equal(vmstore_identity_mismatch(&a, &b), "fingerprint");
	b = a;
	b.size++;
	assert_string_equal(vmstore_identity_mismatch(&a, &b), "size");
	b = a;
	b.mtime_ns++;
	assert_string_equal(vmstore_identity_mismatch(&a, &b), "mtime");
	assert_int_equal(vmstore_identity_read("/nonexistent/x", &b), -ENOENT);

	/* On a descriptor: the file it has open, even once another file took its path. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(rename(copy, path), 0);
	assert_int_equal(vmstore_identity_read_fd(fd, &b), 0);
	assert_null(vmstore_identity_mismatch(&a, &b));
	assert_int_equal(b.ino, a.ino);
	assert_int_equal(vmstore_identity_read(path, &b), 0);
	assert_non_null(vmstore_identity_mismatch(&a, &b));
	close(fd);
	assert_int_equal(vmstore_identity_read_fd(-1, &b), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_direct_io_fields),
		cmocka_unit_test(test_new_fields),
		cmocka_unit_test_setup_teardown(test_filestamp, setup, teardown),
		cmocka_unit_test(test_truncated_records),
		cmocka_unit_test(test_corrupted_bytes),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test_setup_teardown(test_atomic_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_temps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
