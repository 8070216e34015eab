/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reclaim of a VM's COW file, whoever asks (`cowpunch reclaim`, the agent):
 * the checks that make writing safe (exclusive lock, no loop device backs the
 * file, the store validated in full, for fs-aware the base's size and, for a
 * VM, its recorded identity) composed with the reclaim engine (reclaim/), and
 * the result recorded in the VM's record.  Library code: -errno, never prints.
 */
#ifndef COWPUNCH_HOST_RECLAIMCOW_H
#define COWPUNCH_HOST_RECLAIMCOW_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "host/error.h"
#include "host/vm.h"
#include "reclaim/fsaware.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"

struct host_reclaim_request {
	const char *cow_path;  /* the COW file (host_reclaim_vm(): set from the VM) */
	bool fs_aware;	       /* also punch chunks free in the guest's ext2/3/4 */
	const char *base_path; /* fs-aware: the base image (host_reclaim_vm(): the record's) */
	int base_fd;	       /* fs-aware: the base already open (not closed here), or -1 */
	bool base_verified;    /* fs-aware: base_fd's recorded identity matched */
	uint64_t
		disk_size; /* fs-aware: the VM's disk size in bytes (host_reclaim_vm(): record's) */
	bool dry_run;
	enum reclaim_engine_kind engine;
	enum reclaim_strategy strategy;	  /* punch, rewrite or auto (reclaim/reclaim.h) */
	uint32_t read_bytes, queue_depth; /* 0: the engine's defaults */
	bool direct_reads;		  /* reclaim_opts.direct_reads */
	/* Passed through to struct reclaim_opts (reclaim/reclaim.h). */
	void (*progress)(void *opaque, uint64_t done_bytes, uint64_t total_bytes);
	void (*punch_progress)(void *opaque, uint64_t done_chunks, uint64_t total_chunks);
	void *progress_opaque;
	const volatile sig_atomic_t *stop;
	int (*throttle)(void *opaque, uint64_t bytes);
	void *throttle_opaque;
};

/*
 * Opens path for writing (O_DIRECT when the file system allows it), takes an
 * exclusive flock and checks that no loop device is backed by it.  0 with
 * *ret_fd (the lock lives as long as the fd); -EWOULDBLOCK when locked, -EBUSY
 * when a loop device uses it, -errno otherwise.  err says why.
 */
int host_open_file_exclusive(const char *path, int *ret_fd, struct host_error *err);

/* host_open_file_exclusive() of a COW file. */
int host_open_cow_exclusive(const char *path, int *ret_fd, struct host_error *err);

/*
 * Locks the COW, refuses when a loop device uses it, validates the store and
 * runs zero reclaim, plus fs-aware reclaim when asked (reclaim/fsaware.h).
 * Returns 0 (*ret_report filled; *ret_fs too when fs_aware),
 * HOST_RECLAIM_REFUSED (*ret_fs filled), HOST_REWRITE_REFUSED (a forced
 * rewrite cannot be safe or would cost space: err says why; nothing written), -EBADMSG for an invalid store
 * (*ret_store_err: offset and rule) or a base image that cannot be this disk's,
 * -EWOULDBLOCK when locked, -EBUSY when it backs a loop device, -ENOTSUP when a
 * forced engine is unavailable, or -errno.  err->msg says what happened on < 0
 * and on HOST_RECLAIM_REFUSED.  ret_fs and ret_store_err may be NULL.  After a
 * rewrite the old file's blocks are given back (its last descriptor closed)
 * before this returns, and report.seconds counts that too.
 */
int host_reclaim_cow(const struct host_reclaim_request *req, struct reclaim_report *ret_report,
		     struct fsaware_result *ret_fs, struct snapstore_error *ret_store_err,
		     struct host_error *err);

/*
 * `reclaim ID`: v is open under its lock and detached (vm_open_for_reclaim()).
 * The COW, and for fs-aware the base and disk size, come from the record (req's
 * cow_path, base_path, base_fd and disk_size are ignored); the base's recorded
 * identity is checked on the descriptor then read (-ESTALE when it changed).
 * Returns as host_reclaim_cow().  The result, success or failure, is recorded
 * in v's record (a dry run and a busy COW are not); a failure to save it is
 * -errno with err saying so (after a reclaim that ran, *ret_report is filled
 * then too: the COW was reclaimed).
 */
int host_reclaim_vm(struct vm *v, const struct host_reclaim_request *req,
		    struct reclaim_report *ret_report, struct fsaware_result *ret_fs,
		    struct snapstore_error *ret_store_err, struct host_error *err);

#endif
