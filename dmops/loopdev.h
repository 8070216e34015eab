/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Loop devices through /dev/loop-control: attach a file (read-only or not),
 * detach, find the loop that serves a file.  See docs/kernel-facts.md, "Loop devices".
 *
 * Loops are attached with LO_FLAGS_AUTOCLEAR and handed back with an open fd:
 * the kernel detaches an autoclear loop on its last close, so a loop that no
 * dm table took over disappears when the fd is closed, even when the process
 * is killed half-way.  That is also the reference count of a shared base loop:
 * it lives exactly as long as some base-ID table (or fd) holds it.
 *
 * The caller serialises allocation host-wide (host/vmstore's loop lock).
 */
#ifndef COWPUNCH_DMOPS_LOOPDEV_H
#define COWPUNCH_DMOPS_LOOPDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define LOOPDEV_PATH_MAX 64

struct loopdev {
	int fd; /* open on the loop device; -1 once closed */
	int index;
	char path[LOOPDEV_PATH_MAX]; /* /dev/loopN */
	uint32_t flags;		     /* effective lo_flags, read back from the kernel */
};

/*
 * Direct I/O (LO_FLAGS_DIRECT_IO): the loop reads and writes its file with
 * O_DIRECT, so the data is not cached a second time in the host's page cache.
 * Not every file system takes it (tmpfs before Linux 6.6 has no O_DIRECT; the
 * file system's block size must fit the loop's): a kernel then drops the flag
 * silently or fails the request, depending on its version.
 */
enum loopdev_dio {
	LOOPDEV_DIO_OFF,  /* buffered */
	LOOPDEV_DIO_AUTO, /* direct where the file system takes it, else buffered */
	LOOPDEV_DIO_ON,	  /* direct, or fail */
};

/* Directory holding loop-control and loopN; "/dev" except in unit tests. */
extern const char *loopdev_dev_dir;

/*
 * Attaches file to a free loop device (LOOP_CONFIGURE; LOOP_SET_FD +
 * LOOP_SET_STATUS64 where the kernel has no LOOP_CONFIGURE), read-only or not,
 * with autoclear.  Retries a lost LOOP_CTL_GET_FREE race a bounded number of
 * times.  Returns 0 and fills *ret (ret->fd open: close it with loopdev_close()
 * once something else holds the loop), -EBUSY when every retry lost the race,
 * -EROFS when read_only was asked and the kernel did not set it, or -errno.
 */
int loopdev_attach(const char *file, bool read_only, struct loopdev *ret);

/*
 * As loopdev_attach(), with direct I/O as dio asks.  Whether it is in effect is
 * read back from the kernel (ret->flags & LO_FLAGS_DIRECT_IO).  With
 * LOOPDEV_DIO_ON, returns -EOPNOTSUPP (nothing attached) when the kernel did
 * not enable it.
 */
int loopdev_attach_dio(const char *file, bool read_only, enum loopdev_dio dio, struct loopdev *ret);

/*
 * Finds a loop device bound to the file with this device/inode and opens it
 * (so it cannot autoclear under the caller).  Returns 1 and fills *ret, 0 when
 * none serves the file, or -errno.
 */
int loopdev_find(dev_t dev, ino_t ino, struct loopdev *ret);

/* As loopdev_find() for the file at path (stat()ed). */
int loopdev_find_file(const char *path, struct loopdev *ret);

/* Closes ret->fd (an autoclear loop nobody else holds goes away).  Idempotent. */
void loopdev_close(struct loopdev *lo);

/*
 * Detaches a loop device (LOOP_CLR_FD).  Only for a loop the caller attached
 * and still holds open: the index of a loop that autocleared may already serve
 * someone else.  Returns 0, or -errno (-ENXIO when it was not bound).
 */
int loopdev_detach(struct loopdev *lo);

#endif
