/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Telling valgrind's memcheck (make valgrind) what the kernel wrote where memcheck
 * cannot see it: an io_uring read completes in a shared ring, with no system call
 * memcheck could follow, so it would take the bytes read for uninitialised and
 * report every test of them.  Outside valgrind the client request is a few no-op
 * instructions; without valgrind's headers at build time it is nothing.
 */
#ifndef COWPUNCH_COMMON_MEMCHECK_H
#define COWPUNCH_COMMON_MEMCHECK_H

#include <stddef.h>

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define COWPUNCH_HAVE_MEMCHECK 1
#endif
#endif

/* The kernel wrote len bytes at p (an io_uring read's result). */
static inline void memcheck_kernel_wrote(const void *p, size_t len)
{
#ifdef COWPUNCH_HAVE_MEMCHECK
	(void)VALGRIND_MAKE_MEM_DEFINED(p, len);
#else
	(void)p;
	(void)len;
#endif
}

#endif
