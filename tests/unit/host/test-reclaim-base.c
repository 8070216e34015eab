/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host_reclaim_vm() with fs_aware (`cowpunch reclaim --fs-aware ID`): the base
 * image whose recorded identity is checked must be the one that is read.  open() is wrapped at link time
 * (test-reclaim-base.ldflags): right after the base's path is first opened, the
 * path is renamed over with a wrong base, as a host tool replacing the image would.
 * Whatever opens the path again from then on gets the wrong base.
 *
 * The guest rewrote a file of the base in place (its blocks are exceptions; no
 * metadata changed); the wrong base is an empty file system of the same geometry,
 * whose bitmaps call those blocks free.  Read over the wrong base, they would be
 * punched: the COW must keep every byte and block.
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/reclaimcow.h"
#include "host/vmstore.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "tests/unit/helpers/fsimg.h"
#include "tests/unit/helpers/storegen.h"

/* The swap: after the first open of swap_path succeeds, swap_with is renamed over it. */
static char swap_path[300], swap_with[300];
static unsigned base_opens;

int __real_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);

int __wrap_open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	int fd;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	fd = __real_open64(path, flags, mode);
	if (fd >= 0 && swap_path[0] && !strcmp(path, swap_path)) {
		if (base_opens++ == 0 && swap_with[0])
			assert_int_equal(rename(swap_with, swap_path), 0);
	}
	return fd;
}

static char dir[256];

static void sha256_file(const char *path, uint8_t out[32], int64_t *blocks)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *buf = malloc(1 << 20);
	struct storegen_sha256 h;
	ssize_t r;

	assert_true(fd >= 0 && buf);
	storegen_sha256_init(&h);
	for (uint64_t off = 0; (r = util_pread_full(fd, buf, 1 << 20, off)) > 0; off += (uint64_t)r)
		storegen_sha256_update(&h, buf, (size_t)r);
	assert_true(r == 0);
	storegen_sha256_final(&h, out);
	*blocks = storegen_allocated(fd);
}

static void test_identity_on_the_read_fd(void **state)
{
	char base[300], guest[300], wrong[300], src[256], st[300], cow[300], file[300];
	uint8_t before[32], after[32];
	int64_t blocks_before, blocks_after;
	struct vmstore_record rec;
	struct host_reclaim_request req = {.fs_aware = true, .base_fd = -1};
	struct host_error err = {""};
	struct reclaim_report rep;
	struct fsaware_result fs;
	struct vm vm;
	bool is_vm = false;

	if (!fsimg_tools_present()) {
		print_message("skipped: mkfs.ext4, debugfs or e2fsck missing (e2fsprogs)\n");
		exit(77);
	}
	assert_int_equal(fsimg_tmpdir(dir, sizeof(dir)), 0);
	snprintf(src, sizeof(src), "%.200s/src", dir);
	snprintf(base, sizeof(base), "%s/base.img", dir);
	snprintf(guest, sizeof(guest), "%s/guest.img", dir);
	snprintf(wrong, sizeof(wrong), "%s/wrong.img", dir);
	snprintf(st, sizeof(st), "%s/state", dir);
	snprintf(cow, sizeof(cow), "%s/state/vm1/cow", dir);

	/* The base holds a file; the guest rewrote it in place. */
	assert_int_equal(fsimg_sh("mkdir -p %s %s/vm1", src, st), 0);
	snprintf(file, sizeof(file), "%s/file", src);
	assert_int_equal(fsimg_random_file(file, 400 << 10, 7), 0);
	assert_int_equal(fsimg_sh("mkfs.ext4 -q -F -b 4096 -d %s %s 8M >/dev/null 2>&1 && "
				  "cp %s %s",
				  src, base, base, guest),
			 0);
	assert_int_equal(fsimg_rewrite_file(base, "file", guest, 4096), 100);
	{
		_cleanup_close_ int cfd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		assert_true(cfd >= 0);
		assert_int_equal(fsimg_diff_store(base, guest, cfd, 4096, 8 << 20), 0);
	}
	/* The record as create writes it. */
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "vm1");
	snprintf(rec.base_path, sizeof(rec.base_path), "%s", base);
	assert_int_equal(vmstore_identity_read(base, &rec.base), 0);
	rec.virt_bytes = 8 << 20;
	rec.chunk_bytes = 4096;
	rec.cow_bytes = 8 << 20;
	rec.created = time(NULL);
	assert_int_equal(vmstore_record_save(st, &rec), 0);
	/* The wrong base: same geometry, no file, its bitmaps call the rewritten blocks free. */
	assert_int_equal(fsimg_sh("mkfs.ext4 -q -F -b 4096 %s 8M >/dev/null 2>&1", wrong), 0);

	sha256_file(cow, before, &blocks_before);
	snprintf(swap_path, sizeof(swap_path), "%s", base);
	snprintf(swap_with, sizeof(swap_with), "%s", wrong);
	assert_int_equal(vm_open_for_reclaim(st, "vm1", &vm, &is_vm, &err), 0);
	assert_true(is_vm);
	if (host_reclaim_vm(&vm, &req, &rep, &fs, NULL, &err) != 0)
		fail_msg("host_reclaim_vm: %s", err.msg);
	vm_close(&vm);
	swap_path[0] = 0;
	/* The swap happened, and nothing of the rewritten file was punched. */
	assert_int_equal(access(wrong, F_OK), -1);
	sha256_file(cow, after, &blocks_after);
	if (blocks_after != blocks_before)
		fail_msg("the COW lost %lld bytes: read over the swapped-in base",
			 (long long)(blocks_before - blocks_after));
	assert_memory_equal(before, after, 32);
	/* Opened once: the identity checked and the bytes read on one descriptor. */
	assert_int_equal(base_opens, 1);
	fsimg_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_on_the_read_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
