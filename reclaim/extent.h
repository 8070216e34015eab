/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A file's data extents, one at a time, from SEEK_DATA/SEEK_HOLE: the walk the
 * scanner's hole map and the rewrite's copy share.
 */
#ifndef COWPUNCH_RECLAIM_EXTENT_H
#define COWPUNCH_RECLAIM_EXTENT_H

#include <stdint.h>

/*
 * The first data extent of fd that starts below limit, looking from byte pos
 * on.  Returns 1 with [*ret_data, *ret_hole) the extent clamped to limit
 * (pos <= *ret_data < *ret_hole <= limit), 0 when no data lies in [pos, limit)
 * (out-parameters untouched).  When the file system cannot tell (lseek fails
 * with anything but ENXIO, as on a pipe or a file system without the calls, or
 * reports a hole at or before the data) the rest, [pos, limit), is one extent
 * of data: a caller then reads those bytes rather than assume them a hole.
 */
int reclaim_next_data_extent(int fd, uint64_t pos, uint64_t limit, uint64_t *ret_data,
			     uint64_t *ret_hole);

#endif
