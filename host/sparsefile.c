/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Opening a plain file for punching when nobody else may write it (host/sparsefile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "host/reclaimcow.h"
#include "host/sparsefile.h"
#include "reclaim/sparsify.h"

int sparsefile_open_exclusive(const char *path, int *ret_fd, struct host_error *err)
{
	_cleanup_close_ int fd = -1, ro = -1;
	struct sparsify_writer w;
	struct stat st, st2;
	int probe, r;

	/*
	 * The kernel's own count of writers first, before this process opens the
	 * file for writing itself (sparsify_probe_writers).  O_NONBLOCK: fail
	 * rather than wait when another process holds a write lease on it.
	 */
	ro = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (ro < 0 && errno == EWOULDBLOCK) {
		host_seterr(err, "%s: leased by another process (F_SETLEASE): busy, not touched",
			    path);
		return -EWOULDBLOCK;
	}
	if (ro < 0 || fstat(ro, &st) < 0) {
		r = -errno;
		host_seterr(err, "%s: %s", path, strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		host_seterr(err, "%s: not a regular file: not touched", path);
		return -EINVAL;
	}
	probe = sparsify_probe_writers(ro);
	r = host_open_cow_exclusive(path, &fd, err);
	if (r < 0)
		return r;
	if (fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
		host_seterr(err, "%s: replaced by another file while being opened: not touched",
			    path);
		return -EBUSY;
	}
	/* After the lock, like the loop-device look in host_open_cow_exclusive(). */
	r = sparsify_find_writer(st.st_dev, st.st_ino, &w);
	if (r == 1 && w.fd >= 0) {
		host_seterr(err,
			    "%s: open for writing by process %d (%s, descriptor %d): busy, not "
			    "touched",
			    path, (int)w.pid, w.comm, w.fd);
		return -EBUSY;
	}
	if (r == 1) {
		host_seterr(err,
			    "%s: mapped shared and writable by process %d (%s): busy, not touched",
			    path, (int)w.pid, w.comm);
		return -EBUSY;
	}
	if (probe == 1) {
		host_seterr(err,
			    "%s: open for writing by another process (the kernel counts a writer; "
			    "none this process may see in /proc): busy, not touched",
			    path);
		return -EBUSY;
	}
	if (r < 0 && probe < 0) {
		host_seterr(err,
			    "%s: cannot tell whether another process has it open for writing: "
			    "/proc/PID/fd: %s, read lease: %s%s; not touched",
			    path, strerror(-r), strerror(-probe),
			    r == -EACCES ? " (run as root)" : "");
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}
