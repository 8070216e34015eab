/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * engineprobe: says which asynchronous I/O interfaces this machine offers to
 * this process, asking the kernel directly rather than through cowpunch's
 * engines, so that tests/run-unit.sh can tell under CI=true whether a unit
 * test that skipped an engine as unavailable was right to.  One line each:
 *
 *   uring yes
 *   uring no: REASON
 *   aio yes
 *   aio no: REASON
 *
 * io_uring counts as offered when a ring can be set up and its probe lists
 * IORING_OP_READ and IORING_OP_FALLOCATE (what the io_uring engine uses); AIO
 * when io_setup() gives a context.  Exit 0.
 */
#include <errno.h>
#include <libaio.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>

static void probe_uring(void)
{
	struct io_uring_probe *probe;
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);
	bool read_op, fallocate_op;

	if (r < 0) {
		printf("uring no: io_uring_queue_init: %s\n", strerror(-r));
		return;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		printf("uring no: io_uring_get_probe_ring failed\n");
		io_uring_queue_exit(&ring);
		return;
	}
	read_op = io_uring_opcode_supported(probe, IORING_OP_READ);
	fallocate_op = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	if (read_op && fallocate_op)
		printf("uring yes\n");
	else
		printf("uring no: the kernel's io_uring lacks IORING_OP_%s\n",
		       read_op ? "FALLOCATE" : "READ");
}

static void probe_aio(void)
{
	io_context_t ctx = 0;
	int r = io_setup(1, &ctx);

	if (r < 0) {
		printf("aio no: io_setup: %s\n", strerror(-r));
		return;
	}
	io_destroy(ctx);
	printf("aio yes\n");
}

int main(void)
{
	probe_uring();
	probe_aio();
	return 0;
}
