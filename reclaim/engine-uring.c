/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * io_uring engine: IORING_OP_READ for the scan and IORING_OP_FALLOCATE for the
 * punches, on one ring.  Punches are queued without waiting, so the scan keeps
 * going while an io-wq worker punches; reclaim_run() drains them at the end.
 *
 * Punches of one inode serialise on its lock, so at most one linked chain of
 * them is in flight at a time: a second chain would only put a second io-wq
 * worker spinning on the lock (rwsem_spin_on_owner), taking the CPU the scan
 * needs.  Ranges that arrive while a chain runs wait in a bounded queue and go
 * out as the next chain when it completes.  The ring is set up with
 * COOP_TASKRUN, so that a punch completing does not interrupt the scanning
 * thread with an IPI; uring_poll() collects completions between reads.  (Not
 * DEFER_TASKRUN: each link of a chain would then wait for this task to enter
 * the kernel before it is issued, instead of following on in the worker.)
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/memcheck.h"
#include "reclaim/engine.h"

/* Punches in one linked chain. */
#define URING_CHAIN_MAX 256u
/* Ranges waiting for the chain in flight (16 bytes each). */
#define URING_PENDING_MAX 4096u

struct uring_priv {
	struct io_uring ring;
	unsigned chain; /* punches of the chain in flight, not yet completed */
	struct reclaim_range pending[URING_PENDING_MAX]; /* a ring buffer */
	size_t pend_head, pend_n;
	int punch_err; /* first punch error */
};

/*
 * COOP_TASKRUN needs 5.19: an older kernel refuses the flag with EINVAL, and
 * the ring is set up without it.  TASKRUN_FLAG has the kernel say in the SQ
 * ring when completions wait for this task, so that io_uring_peek_cqe() enters
 * the kernel to collect them.
 */
static int uring_queue_init(struct uring_priv *p, unsigned entries)
{
	static const unsigned flags[] = {
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < ARRAY_SIZE(flags) && r == -EINVAL; i++) {
		struct io_uring_params params = {.flags = flags[i]};

		r = io_uring_queue_init_params(entries, &p->ring, &params);
	}
	return r;
}

static int uring_init(struct reclaim_engine *e)
{
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
	r = uring_queue_init(p, e->depth + URING_CHAIN_MAX);
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

/*
 * Sends the queued ranges, up to a chain's worth, as one linked chain.  A
 * failed punch cancels the rest of its chain (-ECANCELED after the real error,
 * which is the one kept); after an error no further chain is started.
 */
static void uring_start_chain(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;
	unsigned n = 0;

	if (p->chain || p->punch_err)
		return;
	while (n < URING_CHAIN_MAX && p->pend_n) {
		const struct reclaim_range *rg = &p->pending[p->pend_head];
		struct io_uring_sqe *sqe = uring_get_sqe(p);

		if (!sqe)
			break;
		io_uring_prep_fallocate(sqe, e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)rg->off, (off_t)rg->len);
		io_uring_sqe_set_data(sqe, NULL);
		sqe->flags |= IOSQE_IO_LINK;
		p->pend_head = (p->pend_head + 1) % URING_PENDING_MAX;
		p->pend_n--;
		n++;
		if (n == URING_CHAIN_MAX || !p->pend_n)
			sqe->flags &= (__u8)~IOSQE_IO_LINK; /* the chain ends here */
	}
	p->chain = n;
	if (n)
		io_uring_submit(&p->ring);
}

/* Takes every completion there is: reads are marked done, punches counted. */
static void uring_take_cqes(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&p->ring, &cqe) == 0) {
		struct reclaim_io *io = io_uring_cqe_get_data(cqe);

		if (io) {
			io->res = cqe->res;
			io->done = true;
			if (cqe->res > 0)
				memcheck_kernel_wrote(io->buf, (size_t)cqe->res);
		} else {
			p->chain--;
			if (cqe->res < 0 && !p->punch_err)
				p->punch_err = cqe->res;
		}
		io_uring_cqe_seen(&p->ring, cqe);
	}
	uring_start_chain(e);
}

static int uring_wait(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;
	int r;

	do
		r = io_uring_submit_and_wait(&p->ring, 1);
	while (r == -EINTR);
	if (r < 0)
		return r;
	uring_take_cqes(e);
	return 0;
}

/*
 * Only the wait's own error: a punch error is reported by poll, punch and
 * drain.  Were it sticky here, the scanner could not wait out its reads after
 * a failed punch, and would free their buffers with the kernel still reading
 * into them.
 */
static int uring_reap(struct reclaim_engine *e)
{
	return uring_wait(e);
}

/* Between reads: collects finished punches and starts the next chain, never waiting. */
static int uring_poll(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;

	if (!p->chain)
		return p->punch_err;
	uring_take_cqes(e);
	return p->punch_err;
}

static int uring_punch(struct reclaim_engine *e, const struct reclaim_range *rg, size_t n)
{
	struct uring_priv *p = e->priv;

	for (size_t i = 0; i < n && !p->punch_err; i++) {
		while (p->pend_n == URING_PENDING_MAX) {
			int r = uring_wait(e);

			if (r < 0)
				return r;
			if (p->punch_err)
				return p->punch_err;
		}
		p->pending[(p->pend_head + p->pend_n) % URING_PENDING_MAX] = rg[i];
		p->pend_n++;
	}
	uring_start_chain(e);
	return p->punch_err;
}

static int uring_drain(struct reclaim_engine *e)
{
	struct uring_priv *p = e->priv;

	uring_start_chain(e);
	while (p->chain) {
		int r = uring_wait(e);

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
	.poll = uring_poll,
	.punch = uring_punch,
	.drain = uring_drain,
	.exit = uring_exit,
};
