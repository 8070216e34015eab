/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "dmops/table.h"
#include "dmops/vmdisk.h"

/* Autoclear may finish just after the last holder went (async on some kernels). */
#define VMDISK_LOOP_GONE_TRIES 250
#define VMDISK_LOOP_GONE_NS    (20 * 1000 * 1000)
#define VMDISK_OPEN_TRIES      10
#define VMDISK_OPEN_NS	       (100 * 1000 * 1000)

int vmdisk_names(const char *id, char ret_base[VMDISK_NAME_MAX], char ret_overlay[VMDISK_NAME_MAX])
{
	if (!id || !*id || strlen(id) >= VMDISK_ID_MAX)
		return -EINVAL;
	snprintf(ret_base, VMDISK_NAME_MAX, "base-%s", id);
	snprintf(ret_overlay, VMDISK_NAME_MAX, "overlay-%s", id);
	return 0;
}

int vmdisk_cow_create(const char *path, uint64_t virt_bytes, uint32_t chunk_sectors)
{
	_cleanup_close_ int fd = -1;
	uint64_t bytes;
	int r;

	r = dmops_cow_bytes(virt_bytes, chunk_sectors, &bytes);
	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)bytes) < 0 || fsync(fd) < 0) {
		r = -errno;
		unlink(path);
		return r;
	}
	return 0;
}

int vmdisk_file_in_use(const char *path)
{
	struct loopdev lo;
	int r = loopdev_find_file(path, &lo);

	if (r == 1)
		loopdev_close(&lo);
	return r;
}

/*
 * One read-only loop per image, shared by every VM on it: reuse the loop that
 * already serves the file, else attach one.  Returns 0 and fills *ret (fd open)
 * and *ret_shared, -EBUSY when the image is attached writable somewhere (a
 * write there would corrupt every VM on it), or -errno.
 */
static int vmdisk_shared_loop(const char *path, struct loopdev *ret, bool *ret_shared)
{
	struct loopdev lo;
	int r;

	r = loopdev_find_file(path, &lo);
	if (r < 0)
		return r;
	if (r == 1) {
		if (!(lo.flags & LO_FLAGS_READ_ONLY)) {
			loopdev_close(&lo);
			return -EBUSY;
		}
		*ret = lo;
		*ret_shared = true;
		return 0;
	}
	r = loopdev_attach(path, true, &lo);
	if (r < 0)
		return r;
	*ret = lo;
	*ret_shared = false;
	return 0;
}

static int vmdisk_check_sizes(const struct vmdisk_spec *s, uint64_t *ret_base_bytes)
{
	struct stat st;
	uint64_t need;
	int r;

	if (s->virt_bytes == 0 || s->virt_bytes % DMOPS_SECTOR)
		return -EINVAL;
	if (stat(s->base_path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -EINVAL;
	if (st.st_size <= 0 || st.st_size % DMOPS_SECTOR || (uint64_t)st.st_size > s->virt_bytes)
		return -EINVAL;
	*ret_base_bytes = (uint64_t)st.st_size;
	r = dmops_cow_bytes(s->virt_bytes, s->chunk_sectors, &need);
	if (r < 0)
		return r;
	if (stat(s->cow_path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < need)
		return -EINVAL; /* too small: a guest filling its disk would invalidate it */
	return 0;
}

int vmdisk_attach(const struct vmdisk_spec *s, struct vmdisk_attached *ret)
{
	char base_name[VMDISK_NAME_MAX], overlay_name[VMDISK_NAME_MAX], origin[32];
	struct loopdev base_lo = {.fd = -1}, tail_lo = {.fd = -1}, cow_lo = {.fd = -1};
	struct vmdisk_attached out = {0};
	struct dmops_dev_info info;
	struct dmops_table tbl;
	uint64_t base_bytes = 0;
	bool tail_shared;
	int r;

	r = vmdisk_names(s->id, base_name, overlay_name);
	if (r < 0)
		return r;
	r = vmdisk_check_sizes(s, &base_bytes);
	if (r < 0)
		return r;
	snprintf(out.overlay_path, sizeof(out.overlay_path), "/dev/mapper/%s", overlay_name);

	r = dmops_dev_info(overlay_name, &info);
	if (r < 0)
		return r;
	if (info.exists && info.live_table) {
		/* We never leave it suspended; whoever did, I/O must flow. */
		if (info.suspended) {
			r = dmops_dev_resume(overlay_name);
			if (r < 0)
				return r;
		}
		/* Possibly made by an attach killed before libdm made the node. */
		r = dmops_dev_mknodes(overlay_name);
		if (r < 0)
			return r;
		out.already = true;
		*ret = out;
		return 0;
	}
	if (info.exists) {
		/* Created, but killed before its table went live: no one can use it. */
		r = dmops_dev_remove(overlay_name);
		if (r < 0 && r != -ENXIO)
			return r;
	}
	/* base-ID without overlay-ID: an attach that was killed half-way. */
	r = dmops_dev_remove(base_name);
	if (r < 0 && r != -ENXIO)
		return r;
	r = vmdisk_file_in_use(s->cow_path);
	if (r < 0)
		return r;
	if (r == 1)
		return -EBUSY; /* a loop we did not make serves the COW */

	r = vmdisk_shared_loop(s->base_path, &base_lo, &out.base_loop_shared);
	if (r < 0)
		return r;
	if (s->tail_path) {
		r = vmdisk_shared_loop(s->tail_path, &tail_lo, &tail_shared);
		if (r < 0)
			goto close_base_loop;
	}
	r = loopdev_attach_dio(s->cow_path, false, s->cow_dio, &cow_lo);
	if (r < 0)
		goto close_tail_loop;

	r = dmops_table_base(base_lo.path, base_bytes / DMOPS_SECTOR, s->virt_bytes / DMOPS_SECTOR,
			     s->tail_path ? tail_lo.path : NULL, &tbl);
	if (r < 0)
		goto close_cow_loop;
	r = dmops_dev_create(base_name, &tbl);
	if (r < 0)
		goto close_cow_loop;
	r = dmops_dev_info(base_name, &info);
	if (r < 0)
		goto remove_base;
	if (!info.exists) {
		r = -ENXIO;
		goto remove_base;
	}
	/* major:minor rather than /dev/mapper/base-ID: no dependency on node creation. */
	snprintf(origin, sizeof(origin), "%u:%u", info.major, info.minor);
	r = dmops_table_overlay(origin, cow_lo.path, s->virt_bytes / DMOPS_SECTOR, s->chunk_sectors,
				s->discard, &tbl);
	if (r < 0)
		goto remove_base;
	r = dmops_dev_create(overlay_name, &tbl);
	if (r < 0)
		goto remove_base;

	snprintf(out.base_loop, sizeof(out.base_loop), "%s", base_lo.path);
	snprintf(out.cow_loop, sizeof(out.cow_loop), "%s", cow_lo.path);
	out.cow_direct_io = cow_lo.flags & LO_FLAGS_DIRECT_IO;
	/* The dm tables hold the loops now; our fds may go. */
	loopdev_close(&cow_lo);
	loopdev_close(&tail_lo);
	loopdev_close(&base_lo);
	*ret = out;
	return 0;

remove_base:
	dmops_dev_remove(base_name);
close_cow_loop:
	/* Autoclear: with no table holding it, the last close detaches the loop. */
	loopdev_close(&cow_lo);
close_tail_loop:
	loopdev_close(&tail_lo);
close_base_loop:
	loopdev_close(&base_lo);
	return r;
}

/*
 * Only a flush makes the COW loop's writes durable (buffered, they sit in the
 * host's page cache; direct, the file's block map may not be on disk yet).
 * dm-snapshot flushes when it commits new exceptions, but a guest's rewrite of
 * a chunk it already owns reaches the file with no flush unless the guest sends
 * one, and tearing the loop down writes nothing back.  Hence this fsync once
 * the loop is gone.  A missing file has nothing to sync.
 */
static int vmdisk_sync_file(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

int vmdisk_detach(const char *id, const char *cow_path)
{
	char base_name[VMDISK_NAME_MAX], overlay_name[VMDISK_NAME_MAX];
	struct dmops_dev_info info;
	int r;

	r = vmdisk_names(id, base_name, overlay_name);
	if (r < 0)
		return r;
	if (!dmops_dm_loaded())
		goto wait_cow_loop; /* no driver, no devices */
	/* A running VM holds the overlay for good; blkid or udev only for a moment. */
	for (int i = 0; i < VMDISK_OPEN_TRIES; i++) {
		struct timespec ts = {0, VMDISK_OPEN_NS};

		r = dmops_dev_info(overlay_name, &info);
		if (r < 0)
			return r;
		if (!info.exists || info.open_count == 0)
			break;
		nanosleep(&ts, NULL);
	}
	if (info.exists) {
		if (info.open_count > 0)
			return -EBUSY; /* a VM still has its disk open */
		r = dmops_dev_remove(overlay_name);
		if (r < 0 && r != -ENXIO)
			return r;
	}
	r = dmops_dev_remove(base_name);
	if (r < 0 && r != -ENXIO)
		return r;
wait_cow_loop:
	if (!cow_path)
		return 0;
	for (int i = 0; i < VMDISK_LOOP_GONE_TRIES; i++) {
		struct timespec ts = {0, VMDISK_LOOP_GONE_NS};

		r = vmdisk_file_in_use(cow_path);
		if (r == -ENOENT)
			return 0; /* no COW file, no loop on it */
		if (r < 0)
			return r;
		if (r == 0)
			return vmdisk_sync_file(cow_path);
		nanosleep(&ts, NULL);
	}
	return -EBUSY; /* some other loop (not ours) serves the COW */
}

int vmdisk_get_state_settled(const char *id, struct vmdisk_state *ret)
{
	int r = 0;

	for (int i = 0; i < VMDISK_OPEN_TRIES; i++) {
		struct timespec ts = {0, VMDISK_OPEN_NS};

		r = vmdisk_get_state(id, ret);
		if (r < 0 || !ret->attached || ret->open_count == 0)
			break;
		nanosleep(&ts, NULL);
	}
	return r;
}

int vmdisk_get_state(const char *id, struct vmdisk_state *ret)
{
	char base_name[VMDISK_NAME_MAX], overlay_name[VMDISK_NAME_MAX];
	struct vmdisk_state out = {0};
	struct dmops_dev_info info;
	int r;

	r = vmdisk_names(id, base_name, overlay_name);
	if (r < 0)
		return r;
	if (!dmops_dm_loaded()) {
		*ret = out; /* no driver, no devices */
		return 0;
	}
	r = dmops_dev_info(base_name, &info);
	if (r < 0)
		return r;
	out.base_exists = info.exists;
	r = dmops_dev_info(overlay_name, &info);
	if (r < 0)
		return r;
	out.attached = info.exists;
	if (info.exists) {
		out.open_count = info.open_count;
		r = dmops_dev_snapshot_status(overlay_name, &out.status);
		if (r < 0 && r != -ENXIO)
			return r;
		out.has_status = r == 0;
	}
	*ret = out;
	return 0;
}
