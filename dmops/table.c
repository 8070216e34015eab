/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dmops/table.h"

bool dmops_chunk_sectors_valid(uint64_t chunk_sectors)
{
	return chunk_sectors >= 8 && chunk_sectors <= (1u << 21) &&
	       (chunk_sectors & (chunk_sectors - 1)) == 0;
}

static int dmops_target_set(struct dmops_target *t, uint64_t start, uint64_t length,
			    const char *type, const char *fmt_dev, uint64_t off)
{
	int n;

	t->start = start;
	t->length = length;
	snprintf(t->type, sizeof(t->type), "%s", type);
	if (fmt_dev)
		n = snprintf(t->params, sizeof(t->params), "%s %llu", fmt_dev,
			     (unsigned long long)off);
	else
		n = snprintf(t->params, sizeof(t->params), "%s", "");
	return n < (int)sizeof(t->params) ? 0 : -EINVAL;
}

int dmops_table_base(const char *base_dev, uint64_t base_sectors, uint64_t virt_sectors,
		     const char *tail_dev, struct dmops_table *ret)
{
	struct dmops_table t;
	int r;

	if (!base_dev || base_sectors == 0 || base_sectors > virt_sectors)
		return -EINVAL;
	memset(&t, 0, sizeof(t));
	r = dmops_target_set(&t.targets[t.count++], 0, base_sectors, "linear", base_dev, 0);
	if (r < 0)
		return r;
	if (virt_sectors > base_sectors) {
		/* The tail maps the same offsets of the sparse file, so one file serves any size. */
		if (tail_dev)
			r = dmops_target_set(&t.targets[t.count++], base_sectors,
					     virt_sectors - base_sectors, "linear", tail_dev,
					     base_sectors);
		else
			r = dmops_target_set(&t.targets[t.count++], base_sectors,
					     virt_sectors - base_sectors, "zero", NULL, 0);
		if (r < 0)
			return r;
	}
	*ret = t;
	return 0;
}

int dmops_table_overlay(const char *origin_dev, const char *cow_dev, uint64_t virt_sectors,
			uint32_t chunk_sectors, bool discard, struct dmops_table *ret)
{
	struct dmops_table t;
	int n;

	if (!origin_dev || !cow_dev || virt_sectors == 0 ||
	    !dmops_chunk_sectors_valid(chunk_sectors))
		return -EINVAL;
	memset(&t, 0, sizeof(t));
	t.count = 1;
	t.targets[0].start = 0;
	t.targets[0].length = virt_sectors;
	snprintf(t.targets[0].type, sizeof(t.targets[0].type), "snapshot");
	n = snprintf(t.targets[0].params, sizeof(t.targets[0].params), "%s %s P %u%s", origin_dev,
		     cow_dev, chunk_sectors, discard ? " 1 discard_zeroes_cow" : "");
	if (n >= (int)sizeof(t.targets[0].params))
		return -EINVAL;
	*ret = t;
	return 0;
}

int dmops_cow_bytes(uint64_t virt_bytes, uint32_t chunk_sectors, uint64_t *ret_bytes)
{
	uint64_t chunk_bytes, chunks, epa, total;

	if (!dmops_chunk_sectors_valid(chunk_sectors))
		return -EINVAL;
	chunk_bytes = (uint64_t)chunk_sectors * DMOPS_SECTOR;
	epa = chunk_bytes / 16;
	/* A partial last chunk still takes a whole exception. */
	chunks = virt_bytes / chunk_bytes + (virt_bytes % chunk_bytes ? 1 : 0);
	total = 1 + chunks + (chunks + epa) / epa;
	if (total > UINT64_MAX / chunk_bytes)
		return -ERANGE;
	*ret_bytes = total * chunk_bytes;
	return 0;
}
