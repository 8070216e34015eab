/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A fake of the kernel's O_DIRECT rules, linked in with -Wl,--wrap=statx
 * -Wl,--wrap=pread64 (see the test's .ldflags) and #included by one test
 * program.  Off by default: every call goes to the real kernel.
 *
 * With fakedio.on, a pread of a descriptor opened O_DIRECT fails with EINVAL
 * unless its offset and length are multiples of fakedio.off and its buffer of
 * fakedio.mem, as the kernel does for a device whose logical block is larger
 * than the 4 KiB readers like to assume; statx(2) reports that alignment
 * (STATX_DIOALIGN, Linux 6.1) when fakedio.report is set, and nothing about it
 * otherwise (an older kernel).  With fakedio.eio_fd >= 0, every pread of that
 * descriptor that reaches byte fakedio.eio_from or further fails with EIO (a
 * failing disk).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static struct {
	bool on;
	bool report;
	uint32_t mem, off;
	int eio_fd;
	uint64_t eio_from;
	unsigned direct_reads; /* O_DIRECT reads let through */
	unsigned refused;      /* O_DIRECT reads refused with EINVAL */
} fakedio = {.eio_fd = -1};

__attribute__((unused)) static void fakedio_set(bool report, uint32_t mem, uint32_t off)
{
	fakedio.on = true;
	fakedio.report = report;
	fakedio.mem = mem;
	fakedio.off = off;
	fakedio.direct_reads = fakedio.refused = 0;
}

__attribute__((unused)) static void fakedio_off(void)
{
	fakedio.on = false;
	fakedio.eio_fd = -1;
	fakedio.eio_from = 0;
}

/* Reads of fd that reach byte `from` or further fail with EIO. */
__attribute__((unused)) static void fakedio_eio(int fd, uint64_t from)
{
	fakedio.eio_fd = fd;
	fakedio.eio_from = from;
}

int __real_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);
int __wrap_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);
ssize_t __real_pread64(int fd, void *buf, size_t len, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t off);

int __wrap_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
	int r = __real_statx(dirfd, path, flags, mask, buf);

	if (r < 0 || !fakedio.on)
		return r;
	/* STATX_DIOALIGN and its fields at the kernel's offsets (see common/util.c). */
	buf->stx_mask &= ~0x2000u;
	if (fakedio.report) {
		buf->stx_mask |= 0x2000u;
		memcpy((char *)buf + 152, &fakedio.mem, 4);
		memcpy((char *)buf + 156, &fakedio.off, 4);
	}
	return r;
}

ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t off)
{
	if (fd >= 0 && fd == fakedio.eio_fd && (uint64_t)off + len > fakedio.eio_from) {
		errno = EIO;
		return -1;
	}
	if (fakedio.on) {
		int fl = fcntl(fd, F_GETFL);

		if (fl >= 0 && (fl & O_DIRECT)) {
			if ((uint64_t)off % fakedio.off || len % fakedio.off ||
			    (uintptr_t)buf % fakedio.mem) {
				fakedio.refused++;
				errno = EINVAL;
				return -1;
			}
			fakedio.direct_reads++;
		}
	}
	return __real_pread64(fd, buf, len, off);
}
