/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rewrite strategy: a new file beside the old one holding every byte of it
 * except the reclaimable chunks, which stay holes, fsynced and renamed over the
 * old one; and the measurements `auto` chooses by.  See docs/reclaim.md.
 *
 * The copy reads through the engines (reclaim/engine.h): up to RW_DEPTH
 * windows of 4 MiB in flight, O_DIRECT where the file system takes it (spans
 * already in the page cache are copied from there, as the scan does), judged
 * and written in file order.  Chunks larger than a window are read one piece
 * at a time with pread.  Writes go through the page cache: the kept runs
 * between zero chunks are often a chunk or two long, and an O_DIRECT write that
 * small into new blocks costs an unwritten-extent conversion each (measured: 6
 * s for a 78 MiB store of 4 KiB chunks, 40% of them scattered zeros), while
 * buffered writes are allocated in large extents at write-back.  Write-back is
 * started every WB_WINDOW bytes (sync_file_range) and the window before it
 * waited for and dropped from the cache, so the device writes while the copy
 * goes on and at most two windows of dirty pages are held.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/engine.h"
#include "reclaim/extent.h"
#include "reclaim/rewrite.h"

#define RW_BUF	   (4u << 20)
#define WB_WINDOW  (32ull << 20)
#define RW_ALIGN   4096u
#define TMP_SUFFIX ".cowpunch-rewrite"
/* Free space a rewrite leaves at least: 1/16 of the file's allocation, and 64 MiB. */
#define SPACE_MARGIN_MIN (64ull << 20)

int reclaim_rewrite_temp_path(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	int dlen = slash ? (int)(slash - path + 1) : 0;
	int n;

	if (!*base)
		return -EINVAL;
	n = snprintf(buf, len, "%.*s.%s" TMP_SUFFIX, dlen, path, base);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int rewrite_remove_stale(const char *path)
{
	char tmp[PATH_MAX];
	int r = reclaim_rewrite_temp_path(path, tmp, sizeof(tmp));

	if (r < 0)
		return r;
	if (unlink(tmp) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/*
 * Walks fd's extents (FIEMAP): 1 when one is shared with another file (reflink,
 * snapshot), else 0; *ret_extents counts them.
 */
static int walk_extents(int fd, uint64_t size, uint64_t *ret_extents)
{
	enum { N = 256 };
	_cleanup_free_ struct fiemap *fm = NULL;
	uint64_t start = 0, n = 0;

	fm = calloc(1, sizeof(*fm) + N * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	while (start < size) {
		struct fiemap_extent *last;

		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = size - start;
		fm->fm_extent_count = N;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
			return -errno;
		if (fm->fm_mapped_extents == 0)
			break;
		n += fm->fm_mapped_extents;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
			if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED)
				return 1;
		last = &fm->fm_extents[fm->fm_mapped_extents - 1];
		if (last->fe_flags & FIEMAP_EXTENT_LAST)
			break;
		start = last->fe_logical + last->fe_length;
	}
	if (ret_extents)
		*ret_extents = n;
	return 0;
}

int rewrite_refusal(int fd, const char *path, char *why, size_t why_len, uint64_t *ret_extents)
{
	struct stat st, sp;
	struct statvfs vfs;
	uint64_t alloc, need, avail;
	char a[32], b[32];
	int r;

	*ret_extents = 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_nlink != 1) {
		snprintf(why, why_len,
			 "%s has %llu links: a rewrite would leave the other names on the old "
			 "file",
			 path, (unsigned long long)st.st_nlink);
		return 1;
	}
	if (stat(path, &sp) < 0 || sp.st_dev != st.st_dev || sp.st_ino != st.st_ino) {
		snprintf(why, why_len, "%s no longer names the file being reclaimed", path);
		return 1;
	}
	r = walk_extents(fd, (uint64_t)st.st_size, ret_extents);
	if (r == 1) {
		snprintf(why, why_len,
			 "%s shares extents with another file (FIEMAP_EXTENT_SHARED): a rewrite "
			 "would unshare them and take more space",
			 path);
		return 1;
	}
	/* No FIEMAP (tmpfs, some network file systems): nothing can be shared there. */
	if (r < 0 && r != -EOPNOTSUPP && r != -ENOTTY)
		return r;
	if (fstatvfs(fd, &vfs) < 0)
		return -errno;
	alloc = (uint64_t)st.st_blocks * 512;
	need = alloc + (alloc / 16 > SPACE_MARGIN_MIN ? alloc / 16 : SPACE_MARGIN_MIN);
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail < need) {
		snprintf(why, why_len,
			 "%s: %s free on its file system, less than the %s a rewrite may write "
			 "plus a margin",
			 path, util_format_bytes(avail, a, sizeof(a)),
			 util_format_bytes(alloc, b, sizeof(b)));
		return 1;
	}
	return 0;
}

/*
 * Creates the temp file for path (O_DIRECT when direct and taken: *ret_direct), locked (so that once
 * renamed into place nobody else reclaims it before we are done).  A stale one
 * (a killed run; the caller holds the file's lock, so no run is writing it) is
 * removed first.
 */
static int create_temp(const char *path, char *tmp, size_t len, bool direct, bool *ret_direct)
{
	int fd, r;

	r = reclaim_rewrite_temp_path(path, tmp, len);
	if (r < 0)
		return r;
	if (unlink(tmp) < 0 && errno != ENOENT)
		return -errno;
	fd = -1;
	errno = EINVAL;
	if (direct)
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
	if (ret_direct)
		*ret_direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		unlink(tmp);
		close(fd);
		return r;
	}
	return fd;
}

/*
 * Owner, mode and every extended attribute of src onto dst: user.*, trusted.*,
 * security.* (SELinux and SMACK labels, file capabilities) and the POSIX ACLs
 * (system.posix_acl_access / _default).  Owner first: a chown clears
 * security.capability and the set-id bits.  Any that cannot be carried over
 * fails the rewrite (-errno), before anything is copied.
 */
static int copy_attributes(int src, int dst, const struct stat *st)
{
	_cleanup_free_ char *names = NULL, *val = NULL;
	ssize_t n, vcap = 0;

	if (fchown(dst, st->st_uid, st->st_gid) < 0)
		return -errno;
	if (fchmod(dst, st->st_mode & 07777) < 0)
		return -errno;
	n = flistxattr(src, NULL, 0);
	if (n < 0)
		return errno == ENOTSUP ? 0 : -errno;
	if (n == 0)
		return 0;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = flistxattr(src, names, (size_t)n);
	if (n < 0)
		return -errno;
	for (char *p = names; p < names + n; p += strlen(p) + 1) {
		ssize_t v = fgetxattr(src, p, NULL, 0);

		if (v < 0)
			return -errno;
		if (v > vcap) {
			char *nv = realloc(val, (size_t)v);

			if (!nv)
				return -ENOMEM;
			val = nv;
			vcap = v;
		}
		v = fgetxattr(src, p, val, (size_t)v);
		if (v < 0)
			return -errno;
		if (fsetxattr(dst, p, val, (size_t)v, 0) < 0)
			return -errno;
	}
	return 0;
}

struct rw {
	int src, src_buf; /* src_buf: buffered, for spans in the page cache and refused O_DIRECT */
	int dst;
	bool src_direct;
	uint64_t wb_start, wb_prev; /* write-back: window being started, and the one before */
	const struct reclaim_layout *l;
	const struct reclaim_opts *opts;
	struct reclaim_report *rep;
	uint64_t cb, size;
	char *buf;
	size_t bufsz;
	char *zeros; /* bufsz zero bytes, for chunks larger than the buffer */
	uint64_t done_bytes, total_bytes;
	double last_progress;
};

/* True when chunk c may be left out: the layout lets it be punched. */
static bool may_skip(const struct rw *w, uint64_t c)
{
	const struct reclaim_layout *l = w->l;

	if (c >= l->chunks)
		return false;
	if (l->may_punch && !snapstore_bitmap_test(l->may_punch, c))
		return false;
	return !(l->store && (c == 0 || snapstore_is_metadata_chunk(l->store, c)));
}

static bool is_free(const struct rw *w, uint64_t c)
{
	return w->opts->free_bitmap && snapstore_bitmap_test(w->opts->free_bitmap, c);
}

static int rw_stopped(const struct rw *w)
{
	return w->opts->stop && *w->opts->stop ? -ECANCELED : 0;
}

static void rw_progress(struct rw *w)
{
	double now;

	if (!w->opts->progress)
		return;
	now = util_now();
	if (now - w->last_progress < 0.25)
		return;
	w->last_progress = now;
	w->opts->progress(w->opts->progress_opaque, w->done_bytes, w->total_bytes);
}

/* Reads [off, off + len) of the old file, exactly (a short file now is an I/O error). */
static int rw_read(struct rw *w, char *buf, size_t len, uint64_t off)
{
	ssize_t n = -EINVAL;
	int r;

	r = rw_stopped(w);
	if (r == 0 && w->opts->throttle)
		r = w->opts->throttle(w->opts->throttle_opaque, len);
	if (r < 0)
		return r;
	if (util_cached(w->src_buf, off, len) == 1) {
		n = util_pread_full(w->src_buf, buf, len, off);
		if (n == (ssize_t)len)
			w->rep->cached_bytes += len;
	}
	if (n != (ssize_t)len && w->src_direct) {
		n = util_pread_full(w->src, buf, len, off);
		if (n == -EINVAL)
			w->src_direct = false; /* an alignment the file system refuses */
	}
	if (n != (ssize_t)len && !w->src_direct) {
		/* Read through the cache by us: dropped again, as the scan does. */
		n = util_pread_full(w->src_buf, buf, len, off);
		posix_fadvise(w->src_buf, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	}
	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return -EIO;
	w->rep->bytes_read += len;
	return 0;
}

/*
 * Once the copy has passed the end of a write-back window: starts writing that
 * window out, and waits for the one before and drops it from the cache.
 * Errors are left to the fsync at the end, which reports them.
 */
static void rw_writeback(struct rw *w, uint64_t pos)
{
	if (pos < w->wb_start + WB_WINDOW)
		return;
	sync_file_range(w->dst, (off_t)w->wb_start, (off_t)(pos - w->wb_start),
			SYNC_FILE_RANGE_WRITE);
	if (w->wb_prev < w->wb_start) {
		sync_file_range(w->dst, (off_t)w->wb_prev, (off_t)(w->wb_start - w->wb_prev),
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(w->dst, (off_t)w->wb_prev, (off_t)(w->wb_start - w->wb_prev),
			      POSIX_FADV_DONTNEED);
	}
	w->wb_prev = w->wb_start;
	w->wb_start = pos;
}

static int rw_write(struct rw *w, const char *buf, size_t len, uint64_t off)
{
	ssize_t n = util_pwrite_full(w->dst, buf, len, off);

	if (n < 0)
		return (int)n;
	w->rep->bytes_written += len;
	rw_writeback(w, off + len);
	return 0;
}

/* Writes the kept chunks among [c, c + n), whose bytes are in w->buf, as runs. */
static int write_kept(struct rw *w, const char *buf, uint64_t c, uint64_t n, const uint8_t *skip)
{
	uint64_t i = 0;

	while (i < n) {
		uint64_t j;
		int r;

		if (skip[i]) {
			i++;
			continue;
		}
		for (j = i; j < n && !skip[j]; j++)
			;
		r = rw_write(w, buf + i * w->cb, (j - i) * w->cb, (c + i) * w->cb);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}

/* Judges chunks [c, c + n), read into buf, and writes those kept. */
static int judge_and_write(struct rw *w, const char *buf, uint64_t c, uint64_t n)
{
	uint8_t skip[RW_BUF / 512];
	int r;

	for (uint64_t i = 0; i < n; i++) {
		skip[i] = 0;
		if (!may_skip(w, c + i))
			continue;
		if (is_free(w, c + i)) {
			w->rep->fs_free_chunks++;
			skip[i] = 1;
			continue;
		}
		w->rep->chunks_scanned++;
		if (util_is_zero(buf + i * w->cb, w->cb)) {
			w->rep->zero_chunks++;
			skip[i] = 1;
		}
	}
	r = write_kept(w, buf, c, n, skip);
	if (r < 0)
		return r;
	w->done_bytes += n * w->cb;
	rw_progress(w);
	return 0;
}

/* One chunk larger than the buffer, read in pieces; written only if some piece is not zero. */
static int copy_big(struct rw *w, uint64_t c)
{
	uint64_t start = c * w->cb, zero_to = start;
	bool judge = may_skip(w, c), all_zero = true;
	int r;

	if (judge && is_free(w, c)) {
		w->rep->fs_free_chunks++;
		w->done_bytes += w->cb;
		return 0;
	}
	for (uint64_t off = start; off < start + w->cb; off += w->bufsz) {
		r = rw_read(w, w->buf, w->bufsz, off);
		if (r < 0)
			return r;
		if (judge && all_zero && util_is_zero(w->buf, w->bufsz)) {
			zero_to = off + w->bufsz;
			continue;
		}
		if (all_zero) {
			all_zero = false;
			/* The zero pieces before this one belong to a kept chunk: write them. */
			for (uint64_t z = start; z < zero_to; z += w->bufsz) {
				r = rw_write(w, w->zeros, w->bufsz, z);
				if (r < 0)
					return r;
			}
		}
		r = rw_write(w, w->buf, w->bufsz, off);
		if (r < 0)
			return r;
	}
	if (judge) {
		w->rep->chunks_scanned++;
		w->rep->zero_chunks += all_zero;
	}
	w->done_bytes += w->cb;
	rw_progress(w);
	return 0;
}

/* Bytes [from, to) past the last chunk (a plain file's partial block): copied as they are. */
static int copy_tail(struct rw *w, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = to - from < w->bufsz ? (size_t)(to - from) : w->bufsz;
		ssize_t got = util_pread_full(w->src_buf, w->buf, n, from);
		int r;

		if (got < 0)
			return (int)got;
		if ((size_t)got != n)
			return -EIO;
		w->rep->bytes_read += n;
		r = rw_write(w, w->buf, n, from);
		if (r < 0)
			return r;
		from += n;
	}
	return 0;
}

/* Chunks in [from, to) that may be left out: counted as holes when a hole skipped them. */
static uint64_t skippable_between(const struct rw *w, uint64_t from, uint64_t to)
{
	uint64_t n = 0;

	if (!w->l->may_punch && !w->l->store)
		return to - from;
	for (uint64_t c = from; c < to; c++)
		n += may_skip(w, c);
	return n;
}

/*
 * Walks the file's data extents (SEEK_DATA/SEEK_HOLE) as chunk ranges, in
 * order; holes are never read nor written.  Data past the last chunk is left
 * for copy_tail().
 */
struct rw_iter {
	uint64_t pos;	 /* byte offset to look for data from */
	uint64_t next;	 /* first chunk not handed out yet */
	uint64_t c0, c1; /* the extent's chunks still to hand out */
};

/* The next range of chunks (at most max) holding data: 1 with *ret_c, *ret_n; 0 at the end. */
static int iter_next(struct rw *w, struct rw_iter *it, uint64_t max, uint64_t *ret_c,
		     uint64_t *ret_n)
{
	uint64_t limit = w->l->chunks * w->cb;

	while (it->c0 >= it->c1) {
		uint64_t d, h;

		if (reclaim_next_data_extent(w->src, it->pos, limit, &d, &h) != 1)
			return 0;
		it->c0 = d / w->cb;
		it->c1 = (h + w->cb - 1) / w->cb;
		if (it->c0 < it->next)
			it->c0 = it->next;
		if (it->c1 > w->l->chunks)
			it->c1 = w->l->chunks;
		it->pos = it->c1 * w->cb > h ? it->c1 * w->cb : h;
		if (it->c0 < it->c1) {
			w->rep->hole_chunks += skippable_between(w, it->next, it->c0);
			w->done_bytes += (it->c0 - it->next) * w->cb;
			it->next = it->c1;
		}
	}
	*ret_c = it->c0;
	*ret_n = it->c1 - it->c0 < max ? it->c1 - it->c0 : max;
	it->c0 += *ret_n;
	return 1;
}

/* Bytes past the last whole chunk that hold data. */
static int copy_tails(struct rw *w)
{
	uint64_t pos = w->l->chunks * w->cb, d, h;

	while (reclaim_next_data_extent(w->src, pos, w->size, &d, &h) == 1) {
		int r = copy_tail(w, d, h);

		if (r < 0)
			return r;
		pos = h;
	}
	return 0;
}

/* Reads in flight through the engine, at most this many (RW_DEPTH buffers of RW_BUF). */
#define RW_DEPTH 4

struct rw_win {
	struct reclaim_io io;
	uint64_t c, n;
};

/*
 * Finishes a window the engine read short or refused: the rest through the
 * buffered descriptor (an alignment O_DIRECT refuses), dropped from the cache
 * after.  A file shorter now than the chunks it had is an I/O error.
 */
static int finish_window(struct rw *w, struct reclaim_io *io)
{
	uint32_t got = io->res > 0 ? (uint32_t)io->res : 0;
	ssize_t n;

	if (io->res < 0 && io->res != -EINVAL)
		return io->res;
	n = util_pread_full(w->src_buf, (char *)io->buf + got, io->len - got, io->off + got);
	posix_fadvise(w->src_buf, (off_t)(io->off + got), (off_t)(io->len - got),
		      POSIX_FADV_DONTNEED);
	if (n < 0)
		return (int)n;
	return (uint64_t)n == io->len - got ? 0 : -EIO;
}

/*
 * The copy for chunks no larger than the buffer: up to RW_DEPTH windows read
 * ahead through the engine (spans already in the page cache copied from
 * there), judged and written in file order.
 */
static int copy_pipelined(struct rw *w, struct reclaim_engine *e, char *bufs, bool *ret_leak)
{
	struct rw_win win[RW_DEPTH];
	struct rw_iter it = {0};
	uint64_t per = w->bufsz / w->cb;
	unsigned head = 0, inflight = 0;
	bool end = false;
	int r = 0;

	for (unsigned i = 0; i < RW_DEPTH; i++)
		win[i].io.buf = bufs + (size_t)i * w->bufsz;
	for (;;) {
		while (!end && inflight < RW_DEPTH) {
			struct rw_win *x = &win[(head + inflight) % RW_DEPTH];

			r = rw_stopped(w);
			if (r == 0)
				r = iter_next(w, &it, per, &x->c, &x->n);
			if (r <= 0) {
				end = r == 0;
				break;
			}
			r = 0;
			x->io.off = x->c * w->cb;
			x->io.len = (uint32_t)(x->n * w->cb);
			x->io.res = 0;
			x->io.done = false;
			if (w->opts->throttle) {
				r = w->opts->throttle(w->opts->throttle_opaque, x->io.len);
				if (r < 0)
					break;
			}
			if (util_cached(w->src_buf, x->io.off, x->io.len) == 1 &&
			    util_pread_full(w->src_buf, x->io.buf, x->io.len, x->io.off) ==
				    (ssize_t)x->io.len) {
				x->io.res = (int32_t)x->io.len;
				x->io.done = true;
				w->rep->cached_bytes += x->io.len;
			} else {
				r = e->ops->submit(e, &x->io);
				if (r < 0)
					break;
			}
			inflight++;
		}
		if (r < 0 || !inflight)
			break;
		while (!win[head].io.done) {
			r = e->ops->reap(e);
			if (r < 0)
				break;
		}
		if (r < 0)
			break;
		if (win[head].io.res != (int32_t)win[head].io.len)
			r = finish_window(w, &win[head].io);
		if (r == 0) {
			w->rep->bytes_read += win[head].io.len;
			r = judge_and_write(w, win[head].io.buf, win[head].c, win[head].n);
		}
		head = (head + 1) % RW_DEPTH;
		inflight--;
		if (r < 0)
			break;
	}
	if (r == 0)
		w->rep->hole_chunks += skippable_between(w, it.next, w->l->chunks);
	/* The kernel writes into a buffer until its read completes: wait for them all. */
	while (inflight) {
		if (!win[head].io.done) {
			if (e->ops->reap(e) < 0) {
				*ret_leak = true;
				return r < 0 ? r : -EIO;
			}
			continue;
		}
		head = (head + 1) % RW_DEPTH;
		inflight--;
	}
	return r;
}

/* The copy, extent by extent (reclaim/extent.h): holes are never read nor written. */
static int copy_file(struct rw *w)
{
	uint64_t limit = w->l->chunks * w->cb, pos = 0, next = 0, d, h;
	int r;

	while (reclaim_next_data_extent(w->src, pos, w->size, &d, &h) == 1) {
		if (d < limit) {
			uint64_t c0 = d / w->cb, c1 = (h + w->cb - 1) / w->cb;

			if (c0 < next)
				c0 = next;
			if (c1 > w->l->chunks)
				c1 = w->l->chunks;
			r = 0;
			if (c0 < c1) {
				w->rep->hole_chunks += skippable_between(w, next, c0);
				w->done_bytes += (c0 - next) * w->cb;
				for (uint64_t c = c0; c < c1 && r == 0; c++)
					r = copy_big(w, c);
				if (r < 0)
					return r;
				next = c1;
			}
			pos = h < limit ? h : limit;
			if (pos < next * w->cb && next * w->cb <= limit)
				pos = next * w->cb;
		} else {
			r = copy_tail(w, d, h);
			if (r < 0)
				return r;
			pos = h;
		}
	}
	w->rep->hole_chunks += skippable_between(w, next, w->l->chunks);
	return 0;
}

int rewrite_run(int fd, const char *path, const struct reclaim_layout *l,
		const struct reclaim_opts *opts, struct reclaim_report *rep)
{
	_cleanup_close_ int dst = -1, src_buf = -1, dirfd = -1;
	_cleanup_free_ void *buf = NULL, *zeros = NULL, *bufs = NULL;
	char tmp[PATH_MAX], procpath[64];
	struct stat st, sp, sn;
	struct rw w = {0};
	int fl, r;

	if (fstat(fd, &st) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	/* Opened before anything is written: a folder it cannot open fails the run first. */
	dirfd = util_open_dir_of(path);
	if (dirfd < 0)
		return dirfd;
	snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", fd);
	src_buf = open(procpath, O_RDONLY | O_CLOEXEC);
	if (src_buf < 0)
		return -errno;
	if (posix_memalign(&buf, RW_ALIGN, RW_BUF))
		return -ENOMEM;
	if (l->chunk_bytes <= RW_BUF && posix_memalign(&bufs, RW_ALIGN, (size_t)RW_DEPTH * RW_BUF))
		return -ENOMEM;
	if (l->chunk_bytes > RW_BUF) {
		zeros = NULL;
		if (posix_memalign(&zeros, RW_ALIGN, RW_BUF))
			return -ENOMEM;
		memset(zeros, 0, RW_BUF);
	}

	dst = create_temp(path, tmp, sizeof(tmp), false, NULL);
	if (dst < 0)
		return dst;
	r = copy_attributes(fd, dst, &st);
	if (r >= 0 && ftruncate(dst, st.st_size) < 0)
		r = -errno;
	if (r < 0)
		goto fail;

	w = (struct rw){
		.src = fd,
		.src_buf = src_buf,
		.dst = dst,
		.src_direct = fl & O_DIRECT,
		.l = l,
		.opts = opts,
		.rep = rep,
		.cb = l->chunk_bytes,
		.size = (uint64_t)st.st_size,
		.buf = buf,
		.bufsz = RW_BUF,
		.zeros = zeros,
		.total_bytes = l->chunks * l->chunk_bytes,
	};
	if (w.cb > w.bufsz) {
		/* Chunks larger than a buffer: one piece at a time (copy_big). */
		r = copy_file(&w);
		rep->engine = RECLAIM_ENGINE_SYNC;
	} else {
		struct reclaim_engine e = {.fd = fd, .depth = RW_DEPTH};
		bool leak = false;

		r = reclaim_engine_start(&e, opts->engine);
		if (r < 0)
			goto fail;
		rep->engine = e.ops->kind;
		r = copy_pipelined(&w, &e, bufs, &leak);
		e.ops->exit(&e);
		if (leak)
			(void)TAKE_PTR(bufs); /* reads may still land there: never given back */
		if (r == 0)
			r = copy_tails(&w);
	}
	if (r < 0)
		goto fail;
	if (opts->progress)
		opts->progress(opts->progress_opaque, w.total_bytes, w.total_bytes);
	r = rw_stopped(&w);
	if (r < 0)
		goto fail;
	/* The new file whole on disk before its name replaces the old one. */
	if (fsync(dst) < 0) {
		r = -errno;
		goto fail;
	}
	/* Nobody may have put another file at path meanwhile (they would lose it). */
	if (stat(path, &sp) < 0 || sp.st_dev != st.st_dev || sp.st_ino != st.st_ino) {
		r = -EBUSY;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	/* The rename itself durable: after this, a crash finds the new file. */
	if (fsync(dirfd) < 0)
		return -errno;
	if (fstat(dst, &sn) < 0)
		return -errno;
	rep->allocated_after = (uint64_t)sn.st_blocks * 512;
	return 0;
fail:
	unlink(tmp);
	return r;
}

/* ---- auto ---- */

/* Probe: 1 MiB written, single 4 KiB blocks punched out of it, each timed. */
#define PROBE_BYTES   (1u << 20)
#define PROBE_PUNCHES AUTO_PROBE_PUNCHES
/* Write-bandwidth probe, taken only when punching looks costly. */
#define PROBE_WRITE_BYTES (4u << 20)
/* Punches estimated below this cost too little for a rewrite to be worth it. */
#define PUNCH_CHEAP_S 0.1
/* A rewrite must be estimated this much cheaper: punching in place is the simpler change. */
#define REWRITE_MARGIN 1.25
/*
 * Punches dearer than this are put off until auto chooses (auto_punch_dear()):
 * on ext4 with a journal and no `discard` one costs 5-15 us, where a punch that
 * waits for a discard costs 150-300 us.
 */
#define PUNCH_PROVISIONAL_S 20e-6
/* How long the probe thread waits for the scan to settle the choice without the write probe. */
#define PROBE_WRITE_WAIT_MS 50
/*
 * Where the scan times its own punches (st->punch_from_scan) and finds them
 * cheap, it punches as it goes, and its progress alone usually settles the
 * choice (decide()): the write probe waits this long from the probes' start
 * before it writes a byte.  A warm scan of the 1.5 GiB stores of
 * docs/benchmarks.md takes 0.35-0.5 s.
 */
#define PROBE_WRITE_DEFER_S 1.0

static int probe_write(struct auto_state *st);

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Writes the probe file's first len bytes back and waits for them, as the
 * rewrite's write-back windows do (rw_writeback()): the blocks are allocated
 * and on the device, and no journal commit is forced.  An fdatasync would
 * force one, which the scan's punches (journalled too) may have to wait for:
 * on the scratch ext4 of docs/benchmarks.md, while the disk under it was slow,
 * warm autos whose probes fdatasync'ed took 0.73-0.79 s in four rounds where
 * punch took 0.33-0.44 s.  fdatasync only where sync_file_range(2) is refused.
 */
static int write_back(int fd, uint64_t len)
{
	if (sync_file_range(fd, 0, (off_t)len,
			    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				    SYNC_FILE_RANGE_WAIT_AFTER) == 0)
		return 0;
	return fdatasync(fd) < 0 ? -errno : 0;
}

static bool probe_stopped(struct auto_state *st)
{
	return __atomic_load_n(&st->stop, __ATOMIC_ACQUIRE);
}

static bool punch_known(struct auto_state *st)
{
	return __atomic_load_n(&st->punch_probed, __ATOMIC_ACQUIRE);
}

static bool write_settled(struct auto_state *st)
{
	return __atomic_load_n(&st->write_unneeded, __ATOMIC_ACQUIRE);
}

static bool early_looked(struct auto_state *st)
{
	return write_settled(st) || __atomic_load_n(&st->early_seen, __ATOMIC_ACQUIRE);
}

/*
 * Sets *flag, one of the flags the probe thread may be waiting for (probe_sleep()),
 * and wakes it.  Called on the scan's thread, which also joins the probe
 * thread: once joined (thread_running false) there is nobody to wake.
 */
static void probe_signal(struct auto_state *st, bool *flag)
{
	if (!st->thread_running) {
		__atomic_store_n(flag, true, __ATOMIC_RELEASE);
		return;
	}
	pthread_mutex_lock(&st->lock);
	__atomic_store_n(flag, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&st->wake);
	pthread_mutex_unlock(&st->lock);
}

/*
 * On the probe thread: sleeps until done(st) holds or st stops, and with a
 * deadline (has_until) no later than util_now() (CLOCK_MONOTONIC) reaching until.
 */
static void probe_sleep(struct auto_state *st, bool has_until, double until,
			bool (*done)(struct auto_state *))
{
	struct timespec ts = {0};

	if (has_until) {
		ts.tv_sec = (time_t)until;
		ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
	}
	pthread_mutex_lock(&st->lock);
	while (!probe_stopped(st) && !done(st)) {
		if (!has_until)
			pthread_cond_wait(&st->wake, &st->lock);
		else if (util_now() >= until ||
			 pthread_cond_timedwait(&st->wake, &st->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&st->lock);
}

/* probe_sleep() until done(st) or a stop, however long that takes. */
static void probe_wait(struct auto_state *st, bool (*done)(struct auto_state *))
{
	probe_sleep(st, false, 0, done);
}

/* probe_sleep() until done(st), a stop, or util_now() reaching until. */
static void probe_wait_until(struct auto_state *st, double until, bool (*done)(struct auto_state *))
{
	probe_sleep(st, true, until, done);
}

/* The median of PROBE_PUNCHES timings (reordered). */
static double median_punch(double *t)
{
	qsort(t, PROBE_PUNCHES, sizeof(t[0]), cmp_double);
	return (t[PROBE_PUNCHES / 2 - 1] + t[PROBE_PUNCHES / 2]) / 2;
}

/* Single-block punches in the probe file, timed: punch_s (unset when stopped first). */
static int probe_punches(struct auto_state *st)
{
	double t[PROBE_PUNCHES];
	int n = 0, r;

	for (; n < PROBE_PUNCHES && !probe_stopped(st); n++) {
		double t0 = util_now();

		if (fallocate(st->tmp_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)n * (PROBE_BYTES / PROBE_PUNCHES), 4096) < 0) {
			r = -errno;
			snprintf(st->reason, sizeof(st->reason),
				 "cannot punch the probe file beside %s: %s", st->path,
				 strerror(-r));
			return r;
		}
		t[n] = util_now() - t0;
	}
	if (n < PROBE_PUNCHES)
		return 0;
	st->punch_s = median_punch(t);
	/* From here on this thread writes neither punch_s nor reason (auto_decide_early()). */
	__atomic_store_n(&st->punch_probed, true, __ATOMIC_RELEASE);
	return 0;
}

/*
 * auto_probe(); on_thread: beside the scan, which may settle the choice from
 * the punch cost alone (auto_decide_early()): the write probe then waits up to
 * PROBE_WRITE_WAIT_MS for the scan to look, and is skipped when it did (or when
 * the scan has ended: auto_done()).  Its 4 MiB would otherwise compete with a
 * cold scan for the device.  With st->punch_from_scan, the scan times its own
 * first punches (auto_punch_timed()) and the thread waits for them instead of
 * punching a probe file; where they are cheap, it waits PROBE_WRITE_DEFER_S
 * more before it makes the file at all, so that a scan which settles the
 * choice by then writes nothing beside the COW.
 */
static int probe(struct auto_state *st, const char *path, bool on_thread)
{
	_cleanup_free_ void *buf = NULL;
	bool from_scan = on_thread && st->punch_from_scan;
	char tmp[PATH_MAX];
	double t0;
	int r;

	st->path = path;
	st->t_start = util_now();
	if (from_scan) {
		probe_wait(st, punch_known);
		if (!punch_known(st))
			return 0;
		if (st->punch_s <= PUNCH_PROVISIONAL_S)
			probe_wait_until(st, st->t_start + PROBE_WRITE_DEFER_S, write_settled);
	}
	if (probe_stopped(st) || write_settled(st))
		return 0;
	st->tmp_fd = create_temp(path, tmp, sizeof(tmp), false, &st->tmp_direct);
	if (st->tmp_fd < 0) {
		r = st->tmp_fd;
		snprintf(st->reason, sizeof(st->reason),
			 "cannot make the rewrite's temp file beside %s: %s", path, strerror(-r));
		return r;
	}
	if (posix_memalign(&buf, RW_ALIGN, PROBE_BYTES))
		return -ENOMEM;
	memset(buf, 0xa5, PROBE_BYTES);
	/* On disk, so that each punch frees blocks as the real ones do.  Timed: see probe_write(). */
	t0 = util_now();
	if (util_pwrite_full(st->tmp_fd, buf, PROBE_BYTES, 0) != PROBE_BYTES ||
	    write_back(st->tmp_fd, PROBE_BYTES) < 0) {
		snprintf(st->reason, sizeof(st->reason),
			 "cannot write the probe file beside %s: punching", path);
		return -EIO;
	}
	st->small_write_s = util_now() - t0;
	if (!from_scan) {
		r = probe_punches(st);
		if (r < 0 || !punch_known(st))
			return r;
	}
	if (ftruncate(st->tmp_fd, 0) < 0)
		return -errno;
	if (on_thread)
		probe_wait_until(st, util_now() + PROBE_WRITE_WAIT_MS / 1e3, early_looked);
	if (write_settled(st) || probe_stopped(st))
		return 0;
	/* Its failure only leaves big_write_s 0: auto then punches (auto_decide()). */
	(void)probe_write(st);
	return 0;
}

int auto_probe(struct auto_state *st, const char *path)
{
	/* Before the scan: the scan's punches cannot be the measure. */
	st->punch_from_scan = false;
	return probe(st, path, false);
}

static void *probe_thread(void *opaque)
{
	struct auto_state *st = opaque;

	st->probe_err = probe(st, st->path, true);
	__atomic_store_n(&st->thread_done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* The probe thread's lock and wake-up (probe_sleep()), timed on CLOCK_MONOTONIC as util_now(). */
static int probe_sync_init(struct auto_state *st)
{
	pthread_condattr_t ca;
	int r;

	r = pthread_condattr_init(&ca);
	if (r)
		return -r;
	r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!r)
		r = pthread_cond_init(&st->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (r)
		return -r;
	r = pthread_mutex_init(&st->lock, NULL);
	if (r) {
		pthread_cond_destroy(&st->wake);
		return -r;
	}
	return 0;
}

static void probe_sync_destroy(struct auto_state *st)
{
	pthread_cond_destroy(&st->wake);
	pthread_mutex_destroy(&st->lock);
}

int auto_probe_start(struct auto_state *st, const char *path)
{
	int r;

	st->path = path;
	st->probe_err = 0;
	st->thread_done = st->punch_probed = st->write_unneeded = st->early_seen = false;
	st->stop = st->punched_all = false;
	st->scan_punches = 0;
	r = probe_sync_init(st);
	if (r < 0)
		return r;
	/* Set first: the scan's thread signals only a running thread (probe_signal()). */
	st->thread_running = true;
	r = pthread_create(&st->thread, NULL, probe_thread, st);
	if (r) {
		st->thread_running = false;
		probe_sync_destroy(st);
		return -r;
	}
	return 0;
}

int auto_probe_wait(struct auto_state *st)
{
	if (st->thread_running) {
		pthread_join(st->thread, NULL);
		st->thread_running = false;
		probe_sync_destroy(st);
	}
	return st->probe_err;
}

bool auto_probe_done(struct auto_state *st)
{
	return !st->thread_running || __atomic_load_n(&st->thread_done, __ATOMIC_ACQUIRE);
}

double auto_write_bps(uint64_t big_bytes, double big_s, uint64_t small_bytes, double small_s,
		      double cap_bps)
{
	double bps = (double)big_bytes / (big_s > 1e-6 ? big_s : 1e-6);

	if (big_bytes > small_bytes && big_s - small_s >= big_s / 4)
		bps = (double)(big_bytes - small_bytes) / (big_s - small_s);
	if (cap_bps > 0 && bps > cap_bps)
		bps = cap_bps;
	return bps;
}

/*
 * Write bandwidth beside the file: PROBE_WRITE_BYTES written and written back
 * (write_back(): big_write_s); auto_write_bps() makes a bandwidth of it.  A
 * write this small costs mostly a fixed latency (block allocation, a request's
 * round trip; a journal commit when write_back() falls back to fdatasync),
 * which the rewrite pays once, not per 4 MiB: so the bandwidth is taken from
 * the difference with the probe's 1 MiB write, (4 - 1) MiB over the extra time
 * (measured on the host fs under load with fdatasync: 4 MiB alone said 48-79
 * MB/s where the rewrite wrote at 250 MB/s and more).  That difference is only
 * trusted when it is a real part of the time: the fixed part has a jitter of
 * its own (a journal commit took 31 ms for the 1 MiB write and 8 ms for the 4
 * MiB one on the scratch ext4 of docs/benchmarks.md, which made "18134 MB/s"
 * and a rewrite 7x slower than punching).  Also the time to give the blocks
 * back (ftruncate: on a file system mounted `discard` without a journal, a
 * discard), as seconds per byte.
 */
static int probe_write(struct auto_state *st)
{
	_cleanup_free_ void *buf = NULL;
	double t0, t1;

	if (posix_memalign(&buf, RW_ALIGN, PROBE_WRITE_BYTES))
		return -ENOMEM;
	memset(buf, 0x5a, PROBE_WRITE_BYTES);
	t0 = util_now();
	if (util_pwrite_full(st->tmp_fd, buf, PROBE_WRITE_BYTES, 0) != PROBE_WRITE_BYTES ||
	    write_back(st->tmp_fd, PROBE_WRITE_BYTES) < 0)
		return -EIO;
	t1 = util_now();
	if (ftruncate(st->tmp_fd, 0) < 0)
		return -errno;
	st->free_s_per_byte = (util_now() - t1) / PROBE_WRITE_BYTES;
	st->big_write_s = t1 - t0 > 1e-9 ? t1 - t0 : 1e-9;
	return 0;
}

/* auto_decide(), or with early the checks that need no write probe: -EAGAIN when they do not settle it. */
static int decide(struct auto_state *st, const struct rewrite_decide_in *in, bool early)
{
	double f = in->done_bytes ? (double)in->total_bytes / (double)in->done_bytes : 1;
	double runs = (double)in->runs * f, taken = (double)in->taken_bytes * f;
	double keep = (double)in->allocated_before - taken, punch_s, write_s, read_s, free_s;
	double read_bps = 0;
	char a[32];

	if (keep < 0)
		keep = 0;
	punch_s = runs * st->punch_s;
	if (punch_s < PUNCH_CHEAP_S) {
		snprintf(st->reason, sizeof(st->reason),
			 "auto: punch: about %.0f runs x %.0f us a punch = %.2f s, too little "
			 "for a rewrite to save",
			 runs, st->punch_s * 1e6, punch_s);
		return 0;
	}
	/* What the scan has read so far is read again by the rewrite. */
	read_s = in->seconds;
	/*
	 * Giving back the old file's blocks: a free (and on a `discard` mount a
	 * discard) per extent, as a punch costs, plus (below) what freeing the
	 * probe's blocks took per byte.
	 */
	free_s = (double)st->extents * st->punch_s;
	/*
	 * The rate the scan read this file from the device (page-cache copies
	 * left out; its start-up counted in, which only lowers it) bounds what a
	 * rewrite's writes of the same bytes to the same device can do.  When
	 * the punches cost no more than a rewrite writing at that rate would,
	 * the write probe (4 MiB written back) cannot change the choice:
	 * punch without it.  Only when enough was read from the device to tell.
	 */
	if (in->bytes_read > in->cached_bytes + (8u << 20) && in->seconds > 0)
		read_bps = (double)(in->bytes_read - in->cached_bytes) / in->seconds;
	/*
	 * A rewrite re-reads what was scanned and frees the old extents, however
	 * fast it writes: when the punches (those left, after provisional ones)
	 * cost no more than that, no write bandwidth can make it cheaper.
	 */
	if (punch_s <= REWRITE_MARGIN * (read_s + free_s)) {
		snprintf(st->reason, sizeof(st->reason),
			 "auto: punch: about %.0f runs x %.0f us a punch = %.2f s, no more than a "
			 "rewrite would take before writing a byte: re-read %.2f s, free %llu old "
			 "extents %.2f s, whatever the write probe says",
			 runs, st->punch_s * 1e6, punch_s, read_s, (unsigned long long)st->extents,
			 free_s);
		return 0;
	}
	if (read_bps > 0 && punch_s <= REWRITE_MARGIN * (keep / read_bps + read_s + free_s)) {
		snprintf(
			st->reason, sizeof(st->reason),
			"auto: punch: about %.0f runs x %.0f us a punch = %.2f s, no more than "
			"writing %s at the scan's read rate %.0f MB/s would take (%.2f s), "
			"re-read %.2f s, free %llu old extents %.2f s, whatever the write probe says",
			runs, st->punch_s * 1e6, punch_s,
			util_format_bytes((uint64_t)keep, a, sizeof(a)), read_bps / 1e6,
			keep / read_bps, read_s, (unsigned long long)st->extents, free_s);
		return 0;
	}
	if (early)
		return -EAGAIN;
	if (st->big_write_s <= 0) {
		snprintf(st->reason, sizeof(st->reason),
			 "auto: punch: the write probe beside %s failed", st->path);
		return 0;
	}
	st->write_bps = auto_write_bps(PROBE_WRITE_BYTES, st->big_write_s, PROBE_BYTES,
				       st->small_write_s, read_bps);
	write_s = keep / st->write_bps;
	free_s += (double)in->allocated_before * st->free_s_per_byte;
	st->chose_rewrite = punch_s > REWRITE_MARGIN * (write_s + read_s + free_s);
	snprintf(st->reason, sizeof(st->reason),
		 "auto: %s: about %.0f runs x %.0f us a punch = %.2f s against %.2f s to "
		 "write %s at %.0f MB/s, re-read %.2f s, free %llu old extents %.2f s",
		 st->chose_rewrite ? "rewrite" : "punch", runs, st->punch_s * 1e6, punch_s, write_s,
		 util_format_bytes((uint64_t)keep, a, sizeof(a)), st->write_bps / 1e6, read_s,
		 (unsigned long long)st->extents, free_s);
	return st->chose_rewrite;
}

int auto_decide(struct auto_state *st, const struct rewrite_decide_in *in)
{
	return decide(st, in, false);
}

bool auto_wants_punch_time(const struct auto_state *st)
{
	return st->punch_from_scan && st->scan_punches < PROBE_PUNCHES;
}

void auto_punch_timed(struct auto_state *st, double seconds)
{
	if (!auto_wants_punch_time(st))
		return;
	st->scan_punch_s[st->scan_punches++] = seconds;
	if (st->scan_punches < PROBE_PUNCHES)
		return;
	/* No timing is taken after the last: sorted where they are. */
	st->punch_s = median_punch(st->scan_punch_s);
	probe_signal(st, &st->punch_probed);
}

bool auto_punch_dear(struct auto_state *st)
{
	return __atomic_load_n(&st->punch_probed, __ATOMIC_ACQUIRE) &&
	       st->punch_s > PUNCH_PROVISIONAL_S;
}

int auto_decide_early(struct auto_state *st, const struct rewrite_decide_in *in)
{
	int r;

	if (!__atomic_load_n(&st->punch_probed, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	r = decide(st, in, true);
	if (r == 0)
		probe_signal(st, &st->write_unneeded);
	/* Called after every read until the probes are done: the lock only the first time. */
	if (!__atomic_load_n(&st->early_seen, __ATOMIC_ACQUIRE))
		probe_signal(st, &st->early_seen);
	return r;
}

void auto_done(struct auto_state *st)
{
	char tmp[PATH_MAX];

	/* Whatever the thread still measures, nothing is to be chosen any more. */
	probe_signal(st, &st->stop);
	(void)auto_probe_wait(st);
	if (st->punched_all)
		snprintf(st->reason, sizeof(st->reason),
			 "auto: punch: the scan punched every run provisionally before the "
			 "probes were done, nothing left for a rewrite to save");
	if (st->tmp_fd < 0)
		return;
	if (reclaim_rewrite_temp_path(st->path, tmp, sizeof(tmp)) == 0)
		unlink(tmp);
	close(st->tmp_fd);
	st->tmp_fd = -1;
}
