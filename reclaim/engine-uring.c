/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * io_uring engine: IORING_OP_READ for the scan and IORING_OP_FALLOCATE for the
 * punches, on one ring.  Punches are queued without waiting, so the scan keeps
 * going while io-wq workers punch; reclaim_run() drains them at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>

#include "reclaim/engine.h"

/* Punches queued but not completed before punch() waits for some. */
#define URING_MAX_PUNCHES 256u

struct uring_priv {
	struct io_uring ring;
	unsigned punches; /* queued, not yet completed */
	int punch_err;	  /* first punch error */
};

static int uring_init(struct reclaim_engine *e)
{
	struct io_uring_params params = {0};
	struct io_uring_probe *probe;
	struct uring_priv *p;
	bool ok;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	/*
	 * EPERM (kernel.io_uring_disabled, a seccomp profile), ENOSYS (no kernel
	 * support), ENOMEM (memlock accounting on old kernels): the caller falls back.
	 */
	r = io_uring_queue_init_params(e->depth + URING_MAX_PUNCHES, &p->ring, &params);
	if (r < 0) {
		free(p);
		return r;
	}
	probe = io_uring_get_probe_ring(&p->ring);
	ok = probe && io_uring_opcode_supported(probe, IORING_OP_READ) &&
	     io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
	if (probe)
		io_uring_free_probe(probe);
	if (!ok) {
		io_uring_queue_exit(&p->ring);
		free(p);
		return -ENOTSUP;
	}
	e->priv = p;
	return 0;
}

static struct io_uring_sqe *uring_get_sqe(struct uring_priv *p)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

	if (!sqe) {
		/* SQ full: hand what is queued to the kernel, then there is room. */
		io_uring_submit(&p->ring);
		sqe = io_uring_get_sqe(&p->ring);
	}
	return sqe;
}

static int uring_submit(struct reclaim_engine *e, struct reclaim_io *io)
{
	struct uring_priv *p = e->priv;
	struct io_uring_sqe *sqe = uring_get_sqe(p);

	if (!sqe)
		return -EBUSY;
	io->done = false;
	io_uring_prep_read(sqe, e->fd, io->buf, io->len, io->off);
	io_uring_sqe_set_data(sqe, io);
	return 0;
}

/* Takes every completion there is: reads are marked done, punches counted. */
static void uring_take_cqes(struct uring_priv *p)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&p->ring, &cqe) == 0) {
		struct reclaim_io *io = io_uring_cqe_get_data(cqe);

		if (io) {
			io->res = cqe->res;
			io->done = true;
		} else {
			p->punches--;
			if (cqe->res < 0 && !p->punch_err)
				p->punch_err = cqe->res;
		}
		io_uring_cqe_seen(&p->ring, cqe);
	}
}

static int uring_wait(struct uring_priv *p)
{
	int r;

	do
		r = io_uring_submit_and_wait(&p->ring, 1);
	while (r == -EINTR);
	if (r < 0)
		return r;
	uring_take_cqes(p);
	return 0;
}

static int uring_reap(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;
	int r = uring_wait(p);

	return r < 0 ? r : p->punch_err;
}

static int uring_punch(struct reclaim_engine *e, const struct reclaim_range *rg, size_t n)
{
	struct uring_priv *p = e->priv;

	for (size_t i = 0; i < n; i++) {
		struct io_uring_sqe *sqe;
		int r;

		while (p->punches >= URING_MAX_PUNCHES) {
			r = uring_wait(p);
			if (r < 0)
				return r;
		}
		sqe = uring_get_sqe(p);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_fallocate(sqe, e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)rg[i].off, (off_t)rg[i].len);
		io_uring_sqe_set_data(sqe, NULL);
		p->punches++;
	}
	io_uring_submit(&p->ring);
	return p->punch_err;
}

static int uring_drain(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;

	while (p->punches > 0) {
		int r = uring_wait(p);

		if (r < 0)
			return r;
	}
	return p->punch_err;
}

static void uring_exit(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;

	if (!p)
		return;
	/* Tearing the ring down cancels and waits for whatever is still in flight. */
	io_uring_queue_exit(&p->ring);
	free(p);
	e->priv = NULL;
}

const struct reclaim_engine_ops reclaim_engine_uring = {
	.kind = RECLAIM_ENGINE_URING,
	.init = uring_init,
	.submit = uring_submit,
	.reap = uring_reap,
	.punch = uring_punch,
	.drain = uring_drain,
	.exit = uring_exit,
};
