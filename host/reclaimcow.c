/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/loopscan.h"
#include "host/reclaimcow.h"

int host_open_file_exclusive(const char *path, int *ret_fd, struct host_error *err)
{
	_cleanup_close_ int fd = -1;
	char loop[64];
	struct stat st;
	int r;

	/* O_DIRECT keeps the scan out of the page cache; some file systems refuse it. */
	fd = open(path, O_RDWR | O_CLOEXEC | O_DIRECT);
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		host_seterr(err, "%s: cannot open for writing: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		host_seterr(err, "%s: not a regular file", path);
		return -EINVAL;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r == -EWOULDBLOCK)
			host_seterr(err, "%s: locked by another process (flock): busy, not touched",
				    path);
		else
			host_seterr(err, "%s: cannot lock: %s", path, strerror(-r));
		return r;
	}
	/*
	 * A rewrite by another run may have renamed a new file over path between our
	 * open and our lock: we would hold a file nobody reaches any more.
	 */
	{
		struct stat sp;

		if (stat(path, &sp) < 0 || sp.st_dev != st.st_dev || sp.st_ino != st.st_ino) {
			host_seterr(
				err,
				"%s: replaced by another file while being opened (a rewrite?): busy, not touched",
				path);
			return -EWOULDBLOCK;
		}
	}
	/* After the lock, so nobody can attach it between our look and our writes
	 * without also ignoring the lock. */
	r = loopdev_find_backing(st.st_dev, st.st_ino, loop, sizeof(loop));
	if (r > 0) {
		host_seterr(err,
			    "%s: attached as the backing file of %s: busy, not touched (detach "
			    "it first)",
			    path, loop);
		return -EBUSY;
	}
	if (r < 0) {
		host_seterr(err,
			    "%s: cannot tell whether a loop device uses it (/sys/block, "
			    "/dev/loop*): %s; not touched",
			    path, strerror(-r));
		return r == -EBUSY || r == -EWOULDBLOCK ? -EIO : r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int host_open_cow_exclusive(const char *path, int *ret_fd, struct host_error *err)
{
	return host_open_file_exclusive(path, ret_fd, err);
}

/*
 * What can be checked of a base without a record: the disk it sits under is a
 * linear map of all of it (a whole number of 512-byte sectors) inside a disk of
 * req->disk_size bytes.  A base that breaks either is not this disk's (-EBADMSG).
 */
static int host_check_base_size(const struct host_reclaim_request *req, int base_fd,
				struct host_error *err)
{
	off_t end = lseek(base_fd, 0, SEEK_END);
	int r;

	if (end < 0) {
		r = -errno;
		host_seterr(err, "%s: cannot tell the size of the base image: %s", req->base_path,
			    strerror(-r));
		return r;
	}
	if (end % 512) {
		host_seterr(err,
			    "%s: the base image is %lld bytes, not a multiple of 512: no disk has "
			    "it as its base (a linear map covers whole sectors); nothing written",
			    req->base_path, (long long)end);
		return -EBADMSG;
	}
	if ((uint64_t)end > req->disk_size) {
		host_seterr(err,
			    "%s: the base image is %lld bytes, larger than the %llu-byte disk: "
			    "not this disk's base, or the wrong --size; nothing written",
			    req->base_path, (long long)end, (unsigned long long)req->disk_size);
		return -EBADMSG;
	}
	return 0;
}

int host_reclaim_cow(const struct host_reclaim_request *req, struct reclaim_report *ret_report,
		     struct fsaware_result *ret_fs, struct snapstore_error *ret_store_err,
		     struct host_error *err)
{
	struct snapstore_info info = {0};
	struct snapstore_error serr = {0};
	struct fsaware_result fs;
	struct reclaim_report rep = {0};
	struct reclaim_opts opts;
	_cleanup_close_ int fd = -1, own_base_fd = -1;
	int base_fd = req->base_fd;
	int r;

	r = host_open_cow_exclusive(req->cow_path, &fd, err);
	if (r < 0)
		return r;
	if (req->fs_aware) {
		/* The base is only read; a shared base is never opened for writing. */
		if (base_fd < 0) {
			base_fd = own_base_fd = open(req->base_path, O_RDONLY | O_CLOEXEC);
			if (base_fd < 0) {
				r = -errno;
				host_seterr(err, "%s: cannot open the base image: %s",
					    req->base_path, strerror(-r));
				return r;
			}
		}
		r = host_check_base_size(req, base_fd, err);
		if (r < 0)
			return r;
	}

	opts = (struct reclaim_opts){
		.engine = req->engine,
		.dry_run = req->dry_run,
		.strategy = req->strategy,
		.path = req->cow_path,
		.read_bytes = req->read_bytes,
		.queue_depth = req->queue_depth,
		.direct_reads = req->direct_reads,
		.progress = req->progress,
		.punch_progress = req->punch_progress,
		.progress_opaque = req->progress_opaque,
		.stop = req->stop,
		.throttle = req->throttle,
		.throttle_opaque = req->throttle_opaque,
	};
	if (req->fs_aware) {
		r = fsaware_reclaim(fd, base_fd, req->disk_size,
				    req->base_verified ? FSAWARE_BASE_VERIFIED : 0, &opts, &rep,
				    &fs, &serr);
	} else {
		r = snapstore_load(fd, &info, NULL, NULL, &serr);
		if (r >= 0)
			r = reclaim_run(fd, &info, &opts, &rep);
		snapstore_info_free(&info);
	}
	if (r == -EBADMSG) {
		host_seterr(err, "%s: invalid store at byte %llu: %s; nothing written",
			    req->cow_path, (unsigned long long)serr.offset, serr.rule);
		if (ret_store_err)
			*ret_store_err = serr;
		return r;
	}
	if (r == -EPERM && req->strategy == RECLAIM_STRATEGY_REWRITE) {
		/* reclaim_run() says why; an -EPERM before it (fs-aware reads) does not. */
		if (!rep.strategy_reason[0])
			snprintf(rep.strategy_reason, sizeof(rep.strategy_reason),
				 "%s: not permitted", req->cow_path);
		host_seterr(err, "rewrite refused: %s; nothing written (try --strategy punch)",
			    rep.strategy_reason);
		return HOST_REWRITE_REFUSED;
	}
	if (r == -ENOTSUP && req->engine != RECLAIM_ENGINE_AUTO) {
		host_seterr(err,
			    "%s: engine '%s' is not available on this system; nothing written "
			    "(try --engine auto)",
			    req->cow_path, reclaim_engine_name(req->engine));
		return r;
	}
	if (r < 0) {
		host_seterr(err,
			    "%s: reclaim failed: %s (what was punched so far read as zeros "
			    "before, or is free in the guest's file system; the store stays valid)",
			    req->cow_path, strerror(-r));
		/* Not to be read as an invalid store, a busy file or a changed base. */
		return r == -EBUSY || r == -EWOULDBLOCK || r == -ESTALE ? -EIO : r;
	}
	if (req->fs_aware && fs.status == FSAWARE_REFUSED) {
		host_seterr(err, "%s: fs-aware reclaim refused as unsafe: %s; nothing written",
			    req->cow_path, fs.reason);
		if (ret_fs)
			*ret_fs = fs;
		return HOST_RECLAIM_REFUSED;
	}
	if (rep.strategy == RECLAIM_STRATEGY_REWRITE) {
		/*
		 * fd is the old file now, renamed over and unlinked: closing it gives its
		 * blocks back (a discard each on a file system mounted `discard`), here,
		 * in this process, and that is part of the run's cost.
		 */
		double t0 = util_now();

		close(TAKE_FD(fd));
		rep.seconds += util_now() - t0;
	}
	*ret_report = rep;
	if (ret_fs && req->fs_aware)
		*ret_fs = fs;
	return 0;
}

/*
 * Records a reclaim in the VM's record: a finished one (r 0, rep given; a dry
 * run is not recorded) or a failed one (nothing given back, the COW's
 * allocation now, err's message).  fs: the fs-aware outcome when asked (NULL:
 * not asked), fs_refused the reason when it was refused before it ran.
 * Returns r, or the save's -errno (err says so).
 */
static int host_record_reclaim(struct vm *v, int r, const struct reclaim_report *rep,
			       const struct fsaware_result *fs, const char *fs_refused,
			       struct host_error *err)
{
	struct vmstore_reclaim *l = &v->rec.last_reclaim;
	struct vmstore_filestamp stamp = {0};
	uint64_t z;
	int s;

	if (r == 0 && rep->dry_run)
		return r;
	if (r != 0)
		rep = NULL;
	vmstore_filestamp_read(v->cow_path, &stamp);
	*l = (struct vmstore_reclaim){
		.present = true,
		.time = time(NULL),
		.exit_code = host_exit_status(r),
		.allocated_before = stamp.blocks * 512,
		.allocated_after = stamp.blocks * 512,
		.interrupted = r == -ECANCELED,
		.cow_stamp = stamp,
	};
	if (rep) {
		/*
		 * st_blocks' drop is the only honest measure of what was given back; it
		 * is split between zero and fs-free chunks by their counts (all of it to
		 * zero chunks when no chunk was fs-free: the host file system may free
		 * an extent block too).
		 */
		z = rep->fs_free_chunks ? rep->zero_chunks * rep->chunk_bytes : UINT64_MAX;
		l->reclaimed_bytes = rep->reclaimed_bytes;
		l->zero_bytes = rep->reclaimed_bytes < z ? rep->reclaimed_bytes : z;
		l->fs_free_bytes = rep->reclaimed_bytes - l->zero_bytes;
		l->allocated_before = rep->allocated_before;
		l->allocated_after = rep->allocated_after;
		l->bytes_read = rep->bytes_read;
		l->seconds = rep->seconds;
		snprintf(l->strategy, sizeof(l->strategy), "%s",
			 reclaim_strategy_name(rep->strategy));
		snprintf(l->strategy_reason, sizeof(l->strategy_reason), "%s",
			 rep->strategy_reason);
	} else if (err)
		snprintf(l->error, sizeof(l->error), "%.*s", (int)sizeof(l->error) - 1, err->msg);
	if (fs_refused) {
		snprintf(l->fs_aware, sizeof(l->fs_aware), "refused");
		snprintf(l->fs_aware_reason, sizeof(l->fs_aware_reason), "%s", fs_refused);
	} else if (fs && (r == 0 || r == HOST_RECLAIM_REFUSED)) {
		snprintf(l->fs_aware, sizeof(l->fs_aware), "%s",
			 fs->status == FSAWARE_REFUSED ? "refused" : "done");
		snprintf(l->fs_aware_reason, sizeof(l->fs_aware_reason), "%s", fs->reason);
	}
	s = vmstore_record_save(v->state, &v->rec);
	if (s < 0 && err) {
		/* After a failed reclaim, both are said. */
		size_t n = r != 0 ? strnlen(err->msg, sizeof(err->msg) - 1) : 0;

		snprintf(err->msg + n, sizeof(err->msg) - n,
			 "%s%s/%s/vm.json: cannot save the record: %s", n ? "; " : "", v->state,
			 v->id, strerror(-s));
	}
	return s < 0 ? s : r;
}

int host_reclaim_vm(struct vm *v, const struct host_reclaim_request *req,
		    struct reclaim_report *ret_report, struct fsaware_result *ret_fs,
		    struct snapstore_error *ret_store_err, struct host_error *err)
{
	_cleanup_close_ int base_fd = -1;
	struct host_reclaim_request a = *req;
	struct vmstore_identity now;
	struct fsaware_result fs = {0};
	struct reclaim_report rep;
	const char *bad;
	char why[128];
	int r;

	a.cow_path = v->cow_path;
	a.base_path = NULL;
	a.base_fd = -1;
	a.base_verified = false;
	a.disk_size = 0;
	if (a.fs_aware) {
		/*
		 * Opened once: the identity is checked on the descriptor the reclaim then
		 * reads, so a base replaced at its path in between is never read.
		 */
		base_fd = open(v->rec.base_path, O_RDONLY | O_CLOEXEC);
		r = base_fd < 0 ? -errno : vmstore_identity_read_fd(base_fd, &now);
		if (r < 0) {
			host_seterr(err, "%s: cannot read the base image of VM %s: %s",
				    v->rec.base_path, v->id, strerror(-r));
			return host_record_reclaim(v, r == -ESTALE ? -EIO : r, NULL, NULL, NULL,
						   err);
		}
		bad = vmstore_identity_mismatch(&v->rec.base, &now);
		if (bad) {
			host_seterr(
				err,
				"%s: the base image of VM %s changed since it was created (%s); "
				"fs-aware reclaim over it would misread the guest's file system; "
				"nothing written",
				v->rec.base_path, v->id, bad);
			snprintf(why, sizeof(why),
				 "the base image changed since the VM was created (%s differs)",
				 bad);
			return host_record_reclaim(v, -ESTALE, NULL, NULL, why, err);
		}
		a.base_path = v->rec.base_path;
		a.base_fd = base_fd;
		a.base_verified = true;
		a.disk_size = v->rec.virt_bytes;
	}
	r = host_reclaim_cow(&a, &rep, &fs, ret_store_err, err);
	if (ret_fs && a.fs_aware && (r == 0 || r == HOST_RECLAIM_REFUSED))
		*ret_fs = fs;
	/* A refusal for a busy COW says nothing about the store: not recorded. */
	if (r == -EBUSY || r == -EWOULDBLOCK)
		return r;
	if (r == 0)
		*ret_report = rep;
	return host_record_reclaim(v, r, &rep, a.fs_aware ? &fs : NULL, NULL, err);
}
