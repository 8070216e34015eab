/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What host/ functions say when they fail.  They return -errno and never
 * print: the text for a person goes into a struct host_error the caller
 * passes, and agent/ prints it (once) or a daemon logs it.
 */
#ifndef COWPUNCH_HOST_ERROR_H
#define COWPUNCH_HOST_ERROR_H

struct host_error {
	char msg[1024]; /* what failed, naming the file and the rule broken; "" when nothing */
};

/* host_reclaim_cow(): fs-aware reclaim refused as unsafe, nothing written. */
#define HOST_RECLAIM_REFUSED 1
/* host_reclaim_cow(), host_sparsify_*: a forced rewrite refused (links, shared extents, space). */
#define HOST_REWRITE_REFUSED 2

/*
 * The exit statuses of cowpunch: a contract scripts rely on (README,
 * docs/operations.md), and what a VM's record keeps of its last reclaim.
 */
enum {
	EXIT_OK = 0,
	EXIT_RUNTIME = 1, /* I/O error, kernel refused, out of memory */
	EXIT_USAGE = 2,	  /* bad command line */
	EXIT_INVALID = 3, /* invalid or damaged store, base mismatch: nothing written */
	EXIT_BUSY = 4,	  /* attached, open or locked */
	EXIT_UNSAFE = 5,  /* fs-aware reclaim or a rewrite refused as unsafe: nothing written */
};

/*
 * The exit status for a host/ result: 0 -> 0, -EBUSY and -EWOULDBLOCK -> 4,
 * -EBADMSG and -ESTALE -> 3, HOST_RECLAIM_REFUSED (1) and HOST_REWRITE_REFUSED (2) -> 5, any other -> 1.
 * (-EINVAL means a usage error only where the caller says so.)
 */
int host_exit_status(int r);

/* printf into e->msg (e may be NULL: nothing is kept). */
void host_seterr(struct host_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
