/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "dmops/loopscan.h"

static void cleanup_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/*
 * Returns 1 when loop device `name` serves (dev, ino), 0 when it does not or is
 * unbound (ENXIO) or gone (ENOENT), -errno otherwise.
 */
static int loopdev_serves(const char *name, dev_t dev, ino_t ino)
{
	_cleanup_close_ int fd = -1;
	struct loop_info64 info;
	char path[64];

	/*
	 * Zeroed as in loopdev.c: valgrind does not know LOOP_GET_STATUS64 and would take
	 * what the kernel wrote for uninitialised.
	 */
	memset(&info, 0, sizeof(info));
	snprintf(path, sizeof(path), "/dev/%s", name);
	/* O_RDONLY and no O_EXCL: looking must never disturb a device in use. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO ? 0 : -errno;
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
		return errno == ENXIO ? 0 : -errno;
	/* lo_device is the kernel's dev_t encoding (new_encode_dev), same as st_dev. */
	return info.lo_device == (uint64_t)dev && info.lo_inode == (uint64_t)ino;
}

int loopdev_find_backing(dev_t dev, ino_t ino, char *ret_name, size_t len)
{
	__attribute__((cleanup(cleanup_closedirp))) DIR *d = NULL;
	struct dirent *de;

	d = opendir("/sys/block");
	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d))) {
		const char *p;
		int r;

		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		for (p = de->d_name + 4; *p >= '0' && *p <= '9'; p++)
			;
		if (p == de->d_name + 4 || *p)
			continue;
		r = loopdev_serves(de->d_name, dev, ino);
		if (r < 0)
			return r;
		if (r > 0) {
			if (ret_name && len)
				snprintf(ret_name, len, "/dev/%s", de->d_name);
			return 1;
		}
	}
	return errno ? -errno : 0;
}
