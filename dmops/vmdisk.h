/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One VM's disk: the composite of a shared read-only base loop, a COW loop,
 * base-ID (linear base + tail to the virtual size) and overlay-ID (persistent
 * snapshot).  Built all-or-nothing: a failure at any step undoes every step
 * before it.  The caller holds the VM's lock and the host-wide loop lock.
 */
#ifndef COWPUNCH_DMOPS_VMDISK_H
#define COWPUNCH_DMOPS_VMDISK_H

#include <stdbool.h>
#include <stdint.h>

#include "dmops/dmdev.h"
#include "dmops/loopdev.h"

#define VMDISK_ID_MAX	64
#define VMDISK_NAME_MAX (VMDISK_ID_MAX + 16)
#define VMDISK_PATH_MAX (VMDISK_NAME_MAX + 16)

struct vmdisk_spec {
	const char *id;
	const char *base_path; /* base image: read-only, size a multiple of 512 */
	const char *cow_path;  /* sized with dmops_cow_bytes() */
	uint64_t virt_bytes;   /* what the guest sees; >= the base image, multiple of 512 */
	uint32_t chunk_sectors;
	bool discard;	       /* discard_zeroes_cow on the snapshot */
	const char *tail_path; /* sparse zero file mapped as the tail, or NULL for `zero` */
	enum loopdev_dio
		cow_dio; /* direct I/O for the COW loop (the base loop is shared: cached) */
};

struct vmdisk_attached {
	char overlay_path[VMDISK_PATH_MAX]; /* /dev/mapper/overlay-ID */
	char base_loop[LOOPDEV_PATH_MAX];
	char cow_loop[LOOPDEV_PATH_MAX];
	bool base_loop_shared; /* an existing loop of the base image was reused */
	bool cow_direct_io;    /* the COW loop does direct I/O (read back from the kernel) */
	bool already;	       /* it was attached before the call; nothing was done */
};

struct vmdisk_state {
	bool attached;	    /* overlay-ID exists */
	bool base_exists;   /* base-ID exists */
	int32_t open_count; /* overlay-ID's openers (a running VM) */
	bool has_status;
	struct dmops_snapshot_status status;
};

/* The dm names of a VM: "base-ID" and "overlay-ID".  Returns 0 or -EINVAL. */
int vmdisk_names(const char *id, char ret_base[VMDISK_NAME_MAX], char ret_overlay[VMDISK_NAME_MAX]);

/*
 * Creates a sparse COW file for spec->virt_bytes / chunk_sectors (never
 * overwrites: -EEXIST).  A file of zeros is a fresh store to the kernel.
 * Returns 0 or -errno.
 */
int vmdisk_cow_create(const char *path, uint64_t virt_bytes, uint32_t chunk_sectors);

/*
 * Attaches the disk.  Already attached: returns 0 with ret->already set.  A
 * base-ID left by a killed attach is removed first.  Returns 0 and fills *ret,
 * -EBUSY when the COW is served by a loop that is not ours or a leftover is
 * still open, -EINVAL on bad sizes, -EOPNOTSUPP when spec->cow_dio is
 * LOOPDEV_DIO_ON and the COW's file system refuses direct I/O, or -errno; on
 * failure nothing is left behind.
 */
int vmdisk_attach(const struct vmdisk_spec *spec, struct vmdisk_attached *ret);

/*
 * Detaches: removes overlay-ID then base-ID; their loops go with their last
 * holder (autoclear).  Waits (bounded) until no loop serves cow_path, then
 * fsyncs cow_path, so that what the guest wrote survives a host crash once
 * this returns.  Returns 0 (also when nothing was attached), -EBUSY while
 * overlay-ID is open, or -errno (an fsync error included: not detached safely).
 */
int vmdisk_detach(const char *id, const char *cow_path);

/* Fills *ret from the kernel's view.  Returns 0 or -errno. */
int vmdisk_get_state(const char *id, struct vmdisk_state *ret);

/*
 * vmdisk_get_state(), waiting up to a second for the overlay's openers to go
 * when it is open: a running VM holds it for good, blkid, udev or a process
 * whose exit has not yet released it (an io_uring ring is torn down after its
 * task) only for a moment.  *ret is the last state seen.  0 or -errno.
 */
int vmdisk_get_state_settled(const char *id, struct vmdisk_state *ret);

/* True when a loop device serves the file at path (attached somewhere). */
int vmdisk_file_in_use(const char *path);

#endif
