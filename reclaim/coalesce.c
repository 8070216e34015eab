/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "reclaim/engine.h"

void reclaim_coalescer_init_layout(struct reclaim_coalescer *co,
				   const struct reclaim_layout *layout, struct reclaim_range *batch,
				   size_t cap)
{
	*co = (struct reclaim_coalescer){
		.layout = *layout,
		.batch = batch,
		.cap = cap,
	};
}

void reclaim_coalescer_init(struct reclaim_coalescer *co, const struct snapstore_geometry *geom,
			    const uint8_t *data_bitmap, struct reclaim_range *batch, size_t cap)
{
	const struct reclaim_layout l = {
		.chunk_bytes = geom->chunk_bytes,
		.chunks = geom->file_chunks,
		.may_punch = data_bitmap,
		.store = geom,
	};

	reclaim_coalescer_init_layout(co, &l, batch, cap);
}

void reclaim_coalescer_set_holes(struct reclaim_coalescer *co, reclaim_hole_fn is_hole,
				 void *opaque)
{
	co->is_hole = is_hole;
	co->hole_opaque = opaque;
}

void reclaim_coalescer_break(struct reclaim_coalescer *co)
{
	co->broken = true;
}

/* True when [from, to) holds the header or a metadata chunk of a store. */
static bool gap_has_metadata(const struct snapstore_geometry *g, uint64_t from, uint64_t to)
{
	uint64_t stride, first;

	if (!g)
		return false; /* a plain file: no chunk is kept for itself */
	stride = g->epa + 1;
	if (from == 0)
		return to > 0;
	/* The first metadata chunk at or after from: 1 + k * stride, k = ceil((from - 1) / stride). */
	first = 1 + ((from - 1 + stride - 1) / stride) * stride;
	return first < to;
}

bool reclaim_range_can_grow(const struct reclaim_layout *l, reclaim_hole_fn is_hole, void *opaque,
			    uint64_t end, uint64_t c)
{
	if (c == end)
		return true;
	if (c < end || !is_hole || gap_has_metadata(l->store, end, c))
		return false;
	return is_hole(opaque, end, c);
}

/*
 * True when the pending range may grow to take c across the gap [end, c):
 * nothing with data was seen in it, no metadata chunk lies in it, and the file
 * has no data there (the oracle: SEEK_DATA in the scanner).  A range then
 * holds listed zero chunks and chunks that are holes already, nothing else.
 */
static bool coalescer_can_bridge(const struct reclaim_coalescer *co, uint64_t c)
{
	return co->start != co->end && !co->broken && c > co->end &&
	       reclaim_range_can_grow(&co->layout, co->is_hole, co->hole_opaque, co->end, c);
}

bool reclaim_coalescer_extends(const struct reclaim_coalescer *co, uint64_t c)
{
	return (co->start != co->end && c == co->end) || coalescer_can_bridge(co, c);
}

static void coalescer_close(struct reclaim_coalescer *co)
{
	if (co->start == co->end)
		return;
	co->batch[co->n++] = (struct reclaim_range){
		.off = co->start * co->layout.chunk_bytes,
		.len = (co->end - co->start) * co->layout.chunk_bytes,
	};
	co->start = co->end = 0;
}

/* True when chunk c must never be punched: outside the layout, not allowed, a store's own. */
static bool coalescer_refuses(const struct reclaim_coalescer *co, uint64_t c)
{
	const struct reclaim_layout *l = &co->layout;

	return c < co->last || c >= l->chunks ||
	       (l->store && (c == 0 || snapstore_is_metadata_chunk(l->store, c))) ||
	       (l->may_punch && !snapstore_bitmap_test(l->may_punch, c));
}

int reclaim_coalescer_add(struct reclaim_coalescer *co, uint64_t c)
{
	if (coalescer_refuses(co, c))
		return -EINVAL;
	if (co->n == co->cap)
		return -ENOBUFS; /* the caller did not take a full batch */
	co->last = c + 1;
	/*
	 * Adjacent chunks merge, and two adjacent listed data chunks never have a
	 * metadata chunk between them.  Across a gap, only when it is all holes
	 * and free of metadata: a range holds listed zero chunks and holes only.
	 */
	if (co->start != co->end && c == co->end) {
		co->end++;
		co->broken = false;
		return 0;
	}
	if (coalescer_can_bridge(co, c)) {
		co->bridged++;
		co->end = c + 1;
		co->broken = false;
		return 0;
	}
	co->broken = false;
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
