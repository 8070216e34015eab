/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reader and validator of the dm-snapshot persistent exception store.  The rules and
 * the kernel behaviour behind each of them are in docs/format.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/snapstore.h"

/* Areas are read in pieces of at most this many bytes, so memory does not follow chunk size. */
#define SNAPSTORE_READ_PIECE (1u << 20)
/* Least alignment of the read buffer (the O_DIRECT guess when the kernel cannot tell). */
#define SNAPSTORE_BUF_ALIGN UTIL_DIO_ALIGN_DEFAULT

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static int refuse(struct snapstore_error *err, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct snapstore_error *err, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->offset = offset;
		va_start(ap, fmt);
		vsnprintf(err->rule, sizeof(err->rule), fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

uint64_t snapstore_area_chunk(const struct snapstore_geometry *g, uint64_t area)
{
	return 1 + area * (g->epa + 1);
}

bool snapstore_is_metadata_chunk(const struct snapstore_geometry *g, uint64_t c)
{
	return c == 0 || (c - 1) % (g->epa + 1) == 0;
}

/* Offset of the first non-zero byte in buf[0..len), or len. */
static size_t first_nonzero(const uint8_t *buf, size_t len)
{
	size_t i = 0;

	/* Skip zero blocks quickly; then find the byte. */
	while (len - i >= 4096 && util_is_zero(buf + i, 4096))
		i += 4096;
	for (; i < len; i++)
		if (buf[i])
			return i;
	return len;
}

/* Validates the 16 header bytes; file_size decides whether header + area 0 fit. */
static int parse_header_fields(const uint8_t *p, size_t len, uint64_t file_size,
			       struct snapstore_header *hdr, struct snapstore_geometry *geom,
			       struct snapstore_error *err)
{
	struct snapstore_header h;
	struct snapstore_geometry g;

	if (len < 16 || file_size < 16)
		return refuse(err, 0,
			      "the file is %" PRIu64 " bytes, too short to hold the 16-byte header",
			      file_size < len ? file_size : (uint64_t)len);
	h.magic = get_le32(p);
	h.valid = get_le32(p + 4);
	h.version = get_le32(p + 8);
	h.chunk_sectors = get_le32(p + 12);

	if (h.magic == 0)
		return refuse(err, 0,
			      "magic is 0: the store was never activated (the kernel would write a "
			      "fresh header and forget anything stored)");
	if (h.magic != SNAPSTORE_MAGIC)
		return refuse(err, 0,
			      "bad magic 0x%08" PRIx32
			      " (a dm-snapshot store has 0x%08x, \"SnAp\")",
			      h.magic, SNAPSTORE_MAGIC);
	if (h.version != SNAPSTORE_VERSION)
		return refuse(err, 8, "unsupported store version %" PRIu32 " (only %u exists)",
			      h.version, SNAPSTORE_VERSION);
	if (h.valid == 0)
		return refuse(
			err, 4,
			"valid is 0: the kernel marked this snapshot invalid (it overflowed or "
			"failed), every read of it fails");
	if (h.chunk_sectors == 0 || (h.chunk_sectors & (h.chunk_sectors - 1)) != 0)
		return refuse(err, 12, "chunk size %" PRIu32 " sectors is not a power of two",
			      h.chunk_sectors);
	if (h.chunk_sectors < SNAPSTORE_MIN_CHUNK_SECTORS ||
	    h.chunk_sectors > SNAPSTORE_MAX_CHUNK_SECTORS)
		return refuse(
			err, 12,
			"chunk size %" PRIu32 " sectors is outside %u..%u sectors (4 KiB..1 GiB)",
			h.chunk_sectors, SNAPSTORE_MIN_CHUNK_SECTORS, SNAPSTORE_MAX_CHUNK_SECTORS);

	g.chunk_sectors = h.chunk_sectors;
	g.chunk_bytes = (uint64_t)h.chunk_sectors * SNAPSTORE_SECTOR;
	g.epa = g.chunk_bytes / SNAPSTORE_EXCEPTION_BYTES;
	g.file_chunks = file_size / g.chunk_bytes;
	if (g.file_chunks < 2)
		return refuse(err, file_size,
			      "the file is truncated: %" PRIu64
			      " bytes cannot hold the header chunk "
			      "and metadata area 0 (2 x %" PRIu64 " bytes)",
			      file_size, g.chunk_bytes);
	*hdr = h;
	*geom = g;
	return 0;
}

int snapstore_parse_header(const void *buf, size_t len, uint64_t file_size,
			   struct snapstore_header *ret_hdr, struct snapstore_geometry *ret_geom,
			   struct snapstore_error *err)
{
	struct snapstore_header h;
	struct snapstore_geometry g;
	size_t rest_len, nz;
	int r;

	r = parse_header_fields(buf, len, file_size, &h, &g, err);
	if (r < 0)
		return r;
	/*
	 * write_header() in dm-snap-persistent.c memsets the whole header chunk before
	 * filling the 16 bytes, and nothing else ever writes chunk 0, so any other byte
	 * there means the file is not what the kernel wrote.
	 */
	rest_len = len < g.chunk_bytes ? len : (size_t)g.chunk_bytes;
	nz = first_nonzero((const uint8_t *)buf + 16, rest_len - 16);
	if (nz < rest_len - 16)
		return refuse(
			err, 16 + nz,
			"non-zero byte in the header chunk after the 16-byte header (the kernel "
			"writes the rest of chunk 0 as zeros)");
	*ret_hdr = h;
	*ret_geom = g;
	return 0;
}

/* Per-entry hook used by snapstore_load() for the checks that need the whole store. */
typedef int (*entry_fn)(void *opaque, const struct snapstore_exception *e, uint64_t index,
			uint64_t entry_offset, struct snapstore_error *err);

/* Incremental parser of one area, fed in pieces that are multiples of 16 bytes. */
struct area_parser {
	const struct snapstore_geometry *g;
	uint64_t area;
	uint64_t area_offset; /* byte offset of the area in the file */
	uint64_t index;	      /* next entry slot */
	bool ended;	      /* terminator seen */
	uint64_t term_index;
	entry_fn fn;
	void *opaque;
};

static int area_feed(struct area_parser *ap, const uint8_t *p, size_t len,
		     struct snapstore_error *err)
{
	const struct snapstore_geometry *g = ap->g;

	for (size_t off = 0; off < len; off += SNAPSTORE_EXCEPTION_BYTES, ap->index++) {
		uint64_t eoff = ap->area_offset + ap->index * SNAPSTORE_EXCEPTION_BYTES;
		struct snapstore_exception e;
		int r;

		if (ap->ended) {
			size_t nz = first_nonzero(p + off, len - off);

			if (nz == len - off)
				break;
			return refuse(err, eoff + nz,
				      "area %" PRIu64 ": non-zero byte in slot %" PRIu64
				      " after the end of the list (slot %" PRIu64
				      " has new_chunk 0): the kernel ignores it, so the area is "
				      "damaged (e.g. zeroed entries from an unaligned discard with "
				      "discard_zeroes_cow)",
				      ap->area,
				      (uint64_t)(ap->index + nz / SNAPSTORE_EXCEPTION_BYTES),
				      ap->term_index);
		}
		e.old_chunk = get_le64(p + off);
		e.new_chunk = get_le64(p + off + 8);
		if (e.new_chunk == 0) {
			ap->ended = true;
			ap->term_index = ap->index;
			/* The terminator's own old_chunk: the kernel zeroes areas before use. */
			if (e.old_chunk != 0)
				return refuse(
					err, eoff,
					"area %" PRIu64 ": slot %" PRIu64
					" ends the list (new_chunk 0) but has old_chunk %" PRIu64
					"; the kernel zeroes an area before using it, so the area "
					"is damaged",
					ap->area, ap->index, e.old_chunk);
			continue;
		}
		if (e.new_chunk >= g->file_chunks)
			return refuse(err, eoff + 8,
				      "exception %" PRIu64 " of area %" PRIu64
				      ": new_chunk %" PRIu64
				      " is beyond the end of the file (%" PRIu64 " chunks)",
				      ap->index, ap->area, e.new_chunk, g->file_chunks);
		if (snapstore_is_metadata_chunk(g, e.new_chunk))
			return refuse(
				err, eoff + 8,
				"exception %" PRIu64 " of area %" PRIu64 ": new_chunk %" PRIu64
				" is a metadata chunk (area %" PRIu64 "), not a data chunk",
				ap->index, ap->area, e.new_chunk, (e.new_chunk - 1) / (g->epa + 1));
		if (e.old_chunk > UINT64_MAX / g->chunk_bytes)
			return refuse(err, eoff,
				      "exception %" PRIu64 " of area %" PRIu64
				      ": old_chunk %" PRIu64
				      " puts its origin offset beyond 2^64 bytes",
				      ap->index, ap->area, e.old_chunk);
		if (ap->fn) {
			r = ap->fn(ap->opaque, &e, ap->index, eoff, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static void area_init(struct area_parser *ap, const struct snapstore_geometry *g, uint64_t area,
		      entry_fn fn, void *opaque)
{
	*ap = (struct area_parser){
		.g = g,
		.area = area,
		.area_offset = snapstore_area_chunk(g, area) * g->chunk_bytes,
		.fn = fn,
		.opaque = opaque,
	};
}

static void area_result(const struct area_parser *ap, struct snapstore_area *ret)
{
	ret->count = ap->ended ? ap->term_index : ap->g->epa;
	ret->full = !ap->ended;
}

struct public_cb {
	int (*cb)(void *opaque, const struct snapstore_exception *e);
	void *opaque;
};

static int public_entry(void *opaque, const struct snapstore_exception *e, uint64_t index,
			uint64_t entry_offset, struct snapstore_error *err)
{
	struct public_cb *pc = opaque;

	return pc->cb(pc->opaque, e);
}

int snapstore_parse_area(const void *buf, size_t len, const struct snapstore_geometry *g,
			 uint64_t area, struct snapstore_area *ret_area,
			 int (*cb)(void *opaque, const struct snapstore_exception *e), void *opaque,
			 struct snapstore_error *err)
{
	struct public_cb pc = {cb, opaque};
	struct area_parser ap;
	int r;

	if (len != g->chunk_bytes)
		return -EINVAL;
	area_init(&ap, g, area, cb ? public_entry : NULL, &pc);
	r = area_feed(&ap, buf, len, err);
	if (r < 0)
		return r;
	area_result(&ap, ret_area);
	return 0;
}

/*
 * Set of origin chunks seen, for duplicate detection.  An open-addressing hash of
 * 64-bit words (key = old_chunk / 64, value = which of those 64 chunks were seen):
 * memory follows the number of exceptions (16..32 bytes each at worst, far less when
 * a guest writes runs), never the value of old_chunk, which the file controls.
 */
struct oldset {
	uint64_t *keys; /* key + 1; 0 = empty slot */
	uint64_t *bits;
	size_t cap; /* power of two */
	size_t used;
};

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static void oldset_free(struct oldset *s)
{
	free(s->keys);
	free(s->bits);
	*s = (struct oldset){0};
}

static uint64_t *oldset_slot(struct oldset *s, uint64_t key)
{
	size_t mask = s->cap - 1;

	for (size_t i = mix64(key) & mask;; i = (i + 1) & mask)
		if (s->keys[i] == key + 1 || s->keys[i] == 0) {
			if (s->keys[i] == 0) {
				s->keys[i] = key + 1;
				s->used++;
			}
			return &s->bits[i];
		}
}

static int oldset_grow(struct oldset *s)
{
	struct oldset n = {0};

	n.cap = s->cap ? s->cap * 2 : 1024;
	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.bits = calloc(n.cap, sizeof(*n.bits));
	if (!n.keys || !n.bits) {
		oldset_free(&n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->cap; i++)
		if (s->keys[i])
			*oldset_slot(&n, s->keys[i] - 1) = s->bits[i];
	oldset_free(s);
	*s = n;
	return 0;
}

/* Returns 1 if old was already in the set, 0 if it was added, -ENOMEM. */
static int oldset_test_and_set(struct oldset *s, uint64_t old)
{
	uint64_t *w, bit = 1ULL << (old & 63);
	int r;

	if ((s->used + 1) * 2 > s->cap) {
		r = oldset_grow(s);
		if (r < 0)
			return r;
	}
	w = oldset_slot(s, old >> 6);
	if (*w & bit)
		return 1;
	*w |= bit;
	return 0;
}

struct load_state {
	struct snapstore_info *info;
	struct oldset olds;
	uint64_t area;
	uint64_t max_new;
	int (*cb)(void *opaque, const struct snapstore_exception *e);
	void *opaque;
};

static int load_entry(void *opaque, const struct snapstore_exception *e, uint64_t index,
		      uint64_t entry_offset, struct snapstore_error *err)
{
	struct load_state *st = opaque;
	struct snapstore_info *info = st->info;
	int r;

	if (snapstore_bitmap_test(info->data_bitmap, e->new_chunk))
		return refuse(err, entry_offset + 8,
			      "exception %" PRIu64 " of area %" PRIu64 ": new_chunk %" PRIu64
			      " is already used by an earlier exception (two origin chunks would "
			      "share one COW chunk)",
			      index, st->area, e->new_chunk);
	r = oldset_test_and_set(&st->olds, e->old_chunk);
	if (r < 0)
		return r;
	if (r > 0)
		return refuse(err, entry_offset,
			      "exception %" PRIu64 " of area %" PRIu64 ": old_chunk %" PRIu64
			      " already has an exception (the kernel gives an origin chunk at most "
			      "one)",
			      index, st->area, e->old_chunk);
	info->data_bitmap[e->new_chunk >> 3] |= (uint8_t)(1u << (e->new_chunk & 7));
	info->exceptions++;
	if (e->new_chunk > st->max_new)
		st->max_new = e->new_chunk;
	if (e->old_chunk > info->max_old_chunk)
		info->max_old_chunk = e->old_chunk;
	if (st->cb)
		return st->cb(st->opaque, e);
	return 0;
}

static int file_size_of(int fd, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;

		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			return -errno;
		*ret = sz;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*ret = (uint64_t)st.st_size;
	return 0;
}

/* n bytes read of len wanted: a file that shrank under us is an I/O error. */
static int exact(ssize_t n, size_t len)
{
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

/* Reads exactly len bytes at off. */
static int read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	return exact(util_pread_full(fd, buf, len, off), len);
}

static bool fd_direct(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && (fl & O_DIRECT);
}

/*
 * Drops O_DIRECT from the caller's descriptor: its reads then go through the page
 * cache, as the scanner's do once the kernel refuses an O_DIRECT read
 * (reclaim.c finish_read()).
 */
static int drop_direct(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
		return -EINVAL;
	return 0;
}

/*
 * util_pread_full() of the caller's descriptor.  EINVAL under O_DIRECT means the
 * file wants another alignment than the one guessed (the kernel did not report
 * it): drop O_DIRECT and read again.
 */
static ssize_t pread_direct(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = util_pread_full(fd, buf, len, off);
	int r;

	if (n == -EINVAL && fd_direct(fd)) {
		r = drop_direct(fd);
		if (r < 0)
			return r;
		n = util_pread_full(fd, buf, len, off);
	}
	return n;
}

/* read_exact() through pread_direct(). */
static int read_exact_direct(int fd, void *buf, size_t len, uint64_t off)
{
	return exact(pread_direct(fd, buf, len, off), len);
}

/*
 * Reads the metadata areas through the page cache.  An area already cached is
 * copied from there: a warm file costs no device reads (an O_DIRECT read would
 * go to the device for each of them, one at a time).  The others are read ahead
 * (POSIX_FADV_WILLNEED), up to AREAS_AHEAD areas or AREAS_AHEAD_BYTES in advance,
 * so that their reads overlap instead of waiting one by one, and dropped from the
 * cache again once parsed, so the cache ends as it was.  Without cachestat(2)
 * every area counts as not cached.  Without a buffered descriptor, plain reads.
 */
#define AREAS_AHEAD	  64u
#define AREAS_AHEAD_BYTES (8u << 20)

struct area_reader {
	int fd;	 /* the caller's descriptor (may be O_DIRECT) */
	int bfd; /* buffered descriptor on the same file (may be fd itself), or -1 */
	bool own_bfd;
	const struct snapstore_geometry *g;
	uint64_t ahead;	     /* areas to read ahead */
	uint64_t next_ahead; /* next area to look at for read-ahead */
	uint64_t uncached;   /* bit (area % 64): read ahead by us, to drop after use */
};

static void area_reader_init(struct area_reader *ar, int fd, const struct snapstore_geometry *g)
{
	int fl = fcntl(fd, F_GETFL);

	*ar = (struct area_reader){.fd = fd, .bfd = -1, .g = g};
	ar->ahead = AREAS_AHEAD_BYTES / g->chunk_bytes;
	if (ar->ahead > AREAS_AHEAD)
		ar->ahead = AREAS_AHEAD;
	if (ar->ahead < 1)
		ar->ahead = 1;
	if (fl >= 0 && !(fl & O_DIRECT)) {
		ar->bfd = fd;
	} else if (fl >= 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ar->bfd = open(path, O_RDONLY | O_CLOEXEC);
		ar->own_bfd = ar->bfd >= 0;
	}
}

static void area_drop(struct area_reader *ar, uint64_t area)
{
	uint64_t bit = 1ull << (area % 64);

	if (ar->uncached & bit) {
		posix_fadvise(ar->bfd,
			      (off_t)(snapstore_area_chunk(ar->g, area) * ar->g->chunk_bytes),
			      (off_t)ar->g->chunk_bytes, POSIX_FADV_DONTNEED);
		ar->uncached &= ~bit;
	}
}

/* Reads len bytes at off of area `area`, after starting the read-ahead of the areas after it. */
static int area_read(struct area_reader *ar, uint64_t area, void *buf, size_t len, uint64_t off)
{
	const struct snapstore_geometry *g = ar->g;

	if (ar->bfd < 0)
		return read_exact_direct(ar->fd, buf, len, off);
	if (ar->next_ahead < area)
		ar->next_ahead = area;
	for (; ar->next_ahead < area + ar->ahead; ar->next_ahead++) {
		uint64_t chunk = snapstore_area_chunk(g, ar->next_ahead);
		uint64_t bit = 1ull << (ar->next_ahead % 64);

		if (chunk >= g->file_chunks)
			break;
		if (util_cached(ar->bfd, chunk * g->chunk_bytes, g->chunk_bytes) > 0) {
			ar->uncached &= ~bit;
			continue;
		}
		ar->uncached |= bit;
		posix_fadvise(ar->bfd, (off_t)(chunk * g->chunk_bytes), (off_t)g->chunk_bytes,
			      POSIX_FADV_WILLNEED);
	}
	return read_exact(ar->bfd, buf, len, off);
}

/* Drops whatever was read ahead and not yet dropped; closes the descriptor it opened. */
static void area_reader_done(struct area_reader *ar, uint64_t from)
{
	if (ar->bfd >= 0)
		for (uint64_t a = from; a < ar->next_ahead; a++)
			area_drop(ar, a);
	if (ar->own_bfd)
		close(ar->bfd);
	ar->bfd = -1;
}

void snapstore_info_free(struct snapstore_info *info)
{
	if (!info)
		return;
	free(info->data_bitmap);
	info->data_bitmap = NULL;
}

int snapstore_load(int fd, struct snapstore_info *ret,
		   int (*cb)(void *opaque, const struct snapstore_exception *e), void *opaque,
		   struct snapstore_error *err)
{
	struct snapstore_info info = {0};
	struct load_state st = {.info = &info, .cb = cb, .opaque = opaque};
	struct area_reader ar = {.bfd = -1};
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t file_size = 0, piece;
	uint32_t dio_mem = SNAPSTORE_BUF_ALIGN, dio_off = SNAPSTORE_BUF_ALIGN;
	size_t align = SNAPSTORE_BUF_ALIGN,
	       first_len = SNAPSTORE_MIN_CHUNK_SECTORS * SNAPSTORE_SECTOR;
	ssize_t n;
	int r;

	r = file_size_of(fd, &file_size);
	if (r < 0)
		return r;
	/*
	 * O_DIRECT: buffers, offsets and lengths aligned as statx says (else the 4 KiB
	 * guess, refused reads then drop O_DIRECT).  Reads are of `piece` bytes at
	 * multiples of piece, the first of first_len bytes at 0.
	 */
	if (fd_direct(fd) && util_dio_alignment(fd, &dio_mem, &dio_off) >= 0) {
		if (dio_mem > align)
			align = dio_mem;
		if (dio_off > align)
			align = dio_off;
		if (dio_off > first_len)
			first_len = dio_off;
	}
	if (align > SNAPSTORE_READ_PIECE) {
		r = drop_direct(fd);
		if (r < 0)
			return r;
		align = SNAPSTORE_BUF_ALIGN;
		first_len = SNAPSTORE_MIN_CHUNK_SECTORS * SNAPSTORE_SECTOR;
	}
	if (posix_memalign((void **)&buf, align, SNAPSTORE_READ_PIECE) != 0)
		return -ENOMEM;
	n = pread_direct(fd, buf, first_len, 0);
	if (n < 0)
		return (int)n;
	r = parse_header_fields(buf, (size_t)n, file_size, &info.hdr, &info.geom, err);
	if (r < 0)
		return r;
	info.file_size = file_size;
	piece = info.geom.chunk_bytes < SNAPSTORE_READ_PIECE ? info.geom.chunk_bytes
							     : SNAPSTORE_READ_PIECE;
	/* Chunks smaller than the file's O_DIRECT offset alignment cannot be read directly. */
	if (piece % dio_off && fd_direct(fd)) {
		r = drop_direct(fd);
		if (r < 0)
			return r;
	}

	/* Header chunk, piece by piece: everything after the 16 header bytes must be zero. */
	for (uint64_t off = 0; off < info.geom.chunk_bytes; off += piece) {
		size_t from = off == 0 ? 16 : 0, nz;

		r = read_exact_direct(fd, buf, piece, off);
		if (r < 0)
			return r;
		nz = first_nonzero(buf + from, piece - from);
		if (nz < piece - from)
			return refuse(err, off + from + nz,
				      "non-zero byte in the header chunk after the 16-byte header "
				      "(the kernel writes the rest of chunk 0 as zeros)");
	}

	info.data_bitmap = calloc(1, (info.geom.file_chunks + 7) / 8);
	if (!info.data_bitmap)
		return -ENOMEM;

	area_reader_init(&ar, fd, &info.geom);
	for (st.area = 0;; st.area++) {
		uint64_t chunk = snapstore_area_chunk(&info.geom, st.area);
		struct area_parser ap;
		struct snapstore_area res;

		if (chunk >= info.geom.file_chunks) {
			/* Only reached after a full area: area 0 always fits (checked above). */
			r = refuse(err, chunk * info.geom.chunk_bytes,
				   "full last area whose next area is missing: area %" PRIu64
				   " is full, so the list goes on in area %" PRIu64
				   " at chunk %" PRIu64 ", beyond the end of the file (%" PRIu64
				   " chunks); the kernel zeroes that area before it commits a full "
				   "one, so the file was truncated",
				   st.area - 1, st.area, chunk, info.geom.file_chunks);
			goto fail;
		}
		area_init(&ap, &info.geom, st.area, load_entry, &st);
		for (uint64_t off = 0; off < info.geom.chunk_bytes; off += piece) {
			r = area_read(&ar, st.area, buf, piece, ap.area_offset + off);
			if (r < 0)
				goto fail;
			r = area_feed(&ap, buf, piece, err);
			if (r < 0)
				goto fail;
		}
		area_drop(&ar, st.area);
		info.metadata_areas++;
		area_result(&ap, &res);
		if (!res.full)
			break;
	}

	area_reader_done(&ar, st.area);
	info.next_free_chunk = info.exceptions ? st.max_new + 1 : 2;
	while (snapstore_is_metadata_chunk(&info.geom, info.next_free_chunk))
		info.next_free_chunk++;
	oldset_free(&st.olds);
	*ret = info;
	return 0;
fail:
	area_reader_done(&ar, st.area);
	oldset_free(&st.olds);
	snapstore_info_free(&info);
	return r;
}

/* Listed data chunks among chunks [from, to). */
static uint64_t listed_in(const struct snapstore_info *info, uint64_t from, uint64_t to)
{
	uint64_t n = 0, c = from;

	for (; c < to && (c & 7); c++)
		n += snapstore_bitmap_test(info->data_bitmap, c);
	for (; c + 8 <= to; c += 8)
		n += (uint64_t)__builtin_popcount(info->data_bitmap[c >> 3]);
	for (; c < to; c++)
		n += snapstore_bitmap_test(info->data_bitmap, c);
	return n;
}

int snapstore_hole_chunks(int fd, const struct snapstore_info *info, uint64_t *ret_holes)
{
	uint64_t cb = info->geom.chunk_bytes, limit = info->geom.file_chunks * cb;
	uint64_t with_data = 0, next_chunk = 0; /* chunks below next_chunk are counted */
	off_t pos = 0;

	while ((uint64_t)pos < limit) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		uint64_t first, last;

		if (data < 0) {
			if (errno == ENXIO)
				break;
			return -errno;
		}
		if ((uint64_t)data >= limit)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if ((uint64_t)hole > limit)
			hole = (off_t)limit;
		first = (uint64_t)data / cb;
		last = ((uint64_t)hole - 1) / cb; /* inclusive */
		if (first < next_chunk)
			first = next_chunk;
		if (first <= last)
			with_data += listed_in(info, first, last + 1);
		next_chunk = last + 1;
		pos = hole;
	}
	*ret_holes = info->exceptions - with_data;
	return 0;
}
