/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

int util_parse_size(const char *s, uint64_t *ret_bytes)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{"", 0},   {"b", 0},	{"k", 10}, {"kib", 10}, {"m", 20}, {"mib", 20},
		{"g", 30}, {"gib", 30}, {"t", 40}, {"tib", 40}, {"p", 50}, {"pib", 50},
	};
	uint64_t whole = 0, frac_num = 0, frac_den = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (frac_den >= 1000000000000ULL)
				continue; /* ignore digits past 1e-12 */
			frac_num = frac_num * 10 + (uint64_t)(*p - '0');
			frac_den *= 10;
		}
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		unsigned sh = units[i].shift;
		if (sh && whole > (UINT64_MAX >> sh))
			return -ERANGE;
		uint64_t v = whole << sh;
		if (frac_num) {
			if (!sh)
				return -EINVAL; /* fractional bytes */
			uint64_t f = (uint64_t)((long double)frac_num / frac_den *
						(long double)(1ULL << sh));
			if (v > UINT64_MAX - f)
				return -ERANGE;
			v += f;
		}
		*ret_bytes = v;
		return 0;
	}
	return -EINVAL;
}

const char *util_format_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	size_t i = 0;

	while (v >= 1024.0 && i + 1 < sizeof(names) / sizeof(names[0])) {
		v /= 1024.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.2f %s", v, names[i]);
	return buf;
}

double util_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool util_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* Check a 16-byte head by hand, then compare the buffer with itself shifted by
	 * 16: memcmp is vectorised in glibc, so this runs at memory bandwidth. */
	if (len < 16) {
		for (size_t i = 0; i < len; i++)
			if (p[i])
				return false;
		return true;
	}
	for (size_t i = 0; i < 16; i++)
		if (p[i])
			return false;
	return memcmp(p, p + 16, len - 16) == 0;
}

ssize_t util_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/*
		 * Nothing written and no error: trying again would loop for ever on
		 * whatever stops it (POSIX leaves the reason open).  Say I/O error.
		 */
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* cachestat(2), Linux 6.5; Debian 12's headers predate it.  Same number on every arch. */
#define UTIL_NR_CACHESTAT 451

int util_cached(int fd, uint64_t off, uint64_t len)
{
	struct {
		uint64_t off, len;
	} range = {off, len};
	struct {
		uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
	} cs;
	long page = sysconf(_SC_PAGESIZE);

	if (syscall(UTIL_NR_CACHESTAT, fd, &range, &cs, 0) < 0)
		return -errno;
	return cs.nr_cache * (uint64_t)(page > 0 ? page : 4096) >= len;
}
