/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef COWPUNCH_COMMON_UTIL_H
#define COWPUNCH_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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
 * Opens the directory holding path, as dirname(3) names it ("." for a bare
 * name, "/" for "/NAME", trailing slashes ignored), O_RDONLY | O_DIRECTORY |
 * O_CLOEXEC.  Returns the descriptor, or -errno (-ENOMEM, or open's).
 */
int util_open_dir_of(const char *path);

/*
 * fsyncs the directory holding path (util_open_dir_of()), so that an entry
 * made or renamed there survives a crash.  Returns 0, or -errno (open's or
 * fsync's).
 */
int util_fsync_dir_of(const char *path);

/*
 * Whether the page cache holds every page of fd's bytes [off, off + len), from
 * cachestat(2) (Linux 6.5), without touching the pages.  Returns 1 when it does,
 * 0 when not, -errno when it cannot tell (-ENOSYS: no cachestat on this kernel;
 * -EPERM, -EOPNOTSUPP: refused).
 */
int util_cached(int fd, uint64_t off, uint64_t len);

/*
 * Parses a duration: "500ms", "90s", "10m", "1h", "1.5h", "1h30m", "2d" (units
 * ns us ms s m h d, lowercase, components added up), or a plain number of
 * seconds ("90", "0.5").  Returns 0 and writes *ret_ns, -EINVAL on a malformed
 * string (empty, negative, unknown unit, a plain number followed by more),
 * -ERANGE when it does not fit in 64-bit nanoseconds (about 584 years).
 */
int util_parse_duration(const char *s, uint64_t *ret_ns);

/*
 * Parses a rate in bytes per second: a size as util_parse_size() takes it
 * ("50M" = 50 MiB/s, "1.5GiB", "4096"), optionally followed by "/s"; "0" and
 * "unlimited" mean no limit (0).  Returns 0 and writes *ret_bytes_per_sec,
 * -EINVAL or -ERANGE as util_parse_size().
 */
int util_parse_rate(const char *s, uint64_t *ret_bytes_per_sec);

/*
 * Parses a listen address "IPV4:PORT" or "[IPV6]:PORT", numeric only (no host
 * names, no lookups), PORT 1-65535.  Returns 0 and writes *ret_addr (a
 * sockaddr_in or sockaddr_in6) and *ret_len, -EINVAL for anything else.
 */
int util_parse_listen(const char *s, struct sockaddr_storage *ret_addr, socklen_t *ret_len);

/* What callers assume for O_DIRECT when the kernel cannot tell: any logical block up to 4 KiB. */
#define UTIL_DIO_ALIGN_DEFAULT 4096u

/*
 * The O_DIRECT alignment of fd's file, from statx(2) STATX_DIOALIGN (Linux 6.1;
 * reported by ext4, XFS, f2fs, block devices and others): *ret_mem for the memory
 * buffer, *ret_off for file offsets and lengths, both powers of two.  Returns 1
 * when the kernel reported them; 0 when it cannot tell (an older kernel, a file
 * system that does not report them, a value that is not a power of two), with
 * both set to UTIL_DIO_ALIGN_DEFAULT: callers then try it and, on EINVAL, read
 * without O_DIRECT; -EOPNOTSUPP when the kernel says the file cannot do direct
 * I/O at all (nothing written); -errno when statx fails otherwise (-EBADF).
 */
int util_dio_alignment(int fd, uint32_t *ret_mem, uint32_t *ret_off);

#endif
