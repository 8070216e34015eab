/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sparsify: punch the all-zero blocks out of any regular file (a VM's memory
 * snapshot, a raw disk image) with the scanner and engines of reclaim.h, as
 * `fallocate --dig-holes` does.  Only blocks that read as zeros are punched, so
 * the file reads exactly the same afterwards.  See docs/reclaim.md.
 */
#ifndef COWPUNCH_RECLAIM_SPARSIFY_H
#define COWPUNCH_RECLAIM_SPARSIFY_H

#include <stdint.h>
#include <sys/types.h>

#include "reclaim/reclaim.h"

struct sparsify_report {
	/*
	 * The scan, in blocks: chunk_bytes is the block size, chunks_scanned the
	 * blocks read, zero_chunks the zero blocks (punched unless a dry run),
	 * hole_chunks the blocks already holes; exceptions is 0.
	 */
	struct reclaim_report scan;
	uint64_t file_size;
	uint64_t blocks;     /* whole blocks: file_size / block size */
	uint64_t tail_bytes; /* after the last whole block: never read, never punched */
};

/*
 * The block size fd is judged by: the file system's allocation block
 * (FIGETBSZ), the unit in which punching frees space and st_blocks changes;
 * else st_blksize; else 4096.  Always a power of two from 512 to 1 MiB.
 * Returns 0 and writes *ret_bytes, or -errno from fstat.
 */
int sparsify_block_size(int fd, uint64_t *ret_bytes);

/*
 * Scans every whole block of the regular file fd that holds data (holes are
 * not read) and punches those that read as all zeros, in coalesced ranges
 * (which also span holes between them).  fd is opened O_RDWR, ideally
 * O_DIRECT; the caller makes sure nobody else writes the file meanwhile (see
 * sparsify_probe_writers() and sparsify_find_writer()).  opts->free_bitmap must be NULL.
 * opts->strategy as for reclaim_scan(), and one more rule: a rewrite renames a
 * new file over opts->path, so a file another process has open or mapped,
 * even read-only, is never rewritten (that process would keep the old file and
 * its blocks): auto punches it (the report's strategy_reason names the
 * process), a forced rewrite returns -EPERM.
 * Returns 0 and fills *ret, -EINVAL when fd is not a regular file, or
 * reclaim_scan()'s errors (-ECANCELED when stopped, -ENOTSUP for a forced
 * engine that is unavailable, -EPERM for a forced rewrite refused or not
 * permitted: ret->scan.strategy_reason, the only field then set, names the
 * process or, as for reclaim_run(), the rule).
 */
int sparsify_run(int fd, const struct reclaim_opts *opts, struct sparsify_report *ret);

/*
 * Asks the kernel whether anybody has the file open for writing, by taking a
 * read lease on fd (F_SETLEASE F_RDLCK, released at once): the kernel grants
 * one only while no file description of the inode is open for writing, in any
 * process, namespace or mapping, descriptors in flight or registered with
 * io_uring included.  fd must be opened O_RDONLY, and this process must not
 * have the file open for writing itself.  Needs the file's owner or
 * CAP_LEASE.  While the lease is held (microseconds), another process opening
 * the file for writing makes the kernel send this process SIGIO: the caller
 * ignores or handles SIGIO.
 * Returns 1 when somebody has it open for writing, 0 when nobody has, or
 * -errno when the kernel would not say (-EACCES: not the owner; -EINVAL or
 * -ENOLCK: no leases on this file system or fs.leases-enable = 0).
 */
int sparsify_probe_writers(int fd);

/* A process that may write the file. */
struct sparsify_writer {
	pid_t pid;
	int fd;	       /* its descriptor open for writing, or -1: a shared writable mapping */
	char comm[32]; /* its name, from /proc/PID/comm ("?" when gone) */
};

/*
 * Looks through /proc for a process other than this one that has the file
 * (dev, ino) open for writing (a /proc/PID/fd entry for that inode whose
 * /proc/PID/fdinfo flags are O_WRONLY or O_RDWR) or mapped shared and writable
 * (a "rw-s" line of /proc/PID/maps), as fuser(1) and lsof(8) look, to name
 * it.  What it cannot see: processes hidden from this /proc (hidepid, another
 * PID namespace) or whose open files it may not read, threads with a
 * descriptor table of their own, descriptors in flight over a socket or only
 * registered with io_uring, and anyone who opens the file after it looked
 * (sparsify_probe_writers() sees all but the last).
 * Returns 1 and fills *ret when one is found; 0 when none is and every process
 * was looked at; -EACCES when none is but some process's open files could not
 * be read; or another -errno.
 */
int sparsify_find_writer(dev_t dev, ino_t ino, struct sparsify_writer *ret);

/*
 * As sparsify_find_writer(), for a process that has the file open or mapped in
 * any way, reading included: a rewrite would leave it the old file (and its
 * blocks allocated until it lets go).  1 and *ret (fd -1: a mapping), 0, or
 * -errno (-EACCES: some process could not be looked at).
 */
int sparsify_find_user(dev_t dev, ino_t ino, struct sparsify_writer *ret);

#endif
