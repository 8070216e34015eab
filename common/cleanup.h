/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scope-bound cleanup, after systemd's macro.h: a variable declared with one of
 * these attributes is released when it goes out of scope, so error paths cannot
 * leak.  Hand ownership on with TAKE_PTR()/TAKE_FD().
 */
#ifndef COWPUNCH_COMMON_CLEANUP_H
#define COWPUNCH_COMMON_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}

static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void cleanup_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_(x)	 __attribute__((cleanup(x)))
#define _cleanup_free_	 _cleanup_(cleanup_freep)
#define _cleanup_close_	 _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)

/* Returns the value of *p and clears it, so the cleanup handler skips it. */
#define TAKE_PTR(p)                            \
	({                                     \
		__typeof__(p) _take_tmp = (p); \
		(p) = NULL;                    \
		_take_tmp;                     \
	})

#define TAKE_FD(fd)                  \
	({                           \
		int _take_fd = (fd); \
		(fd) = -1;           \
		_take_fd;            \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
