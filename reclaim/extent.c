/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <unistd.h>

#include "reclaim/extent.h"

int reclaim_next_data_extent(int fd, uint64_t pos, uint64_t limit, uint64_t *ret_data,
			     uint64_t *ret_hole)
{
	off_t d, h = -1;

	if (pos >= limit)
		return 0;
	d = lseek(fd, (off_t)pos, SEEK_DATA);
	/* ENXIO: no data at or after pos (also pos at or past the end of the file). */
	if (d < 0 && errno == ENXIO)
		return 0;
	if (d >= 0)
		h = lseek(fd, d, SEEK_HOLE);
	if (d < 0 || h < 0 || (uint64_t)d < pos) {
		/* Cannot tell: the rest is data. */
		d = (off_t)pos;
		h = (off_t)limit;
	}
	if ((uint64_t)d >= limit)
		return 0;
	if ((uint64_t)h > limit || h <= d)
		h = (off_t)limit;
	*ret_data = (uint64_t)d;
	*ret_hole = (uint64_t)h;
	return 1;
}
