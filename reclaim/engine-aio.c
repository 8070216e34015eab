/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libaio engine: Linux AIO reads (asynchronous only with O_DIRECT, which the
 * scanner uses when the file system allows it) and fallocate(2) punches.
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>

#include "reclaim/engine.h"

struct aio_priv {
	io_context_t ctx;
	struct iocb *iocbs; /* depth of them, handed out round-robin */
	struct io_event *events;
	unsigned next;
	unsigned inflight; /* reads submitted, not yet reaped */
};

static int aio_init(struct reclaim_engine *e)
{
	struct aio_priv *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->iocbs = calloc(e->depth, sizeof(*p->iocbs));
	p->events = calloc(e->depth, sizeof(*p->events));
	if (!p->iocbs || !p->events) {
		r = -ENOMEM;
		goto fail;
	}
	/* io_setup fails with EAGAIN when fs.aio-max-nr is used up, ENOSYS without AIO. */
	r = io_setup((int)e->depth, &p->ctx);
	if (r < 0)
		goto fail;
	e->priv = p;
	return 0;
fail:
	free(p->iocbs);
	free(p->events);
	free(p);
	return r;
}

static int aio_submit(struct reclaim_engine *e, struct reclaim_io *io)
{
	struct aio_priv *p = e->priv;
	struct iocb *cb = &p->iocbs[p->next];
	int r;

	/* The scanner never has more than depth reads in flight, so a slot is free. */
	p->next = (p->next + 1) % e->depth;
	io_prep_pread(cb, e->fd, io->buf, io->len, (long long)io->off);
	cb->data = io;
	io->done = false;
	do
		r = io_submit(p->ctx, 1, &cb);
	while (r == -EAGAIN || r == -EINTR);
	if (r < 0)
		return r;
	if (r != 1)
		return -EIO;
	p->inflight++;
	return 0;
}

static int aio_reap(struct reclaim_engine *e)
{
	struct aio_priv *p = e->priv;
	int n;

	do
		n = io_getevents(p->ctx, 1, (long)e->depth, p->events, NULL);
	while (n == -EINTR);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		struct reclaim_io *io = p->events[i].data;
		long res = (long)p->events[i].res;

		io->res = (int32_t)res;
		io->done = true;
		p->inflight--;
	}
	return 0;
}

static int aio_punch(struct reclaim_engine *e, const struct reclaim_range *r, size_t n)
{
	struct aio_priv *p = e->priv;

	/*
	 * A punch waits for every direct read in flight on the inode (ext4_punch_hole
	 * calls inode_dio_wait), so punching with reads in flight stalls each call
	 * for a read's latency: let the reads finish once, then punch the batch.
	 */
	while (p->inflight) {
		int rr = aio_reap(e);

		if (rr < 0)
			return rr;
	}
	return reclaim_punch_fallocate(e->fd, r, n);
}

static int aio_drain(struct reclaim_engine *e)
{
	return 0;
}

static void aio_exit(struct reclaim_engine *e)
{
	struct aio_priv *p = e->priv;

	if (!p)
		return;
	io_destroy(p->ctx);
	free(p->iocbs);
	free(p->events);
	free(p);
	e->priv = NULL;
}

const struct reclaim_engine_ops reclaim_engine_aio = {
	.kind = RECLAIM_ENGINE_AIO,
	.init = aio_init,
	.submit = aio_submit,
	.reap = aio_reap,
	.punch = aio_punch,
	.drain = aio_drain,
	.exit = aio_exit,
};
