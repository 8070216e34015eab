/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Opening a plain file (a VM's memory snapshot, any file `cowpunch sparsify` is
 * given) for punching, when and only when nobody else may write it.
 */
#ifndef COWPUNCH_HOST_SPARSEFILE_H
#define COWPUNCH_HOST_SPARSEFILE_H

#include "host/error.h"

/*
 * Opens the regular file at path O_RDWR (O_DIRECT where the file system takes
 * it) with an exclusive flock, and refuses when anybody else may write it: a
 * write lease held on it, the kernel's count of writers (a read lease probe,
 * taken before this process opens it for writing), a loop device backed by it,
 * or a process that /proc shows with it open for writing or mapped shared and
 * writable.  Returns 0 and writes *ret_fd; -EINVAL when it is not a regular
 * file; -EBUSY or -EWOULDBLOCK when somebody may write it or holds its lock;
 * -errno otherwise.  err says which, naming the file and the process.
 */
int sparsefile_open_exclusive(const char *path, int *ret_fd, struct host_error *err);

#endif
