/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sparsify_run() on real files, with every engine, reading from the device,
 * from the page cache and through a buffered descriptor: the raw bytes hash
 * the same, exactly the blocks written as zeros become holes (st_blocks drops
 * by exactly them where st_blocks counts data only, tmpfs), holes stay holes,
 * blocks with data (one byte is enough) stay, and the partial last block is
 * never touched.  Then the writer checks: sparsify_find_writer() names a
 * process with the file open for writing or mapped shared and writable, and
 * sparsify_probe_writers() sees the same from the kernel's count.  Files go
 * to $COWPUNCH_TEST_DIR (default /tmp) and, for the exact st_blocks check, to
 * /dev/shm when that is a tmpfs.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "common/cleanup.h"
#include "reclaim/sparsify.h"
#include "tests/unit/reclaim/rtest.h"

static const char *dir;

/*
 * Block kinds, in file order: D data, Z written zeros, H hole (never written),
 * P zeros but for the block's last byte.  The pattern has runs of zeros, single
 * zero blocks, zeros with only holes between them (one punch), zeros with a P
 * or D between them (two punches), holes at the start and the end.
 */
static const char pattern[] = "HHZZDZZZZHZZDPZDZHHZPZDDDZZZZZZZZZZZZZZZZHZDHHHHDZZZPDZHZHZHZDD"
			      "ZDZDZDZDZZHHHHHHHHHHHHZZDDPPZZZZHHH";
#define REPEAT	10u
#define TAIL	100u /* zero bytes after the last whole block */
#define NBLOCKS ((sizeof(pattern) - 1) * REPEAT)
#define KIND(b) pattern[(b) % (sizeof(pattern) - 1)]

struct file {
	int fd;
	uint64_t bs, size;
	uint64_t zero, data, holes, ranges, bridges; /* expected, from the pattern */
	uint8_t sha[32];
	int64_t allocated;
};

/* The counts a correct sparsify finds, worked out from the pattern alone. */
static void expect(struct file *f)
{
	bool open_range = false; /* a run of Z that holes only may still extend */
	bool gap = false;	 /* holes since the last Z of that run */

	for (uint64_t b = 0; b < NBLOCKS; b++) {
		switch (KIND(b)) {
		case 'Z':
			f->zero++;
			if (!open_range)
				f->ranges++;
			else if (gap)
				f->bridges++;
			open_range = true;
			gap = false;
			break;
		case 'H':
			f->holes++;
			gap = open_range;
			break;
		default:
			f->data++;
			open_range = false;
			break;
		}
	}
}

static void write_file(struct file *f, const char *where)
{
	_cleanup_free_ uint8_t *buf = NULL;

	*f = (struct file){0};
	f->fd = rt_tmpfile(where);
	assert_true(f->fd >= 0);
	assert_int_equal(sparsify_block_size(f->fd, &f->bs), 0);
	buf = malloc(f->bs);
	assert_non_null(buf);
	for (uint64_t b = 0; b < NBLOCKS; b++) {
		char k = KIND(b);

		if (k == 'H')
			continue;
		memset(buf, 0, f->bs);
		if (k == 'D')
			storegen_pattern(buf, f->bs, b);
		if (k == 'P')
			buf[f->bs - 1] = 1;
		assert_int_equal(storegen_write_raw(f->fd, b * f->bs, buf, f->bs), 0);
	}
	/* A partial last block of written zeros: never to be punched. */
	memset(buf, 0, TAIL);
	assert_int_equal(storegen_write_raw(f->fd, NBLOCKS * f->bs, buf, TAIL), 0);
	f->size = NBLOCKS * f->bs + TAIL;
	assert_int_equal(fsync(f->fd), 0);
	assert_int_equal(rt_file_sha(f->fd, f->sha), 0);
	f->allocated = storegen_allocated(f->fd);
	expect(f);
}

/* True when byte off of fd lies in data (SEEK_DATA finds it there). */
static bool is_data(int fd, uint64_t off)
{
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);

	return d == (off_t)off;
}

/* Checks the file after a run that punched (or, dry, did not). */
static void check(const struct file *f, const struct sparsify_report *rep, bool dry, bool exact)
{
	const struct reclaim_report *s = &rep->scan;
	uint8_t sha[32];

	assert_int_equal(s->chunk_bytes, f->bs);
	assert_int_equal(rep->file_size, f->size);
	assert_int_equal(rep->blocks, NBLOCKS);
	assert_int_equal(rep->tail_bytes, TAIL);
	assert_int_equal(s->exceptions, 0);
	assert_int_equal(s->zero_chunks, f->zero);
	assert_int_equal(s->chunks_scanned, f->zero + f->data);
	assert_int_equal(s->hole_chunks, f->holes);
	assert_int_equal(s->punched_ranges, f->ranges);
	assert_int_equal(s->hole_bridges, f->bridges);
	assert_true(s->bytes_read >= (f->zero + f->data) * f->bs);
	assert_true(s->bytes_read <= NBLOCKS * f->bs);
	assert_int_equal(s->dry_run, dry);

	assert_int_equal(rt_file_sha(f->fd, sha), 0);
	assert_memory_equal(sha, f->sha, 32);
	for (uint64_t b = 0; b < NBLOCKS; b++) {
		char k = KIND(b);
		bool want = k == 'D' || k == 'P' || (k == 'Z' && dry);

		if (is_data(f->fd, b * f->bs) != want)
			fail_msg("block %llu (%c): %s after the run", (unsigned long long)b, k,
				 want ? "a hole" : "data");
	}
	assert_true(is_data(f->fd, NBLOCKS * f->bs)); /* the partial last block */
	assert_int_equal(s->allocated_before, f->allocated);
	assert_int_equal(s->allocated_after, storegen_allocated(f->fd));
	assert_int_equal(s->reclaimed_bytes, s->allocated_before - s->allocated_after);
	if (dry)
		assert_int_equal(s->reclaimed_bytes, 0);
	else if (exact)
		assert_int_equal(s->reclaimed_bytes, f->zero * f->bs);
	else /* st_blocks also counts extent-tree blocks: a punch may free or add one */
		assert_true(s->reclaimed_bytes + f->bs >= f->zero * f->bs &&
			    s->reclaimed_bytes <= f->zero * f->bs + 4 * f->bs);
}

enum source { DEVICE, CACHE, BUFFERED };

/* One run: returns false when the engine is unavailable here. */
static bool run_one(const char *where, enum reclaim_engine_kind kind, enum source src, bool dry)
{
	struct reclaim_opts opts = {.engine = kind, .dry_run = dry};
	struct sparsify_report rep;
	struct file f;
	_cleanup_close_ int fd = -1;
	int r;

	write_file(&f, where);
	if (src == DEVICE)
		assert_int_equal(posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	fd = rt_reopen(f.fd, src != BUFFERED);
	assert_true(fd >= 0);
	r = sparsify_run(fd, &opts, &rep);
	if (r == -ENOTSUP) {
		close(f.fd);
		return false;
	}
	assert_int_equal(r, 0);
	if (kind != RECLAIM_ENGINE_AUTO)
		assert_int_equal(rep.scan.engine, kind);
	check(&f, &rep, dry, rt_exact_blocks(where));
	close(f.fd);
	return true;
}

static void each_engine(const char *where)
{
	static const enum reclaim_engine_kind kinds[] = {RECLAIM_ENGINE_URING, RECLAIM_ENGINE_AIO,
							 RECLAIM_ENGINE_SYNC};
	unsigned ran = 0;

	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		for (enum source src = DEVICE; src <= BUFFERED; src++)
			ran += run_one(where, kinds[i], src, false);
	/* sync always runs; io_uring and libaio where the system allows them. */
	assert_true(ran >= 3);
	assert_true(run_one(where, RECLAIM_ENGINE_AUTO, CACHE, true));
}

static void test_engines(void **state)
{
	each_engine(dir);
}

/* On tmpfs st_blocks counts data pages only: the drop is exactly the zero blocks. */
static void test_exact_on_tmpfs(void **state)
{
	if (!rt_exact_blocks("/dev/shm") || rt_dir_unusable("/dev/shm")) {
		print_message("/dev/shm is not a usable tmpfs: exact st_blocks checked only in "
			      "%s if it is one\n",
			      dir);
		skip();
	}
	each_engine("/dev/shm");
}

/* A file shorter than a block, an empty one, not a regular file, a free bitmap. */
static void test_edges(void **state)
{
	struct reclaim_opts opts = {.engine = RECLAIM_ENGINE_SYNC};
	struct sparsify_report rep;
	uint8_t zeros[100] = {0}, one = 0;
	int fd = rt_tmpfile(dir), p[2];

	assert_true(fd >= 0);
	assert_int_equal(sparsify_run(fd, &opts, &rep), 0);
	assert_int_equal(rep.file_size, 0);
	assert_int_equal(rep.blocks, 0);
	assert_int_equal(rep.scan.bytes_read, 0);
	assert_int_equal(storegen_write_raw(fd, 0, zeros, sizeof(zeros)), 0);
	assert_int_equal(sparsify_run(fd, &opts, &rep), 0);
	assert_int_equal(rep.blocks, 0);
	assert_int_equal(rep.tail_bytes, 100);
	assert_int_equal(rep.scan.zero_chunks, 0);
	assert_true(is_data(fd, 0));
	opts.free_bitmap = &one;
	assert_int_equal(sparsify_run(fd, &opts, &rep), -EINVAL);
	opts.free_bitmap = NULL;
	close(fd);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(sparsify_run(p[0], &opts, &rep), -EINVAL);
	close(p[0]);
	close(p[1]);
}

enum hold { HOLD_WRITE, HOLD_READ, HOLD_MAP_SHARED, HOLD_MAP_PRIVATE };

/*
 * Starts a child that opens path (HOLD_WRITE: O_WRONLY; HOLD_READ: O_RDONLY;
 * the maps: O_RDWR, mapped read-write, descriptor closed) and waits to be
 * killed.  Returns its pid; *ret_fd is its descriptor (-1 for the maps).
 */
static pid_t hold(const char *path, enum hold how, int *ret_fd)
{
	int p[2], fd;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Dies with the test, even when an assertion ends it early. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(path, how == HOLD_WRITE  ? O_WRONLY
				: how == HOLD_READ ? O_RDONLY
						   : O_RDWR);
		if (fd >= 0 && (how == HOLD_MAP_SHARED || how == HOLD_MAP_PRIVATE)) {
			void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				       how == HOLD_MAP_SHARED ? MAP_SHARED : MAP_PRIVATE, fd, 0);

			close(fd);
			fd = m == MAP_FAILED ? -2 : -1;
		}
		if (write(p[1], &fd, sizeof(fd)) != sizeof(fd))
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &fd, sizeof(fd)), sizeof(fd));
	close(p[0]);
	assert_true(fd >= -1);
	*ret_fd = fd;
	return pid;
}

static void unhold(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_writers(void **state)
{
	char path[256];
	struct sparsify_writer w;
	struct stat st;
	int fd, ro, cfd;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/cowpunch-sparsify-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);

	/* Nobody else: the kernel says so; /proc finds nobody (it may not see every process). */
	assert_int_equal(sparsify_probe_writers(ro), 0);
	assert_int_not_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);

	pid = hold(path, HOLD_WRITE, &cfd);
	assert_int_equal(sparsify_probe_writers(ro), 1);
	assert_int_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);
	assert_int_equal(w.pid, pid);
	assert_int_equal(w.fd, cfd);
	assert_true(w.comm[0] != '\0');
	unhold(pid);
	assert_int_equal(sparsify_probe_writers(ro), 0);
	assert_int_not_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);

	/* A reader and a private mapping cannot change the file: not writers. */
	pid = hold(path, HOLD_READ, &cfd);
	assert_int_equal(sparsify_probe_writers(ro), 0);
	assert_int_not_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);
	unhold(pid);

	/* A shared writable mapping whose descriptor was closed: found in /proc/PID/maps. */
	pid = hold(path, HOLD_MAP_SHARED, &cfd);
	assert_int_equal(sparsify_probe_writers(ro), 1);
	assert_int_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);
	assert_int_equal(w.pid, pid);
	assert_int_equal(w.fd, -1);
	unhold(pid);

	/*
	 * MAP_PRIVATE writes go to private copies; its O_RDWR file stays open for
	 * writing in the kernel's count, so the probe says "writer" while /proc
	 * (descriptor closed, mapping private) does not name one.
	 */
	pid = hold(path, HOLD_MAP_PRIVATE, &cfd);
	assert_int_equal(sparsify_probe_writers(ro), 1);
	assert_int_not_equal(sparsify_find_writer(st.st_dev, st.st_ino, &w), 1);
	unhold(pid);

	close(ro);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engines),
		cmocka_unit_test(test_exact_on_tmpfs),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_writers),
	};

	dir = rt_test_dir("test-sparsify");
	if (!dir)
		return 77;
	printf("test-sparsify: files in %s (st_blocks %s)\n", dir,
	       rt_exact_blocks(dir) ? "checked exactly" : "may count extent-tree blocks");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
