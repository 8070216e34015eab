/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "dmops/loopdev.h"
#include "dmops/loopscan.h"

/* A lost race costs one retry; 64 losers in a row means something else is wrong. */
#define LOOPDEV_ATTACH_TRIES 64

const char *loopdev_dev_dir = "/dev";

static int loopdev_open_index(int index, int flags, struct loopdev *ret)
{
	struct loopdev lo = {.fd = -1, .index = index};

	if (snprintf(lo.path, sizeof(lo.path), "%s/loop%d", loopdev_dev_dir, index) >=
	    (int)sizeof(lo.path))
		return -ENAMETOOLONG;
	lo.fd = open(lo.path, flags | O_CLOEXEC);
	if (lo.fd < 0)
		return -errno;
	*ret = lo;
	return 0;
}

static int loopdev_read_flags(int fd, uint32_t *ret_flags)
{
	struct loop_info64 info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
		return -errno;
	*ret_flags = info.lo_flags;
	return 0;
}

/*
 * Binds file_fd to the open loop lfd, asking for direct I/O when dio.  Returns
 * 0, -EBUSY when another process bound it first, or -errno.  Whether direct
 * I/O is in effect is for the caller to read back.
 */
static int loopdev_bind(int lfd, int file_fd, const char *file, bool read_only, bool dio)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)file_fd;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
	strncpy((char *)cfg.info.lo_file_name, file, LO_NAME_SIZE - 1);
	if (dio) {
		cfg.info.lo_flags |= LO_FLAGS_DIRECT_IO;
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
			return 0;
		if (errno != EINVAL && errno != ENOTTY)
			return -errno;
		/* Some kernels refuse the whole request when the file cannot do O_DIRECT. */
		cfg.info.lo_flags &= ~LO_FLAGS_DIRECT_IO;
	}
	if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOTTY)
		return -errno;

	/* Linux < 5.8: no LOOP_CONFIGURE.  Read-only follows file_fd's open mode. */
	if (ioctl(lfd, LOOP_SET_FD, file_fd) < 0)
		return -errno;
	if (ioctl(lfd, LOOP_SET_STATUS64, &cfg.info) < 0) {
		int r = -errno;

		ioctl(lfd, LOOP_CLR_FD, 0);
		return r;
	}
	/* EINVAL: the file cannot do it (the flags read back tell); anything else fails. */
	if (dio && ioctl(lfd, LOOP_SET_DIRECT_IO, 1UL) < 0 && errno != EINVAL) {
		int r = -errno;

		ioctl(lfd, LOOP_CLR_FD, 0);
		return r;
	}
	return 0;
}

int loopdev_attach(const char *file, bool read_only, struct loopdev *ret)
{
	return loopdev_attach_dio(file, read_only, LOOPDEV_DIO_OFF, ret);
}

int loopdev_attach_dio(const char *file, bool read_only, enum loopdev_dio dio, struct loopdev *ret)
{
	_cleanup_close_ int file_fd = -1, ctl = -1;
	char ctl_path[PATH_MAX];
	int r = -EBUSY;

	file_fd = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (file_fd < 0)
		return -errno;
	snprintf(ctl_path, sizeof(ctl_path), "%s/loop-control", loopdev_dev_dir);
	ctl = open(ctl_path, O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;

	for (int attempt = 0; attempt < LOOPDEV_ATTACH_TRIES; attempt++) {
		struct loopdev lo;
		int index = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (index < 0)
			return -errno;
		r = loopdev_open_index(index, read_only ? O_RDONLY : O_RDWR, &lo);
		if (r == -ENOENT)
			continue; /* node not made yet (udev): ask again */
		if (r < 0)
			return r;
		r = loopdev_bind(lo.fd, file_fd, file, read_only, dio != LOOPDEV_DIO_OFF);
		if (r == -EBUSY) {
			/* Another process took this index between GET_FREE and CONFIGURE. */
			close(lo.fd);
			continue;
		}
		if (r < 0) {
			close(lo.fd);
			return r;
		}
		r = loopdev_read_flags(lo.fd, &lo.flags);
		if (r >= 0 && read_only && !(lo.flags & LO_FLAGS_READ_ONLY))
			r = -EROFS;
		if (r >= 0 && !(lo.flags & LO_FLAGS_AUTOCLEAR))
			r = -EOPNOTSUPP; /* would leak on a crash: refuse */
		if (r >= 0 && dio == LOOPDEV_DIO_ON && !(lo.flags & LO_FLAGS_DIRECT_IO))
			r = -EOPNOTSUPP; /* the kernel dropped it: this file system cannot */
		if (r < 0) {
			ioctl(lo.fd, LOOP_CLR_FD, 0);
			close(lo.fd);
			return r;
		}
		*ret = lo;
		return 0;
	}
	return r;
}

/* Returns 1 when the loop open on fd serves dev/ino, 0 when not (or unbound). */
static int loopdev_serves(int fd, dev_t dev, ino_t ino, uint32_t *ret_flags)
{
	struct loop_info64 info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
		return errno == ENXIO ? 0 : -errno;
	if (info.lo_device != (uint64_t)dev || info.lo_inode != (uint64_t)ino)
		return 0;
	*ret_flags = info.lo_flags;
	return 1;
}

int loopdev_find(dev_t dev, ino_t ino, struct loopdev *ret)
{
	/* The loop found may be unbound before we open it: look again, a few times. */
	for (int attempt = 0; attempt < 4; attempt++) {
		char name[LOOPDEV_PATH_MAX];
		struct loopdev lo;
		const char *digits;
		char *end;
		long index;
		int r;

		r = loopdev_find_backing(dev, ino, name, sizeof(name));
		if (r <= 0)
			return r;
		digits = strrchr(name, '/');
		digits = digits ? digits + 1 : name;
		if (strncmp(digits, "loop", 4) != 0)
			return -EINVAL;
		errno = 0;
		index = strtol(digits + 4, &end, 10);
		if (*end || errno || index < 0 || index > INT_MAX)
			return -EINVAL;
		r = loopdev_open_index((int)index, O_RDONLY, &lo);
		if (r == -ENOENT || r == -ENXIO)
			continue;
		if (r < 0)
			return r;
		r = loopdev_serves(lo.fd, dev, ino, &lo.flags);
		if (r == 1) {
			*ret = lo;
			return 1;
		}
		close(lo.fd);
		if (r < 0)
			return r;
	}
	return 0;
}

int loopdev_find_file(const char *path, struct loopdev *ret)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	return loopdev_find(st.st_dev, st.st_ino, ret);
}

void loopdev_close(struct loopdev *lo)
{
	if (lo->fd >= 0)
		close(lo->fd);
	lo->fd = -1;
}

int loopdev_detach(struct loopdev *lo)
{
	if (lo->fd < 0)
		return -EBADF;
	if (ioctl(lo->fd, LOOP_CLR_FD, 0) < 0)
		return -errno;
	return 0;
}
