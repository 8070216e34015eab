/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/cleanup.h"
#include "common/util.h"

/*
 * Reads "DIGITS[.DIGITS]" at *pp into a whole part and a fraction num/den (den a
 * power of ten; digits past 1e-12 are ignored) and moves *pp past it.
 * -EINVAL when no digit starts it, -ERANGE when the whole part overflows.
 */
static int util_read_decimal(const char **pp, uint64_t *whole, uint64_t *frac_num,
			     uint64_t *frac_den)
{
	const char *p = *pp;
	uint64_t w = 0, num = 0, den = 1;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (w > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		w = w * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (den >= 1000000000000ULL)
				continue;
			num = num * 10 + (uint64_t)(*p - '0');
			den *= 10;
		}
	}
	*pp = p;
	*whole = w;
	*frac_num = num;
	*frac_den = den;
	return 0;
}

int util_parse_size(const char *s, uint64_t *ret_bytes)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{"", 0},   {"b", 0},	{"k", 10}, {"kib", 10}, {"m", 20}, {"mib", 20},
		{"g", 30}, {"gib", 30}, {"t", 40}, {"tib", 40}, {"p", 50}, {"pib", 50},
	};
	uint64_t whole, frac_num, frac_den;
	const char *p = s;
	int r;

	if (!s)
		return -EINVAL;
	r = util_read_decimal(&p, &whole, &frac_num, &frac_den);
	if (r < 0)
		return r;
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

int util_open_dir_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	int fd;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int util_fsync_dir_of(const char *path)
{
	_cleanup_close_ int fd = util_open_dir_of(path);

	if (fd < 0)
		return fd;
	return fsync(fd) < 0 ? -errno : 0;
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

#define UTIL_NSEC_PER_SEC 1000000000ULL

int util_parse_duration(const char *s, uint64_t *ret_ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{"ns", 1},
		{"us", 1000},
		{"ms", 1000000},
		{"s", UTIL_NSEC_PER_SEC},
		{"m", 60 * UTIL_NSEC_PER_SEC},
		{"h", 3600 * UTIL_NSEC_PER_SEC},
		{"d", 86400 * UTIL_NSEC_PER_SEC},
	};
	const char *p = s;
	uint64_t total = 0;

	if (!s || !*s)
		return -EINVAL;
	while (*p) {
		uint64_t whole, num, den, unit = 0, v;
		const char *start = p, *u;
		int r = util_read_decimal(&p, &whole, &num, &den);

		if (r < 0)
			return r;
		for (u = p; *p >= 'a' && *p <= 'z'; p++)
			;
		if (start == s && u == p && !*p)
			unit = UTIL_NSEC_PER_SEC; /* the whole string is one number: seconds */
		for (size_t i = 0; i < ARRAY_SIZE(units) && !unit; i++)
			if (strlen(units[i].unit) == (size_t)(p - u) &&
			    !memcmp(units[i].unit, u, (size_t)(p - u)))
				unit = units[i].ns;
		if (!unit)
			return -EINVAL;
		/* The fraction: num / den < 1 and den <= 1e12, so num * unit fits in 128 bits. */
		if (__builtin_mul_overflow(whole, unit, &v) ||
		    __builtin_add_overflow(v, (uint64_t)((unsigned __int128)num * unit / den),
					   &v) ||
		    __builtin_add_overflow(total, v, &total))
			return -ERANGE;
	}
	*ret_ns = total;
	return 0;
}

int util_parse_rate(const char *s, uint64_t *ret_bytes_per_sec)
{
	char buf[64];
	size_t n;

	if (!s)
		return -EINVAL;
	if (!strcasecmp(s, "unlimited")) {
		*ret_bytes_per_sec = 0;
		return 0;
	}
	n = strlen(s);
	if (n > 2 && !strcmp(s + n - 2, "/s"))
		n -= 2;
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return util_parse_size(buf, ret_bytes_per_sec);
}

int util_parse_listen(const char *s, struct sockaddr_storage *ret_addr, socklen_t *ret_len)
{
	struct sockaddr_storage ss = {0};
	char host[INET6_ADDRSTRLEN];
	const char *h, *port;
	unsigned long v = 0;
	size_t hl;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(end - h);
		port = end + 2;
	} else {
		const char *colon = strchr(s, ':');

		/* A second colon is an IPv6 address without brackets: its port is ambiguous. */
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		h = s;
		hl = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host) || !*port || strlen(port) > 5)
		return -EINVAL;
	for (const char *c = port; *c; c++) {
		if (!isdigit((unsigned char)*c))
			return -EINVAL;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (s[0] == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)v);
		*ret_len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)v);
		*ret_len = sizeof(*a);
	}
	*ret_addr = ss;
	return 0;
}

/*
 * STATX_DIOALIGN and its two fields (Linux 6.1) come from <linux/stat.h>; glibc's own
 * struct statx, used when that header is missing or older, has them in its padding
 * at the kernel's fixed offsets (the statx ABI only grows at the end).
 */
#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN	       0x00002000U
#define UTIL_STATX_DIO_MEM_OFF 152
#define UTIL_STATX_DIO_OFF_OFF 156
#else
#define UTIL_STATX_DIO_MEM_OFF offsetof(struct statx, stx_dio_mem_align)
#define UTIL_STATX_DIO_OFF_OFF offsetof(struct statx, stx_dio_offset_align)
_Static_assert(offsetof(struct statx, stx_dio_mem_align) == 152, "statx ABI");
_Static_assert(offsetof(struct statx, stx_dio_offset_align) == 156, "statx ABI");
#endif

static bool util_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int util_dio_alignment(int fd, uint32_t *ret_mem, uint32_t *ret_off)
{
	struct statx stx;
	uint32_t mem, off;

	memset(&stx, 0, sizeof(stx));
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0) {
		/* No statx (before Linux 4.11, or a seccomp filter): nobody can tell. */
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		stx.stx_mask = 0;
	}
	memcpy(&mem, (const char *)&stx + UTIL_STATX_DIO_MEM_OFF, sizeof(mem));
	memcpy(&off, (const char *)&stx + UTIL_STATX_DIO_OFF_OFF, sizeof(off));
	if (stx.stx_mask & STATX_DIOALIGN) {
		/* Both 0: the kernel says this file cannot do direct I/O. */
		if (!mem && !off)
			return -EOPNOTSUPP;
		if (util_pow2(mem) && util_pow2(off)) {
			*ret_mem = mem;
			*ret_off = off;
			return 1;
		}
	}
	*ret_mem = UTIL_DIO_ALIGN_DEFAULT;
	*ret_off = UTIL_DIO_ALIGN_DEFAULT;
	return 0;
}
