/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef COWPUNCH_COMMON_UTIL_H
#define COWPUNCH_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses a size such as "4096", "4k", "4KiB", "10G", "1.5GiB" (binary units:
 * k/K/KiB = 1024).  A plain number is bytes.  Returns 0 and writes *ret_bytes,
 * -EINVAL on a malformed string, -ERANGE on overflow.
 */
int util_parse_size(const char *s, uint64_t *ret_bytes);

/* Formats bytes as "1.50 GiB" into buf (always NUL-terminated); returns buf. */
const char *util_format_bytes(uint64_t bytes, char *buf, size_t len);

/* Monotonic clock in seconds. */
double util_now(void);

/* True when every byte of buf[0..len) is zero.  Fast for large buffers. */
bool util_is_zero(const void *buf, size_t len);

/*
 * pread/pwrite that loop over short transfers; return bytes done or -errno.
 * pread stops short at the end of the file; pwrite returns -EIO when a call
 * writes nothing.
 */
ssize_t util_pread_full(int fd, void *buf, size_t len, uint64_t off);
ssize_t util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/*
 * Whether the page cache holds every page of fd's bytes [off, off + len), from
 * cachestat(2) (Linux 6.5), without touching the pages.  Returns 1 when it does,
 * 0 when not, -errno when it cannot tell (-ENOSYS: no cachestat on this kernel;
 * -EPERM, -EOPNOTSUPP: refused).
 */
int util_cached(int fd, uint64_t off, uint64_t len);

#endif
