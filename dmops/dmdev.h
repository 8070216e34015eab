/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Device-mapper devices through libdevmapper: the only place cowpunch calls dm_*.
 * Every function returns >= 0 or -errno (libdm's 1/0 converted here).
 *
 * udev is decided once per process: sync with udev only where udevd really
 * serves /run/udev/control; otherwise libdm makes the /dev/mapper nodes itself,
 * so a dead /run/udev can never hang a dm_udev_wait().
 */
#ifndef COWPUNCH_DMOPS_DMDEV_H
#define COWPUNCH_DMOPS_DMDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmops/table.h"

struct dmops_dev_info {
	bool exists;
	bool live_table; /* false: created but no table made live (a create killed half-way) */
	bool suspended;
	int32_t open_count;
	uint32_t major;
	uint32_t minor;
	int32_t target_count;
};

struct dmops_snapshot_status {
	bool invalid;
	bool overflow;
	bool merge_failed;
	uint64_t used_sectors;	/* header + metadata + data */
	uint64_t total_sectors; /* size of the COW device */
	uint64_t metadata_sectors;
};

/* A device-mapper target the kernel has loaded, and its version. */
struct dmops_target_version {
	char name[32];
	uint32_t version[3];
};

/* A device-mapper device: its name and device number (makedev()). */
struct dmops_name {
	char name[128];
	uint64_t dev;
};

/* Where udev control lives ("/run/udev/control"; tests point elsewhere). */
extern const char *dmops_udev_control;

/* The last error libdevmapper reported in this process ("" if none). */
const char *dmops_last_error(void);

/*
 * True when the device-mapper driver is loaded (/proc/devices lists it).  When
 * it is not, no dm device can exist: nothing is attached.
 */
bool dmops_dm_loaded(void);

/* True when a udev daemon accepts connections on dmops_udev_control. */
bool dmops_udev_running(void);

/*
 * Creates device `name` with table t: create + load + resume in one
 * DM_DEVICE_CREATE, which libdm undoes itself when load or resume fails; the
 * node exists under /dev/mapper on return.  Returns 0, -EEXIST, or -errno.
 */
int dmops_dev_create(const char *name, const struct dmops_table *t);

/*
 * Removes device `name` (retrying a transient EBUSY, e.g. blkid).  Returns 0,
 * -ENXIO when it does not exist, -EBUSY when it stays open, or -errno.
 */
int dmops_dev_remove(const char *name);

/*
 * Makes sure /dev/mapper/name exists for a live device (libdm makes nodes only
 * after the ioctl: a process killed in between leaves a device without one).
 * Returns 0 or -errno.
 */
int dmops_dev_mknodes(const char *name);

/* Suspends (flushing; skip_lockfs leaves a filesystem on top unfrozen) / resumes. */
int dmops_dev_suspend(const char *name, bool skip_lockfs);
int dmops_dev_resume(const char *name);

/*
 * Replaces the table of a live device: load, suspend, resume.  Whatever fails
 * after the suspend, the device is resumed (on its old table when the load
 * never became live).  Returns 0 or -errno.
 */
int dmops_dev_reload(const char *name, const struct dmops_table *t);

/* Fills *ret (ret->exists false when there is no such device); 0 or -errno. */
int dmops_dev_info(const char *name, struct dmops_dev_info *ret);

/*
 * Status of a snapshot device, parsed by dm_get_status_snapshot().  Returns 0,
 * -ENXIO when the device does not exist, -EMEDIUMTYPE when it is not a
 * snapshot, or -errno.
 */
int dmops_dev_snapshot_status(const char *name, struct dmops_snapshot_status *ret);

/*
 * Copies the device numbers the live table uses (dm deps) into ret_devs (at
 * most max, as makedev() values).  Returns the count or -errno.
 */
int dmops_dev_deps(const char *name, uint64_t *ret_devs, unsigned max);

/*
 * The targets the kernel has loaded (DM_DEVICE_LIST_VERSIONS): a target whose
 * module is not loaded yet is not listed (the kernel loads it on the first
 * table that names it).  Copies at most max into ret and writes the driver's
 * version ("4.48.0") into ret_driver (len bytes, may be NULL).  Returns how
 * many targets there are (may exceed max) or -errno.
 */
int dmops_target_versions(struct dmops_target_version *ret, unsigned max, char *ret_driver,
			  size_t len);

/*
 * Every device-mapper device (DM_DEVICE_LIST).  Copies at most max into ret;
 * returns how many there are (may exceed max) or -errno.
 */
int dmops_list_devices(struct dmops_name *ret, unsigned max);

#endif
