/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test-only store writer, merged-view reader and SHA-256: see storegen.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "storegen.h"

#define SG_MAGIC  0x70416e53u
#define SG_SECTOR 512u
#define SG_ENTRY  16u
#define SG_PIECE  (1u << 20)

static int read_or_zero(int fd, void *buf, size_t len, uint64_t off);

void storegen_put_le32(void *buf, uint32_t v)
{
	uint8_t *p = buf;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void storegen_put_le64(void *buf, uint64_t v)
{
	uint8_t *p = buf;

	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

int storegen_write_raw(int fd, uint64_t offset, const void *buf, size_t len)
{
	ssize_t n = util_pwrite_full(fd, buf, len, offset);

	return n < 0 ? (int)n : 0;
}

int storegen_write_le32(int fd, uint64_t offset, uint32_t v)
{
	uint8_t b[4];

	storegen_put_le32(b, v);
	return storegen_write_raw(fd, offset, b, sizeof(b));
}

int storegen_write_le64(int fd, uint64_t offset, uint64_t v)
{
	uint8_t b[8];

	storegen_put_le64(b, v);
	return storegen_write_raw(fd, offset, b, sizeof(b));
}

int storegen_punch(int fd, uint64_t offset, uint64_t len)
{
	if (len == 0)
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) <
	    0)
		return -errno;
	return 0;
}

int storegen_set_size(struct storegen *sg, int fd, uint64_t size)
{
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	if (sg)
		sg->size = size;
	return 0;
}

int storegen_write_header(int fd, uint32_t magic, uint32_t valid, uint32_t version,
			  uint32_t chunk_sectors)
{
	uint8_t h[16];

	storegen_put_le32(h, magic);
	storegen_put_le32(h + 4, valid);
	storegen_put_le32(h + 8, version);
	storegen_put_le32(h + 12, chunk_sectors);
	return storegen_write_raw(fd, 0, h, sizeof(h));
}

int64_t storegen_allocated(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	return (int64_t)st.st_blocks * 512;
}

void storegen_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint8_t w[8];

		/* xorshift64*; never zero because x never is */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		storegen_put_le64(w, x * 0x2545f4914f6cdd1dULL);
		memcpy(p + i, w, len - i < 8 ? len - i : 8);
	}
}

uint64_t storegen_area_offset(const struct storegen *sg, uint64_t area)
{
	return (1 + area * (sg->epa + 1)) * sg->chunk_bytes;
}

uint64_t storegen_entry_offset(const struct storegen *sg, uint64_t area, uint64_t slot)
{
	return storegen_area_offset(sg, area) + slot * SG_ENTRY;
}

int storegen_put_entry(struct storegen *sg, uint64_t area, uint64_t slot, uint64_t old_chunk,
		       uint64_t new_chunk)
{
	uint8_t e[16];
	uint64_t off = storegen_entry_offset(sg, area, slot);
	int r;

	storegen_put_le64(e, old_chunk);
	storegen_put_le64(e + 8, new_chunk);
	r = storegen_write_raw(sg->fd, off, e, sizeof(e));
	if (r < 0)
		return r;
	if (off + 16 > sg->size)
		sg->size = off + 16;
	return 0;
}

static bool is_meta(const struct storegen *sg, uint64_t c)
{
	return c == 0 || (c - 1) % (sg->epa + 1) == 0;
}

/* Makes the file at least end bytes long (sparse). */
static int extend_to(struct storegen *sg, uint64_t end)
{
	if (end <= sg->size)
		return 0;
	return storegen_set_size(sg, sg->fd, end);
}

/* Zeroes metadata area `area` on disk, as zero_disk_area() does. */
static int zero_area(struct storegen *sg, uint64_t area)
{
	uint64_t off = storegen_area_offset(sg, area);
	int r;

	if (sg->metadata_holes) {
		r = extend_to(sg, off + sg->chunk_bytes);
		if (r < 0)
			return r;
		return storegen_punch(sg->fd, off, sg->chunk_bytes);
	}
	memset(sg->buf, 0, sg->chunk_bytes);
	r = storegen_write_raw(sg->fd, off, sg->buf, sg->chunk_bytes);
	if (r < 0)
		return r;
	if (off + sg->chunk_bytes > sg->size)
		sg->size = off + sg->chunk_bytes;
	return 0;
}

/* A writer for chunk_sectors-sized chunks on fd, with nothing written yet. */
static struct storegen *sg_alloc(int fd, uint32_t chunk_sectors, bool metadata_holes)
{
	struct storegen *sg = calloc(1, sizeof(*sg));

	if (!sg)
		return NULL;
	sg->fd = fd;
	sg->chunk_sectors = chunk_sectors;
	sg->chunk_bytes = (uint64_t)chunk_sectors * SG_SECTOR;
	sg->epa = sg->chunk_bytes / SG_ENTRY;
	sg->next_free = 2;
	sg->metadata_holes = metadata_holes;
	if (posix_memalign((void **)&sg->buf, 4096, sg->chunk_bytes) != 0) {
		free(sg);
		return NULL;
	}
	return sg;
}

int storegen_create(int fd, uint32_t chunk_sectors, bool metadata_holes, struct storegen **ret)
{
	struct storegen *sg;
	int r;

	if (chunk_sectors < 8 || (chunk_sectors & (chunk_sectors - 1)))
		return -EINVAL;
	sg = sg_alloc(fd, chunk_sectors, metadata_holes);
	if (!sg)
		return -ENOMEM;
	r = storegen_set_size(sg, fd, 0);
	if (r >= 0)
		r = storegen_set_size(sg, fd, 2 * sg->chunk_bytes);
	if (r >= 0)
		r = storegen_write_header(fd, SG_MAGIC, 1, 1, chunk_sectors);
	if (r >= 0 && !metadata_holes)
		r = zero_area(sg, 0);
	if (r < 0) {
		storegen_free(sg);
		return r;
	}
	*ret = sg;
	return 0;
}

int storegen_open(int fd, bool metadata_holes, struct storegen **ret)
{
	struct storegen *sg;
	uint8_t hdr[16];
	uint64_t max_new = 0;
	struct stat st;
	uint32_t cs;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -EBADMSG;
	cs = get_le32(hdr + 12);
	if (get_le32(hdr) != SG_MAGIC || get_le32(hdr + 8) != 1 || cs < 8 || cs > (1u << 21) ||
	    (cs & (cs - 1)))
		return -EBADMSG;
	sg = sg_alloc(fd, cs, metadata_holes);
	if (!sg)
		return -ENOMEM;
	sg->size = (uint64_t)st.st_size;
	for (;;) {
		uint64_t off = storegen_area_offset(sg, sg->area);
		bool ended = false;

		r = -EBADMSG;
		if (off + sg->chunk_bytes > sg->size)
			goto fail;
		r = read_or_zero(fd, sg->buf, sg->chunk_bytes, off);
		if (r < 0)
			goto fail;
		for (sg->count = 0; sg->count < sg->epa; sg->count++) {
			uint64_t nw = get_le64(sg->buf + sg->count * 16 + 8);

			if (nw == 0) {
				ended = true;
				break;
			}
			if (nw > max_new)
				max_new = nw;
			sg->exceptions++;
		}
		if (ended)
			break;
		sg->area++;
	}
	sg->next_free = max_new ? max_new + 1 : 2;
	while (is_meta(sg, sg->next_free))
		sg->next_free++;
	*ret = sg;
	return 0;
fail:
	storegen_free(sg);
	return r;
}

void storegen_free(struct storegen *sg)
{
	if (!sg)
		return;
	free(sg->buf);
	free(sg);
}

int storegen_add(struct storegen *sg, uint64_t old_chunk, storegen_fill_fn fill, void *opaque,
		 uint64_t *ret_new)
{
	uint64_t new_chunk = sg->next_free, off = new_chunk * sg->chunk_bytes;
	int r, what = STOREGEN_HOLE;

	if (fill) {
		memset(sg->buf, 0, sg->chunk_bytes);
		what = fill(opaque, old_chunk, new_chunk, sg->buf, sg->chunk_bytes);
		if (what < 0)
			return what;
	}
	if (what == STOREGEN_DATA) {
		r = storegen_write_raw(sg->fd, off, sg->buf, sg->chunk_bytes);
		if (r < 0)
			return r;
		if (off + sg->chunk_bytes > sg->size)
			sg->size = off + sg->chunk_bytes;
	} else {
		/* The chunk may hold bytes from before (set_size + raw writes): make it a hole. */
		r = extend_to(sg, off + sg->chunk_bytes);
		if (r < 0)
			return r;
		r = storegen_punch(sg->fd, off, sg->chunk_bytes);
		if (r < 0)
			return r;
	}
	/* Data first, then the entry, as the kernel commits. */
	r = storegen_put_entry(sg, sg->area, sg->count, old_chunk, new_chunk);
	if (r < 0)
		return r;
	sg->count++;
	sg->exceptions++;
	sg->next_free++;
	while (is_meta(sg, sg->next_free))
		sg->next_free++;
	if (sg->count == sg->epa) {
		/* The kernel zeroes the next area before moving on to it. */
		r = zero_area(sg, sg->area + 1);
		if (r < 0)
			return r;
		sg->area++;
		sg->count = 0;
	}
	if (ret_new)
		*ret_new = new_chunk;
	return 0;
}

static int fill_from_buf(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf,
			 size_t len)
{
	memcpy(buf, opaque, len);
	return STOREGEN_DATA;
}

int storegen_add_buf(struct storegen *sg, uint64_t old_chunk, const void *data, uint64_t *ret_new)
{
	return storegen_add(sg, old_chunk, data ? fill_from_buf : NULL, (void *)data, ret_new);
}

static int fill_pattern(void *opaque, uint64_t old_chunk, uint64_t new_chunk, void *buf, size_t len)
{
	storegen_pattern(buf, len, *(const uint64_t *)opaque);
	return STOREGEN_DATA;
}

int storegen_add_pattern(struct storegen *sg, uint64_t old_chunk, uint64_t seed, uint64_t *ret_new)
{
	return storegen_add(sg, old_chunk, fill_pattern, &seed, ret_new);
}

/* ---- merged view ---- */

struct sg_map {
	uint64_t old_chunk, new_chunk;
};

struct storegen_view {
	int cow_fd, base_fd;
	uint64_t chunk_bytes, virt_size, base_size;
	struct sg_map *map; /* sorted by old_chunk */
	size_t n, cap;
};

static int fd_size(int fd, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, ret) < 0)
			return -errno;
		return 0;
	}
	*ret = (uint64_t)st.st_size;
	return 0;
}

/* Reads len bytes; past EOF reads zeros. */
static int read_or_zero(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = util_pread_full(fd, buf, len, off);

	if (n < 0)
		return (int)n;
	memset((uint8_t *)buf + n, 0, len - (size_t)n);
	return 0;
}

static int map_cmp(const void *a, const void *b)
{
	const struct sg_map *x = a, *y = b;

	if (x->old_chunk != y->old_chunk)
		return x->old_chunk < y->old_chunk ? -1 : 1;
	return 0;
}

void storegen_view_free(struct storegen_view *v)
{
	if (!v)
		return;
	free(v->map);
	free(v);
}

uint64_t storegen_view_exceptions(const struct storegen_view *v)
{
	return v->n;
}

int storegen_view_open(int cow_fd, int base_fd, uint64_t virt_size, struct storegen_view **ret)
{
	struct storegen_view *v;
	uint8_t hdr[16], *area = NULL;
	uint64_t cow_size, epa;
	int r;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cow_fd = cow_fd;
	v->base_fd = base_fd;
	v->virt_size = virt_size;
	r = fd_size(cow_fd, &cow_size);
	if (r >= 0 && base_fd >= 0)
		r = fd_size(base_fd, &v->base_size);
	if (r >= 0)
		r = read_or_zero(cow_fd, hdr, sizeof(hdr), 0);
	if (r < 0)
		goto fail;
	r = -EBADMSG;
	if (get_le32(hdr) != SG_MAGIC || get_le32(hdr + 8) != 1 || get_le32(hdr + 12) < 8 ||
	    get_le32(hdr + 12) > (1u << 21))
		goto fail;
	v->chunk_bytes = (uint64_t)get_le32(hdr + 12) * SG_SECTOR;
	epa = v->chunk_bytes / SG_ENTRY;
	area = malloc(v->chunk_bytes);
	if (!area) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint64_t a = 0;; a++) {
		uint64_t off = (1 + a * (epa + 1)) * v->chunk_bytes;
		bool ended = false;

		/* A full area whose successor is missing: the kernel fails the load. */
		if (off + v->chunk_bytes > cow_size) {
			r = -EBADMSG;
			goto fail;
		}
		r = read_or_zero(cow_fd, area, v->chunk_bytes, off);
		if (r < 0)
			goto fail;
		for (uint64_t i = 0; i < epa; i++) {
			struct sg_map m = {get_le64(area + i * 16), get_le64(area + i * 16 + 8)};

			if (m.new_chunk == 0) {
				ended = true;
				break;
			}
			if (v->n == v->cap) {
				size_t cap = v->cap ? v->cap * 2 : 1024;
				struct sg_map *nm = realloc(v->map, cap * sizeof(*nm));

				if (!nm) {
					r = -ENOMEM;
					goto fail;
				}
				v->map = nm;
				v->cap = cap;
			}
			v->map[v->n++] = m;
		}
		if (ended)
			break;
	}
	free(area);
	area = NULL;
	/* Stable for equal keys is not needed: a valid store has none. */
	qsort(v->map, v->n, sizeof(*v->map), map_cmp);
	*ret = v;
	return 0;
fail:
	free(area);
	storegen_view_free(v);
	return r;
}

/* Index of the first mapping with old_chunk >= c. */
static size_t lower_bound(const struct storegen_view *v, uint64_t c)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->map[mid].old_chunk < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int storegen_view_read(struct storegen_view *v, void *buf, size_t len, uint64_t offset)
{
	uint8_t *p = buf;
	uint64_t cb = v->chunk_bytes;

	while (len > 0) {
		uint64_t chunk = offset / cb, in = offset % cb, seg;
		size_t i = lower_bound(v, chunk);
		int r;

		if (offset >= v->virt_size) {
			memset(p, 0, len);
			return 0;
		}
		if (i < v->n && v->map[i].old_chunk == chunk) {
			/* COW run: consecutive origin chunks in consecutive COW chunks. */
			uint64_t n = 1;

			while (i + n < v->n && v->map[i + n].old_chunk == chunk + n &&
			       v->map[i + n].new_chunk == v->map[i].new_chunk + n)
				n++;
			seg = n * cb - in;
			if (seg > len)
				seg = len;
			r = read_or_zero(v->cow_fd, p, seg, v->map[i].new_chunk * cb + in);
		} else {
			uint64_t end = i < v->n ? v->map[i].old_chunk * cb : UINT64_MAX;

			if (end > v->virt_size)
				end = v->virt_size;
			seg = end - offset;
			if (seg > len)
				seg = len;
			if (v->base_fd >= 0 && offset < v->base_size) {
				if (seg > v->base_size - offset)
					seg = v->base_size - offset;
				r = read_or_zero(v->base_fd, p, seg, offset);
			} else {
				memset(p, 0, seg);
				r = 0;
			}
		}
		if (r < 0)
			return r;
		if (seg > v->virt_size - offset)
			memset(p + (v->virt_size - offset), 0, seg - (v->virt_size - offset));
		p += seg;
		len -= seg;
		offset += seg;
	}
	return 0;
}

int storegen_view_sha256(struct storegen_view *v, uint8_t out[32])
{
	struct storegen_sha256 s;
	uint8_t *buf = malloc(SG_PIECE);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	storegen_sha256_init(&s);
	for (uint64_t off = 0; off < v->virt_size; off += SG_PIECE) {
		size_t n = v->virt_size - off < SG_PIECE ? v->virt_size - off : SG_PIECE;

		r = storegen_view_read(v, buf, n, off);
		if (r < 0)
			break;
		storegen_sha256_update(&s, buf, n);
	}
	free(buf);
	if (r < 0)
		return r;
	storegen_sha256_final(&s, out);
	return 0;
}

int storegen_merged_sha256(int cow_fd, int base_fd, uint64_t virt_size, uint8_t out[32])
{
	struct storegen_view *v;
	int r;

	r = storegen_view_open(cow_fd, base_fd, virt_size, &v);
	if (r < 0)
		return r;
	r = storegen_view_sha256(v, out);
	storegen_view_free(v);
	return r;
}

/* ---- SHA-256, FIPS 180-4 ---- */

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha_block(struct storegen_sha256 *s, const uint8_t *b)
{
	uint32_t w[64], a, bb, c, d, e, f, g, h;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
		       (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3];
	e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) +
			      sha_k[i] + w[i];
		uint32_t t2 =
			(ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));

		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = bb;
		bb = a;
		a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += bb, s->h[2] += c, s->h[3] += d;
	s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

void storegen_sha256_init(struct storegen_sha256 *s)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

	memcpy(s->h, iv, sizeof(iv));
	s->bytes = 0;
	s->fill = 0;
}

void storegen_sha256_update(struct storegen_sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->bytes += len;
	if (s->fill) {
		size_t n = 64 - s->fill < len ? 64 - s->fill : len;

		memcpy(s->block + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
		if (s->fill < 64)
			return;
		sha_block(s, s->block);
		s->fill = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		sha_block(s, p);
	memcpy(s->block, p, len);
	s->fill = len;
}

void storegen_sha256_final(struct storegen_sha256 *s, uint8_t out[32])
{
	uint64_t bits = s->bytes * 8;

	s->block[s->fill++] = 0x80;
	if (s->fill > 56) {
		memset(s->block + s->fill, 0, 64 - s->fill);
		sha_block(s, s->block);
		s->fill = 0;
	}
	memset(s->block + s->fill, 0, 56 - s->fill);
	for (int i = 0; i < 8; i++)
		s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	sha_block(s, s->block);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

char *storegen_hex(const uint8_t digest[32], char hex[65])
{
	static const char d[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		hex[2 * i] = d[digest[i] >> 4];
		hex[2 * i + 1] = d[digest[i] & 15];
	}
	hex[64] = 0;
	return hex;
}
