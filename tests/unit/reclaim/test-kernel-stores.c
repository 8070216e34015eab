/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The store reader on stores a real kernel wrote (tests/fixtures/kernel-stores, made in the
 * VM test bed).  For each valid store, the exceptions snapstore_load() hands out, laid over
 * the base image, must give the merged view the kernel served (its sha256 is in the
 * manifest), with the kernel's exception count.  The damaged and the invalidated store must
 * be refused with -EBADMSG at the first bad byte.
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "reclaim/snapstore.h"
#include "tests/unit/helpers/storegen.h"

static const char *fixtures_dir(void)
{
	const char *d = getenv("COWPUNCH_FIXTURES");

	return d ? d : "tests/fixtures/kernel-stores";
}

/* Decompresses DIR/FILE.xz (FILE: NAME.cow or a base image) into an unlinked temporary file; returns its fd. */
static int unxz(const char *file)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[256], cmd[768];
	int fd;

	snprintf(path, sizeof(path), "%.200s/kstore-XXXXXX", tmp);
	fd = mkostemp(path, O_CLOEXEC);
	assert_true(fd >= 0);
	snprintf(cmd, sizeof(cmd), "xz -dc '%s/%s.xz' > '%s'", fixtures_dir(), file, path);
	assert_int_equal(system(cmd), 0);
	unlink(path);
	return fd;
}

static struct json_object *manifest(const char *name)
{
	char path[512];
	struct json_object *m;

	snprintf(path, sizeof(path), "%s/%s.json", fixtures_dir(), name);
	m = json_object_from_file(path);
	if (!m)
		fail_msg("cannot read %s", path);
	return m;
}

static uint64_t mget_u64(struct json_object *m, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(m, key, &v));
	return (uint64_t)json_object_get_int64(v);
}

static const char *mget_str(struct json_object *m, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(m, key, &v));
	return json_object_get_string(v);
}

/* The exceptions as the reader under test reports them: origin chunk -> COW chunk. */
struct table {
	uint64_t *map; /* index: origin chunk; 0 = no exception (COW chunk 0 is the header) */
	uint64_t origin_chunks;
	uint64_t seen;
};

static int collect(void *opaque, const struct snapstore_exception *e)
{
	struct table *t = opaque;

	if (e->old_chunk >= t->origin_chunks)
		return -ERANGE;
	t->map[e->old_chunk] = e->new_chunk;
	t->seen++;
	return 0;
}

static void full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		assert_true(n >= 0);
		if (n == 0) { /* past the end: zeros */
			memset((char *)buf + done, 0, len - done);
			return;
		}
		done += (size_t)n;
	}
}

static void check_valid(const char *name)
{
	struct json_object *m = manifest(name);
	uint64_t chunk = mget_u64(m, "chunk_bytes"), size = mget_u64(m, "overlay_bytes");
	int cow, base;
	char file[160], hex[65];
	struct snapstore_info info;
	struct snapstore_error err = {0};
	struct table t = {.origin_chunks = (size + chunk - 1) / chunk};
	struct storegen_sha256 s;
	uint8_t digest[32], *buf;
	struct stat st;
	int r;

	snprintf(file, sizeof(file), "%s.cow", name);
	cow = unxz(file);
	base = unxz(mget_str(m, "base"));
	assert_int_equal(fstat(base, &st), 0);
	t.map = calloc(t.origin_chunks, sizeof(*t.map));
	buf = malloc(chunk);
	assert_non_null(t.map);
	assert_non_null(buf);

	r = snapstore_load(cow, &info, collect, &t, &err);
	if (r != 0)
		fail_msg("%s: snapstore_load %d at byte %llu: %s", name, r,
			 (unsigned long long)err.offset, err.rule);
	assert_int_equal(info.geom.chunk_bytes, chunk);
	assert_int_equal(info.exceptions, mget_u64(m, "exceptions"));
	assert_int_equal(t.seen, info.exceptions);

	/* The merged view: COW chunk, else base, else zeros. */
	storegen_sha256_init(&s);
	for (uint64_t c = 0; c < t.origin_chunks; c++) {
		uint64_t len = size - c * chunk < chunk ? size - c * chunk : chunk;

		if (t.map[c])
			full_pread(cow, buf, chunk, t.map[c] * chunk);
		else if (c * chunk < (uint64_t)st.st_size)
			full_pread(base, buf, chunk, c * chunk);
		else
			memset(buf, 0, chunk);
		storegen_sha256_update(&s, buf, len);
	}
	storegen_sha256_final(&s, digest);
	assert_string_equal(storegen_hex(digest, hex), mget_str(m, "sha256"));

	snapstore_info_free(&info);
	free(buf);
	free(t.map);
	close(base);
	close(cow);
	json_object_put(m);
}

static void check_refused(const char *name, uint64_t bad_offset)
{
	struct json_object *m = manifest(name);
	char file[160];
	struct snapstore_info info;
	int cow;
	struct snapstore_error err = {0};

	snprintf(file, sizeof(file), "%s.cow", name);
	cow = unxz(file);
	assert_int_equal(mget_u64(m, "inspect_exit"), 3);
	assert_int_equal(snapstore_load(cow, &info, NULL, NULL, &err), -EBADMSG);
	assert_int_equal(err.offset, bad_offset);
	assert_true(err.rule[0] != '\0');
	close(cow);
	json_object_put(m);
}

static void test_small(void **state)
{
	check_valid("small");
}

static void test_three_areas(void **state)
{
	check_valid("three-areas");
}

static void test_full_area(void **state)
{
	check_valid("full-area");
}

static void test_chunk64k(void **state)
{
	check_valid("chunk64k");
}

/* Area 1 sits at chunk 258; its entries 0..63 were zeroed, entry 64 is the first non-zero. */
static void test_discard_damaged(void **state)
{
	check_refused("discard-damaged", 258 * 4096 + 64 * 16);
}

/* The kernel rewrote the header with valid = 0 (byte 4). */
static void test_overflowed(void **state)
{
	check_refused("overflowed", 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small),		cmocka_unit_test(test_three_areas),
		cmocka_unit_test(test_full_area),	cmocka_unit_test(test_chunk64k),
		cmocka_unit_test(test_discard_damaged), cmocka_unit_test(test_overflowed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
