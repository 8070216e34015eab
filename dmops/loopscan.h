/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Which loop device, if any, serves a given file.  Used to refuse writing to a
 * COW file that a running snapshot may still be using.
 */
#ifndef COWPUNCH_DMOPS_LOOPSCAN_H
#define COWPUNCH_DMOPS_LOOPSCAN_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Looks through every /dev/loopN listed in /sys/block for one whose backing
 * file is the inode (dev, ino), asking each with LOOP_GET_STATUS64.
 * Returns 1 and writes the device path ("/dev/loop3") to ret_name (if not NULL,
 * truncated to len) when one is found, 0 when none is, or -errno when
 * /sys/block cannot be read.  Loop devices that vanish or are unbound while
 * we look are skipped; one we may not open is an error (-EACCES), since we
 * cannot tell what it serves.
 */
int loopdev_find_backing(dev_t dev, ino_t ino, char *ret_name, size_t len);

#endif
