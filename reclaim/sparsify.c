/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sparsify a regular file: the reclaim scanner over a layout with no store (every
 * block holding data is a candidate), and the /proc look for other writers that
 * must not be running while it does.  See docs/reclaim.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "reclaim/sparsify.h"

static bool block_size_ok(uint64_t b)
{
	return b >= 512 && b <= (1u << 20) && !(b & (b - 1));
}

int sparsify_block_size(int fd, uint64_t *ret_bytes)
{
	struct stat st;
	int bsz = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	/*
	 * FIGETBSZ is the super block's block size: what a punch frees in and
	 * st_blocks counts by, so "zero blocks" are exactly those the file system
	 * can give back.  st_blksize is only the preferred I/O size (1 MiB on NFS,
	 * the record size on ZFS), a fallback for file systems without the ioctl.
	 */
	if (ioctl(fd, FIGETBSZ, &bsz) == 0 && bsz > 0 && block_size_ok((uint64_t)bsz))
		*ret_bytes = (uint64_t)bsz;
	else if (block_size_ok((uint64_t)st.st_blksize))
		*ret_bytes = (uint64_t)st.st_blksize;
	else
		*ret_bytes = 4096;
	return 0;
}

/*
 * For a rewrite of path (open as fd): 1 with why filled, naming the process,
 * when /proc shows another process with it open or mapped (a rewrite would
 * leave it the old file), else 0.  A process this one may not look at (other
 * users' without root, another PID namespace's) is not seen: it would keep
 * reading the old file, whose bytes are the same, and hold its blocks until it
 * lets go.
 */
static int rewrite_user(int fd, const char *path, char *why, size_t why_len)
{
	struct sparsify_writer w;
	struct stat st;

	if (fstat(fd, &st) < 0 || sparsify_find_user(st.st_dev, st.st_ino, &w) != 1)
		return 0;
	snprintf(why, why_len,
		 "%s is open or mapped by process %d (%s): a rewrite would leave it the old file",
		 path, (int)w.pid, w.comm);
	return 1;
}

int sparsify_run(int fd, const struct reclaim_opts *opts, struct sparsify_report *ret)
{
	struct sparsify_report rep = {0};
	struct reclaim_layout l = {0};
	struct reclaim_opts o;
	char why[200] = "";
	struct stat st;
	int r;

	if (!opts || opts->free_bitmap || !ret)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	r = sparsify_block_size(fd, &l.chunk_bytes);
	if (r < 0)
		return r;
	/*
	 * Whole blocks only.  A last, partial block could only be freed by a punch
	 * running to the end of the file that the file system rounds up to the
	 * block's end (ext4 does; XFS zeroes the partial block in place instead, a
	 * write, and frees nothing): at most one block per file, not worth resting
	 * the proof on each file system's rounding.
	 */
	l.chunks = (uint64_t)st.st_size / l.chunk_bytes;
	o = *opts;
	if (o.path && !o.dry_run && o.strategy != RECLAIM_STRATEGY_PUNCH &&
	    rewrite_user(fd, o.path, why, sizeof(why)) == 1) {
		if (o.strategy == RECLAIM_STRATEGY_REWRITE) {
			snprintf(ret->scan.strategy_reason, sizeof(ret->scan.strategy_reason), "%s",
				 why);
			return -EPERM;
		}
		o.strategy = RECLAIM_STRATEGY_PUNCH;
	}
	r = reclaim_scan(fd, &l, &o, &rep.scan);
	if (r == -EPERM)
		memcpy(ret->scan.strategy_reason, rep.scan.strategy_reason,
		       sizeof(ret->scan.strategy_reason));
	if (r < 0)
		return r;
	if (why[0])
		snprintf(rep.scan.strategy_reason, sizeof(rep.scan.strategy_reason),
			 "auto: punch: %.200s", why);
	rep.file_size = (uint64_t)st.st_size;
	rep.blocks = l.chunks;
	rep.tail_bytes = (uint64_t)st.st_size % l.chunk_bytes;
	*ret = rep;
	return 0;
}

int sparsify_probe_writers(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return 0;
	}
	/* EAGAIN: a file description of the inode is open for writing somewhere. */
	return errno == EAGAIN ? 1 : -errno;
}

/* The access mode of descriptor fd of the process whose /proc directory is pdir. */
static int fd_flags(int pdir, const char *fd, unsigned long *ret_flags)
{
	_cleanup_fclose_ FILE *f = NULL;
	char path[300], line[256];
	int dfd;

	snprintf(path, sizeof(path), "fdinfo/%s", fd);
	dfd = openat(pdir, path, O_RDONLY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	f = fdopen(dfd, "r");
	if (!f) {
		close(dfd);
		return -errno;
	}
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "flags: %lo", ret_flags) == 1)
			return 0;
	return -ENOENT;
}

/*
 * 1 when a descriptor of the process (pdir: its /proc directory) opens (dev, ino)
 * for writing (any: at all).
 */
static int open_for_writing(int pdir, dev_t dev, ino_t ino, bool any, int *ret_fd)
{
	_cleanup_close_ int dfd = openat(pdir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d)
		return -errno;
	dfd = -1; /* the DIR owns it now */
	while (r == 0 && (de = readdir(d))) {
		unsigned long flags;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		/* Follows the link to the open file itself; a descriptor closed meanwhile is gone. */
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0) {
			if (errno == EACCES || errno == EPERM)
				r = -EACCES; /* we may not see what it has open */
			continue;
		}
		if (st.st_dev != dev || st.st_ino != ino)
			continue;
		r = fd_flags(pdir, de->d_name, &flags);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r == 0 && (any || (flags & O_ACCMODE) != O_RDONLY)) {
			*ret_fd = atoi(de->d_name);
			r = 1;
		}
	}
	closedir(d);
	return r;
}

/*
 * 1 when the process (pdir) maps (dev, ino) shared and writable: it may write
 * through the map (any: maps it at all).
 */
static int mapped_for_writing(int pdir, dev_t dev, ino_t ino, bool any)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	int mfd = openat(pdir, "maps", O_RDONLY | O_CLOEXEC);

	if (mfd < 0)
		return -errno;
	f = fdopen(mfd, "r");
	if (!f) {
		close(mfd);
		return -errno;
	}
	while (getline(&line, &cap, f) > 0) {
		char perms[8];
		unsigned maj, min;
		unsigned long long inode;

		if (sscanf(line, "%*x-%*x %7s %*x %x:%x %llu", perms, &maj, &min, &inode) != 4)
			continue;
		if ((any || (perms[1] == 'w' && perms[3] == 's')) && maj == major(dev) &&
		    min == minor(dev) && inode == (unsigned long long)ino)
			return 1;
	}
	return ferror(f) ? -EIO : 0;
}

static void read_comm(int pdir, char *buf, size_t len)
{
	_cleanup_close_ int cfd = openat(pdir, "comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = cfd < 0 ? -1 : read(cfd, buf, len - 1);

	if (n <= 0) {
		snprintf(buf, len, "?");
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

static int find_process(dev_t dev, ino_t ino, bool any, struct sparsify_writer *ret)
{
	struct sparsify_writer w = {.fd = -1};
	pid_t self = getpid();
	struct dirent *de;
	DIR *proc;
	int r = 0, unseen = 0;

	proc = opendir("/proc");
	if (!proc)
		return -errno;
	while (r == 0 && (de = readdir(proc))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		_cleanup_close_ int pdir = -1;

		if (*end || pid <= 0 || pid == self)
			continue;
		pdir = openat(dirfd(proc), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pdir < 0)
			continue; /* exited */
		r = open_for_writing(pdir, dev, ino, any, &w.fd);
		if (r == 0)
			r = mapped_for_writing(pdir, dev, ino, any);
		/* A process that exits while we look (or a zombie) holds nothing open. */
		if (r == -ENOENT || r == -ESRCH)
			r = 0;
		/* One we may not look at: remember, and look on for one we can name. */
		if (r == -EACCES || r == -EPERM) {
			unseen = -EACCES;
			r = 0;
		}
		if (r == 1) {
			w.pid = (pid_t)pid;
			read_comm(pdir, w.comm, sizeof(w.comm));
		}
	}
	closedir(proc);
	if (r == 1) {
		*ret = w;
		return 1;
	}
	return r < 0 ? r : unseen;
}

int sparsify_find_writer(dev_t dev, ino_t ino, struct sparsify_writer *ret)
{
	return find_process(dev, ino, false, ret);
}

int sparsify_find_user(dev_t dev, ino_t ino, struct sparsify_writer *ret)
{
	return find_process(dev, ino, true, ret);
}
