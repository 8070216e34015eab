/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the reclaim tests (included, not linked): temporary files,
 * the allocation map of a file, raw SHA-256 of a file.
 */
#ifndef COWPUNCH_TESTS_RTEST_H
#define COWPUNCH_TESTS_RTEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"
#include "tests/unit/helpers/storegen.h"

#define RT_BLOCK     4096u
#define TMPFS_MAGIC_ 0x01021994

/* Opens a new unlinked-on-close temporary file in dir; returns fd or -errno. */
static inline __attribute__((unused)) int rt_tmpfile(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		char path[256];

		snprintf(path, sizeof(path), "%s/cowpunch-test-XXXXXX", dir);
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
	}
	return fd < 0 ? -errno : fd;
}

/* Creates dir/NAME.PID afresh (one a killed run left is removed); returns fd or -errno. */
static inline __attribute__((unused)) int rt_create(const char *dir, const char *name, mode_t mode,
						    char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/%s.%d", dir, name, (int)getpid());
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

/*
 * Returns NULL when dir can hold the tests: a file system with blocks of at most
 * 4 KiB that punches holes and reports them; else a reason to skip.
 */
static inline __attribute__((unused)) const char *rt_dir_unusable(const char *dir)
{
	static char why[256];
	struct statfs sf;
	int fd;

	if (statfs(dir, &sf) < 0) {
		snprintf(why, sizeof(why), "%s: %s", dir, strerror(errno));
		return why;
	}
	if (sf.f_bsize > RT_BLOCK) {
		snprintf(why, sizeof(why), "%s: block size %ld > 4096, chunks would not punch", dir,
			 (long)sf.f_bsize);
		return why;
	}
	fd = rt_tmpfile(dir);
	if (fd < 0) {
		snprintf(why, sizeof(why), "%s: cannot create files: %s", dir, strerror(-fd));
		return why;
	}
	if (ftruncate(fd, 2 * RT_BLOCK) < 0 ||
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, RT_BLOCK) < 0) {
		snprintf(why, sizeof(why), "%s: no PUNCH_HOLE: %s", dir, strerror(errno));
		close(fd);
		return why;
	}
	close(fd);
	return NULL;
}

/*
 * The folder the tests' files go to: $COWPUNCH_TEST_DIR, default /tmp.  NULL
 * when it cannot hold them (rt_dir_unusable()), after saying why on stdout as
 * tests/run-unit.sh reads a skipped program ("SKIP: PROG: reason"): main() then
 * returns 77.
 */
static inline __attribute__((unused)) const char *rt_test_dir(const char *prog)
{
	const char *d = getenv("COWPUNCH_TEST_DIR"), *why;

	if (!d || !*d)
		d = "/tmp";
	why = rt_dir_unusable(d);
	if (why) {
		printf("SKIP: %s: %s\n", prog, why);
		return NULL;
	}
	return d;
}

/* True when st_blocks of files in dir counts data blocks only (no extent-tree blocks). */
static inline __attribute__((unused)) bool rt_exact_blocks(const char *dir)
{
	struct statfs sf;

	return statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC_;
}

/*
 * Allocation map of fd at 4 KiB granularity from SEEK_DATA/SEEK_HOLE: byte i is 1
 * when block i holds data.  Caller frees.
 */
static inline __attribute__((unused)) uint8_t *rt_alloc_map(int fd, uint64_t size)
{
	uint64_t nb = (size + RT_BLOCK - 1) / RT_BLOCK;
	uint8_t *m = calloc(nb ? nb : 1, 1);
	off_t d = 0, h;

	if (!m)
		return NULL;
	while ((d = lseek(fd, d, SEEK_DATA)) >= 0 && (uint64_t)d < size) {
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			break;
		for (uint64_t b = (uint64_t)d / RT_BLOCK; b * RT_BLOCK < (uint64_t)h && b < nb; b++)
			m[b] = 1;
		d = h;
	}
	return m;
}

/* SHA-256 of the raw bytes of fd. */
static inline __attribute__((unused)) int rt_file_sha(int fd, uint8_t out[32])
{
	static char buf[1 << 16];
	struct storegen_sha256 s;
	uint64_t off = 0;
	ssize_t n;

	storegen_sha256_init(&s);
	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) > 0) {
		storegen_sha256_update(&s, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (n < 0)
		return -errno;
	storegen_sha256_final(&s, out);
	return 0;
}

/*
 * NULL when path names a file other than inode old_ino, of size bytes whose raw
 * bytes hash to sha: what a rewrite leaves; else what differs.
 */
static inline __attribute__((unused)) const char *rt_rewritten(const char *path, ino_t old_ino,
							       off_t size, const uint8_t sha[32])
{
	static char why[768];
	uint8_t now[32];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0) {
		snprintf(why, sizeof(why), "%s: cannot open: %s", path, strerror(errno));
		return why;
	}
	r = fstat(fd, &st) < 0 ? -errno : rt_file_sha(fd, now);
	close(fd);
	if (r < 0)
		snprintf(why, sizeof(why), "%s: cannot read: %s", path, strerror(-r));
	else if (st.st_ino == old_ino)
		snprintf(why, sizeof(why), "%s: still the old inode %llu", path,
			 (unsigned long long)old_ino);
	else if (st.st_size != size)
		snprintf(why, sizeof(why), "%s: %lld bytes, not %lld", path, (long long)st.st_size,
			 (long long)size);
	else if (memcmp(now, sha, sizeof(now)) != 0)
		snprintf(why, sizeof(why), "%s: the bytes changed (sha256)", path);
	else
		return NULL;
	return why;
}

/* Reopens fd (same file) with O_DIRECT when the file system allows it; else a plain dup. */
static inline __attribute__((unused)) int rt_reopen(int fd, bool direct)
{
	char p[64];
	int r;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	r = open(p, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (r < 0 && direct)
		r = open(p, O_RDWR | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

/*
 * Validates the store of fd and runs reclaim_run() on it.  Returns what
 * reclaim_run() returns (-ENOTSUP: the engine asked for is unavailable here), or
 * -EBADMSG when the store is refused.
 */
static inline __attribute__((unused)) int rt_reclaim(int fd, const struct reclaim_opts *opts,
						     struct reclaim_report *rep)
{
	struct snapstore_info info;
	struct snapstore_error err;
	int r = snapstore_load(fd, &info, NULL, NULL, &err);

	if (r < 0)
		return r == -EBADMSG ? r : -EBADMSG;
	r = reclaim_run(fd, &info, opts, rep);
	snapstore_info_free(&info);
	return r;
}

/*
 * Skips the running cmocka case and says why on stdout, in the form
 * tests/run-unit.sh lists per skipped case ("SKIP: reason").  Only in a test
 * body (cmocka's skip() leaves the case).
 */
#define rt_skip(...)                          \
	do {                                  \
		printf("SKIP: " __VA_ARGS__); \
		printf("\n");                 \
		fflush(stdout);               \
		skip();                       \
	} while (0)

/*
 * Skips the running case because reclaim_run() could not start the engine kind
 * (r: its -ENOTSUP).  The reason names the engine as "engine NAME unavailable":
 * under CI=true, tests/run-unit.sh fails such a skip when its own probe finds
 * the engine works on the machine.
 */
#define rt_skip_engine(kind, r)                                                                \
	rt_skip("engine %s unavailable: reclaim_run() returned %s", reclaim_engine_name(kind), \
		strerror(-(r)))

/* True when the kernel has cachestat(2) (Linux 6.5). */
static inline __attribute__((unused)) bool rt_has_cachestat(void)
{
	uint64_t range[2] = {0, 4096}, cs[5];
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	long r = syscall(451, fd, range, cs, 0);

	close(fd);
	return r == 0;
}

#endif
