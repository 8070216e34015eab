/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Read-only merged view of a VM disk: COW exceptions over a base image over zeros.
 * See reclaim/mergedview.h and docs/fsaware.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/mergedview.h"

/* One file of the view: where to read, and how O_DIRECT wants it aligned. */
struct view_file {
	int fd;		/* -1: none (reads zeros) */
	uint64_t size;	/* bytes past this read as zeros (UINT64_MAX: none may) */
	uint32_t align; /* O_DIRECT alignment of buffers, offsets and lengths */
};

struct mergedview {
	struct view_file cow, base;
	uint64_t disk_size;
	uint64_t chunk_bytes;
	unsigned chunk_shift;
	struct snapstore_exception *v; /* sorted by old_chunk */
	size_t n;
};

int mergedview_list_add(void *opaque, const struct snapstore_exception *e)
{
	struct mergedview_list *l = opaque;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		struct snapstore_exception *v;

		if (cap > SIZE_MAX / sizeof(*v))
			return -ENOMEM;
		v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *e;
	return 0;
}

void mergedview_list_free(struct mergedview_list *list)
{
	free(list->v);
	list->v = NULL;
	list->n = list->cap = 0;
}

/*
 * The alignment for O_DIRECT reads of fd: what statx reports, else the 4 KiB guess
 * (a refused read then drops O_DIRECT, see read_file()).  One figure for buffers,
 * offsets and lengths: the larger of the two, which satisfies both.
 */
static uint32_t dio_align(int fd)
{
	uint32_t mem, off;

	if (fd < 0 || util_dio_alignment(fd, &mem, &off) < 0)
		return UTIL_DIO_ALIGN_DEFAULT;
	return mem > off ? mem : off;
}

static int cmp_old(const void *a, const void *b)
{
	const struct snapstore_exception *x = a, *y = b;

	return (x->old_chunk > y->old_chunk) - (x->old_chunk < y->old_chunk);
}

int mergedview_open(int cow_fd, int base_fd, uint64_t disk_size, uint64_t chunk_bytes,
		    struct mergedview_list *list, struct mergedview **ret)
{
	struct mergedview *mv;
	uint64_t base_size = 0, disk_chunks;
	unsigned shift = 0;

	if (chunk_bytes < 512 || (chunk_bytes & (chunk_bytes - 1)))
		return -EINVAL;
	while ((1ULL << shift) < chunk_bytes)
		shift++;
	if (base_fd >= 0) {
		off_t end = lseek(base_fd, 0, SEEK_END);

		if (end < 0)
			return -errno;
		base_size = (uint64_t)end;
	}

	/* The kernel maps origin chunks of the snapshot device only: none lies past its end. */
	disk_chunks = (disk_size + chunk_bytes - 1) >> shift;
	if (list->n)
		qsort(list->v, list->n, sizeof(*list->v), cmp_old);
	for (size_t i = 0; i < list->n; i++) {
		if (list->v[i].old_chunk >= disk_chunks)
			return -EBADMSG;
		if (i && list->v[i].old_chunk == list->v[i - 1].old_chunk)
			return -EBADMSG;
	}

	mv = calloc(1, sizeof(*mv));
	if (!mv)
		return -ENOMEM;
	/* A COW chunk is always whole in the file (the store was validated): no zeros there. */
	mv->cow = (struct view_file){.fd = cow_fd, .size = UINT64_MAX, .align = dio_align(cow_fd)};
	mv->base =
		(struct view_file){.fd = base_fd, .size = base_size, .align = dio_align(base_fd)};
	mv->disk_size = disk_size;
	mv->chunk_bytes = chunk_bytes;
	mv->chunk_shift = shift;
	mv->v = TAKE_PTR(list->v);
	mv->n = list->n;
	list->n = list->cap = 0;
	*ret = mv;
	return 0;
}

void mergedview_free(struct mergedview *mv)
{
	if (!mv)
		return;
	free(mv->v);
	free(mv);
}

uint64_t mergedview_disk_size(const struct mergedview *mv)
{
	return mv->disk_size;
}

uint64_t mergedview_chunk_bytes(const struct mergedview *mv)
{
	return mv->chunk_bytes;
}

uint64_t mergedview_base_size(const struct mergedview *mv)
{
	return mv->base.size;
}

size_t mergedview_exceptions(const struct mergedview *mv, const struct snapstore_exception **ret_v)
{
	*ret_v = mv->v;
	return mv->n;
}

bool mergedview_lookup(const struct mergedview *mv, uint64_t old_chunk, uint64_t *ret_new_chunk)
{
	size_t lo = 0, hi = mv->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mv->v[mid].old_chunk < old_chunk)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < mv->n && mv->v[lo].old_chunk == old_chunk) {
		*ret_new_chunk = mv->v[lo].new_chunk;
		return true;
	}
	return false;
}

bool mergedview_range_in_cow(const struct mergedview *mv, uint64_t off, uint64_t len)
{
	uint64_t nc;

	if (!len || off >= mv->disk_size || len > mv->disk_size - off)
		return false;
	for (uint64_t c = off >> mv->chunk_shift; c <= (off + len - 1) >> mv->chunk_shift; c++)
		if (!mergedview_lookup(mv, c, &nc))
			return false;
	return true;
}

/*
 * pread of an fd opened O_DIRECT (the engine's COW fd): the aligned span around
 * [off, off+len) goes through an aligned buffer, so callers may read any range.
 * Returns the bytes of [off, off+len) read (short at the end of the file) or -errno.
 */
static ssize_t pread_direct(int fd, uint32_t align, void *buf, size_t len, uint64_t off)
{
	uint64_t start = off & ~(uint64_t)(align - 1);
	uint64_t end = (off + len + align - 1) & ~(uint64_t)(align - 1);
	_cleanup_free_ void *bounce = NULL;
	ssize_t r;

	if (posix_memalign(&bounce, align < sizeof(void *) ? sizeof(void *) : align,
			   (size_t)(end - start)))
		return -ENOMEM;
	r = util_pread_full(fd, bounce, (size_t)(end - start), start);
	if (r < 0)
		return r;
	if ((uint64_t)r <= off - start)
		return 0;
	r = (ssize_t)((uint64_t)r - (off - start));
	if ((size_t)r > len)
		r = (ssize_t)len;
	memcpy(buf, (char *)bounce + (off - start), (size_t)r);
	return r;
}

/*
 * Reads [off, off+len) of one file; only bytes at or past f->size read as zeros.
 * A file shorter than that now (truncated after the view was opened, or a COW
 * shorter than its store says) is an I/O error, never zeros: -EIO.  EINVAL under
 * O_DIRECT means the file wants another alignment than the one guessed: O_DIRECT
 * is dropped from the descriptor, as the scanner does (reclaim.c finish_read()),
 * and the read done through the page cache.
 */
static int read_file(const struct view_file *f, void *buf, size_t len, uint64_t off)
{
	size_t have = 0;

	if (f->fd >= 0 && off < f->size) {
		int fl = fcntl(f->fd, F_GETFL);
		ssize_t r;

		if (fl < 0)
			return -errno;
		have = f->size - off < len ? (size_t)(f->size - off) : len;
		if (fl & O_DIRECT) {
			r = pread_direct(f->fd, f->align, buf, have, off);
			if (r == -EINVAL) {
				if (fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) < 0)
					return -EINVAL;
				r = util_pread_full(f->fd, buf, have, off);
			}
		} else {
			r = util_pread_full(f->fd, buf, have, off);
		}
		if (r < 0)
			return (int)r;
		if ((size_t)r != have)
			return -EIO;
	}
	memset((char *)buf + have, 0, len - have);
	return 0;
}

ssize_t mergedview_pread(const struct mergedview *mv, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (off >= mv->disk_size)
		return 0;
	if (len > mv->disk_size - off)
		len = (size_t)(mv->disk_size - off);

	while (done < len) {
		uint64_t pos = off + done;
		uint64_t chunk = pos >> mv->chunk_shift;
		uint64_t in_chunk = pos & (mv->chunk_bytes - 1);
		size_t piece = len - done;
		uint64_t new_chunk;
		int r;

		if (piece > mv->chunk_bytes - in_chunk)
			piece = (size_t)(mv->chunk_bytes - in_chunk);
		if (mergedview_lookup(mv, chunk, &new_chunk))
			r = read_file(&mv->cow, (char *)buf + done, piece,
				      (new_chunk << mv->chunk_shift) + in_chunk);
		else
			r = read_file(&mv->base, (char *)buf + done, piece, pos);
		if (r < 0)
			return r;
		done += piece;
	}
	return (ssize_t)done;
}
