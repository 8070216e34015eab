/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The portable engine: pread(2) and fallocate(2), one at a time.  Always available.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/util.h"
#include "reclaim/engine.h"

int reclaim_punch_fallocate(int fd, const struct reclaim_range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r[i].off,
			      (off_t)r[i].len) < 0)
			return -errno;
	return 0;
}

static int sync_init(struct reclaim_engine *e)
{
	return 0;
}

static int sync_submit(struct reclaim_engine *e, struct reclaim_io *io)
{
	ssize_t n = util_pread_full(e->fd, io->buf, io->len, io->off);

	io->res = (int32_t)n;
	io->done = true;
	return 0;
}

static int sync_reap(struct reclaim_engine *e)
{
	/* Every read completes in submit: nothing can be waiting. */
	return -EINVAL;
}

static int sync_punch(struct reclaim_engine *e, const struct reclaim_range *r, size_t n)
{
	return reclaim_punch_fallocate(e->fd, r, n);
}

static int sync_drain(struct reclaim_engine *e)
{
	return 0;
}

static void sync_exit(struct reclaim_engine *e)
{
}

const struct reclaim_engine_ops reclaim_engine_sync = {
	.kind = RECLAIM_ENGINE_SYNC,
	.init = sync_init,
	.submit = sync_submit,
	.reap = sync_reap,
	.punch = sync_punch,
	.drain = sync_drain,
	.exit = sync_exit,
};
