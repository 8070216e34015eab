/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "reclaim/engine.h"

void reclaim_coalescer_init(struct reclaim_coalescer *co, const struct snapstore_geometry *geom,
			    const uint8_t *data_bitmap, struct reclaim_range *batch, size_t cap)
{
	*co = (struct reclaim_coalescer){
		.geom = geom,
		.data_bitmap = data_bitmap,
		.batch = batch,
		.cap = cap,
	};
}

static void coalescer_close(struct reclaim_coalescer *co)
{
	if (co->start == co->end)
		return;
	co->batch[co->n++] = (struct reclaim_range){
		.off = co->start * co->geom->chunk_bytes,
		.len = (co->end - co->start) * co->geom->chunk_bytes,
	};
	co->start = co->end = 0;
}

int reclaim_coalescer_add(struct reclaim_coalescer *co, uint64_t c)
{
	if (c == 0 || c < co->last || c >= co->geom->file_chunks ||
	    snapstore_is_metadata_chunk(co->geom, c) || !snapstore_bitmap_test(co->data_bitmap, c))
		return -EINVAL;
	if (co->n == co->cap)
		return -ENOBUFS; /* the caller did not take a full batch */
	co->last = c + 1;
	/*
	 * Only adjacent chunks merge, and two adjacent listed data chunks never have
	 * a metadata chunk between them: a range holds nothing but listed data chunks.
	 */
	if (co->start != co->end && c == co->end) {
		co->end++;
		return 0;
	}
	coalescer_close(co);
	co->start = c;
	co->end = c + 1;
	return co->n == co->cap;
}

int reclaim_coalescer_flush(struct reclaim_coalescer *co)
{
	coalescer_close(co);
	return co->n > 0;
}
