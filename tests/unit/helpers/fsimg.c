/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "tests/unit/helpers/fsimg.h"
#include "tests/unit/helpers/storegen.h"

int fsimg_sh(const char *fmt, ...)
{
	_cleanup_free_ char *cmd = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -1;
	r = system(cmd);
	if (r == -1 || !WIFEXITED(r))
		return -1;
	return WEXITSTATUS(r);
}

bool fsimg_tools_present(void)
{
	return fsimg_sh(
		       "{ command -v mkfs.ext4 && command -v debugfs && command -v e2fsck; } >/dev/null") ==
	       0;
}

int fsimg_random_file(const char *path, uint64_t len, uint64_t seed)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t buf[8192], x = seed * 0x9e3779b97f4a7c15ULL + 1;

	if (fd < 0)
		return -errno;
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < sizeof(buf) ? (size_t)(len - done) : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < ARRAY_SIZE(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		w = util_pwrite_full(fd, buf, n, done);
		if (w < 0)
			return (int)w;
		done += n;
	}
	return 0;
}

int fsimg_tmpdir(char *buf, size_t len)
{
	const char *base = getenv("TMPDIR");

	if (!base || !*base)
		base = "/var/tmp";
	if ((size_t)snprintf(buf, len, "%s/cowpunch-test.XXXXXX", base) >= len)
		return -ENAMETOOLONG;
	if (!mkdtemp(buf))
		return -errno;
	return 0;
}

int fsimg_diff_store(const char *base, const char *guest, int cow_fd, uint64_t chunk, uint64_t disk)
{
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int gfd = open(guest, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *a = malloc(chunk), *b = malloc(chunk);
	struct storegen *sg;
	int r = 0;

	if (bfd < 0 || gfd < 0)
		return -errno;
	if (!a || !b)
		return -ENOMEM;
	r = storegen_create(cow_fd, (uint32_t)(chunk / 512), false, &sg);
	if (r < 0)
		return r;
	for (uint64_t c = 0; c * chunk < disk && r >= 0; c++) {
		ssize_t ra = util_pread_full(bfd, a, chunk, c * chunk);
		ssize_t rb = util_pread_full(gfd, b, chunk, c * chunk);

		if (ra < 0 || rb < 0) {
			r = (int)(ra < 0 ? ra : rb);
			break;
		}
		memset(a + ra, 0, chunk - (size_t)ra);
		memset(b + rb, 0, chunk - (size_t)rb);
		if (memcmp(a, b, chunk))
			r = storegen_add_buf(sg, c, b, NULL);
	}
	storegen_free(sg);
	return r < 0 ? r : 0;
}

int fsimg_rewrite_file(const char *base, const char *name, const char *guest, uint32_t block_size)
{
	_cleanup_free_ char *cmd = NULL;
	unsigned long long blk;
	FILE *p;
	int n = 0;

	if (asprintf(&cmd, "debugfs -R 'blocks %s' '%s' 2>/dev/null", name, base) < 0)
		return -ENOMEM;
	p = popen(cmd, "r");
	if (!p)
		return -errno;
	while (n >= 0 && fscanf(p, "%llu", &blk) == 1) {
		if (fsimg_sh("head -c %u /dev/urandom | dd of='%s' bs=%u seek=%llu conv=notrunc "
			     "status=none",
			     block_size, guest, block_size, blk) != 0)
			n = -EIO;
		else
			n++;
	}
	pclose(p);
	return n;
}

void fsimg_rmtree(const char *dir)
{
	if (dir && strstr(dir, "cowpunch-test."))
		fsimg_sh("rm -rf '%s'", dir);
}
