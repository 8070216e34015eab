/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "host/error.h"

void host_seterr(struct host_error *e, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

int host_exit_status(int r)
{
	switch (r) {
	case 0:
		return EXIT_OK;
	case HOST_RECLAIM_REFUSED:
	case HOST_REWRITE_REFUSED:
		return EXIT_UNSAFE;
	case -EBUSY:
	case -EWOULDBLOCK:
		return EXIT_BUSY;
	case -EBADMSG:
	case -ESTALE:
		return EXIT_INVALID;
	default:
		return EXIT_RUNTIME;
	}
}
