/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rewrite strategy on real files: a store of data, written-zero and hole
 * chunks rewritten with reclaim_run() and a plain file with sparsify_run():
 * the raw bytes hash the same, the path names a new inode, exactly the zero
 * chunks became holes, holes stayed holes, chunks with data (the header and
 * metadata included) stayed data, st_blocks dropped by at least the zero
 * chunks, mode, owner and extended attributes (user.*, trusted.*, security.*,
 * an ACL) came over, the store still loads, and no temp file is left.  Chunks
 * larger than the copy's buffer (8 MiB), one zero only in its first half.
 * Each refusal (two links, too little space, shared extents on XFS; a plain
 * file another process holds) leaves the file untouched, and auto then
 * punches and says why.  auto on a store past
 * its decision point gives the same bytes back whichever it chooses; on one
 * too small to reach it, it punches, and when its scan ends before the
 * probes, it does not wait for them and leaves no temp file.  A temp file a
 * killed run left is removed by the next run.  auto's write-probe bandwidth
 * distrusts a difference lost in a small write's fixed cost and is capped by
 * the scan's read rate, and auto punches whatever the write probe says when
 * the punches cost no more than writing the kept bytes at that rate, or than
 * what a rewrite would spend before its first write.  Files go to
 * $COWPUNCH_TEST_DIR (default /tmp).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "common/cleanup.h"
#include "reclaim/rewrite.h"
#include "reclaim/sparsify.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/* Chunk kinds by exception index: D data, Z written zeros, H hole. */
static const char kinds[] = "DDZZHDZ";
#define KIND(i) kinds[(i) % (sizeof(kinds) - 1)]

struct built {
	char path[512];
	uint64_t cb, chunks, zero, hole;
	uint8_t *kind_of; /* per COW chunk: 'D', 'Z', 'H', or 'M' (header, metadata) */
	uint8_t sha[32];
	struct stat st;
};

static void build_store(struct built *b, const char *name, uint32_t chunk_sectors, uint64_t n)
{
	_cleanup_free_ char *data = NULL, *zero = NULL;
	struct storegen *sg;
	int fd;

	fd = rt_create(dir, name, 0640, b->path, sizeof(b->path));
	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, chunk_sectors, false, &sg), 0);
	b->cb = sg->chunk_bytes;
	data = malloc(b->cb);
	zero = calloc(1, b->cb);
	assert_non_null(data);
	assert_non_null(zero);
	b->kind_of = calloc(1, 1 << 20);
	assert_non_null(b->kind_of);
	memset(b->kind_of, 'M', 1 << 20);
	b->zero = b->hole = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t nc;
		char k = KIND(i);

		storegen_pattern(data, b->cb, i + 1);
		assert_int_equal(storegen_add_buf(sg, i,
						  k == 'D'   ? data
						  : k == 'Z' ? zero
							     : NULL,
						  &nc),
				 0);
		assert_true(nc < (1 << 20));
		b->kind_of[nc] = (uint8_t)k;
		b->zero += k == 'Z';
		b->hole += k == 'H';
	}
	b->chunks = sg->size / b->cb;
	storegen_free(sg);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(rt_file_sha(fd, b->sha), 0);
	assert_int_equal(fstat(fd, &b->st), 0);
	close(fd);
}

/* Opens the path, checks its bytes are the store's as built and no temp file is left. */
static int open_same_bytes(const struct built *b, struct stat *st)
{
	uint8_t sha[32];
	char tmp[600];
	int fd = open(b->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, st), 0);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	assert_memory_equal(sha, b->sha, 32);
	assert_int_equal(reclaim_rewrite_temp_path(b->path, tmp, sizeof(tmp)), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	return fd;
}

/* The path now: same bytes, a new inode, zero chunks holes, the rest as it was. */
static void check_rewritten(const struct built *b, const struct reclaim_report *rep)
{
	_cleanup_free_ uint8_t *map = NULL;
	struct stat st;
	int fd = open_same_bytes(b, &st);

	assert_true(st.st_ino != b->st.st_ino);
	assert_int_equal(st.st_size, b->st.st_size);
	map = rt_alloc_map(fd, (uint64_t)st.st_size);
	assert_non_null(map);
	for (uint64_t c = 0; c < b->chunks; c++) {
		uint64_t per = b->cb / RT_BLOCK;
		bool any = false, all = true;

		for (uint64_t k = 0; k < per; k++) {
			any |= map[c * per + k];
			all &= map[c * per + k];
		}
		switch (b->kind_of[c]) {
		case 'Z':
		case 'H':
			if (any)
				fail_msg("chunk %llu (%c) holds data after the rewrite",
					 (unsigned long long)c, b->kind_of[c]);
			break;
		default:
			if (!all)
				fail_msg("chunk %llu (%c) is not all data after the rewrite",
					 (unsigned long long)c, b->kind_of[c]);
		}
	}
	/* Within the extent-tree blocks the new file's holes may need (64 KiB here). */
	if ((uint64_t)st.st_blocks * 512 + b->zero * b->cb >
	    (uint64_t)b->st.st_blocks * 512 + 65536)
		fail_msg("st_blocks %llu after, %llu before: not down by the %llu zero chunks",
			 (unsigned long long)st.st_blocks, (unsigned long long)b->st.st_blocks,
			 (unsigned long long)b->zero);
	assert_int_equal(rep->strategy, RECLAIM_STRATEGY_REWRITE);
	assert_int_equal(rep->zero_chunks, b->zero);
	assert_int_equal(rep->allocated_after, (uint64_t)st.st_blocks * 512);
	assert_int_equal(rep->reclaimed_bytes, rep->allocated_before - rep->allocated_after);
	close(fd);
}

static int run_reclaim(const char *path, enum reclaim_strategy s, struct reclaim_report *rep)
{
	struct reclaim_opts o = {.strategy = s, .path = path};
	int fd = open(path, O_RDWR | O_CLOEXEC | O_DIRECT), r;

	if (fd < 0)
		fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	r = rt_reclaim(fd, &o, rep);
	close(fd);
	return r;
}

static void store_loads(const char *path)
{
	struct snapstore_info info;
	struct snapstore_error err;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(snapstore_load(fd, &info, NULL, NULL, &err), 0);
	snapstore_info_free(&info);
	close(fd);
}

static void test_store(void **state)
{
	static const uint8_t acl[] = {
		/* system.posix_acl_access v2: user::rw-, user:1234:r--, group::r--, mask::r--, other::--- */
		2, 0,	 0,    0,    1,	   0,	 6,    0, 0xff, 0xff, 0xff, 0xff, 2,	0,    4,
		0, 0xd2, 4,    0,    0,	   4,	 0,    4, 0,	0xff, 0xff, 0xff, 0xff, 0x10, 0,
		4, 0,	 0xff, 0xff, 0xff, 0xff, 0x20, 0, 0,	0,    0xff, 0xff, 0xff, 0xff};
	struct built b;
	struct reclaim_report rep;
	struct stat st;
	char v[64];
	ssize_t n;

	(void)state;
	build_store(&b, "rewrite-store", 8, 3000);
	assert_int_equal(chown(b.path, 1234, 5678), 0);
	assert_int_equal(chmod(b.path, 0640), 0);
	assert_int_equal(setxattr(b.path, "user.cowpunch", "u", 1, 0), 0);
	assert_int_equal(setxattr(b.path, "trusted.cowpunch", "t", 1, 0), 0);
	if (setxattr(b.path, "security.cowpunch", "s", 1, 0) < 0)
		fail_msg("security.cowpunch: %s", strerror(errno));
	assert_int_equal(setxattr(b.path, "system.posix_acl_access", acl, sizeof(acl), 0), 0);
	assert_int_equal(stat(b.path, &b.st), 0);

	assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_REWRITE, &rep), 0);
	check_rewritten(&b, &rep);
	store_loads(b.path);
	assert_int_equal(stat(b.path, &st), 0);
	assert_int_equal(st.st_mode, b.st.st_mode);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
	n = getxattr(b.path, "user.cowpunch", v, sizeof(v));
	assert_true(n == 1 && v[0] == 'u');
	n = getxattr(b.path, "trusted.cowpunch", v, sizeof(v));
	assert_true(n == 1 && v[0] == 't');
	n = getxattr(b.path, "security.cowpunch", v, sizeof(v));
	assert_true(n == 1 && v[0] == 's');
	n = getxattr(b.path, "system.posix_acl_access", v, sizeof(v));
	assert_int_equal(n, sizeof(acl));
	assert_memory_equal(v, acl, sizeof(acl));

	/* A second run finds nothing more and keeps the bytes. */
	b.st = st;
	assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_REWRITE, &rep), 0);
	assert_int_equal(rep.zero_chunks, 0);
	unlink(b.path);
	free(b.kind_of);
}

/* The path now: the same inode and bytes, exactly the zero and hole chunks holes, no temp file. */
static void check_punched(const struct built *b)
{
	_cleanup_free_ uint8_t *map = NULL;
	uint64_t per = b->cb / RT_BLOCK;
	struct stat st;
	int fd = open_same_bytes(b, &st);

	assert_int_equal(st.st_ino, b->st.st_ino);
	map = rt_alloc_map(fd, (uint64_t)st.st_size);
	assert_non_null(map);
	for (uint64_t c = 0; c < b->chunks; c++)
		for (uint64_t k = 0; k < per; k++)
			if (map[c * per + k] != (b->kind_of[c] != 'Z' && b->kind_of[c] != 'H'))
				fail_msg("chunk %llu (%c): block %llu is %s after auto's punches",
					 (unsigned long long)c, b->kind_of[c],
					 (unsigned long long)k,
					 map[c * per + k] ? "data" : "a hole");
	close(fd);
}

/*
 * auto on a store larger than its decision point (32 MiB of chunks judged, the
 * probes done): whichever it chooses, the same bytes, exactly the zero and hole
 * chunks holes, the store loads.  When it punches, the scan (buffered) punches
 * what it put off before the decision at once, beside the reads still to come,
 * and the rest as it goes: the path keeps its inode.
 */
static void test_auto_large(void **state)
{
	struct reclaim_report rep;
	struct built b;

	build_store(&b, "rewrite-auto", 8, 20000);
	assert_true(b.chunks * b.cb > (48u << 20));
	assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_AUTO, &rep), 0);
	print_message("auto chose %s: %s\n", reclaim_strategy_name(rep.strategy),
		      rep.strategy_reason);
	assert_int_equal(rep.zero_chunks, b.zero);
	if (rep.strategy == RECLAIM_STRATEGY_REWRITE)
		check_rewritten(&b, &rep);
	else
		check_punched(&b);
	store_loads(b.path);
	unlink(b.path);
	free(b.kind_of);
}

/*
 * auto on a store too small to reach its decision point: it punches.  The
 * scan (buffered) punches provisionally as it goes, and where punches are
 * cheap it ends before the probes (a thread's start, a temp file, 1 MiB
 * written back, 16 punches): it then does not wait for them, auto_done() stops
 * the thread at its next step and the reason says so.  So the store goes to
 * /dev/shm when that is a tmpfs (punches of a few microseconds), the test
 * directory otherwise.  Either way the bytes are the same, exactly the zero and
 * hole chunks are holes, and no temp file is left.
 */
static void test_auto_small(void **state)
{
	const char *saved = dir;
	struct reclaim_report rep;
	struct built b;
	int early = 0;

	if (rt_exact_blocks("/dev/shm"))
		dir = "/dev/shm";
	for (int i = 0; i < 8; i++) {
		build_store(&b, "rewrite-auto-small", 8, 700);
		assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_AUTO, &rep), 0);
		if (i == 0)
			print_message("in %s: %s\n", dir, rep.strategy_reason);
		early += !!strstr(rep.strategy_reason, "before the probes were done");
		assert_int_equal(rep.strategy, RECLAIM_STRATEGY_PUNCH);
		assert_int_equal(rep.zero_chunks, b.zero);
		if (!strstr(rep.strategy_reason, "auto: punch:"))
			fail_msg("reason '%s'", rep.strategy_reason);
		check_punched(&b);
		store_loads(b.path);
		unlink(b.path);
		free(b.kind_of);
	}
	print_message("%d of 8 runs ended before the probes\n", early);
	dir = saved;
}

/*
 * auto where punches are cheap (tmpfs) and the scan reads through the page
 * cache: the scan's own first punches are the measure, the choice (punch) is
 * settled long before the write probe's PROBE_WRITE_DEFER_S, and nothing is
 * created beside the COW (inotify watches the directory).  Before, the probe
 * thread made its temp file and wrote 1 MiB there as the scan started.
 */
static void test_auto_writes_nothing(void **state)
{
	const char *saved = dir;
	struct reclaim_report rep;
	char buf[4096], tmp[600];
	struct built b;
	ssize_t n;
	int in;

	if (!rt_exact_blocks("/dev/shm"))
		skip();
	dir = "/dev/shm";
	build_store(&b, "rewrite-auto-quiet", 8, 20000);
	assert_int_equal(reclaim_rewrite_temp_path(b.path, tmp, sizeof(tmp)), 0);
	in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(in >= 0);
	assert_true(inotify_add_watch(in, dir, IN_CREATE) >= 0);
	assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_AUTO, &rep), 0);
	print_message("%s (%.3f s, %.1f us a punch)\n", rep.strategy_reason, rep.seconds,
		      rep.punch_probe_us);
	assert_int_equal(rep.strategy, RECLAIM_STRATEGY_PUNCH);
	assert_true(rep.punch_probe_us > 0);
	/* A scan slowed past the deferral (valgrind, a loaded machine) may probe: no claim then. */
	while (rep.seconds < 1.0 && (n = read(in, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->len && strstr(tmp, ev->name))
				fail_msg("auto created %s beside the COW", ev->name);
			p += sizeof(*ev) + ev->len;
		}
	close(in);
	check_punched(&b);
	unlink(b.path);
	free(b.kind_of);
	dir = saved;
}

/* The scan's punch timings: their median is the punch cost, dear above 20 us. */
static void test_punch_timed(void **state)
{
	struct auto_state st = {.tmp_fd = -1, .punch_from_scan = true};
	struct auto_state probe_file = {.tmp_fd = -1};

	(void)state;
	for (int i = 0; i < AUTO_PROBE_PUNCHES; i++) {
		assert_true(auto_wants_punch_time(&st));
		assert_false(auto_punch_dear(&st));
		auto_punch_timed(&st, (i % 2 ? 300e-6 : 200e-6) + i * 1e-6);
	}
	/* 200, 202 .. 214 and 301, 303 .. 315 us: the median is (214 + 301) / 2. */
	assert_false(auto_wants_punch_time(&st));
	assert_float_equal(st.punch_s, 257.5e-6, 1e-9);
	assert_true(auto_punch_dear(&st));
	auto_punch_timed(&st, 1);
	assert_float_equal(st.punch_s, 257.5e-6, 1e-9);
	/* Without punch_from_scan the probe file's punches are the measure. */
	assert_false(auto_wants_punch_time(&probe_file));
}

/* 8 MiB chunks, larger than the copy's buffer: zero, data, zero but for the second half. */
static void test_big_chunks(void **state)
{
	_cleanup_free_ char *buf = NULL;
	struct reclaim_report rep;
	struct storegen *sg;
	uint8_t sha[32], sha2[32];
	uint64_t nc[3];
	int fd;
	char path[512];

	(void)state;
	fd = rt_create(dir, "rewrite-big", 0600, path, sizeof(path));
	assert_true(fd >= 0);
	assert_int_equal(storegen_create(fd, 16384, false, &sg), 0);
	buf = calloc(1, sg->chunk_bytes);
	assert_non_null(buf);
	assert_int_equal(storegen_add_buf(sg, 0, buf, &nc[0]), 0);
	storegen_pattern(buf, sg->chunk_bytes, 7);
	assert_int_equal(storegen_add_buf(sg, 1, buf, &nc[1]), 0);
	memset(buf, 0, sg->chunk_bytes / 2);
	assert_int_equal(storegen_add_buf(sg, 2, buf, &nc[2]), 0);
	storegen_free(sg);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	close(fd);

	assert_int_equal(run_reclaim(path, RECLAIM_STRATEGY_REWRITE, &rep), 0);
	assert_int_equal(rep.zero_chunks, 1);
	assert_int_equal(rep.chunks_scanned, 3);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(rt_file_sha(fd, sha2), 0);
	assert_memory_equal(sha, sha2, 32);
	{
		_cleanup_free_ uint8_t *map = rt_alloc_map(fd, (nc[2] + 1) * (8u << 20));
		uint64_t per = (8u << 20) / RT_BLOCK;

		for (uint64_t k = 0; k < per; k++) {
			assert_int_equal(map[nc[0] * per + k], 0);
			assert_int_equal(map[nc[1] * per + k], 1);
			/* A kept chunk is written whole, its zero half included. */
			assert_int_equal(map[nc[2] * per + k], 1);
		}
	}
	close(fd);
	store_loads(path);
	unlink(path);
}

/* A plain file with a partial last block: sparsify_run() rewrites it, the tail copied. */
static void test_plain(void **state)
{
	static const char pat[] = "DZZHDZHHZD";
	const uint64_t n = 400, tail = 100;
	_cleanup_free_ char *blk = malloc(RT_BLOCK);
	struct sparsify_report rep;
	struct reclaim_opts o = {.strategy = RECLAIM_STRATEGY_REWRITE};
	const char *why;
	uint8_t sha[32];
	uint64_t zero = 0;
	struct stat st0;
	char path[512];
	int fd;

	(void)state;
	fd = rt_create(dir, "rewrite-plain", 0600, path, sizeof(path));
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < n; i++) {
		char k = pat[i % (sizeof(pat) - 1)];

		if (k == 'H')
			continue;
		if (k == 'Z')
			memset(blk, 0, RT_BLOCK), zero++;
		else
			storegen_pattern(blk, RT_BLOCK, i);
		assert_int_equal(pwrite(fd, blk, RT_BLOCK, (off_t)(i * RT_BLOCK)), RT_BLOCK);
	}
	memset(blk, 0x11, tail);
	assert_int_equal(pwrite(fd, blk, tail, (off_t)(n * RT_BLOCK)), (ssize_t)tail);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	assert_int_equal(fstat(fd, &st0), 0);
	o.path = path;
	assert_int_equal(sparsify_run(fd, &o, &rep), 0);
	close(fd);
	assert_int_equal(rep.scan.strategy, RECLAIM_STRATEGY_REWRITE);
	assert_int_equal(rep.scan.zero_chunks, zero);
	why = rt_rewritten(path, st0.st_ino, st0.st_size, sha);
	if (why)
		fail_msg("%s", why);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		_cleanup_free_ uint8_t *map = rt_alloc_map(fd, (uint64_t)st0.st_size);

		for (uint64_t i = 0; i < n; i++)
			assert_int_equal(map[i], pat[i % (sizeof(pat) - 1)] == 'D');
		assert_int_equal(map[n], 1); /* the partial last block */
	}
	close(fd);
	unlink(path);
}

/*
 * A plain file another process has open (read-only, as a restored VM maps its
 * memory file): sparsify_run() refuses a forced rewrite, the file untouched,
 * and its report names the process; auto punches it in place and says why.
 */
static void test_plain_held(void **state)
{
	_cleanup_free_ char *blk = malloc(RT_BLOCK);
	struct sparsify_report rep;
	struct reclaim_opts o = {.strategy = RECLAIM_STRATEGY_REWRITE};
	uint8_t sha[32], sha2[32];
	char path[512], pid_s[32];
	int fd, ready[2], go[2];
	struct stat st0, st;
	pid_t pid;
	char c;

	(void)state;
	fd = rt_create(dir, "rewrite-held", 0600, path, sizeof(path));
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < 64; i++) {
		if (i % 2)
			memset(blk, 0, RT_BLOCK);
		else
			storegen_pattern(blk, RT_BLOCK, i);
		assert_int_equal(pwrite(fd, blk, RT_BLOCK, (off_t)(i * RT_BLOCK)), RT_BLOCK);
	}
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	assert_int_equal(fstat(fd, &st0), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int hfd = open(path, O_RDONLY | O_CLOEXEC);

		close(ready[0]);
		close(go[1]);
		if (hfd < 0 || write(ready[1], "r", 1) != 1)
			_exit(1);
		(void)!read(go[0], &c, 1); /* until the parent closes its end */
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	snprintf(pid_s, sizeof(pid_s), "process %d", (int)pid);

	o.path = path;
	assert_int_equal(sparsify_run(fd, &o, &rep), -EPERM);
	if (!strstr(rep.scan.strategy_reason, pid_s))
		fail_msg("the refusal '%s' does not name %s", rep.scan.strategy_reason, pid_s);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_ino, st0.st_ino);
	assert_int_equal(st.st_blocks, st0.st_blocks);

	o.strategy = RECLAIM_STRATEGY_AUTO;
	assert_int_equal(sparsify_run(fd, &o, &rep), 0);
	assert_int_equal(rep.scan.strategy, RECLAIM_STRATEGY_PUNCH);
	if (!strstr(rep.scan.strategy_reason, pid_s))
		fail_msg("auto's reason '%s' does not name %s", rep.scan.strategy_reason, pid_s);
	assert_int_equal(rep.scan.zero_chunks, 32);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_ino, st0.st_ino);
	assert_true(st.st_blocks < st0.st_blocks);
	assert_int_equal(rt_file_sha(fd, sha2), 0);
	assert_memory_equal(sha, sha2, 32);

	close(go[1]);
	close(ready[0]);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	close(fd);
	unlink(path);
}

/* Refused: the file untouched (same inode, same bytes); auto punches and says why. */
static void refused(const char *path, const char *why_has)
{
	struct reclaim_report rep;
	uint8_t sha[32], sha2[32];
	struct stat st0, st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(rt_file_sha(fd, sha), 0);
	assert_int_equal(fstat(fd, &st0), 0);
	close(fd);
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(run_reclaim(path, RECLAIM_STRATEGY_REWRITE, &rep), -EPERM);
	if (!strstr(rep.strategy_reason, why_has))
		fail_msg("the refusal '%s' lacks '%s'", rep.strategy_reason, why_has);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(rt_file_sha(fd, sha2), 0);
	assert_memory_equal(sha, sha2, 32);
	assert_int_equal(st.st_ino, st0.st_ino);
	assert_int_equal(st.st_blocks, st0.st_blocks);
	close(fd);

	assert_int_equal(run_reclaim(path, RECLAIM_STRATEGY_AUTO, &rep), 0);
	assert_int_equal(rep.strategy, RECLAIM_STRATEGY_PUNCH);
	if (!strstr(rep.strategy_reason, why_has))
		fail_msg("auto's reason '%s' lacks '%s'", rep.strategy_reason, why_has);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_ino, st0.st_ino);
	assert_true(st.st_blocks < st0.st_blocks);
	assert_int_equal(rt_file_sha(fd, sha2), 0);
	assert_memory_equal(sha, sha2, 32);
	close(fd);
}

static void test_refuse_links(void **state)
{
	struct built b;
	char other[600];

	(void)state;
	build_store(&b, "rewrite-links", 8, 200);
	snprintf(other, sizeof(other), "%s.other", b.path);
	unlink(other);
	assert_int_equal(link(b.path, other), 0);
	refused(b.path, "2 links");
	unlink(other);
	unlink(b.path);
	free(b.kind_of);
}

/* mnt made and a file system mounted on it (root): tmpfs when img is NULL, else mkfs on img. */
static bool mount_fs(const char *mnt, const char *img, const char *mkfs, uint64_t bytes)
{
	char cmd[2048];

	if (geteuid() != 0)
		return false;
	rmdir(mnt);
	if (mkdir(mnt, 0700) < 0)
		return false;
	if (!img)
		return mount("cowpunch-test", mnt, "tmpfs", 0, "size=16m") == 0;
	snprintf(cmd, sizeof(cmd),
		 "truncate -s %llu %s && %s %s >/dev/null 2>&1 && mount -o loop %s %s 2>/dev/null",
		 (unsigned long long)bytes, img, mkfs, img, img, mnt);
	return system(cmd) == 0;
}

static void unmount_fs(const char *mnt, const char *img)
{
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	if (img)
		unlink(img);
}

/* 16 MiB of tmpfs: less than any file's allocation plus the 64 MiB margin. */
static void test_refuse_space(void **state)
{
	const char *saved = dir;
	char mnt[128];
	struct built b;

	(void)state;
	snprintf(mnt, sizeof(mnt), "/tmp/cowpunch-rewrite-space.%d", (int)getpid());
	if (!mount_fs(mnt, NULL, NULL, 0))
		rt_skip("cannot mount a tmpfs on %s (needs root): %s", mnt, strerror(errno));
	dir = mnt;
	build_store(&b, "s", 8, 400);
	refused(b.path, "free on its file system");
	unlink(b.path);
	free(b.kind_of);
	dir = saved;
	unmount_fs(mnt, NULL);
}

/* A reflinked copy on XFS: its extents are shared. */
static void test_refuse_shared(void **state)
{
	const char *saved = dir;
	char mnt[128], img[128], cmd[2048], copy[600];
	struct built b;

	(void)state;
	snprintf(mnt, sizeof(mnt), "/tmp/cowpunch-rewrite-xfs.%d", (int)getpid());
	snprintf(img, sizeof(img), "/var/tmp/cowpunch-rewrite-xfs.%d.img", (int)getpid());
	if (!mount_fs(mnt, img, "mkfs.xfs -q -m reflink=1", 512ull << 20)) {
		unmount_fs(mnt, img);
		rt_skip("cannot make and mount an XFS image with reflink (needs root, loop, "
			"mkfs.xfs)");
	}
	dir = mnt;
	build_store(&b, "x", 8, 400);
	snprintf(copy, sizeof(copy), "%s.copy", b.path);
	snprintf(cmd, sizeof(cmd), "cp --reflink=always %s %s", b.path, copy);
	assert_int_equal(system(cmd), 0);
	refused(b.path, "shares extents");
	unlink(copy);
	unlink(b.path);
	free(b.kind_of);
	dir = saved;
	unmount_fs(mnt, img);
}

/* A temp file a killed rewrite left goes with the next run, whatever its strategy. */
static void test_stale_temp(void **state)
{
	struct reclaim_report rep;
	struct built b;
	char tmp[600];
	int fd;

	(void)state;
	build_store(&b, "rewrite-stale", 8, 100);
	assert_int_equal(reclaim_rewrite_temp_path(b.path, tmp, sizeof(tmp)), 0);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage", 7), 7);
	close(fd);
	assert_int_equal(run_reclaim(b.path, RECLAIM_STRATEGY_PUNCH, &rep), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(b.path);
	free(b.kind_of);
}

/* Stopped before it starts: -ECANCELED, nothing changed, no temp file. */
static void test_stop(void **state)
{
	static volatile sig_atomic_t stop = 1;
	struct reclaim_opts o = {.strategy = RECLAIM_STRATEGY_REWRITE, .stop = &stop};
	struct reclaim_report rep;
	struct built b;
	struct stat st;
	char tmp[600];
	int fd;

	(void)state;
	build_store(&b, "rewrite-stop", 8, 300);
	o.path = b.path;
	fd = open(b.path, O_RDWR | O_CLOEXEC);
	assert_int_equal(rt_reclaim(fd, &o, &rep), -ECANCELED);
	close(fd);
	assert_int_equal(stat(b.path, &st), 0);
	assert_int_equal(st.st_ino, b.st.st_ino);
	assert_int_equal(st.st_blocks, b.st.st_blocks);
	assert_int_equal(reclaim_rewrite_temp_path(b.path, tmp, sizeof(tmp)), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(b.path);
	free(b.kind_of);
}

/* The write bandwidth from the two probes: net of the fixed cost only when it shows. */
static void test_write_bps(void **state)
{
	const uint64_t mib = 1u << 20;

	(void)state;
	/* 4 MiB in 40 ms, 1 MiB in 10 ms: 3 MiB in the 30 ms between them. */
	assert_float_equal(auto_write_bps(4 * mib, 0.040, mib, 0.010, 0), 3 * mib / 0.030, 1);
	/* 36 ms against 31 ms: 5 ms is jitter, not 3 MiB at 629 MB/s; 4 MiB in 36 ms stands. */
	assert_float_equal(auto_write_bps(4 * mib, 0.036, mib, 0.031, 0), 4 * mib / 0.036, 1);
	/* The 4 MiB write faster than the 1 MiB one: the same. */
	assert_float_equal(auto_write_bps(4 * mib, 0.008, mib, 0.031, 0), 4 * mib / 0.008, 1);
	/* Capped by the rate the scan read the file. */
	assert_float_equal(auto_write_bps(4 * mib, 0.040, mib, 0.010, 50e6), 50e6, 1);
	/* No time at all: finite. */
	assert_true(auto_write_bps(4 * mib, 0, mib, 0, 0) > 0);
}

/*
 * The choice after 1/16 of a 1.5 GiB store of ~95k zero runs (the scattered
 * store of docs/benchmarks.md), with no temp file: a write probe attempted
 * fails (big_write_s 0), and the reason says so.  So "whatever the write
 * probe says" in the reason and write_bps still 0 show its figures were not
 * needed; "write probe ... failed" shows they were.
 */
static void test_decide_skip_probe(void **state)
{
	const uint64_t mib = 1u << 20, total = 1536 * mib;
	struct rewrite_decide_in in = {
		.done_bytes = total / 16,
		.total_bytes = total,
		.runs = 95000 / 16,
		.taken_bytes = 614 * mib / 16,
		.bytes_read = total / 16,
		.allocated_before = total,
		.seconds = 0.1, /* 96 MiB from the device in 0.1 s: about 1 GB/s */
	};
	struct auto_state st = {.path = "cow", .tmp_fd = -1, .punch_s = 6e-6, .extents = 2};

	(void)state;
	/* 0.57 s of punches, against at least 0.97 s to write 922 MiB at 1 GB/s: punch, no probe. */
	assert_int_equal(auto_decide(&st, &in), 0);
	assert_false(st.chose_rewrite);
	assert_true(st.write_bps == 0);
	if (!strstr(st.reason, "auto: punch:") ||
	    !strstr(st.reason, "whatever the write probe says"))
		fail_msg("reason '%s'", st.reason);

	/* The same from the page cache: no read rate to bound a write by, so the probe runs. */
	in.cached_bytes = in.bytes_read;
	assert_int_equal(auto_decide(&st, &in), 0);
	if (!strstr(st.reason, "write probe") || !strstr(st.reason, "failed"))
		fail_msg("reason '%s'", st.reason);

	/* 0.3 ms a punch (a `discard` mount): 28.5 s of punches, the probe runs. */
	in.cached_bytes = 0;
	st.punch_s = 300e-6;
	assert_int_equal(auto_decide(&st, &in), 0);
	if (!strstr(st.reason, "failed"))
		fail_msg("reason '%s'", st.reason);

	/* Too little read from the device to tell a rate (8 MiB or less): the probe runs. */
	st.punch_s = 6e-6;
	in.bytes_read = 8 * mib;
	assert_int_equal(auto_decide(&st, &in), 0);
	if (!strstr(st.reason, "failed"))
		fail_msg("reason '%s'", st.reason);

	/*
	 * From the page cache, 60% of the way, the runs before punched
	 * provisionally: the 38k runs left cost 0.23 s, no more than 1.25 x the
	 * 0.2 s a rewrite would spend re-reading before its first write.
	 */
	in.done_bytes = total * 6 / 10;
	in.runs = 95000 * 6 / 10 * 4 / 10;
	in.bytes_read = in.cached_bytes = in.done_bytes;
	in.seconds = 0.2;
	assert_int_equal(auto_decide(&st, &in), 0);
	assert_true(st.write_bps == 0);
	if (!strstr(st.reason, "before writing a byte") ||
	    !strstr(st.reason, "whatever the write probe says"))
		fail_msg("reason '%s'", st.reason);
	/* 40% of the way, 57k runs left (0.34 s) against 0.13 s: the write probe is needed. */
	in.done_bytes = total * 4 / 10;
	in.runs = 95000 * 4 / 10 * 6 / 10;
	in.bytes_read = in.cached_bytes = in.done_bytes;
	in.seconds = 0.13;
	assert_int_equal(auto_decide(&st, &in), 0);
	if (!strstr(st.reason, "failed"))
		fail_msg("reason '%s'", st.reason);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store),
		cmocka_unit_test(test_auto_large),
		cmocka_unit_test(test_auto_small),
		cmocka_unit_test(test_auto_writes_nothing),
		cmocka_unit_test(test_punch_timed),
		cmocka_unit_test(test_big_chunks),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_plain_held),
		cmocka_unit_test(test_refuse_links),
		cmocka_unit_test(test_refuse_space),
		cmocka_unit_test(test_refuse_shared),
		cmocka_unit_test(test_stale_temp),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_write_bps),
		cmocka_unit_test(test_decide_skip_probe),
	};

	dir = rt_test_dir("test-rewrite");
	if (!dir)
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
