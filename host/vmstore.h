/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VM records in the state directory, and the locks that order lifecycle
 * commands.  Layout:
 *
 *   STATE/ID/vm.json   the record (written atomically: temp, fsync, rename, fsync dir)
 *   STATE/ID/cow       the sparse COW file
 *   STATE/ID/creating  the record of a VM being created (see vmstore_marker_write())
 *   STATE/ID/lock      flock()ed by create, attach, detach, reclaim and destroy
 *
 * The host-wide loop lock (/run/cowpunch.lock) serialises loop allocation and
 * the find-or-attach of shared base loops.
 */
#ifndef COWPUNCH_HOST_VMSTORE_H
#define COWPUNCH_HOST_VMSTORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dmops/loopdev.h"

#define VMSTORE_DEFAULT_DIR	"/var/lib/cowpunch"
#define VMSTORE_ID_MAX		64
#define VMSTORE_VERSION		1
#define VMSTORE_FINGERPRINT_LEN 64 /* sha256 in hex */
#define VMSTORE_MARKER		"creating"

struct vmstore_identity {
	uint64_t size;
	uint64_t dev;
	uint64_t ino;
	int64_t mtime_ns;
	char fingerprint[VMSTORE_FINGERPRINT_LEN + 1];
};

/*
 * What "unchanged since the last reclaim" compares of a file: a file rewritten,
 * grown, written into or replaced differs in at least one field.
 */
struct vmstore_filestamp {
	bool present;
	uint64_t dev, ino, size, blocks; /* blocks: st_blocks (512-byte units) */
	int64_t mtime_ns, ctime_ns;
};

struct vmstore_reclaim {
	bool present;
	time_t time;
	int exit_code; /* the exit status of `cowpunch reclaim ID` (host_exit_status()) */
	uint64_t reclaimed_bytes; /* the COW's st_blocks drop: zero_bytes + fs_free_bytes */
	uint64_t allocated_before;
	uint64_t allocated_after;
	double seconds;
	/* Fields added later: 0, "" or not present in an older record. */
	uint64_t zero_bytes;	      /* given back from zero chunks of the COW */
	uint64_t fs_free_bytes;	      /* given back from fs-free chunks of the COW */
	uint64_t mem_reclaimed_bytes; /* given back from the memory file */
	uint64_t bytes_read;	      /* data bytes read (COW + memory file) */
	char fs_aware[16];	      /* "" (not asked), "done", "refused" */
	char fs_aware_reason[256];    /* why refused */
	char strategy[16];	      /* the COW's: "" (not recorded), "punch", "rewrite" */
	char strategy_reason[256];    /* why that strategy (auto's figures) */
	char mem_strategy
		[16];	  /* the memory file's: "" (none, or not recorded), "punch", "rewrite" */
	bool interrupted; /* stopped by a signal part-way (the store is valid) */
	char error[256];  /* what failed, "" when exit_code is 0 */
	struct vmstore_filestamp cow_stamp, mem_stamp; /* the files right after the reclaim */
};

struct vmstore_record {
	char id[VMSTORE_ID_MAX + 1];
	char base_path[PATH_MAX];
	struct vmstore_identity base;
	uint64_t virt_bytes;
	uint64_t chunk_bytes;
	uint64_t cow_bytes;
	bool discard;
	enum loopdev_dio cow_dio; /* options.cow_direct_io; a record without it: auto */
	int cow_dio_active;	  /* direct I/O at the last attach: 1, 0, or -1 (not known) */
	time_t created;
	time_t attached;	 /* last successful attach, 0 = never */
	time_t detached;	 /* last successful detach, 0 = never */
	char mem_path[PATH_MAX]; /* the VM's memory snapshot file (absolute), "" = none */
	struct vmstore_reclaim last_reclaim;
};

/* The state directory: opt if given, else $COWPUNCH_STATE_DIR, else the default. */
const char *vmstore_state_dir(const char *opt);

/* True when id matches [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
bool vmstore_id_valid(const char *id);

/* STATE/ID/NAME into a malloc()ed string; NULL on out of memory. */
char *vmstore_path(const char *state, const char *id, const char *name);

/*
 * Reads the identity of the file at path: size, device/inode, mtime, and a
 * sha256 over 16 blocks sampled across it (size included).  0 or -errno.
 */
int vmstore_identity_read(const char *path, struct vmstore_identity *ret);

/*
 * The same of the file open at fd (read with pread: the file offset is left
 * alone).  Checking the identity on the descriptor that is then read leaves no
 * window for the file at the path to be replaced in between.  0 or -errno.
 */
int vmstore_identity_read_fd(int fd, struct vmstore_identity *ret);

/*
 * Compares an identity with the recorded one.  Returns NULL when they match,
 * else the name of the first field that differs ("size", "mtime",
 * "fingerprint").  Device/inode may change (restore from backup): not compared.
 */
const char *vmstore_identity_mismatch(const struct vmstore_identity *rec,
				      const struct vmstore_identity *now);

/* stat(path) into *ret (present = true).  0, -ENOENT when missing, -errno. */
int vmstore_filestamp_read(const char *path, struct vmstore_filestamp *ret);

/* Every field equal, and both present. */
bool vmstore_filestamp_equal(const struct vmstore_filestamp *a, const struct vmstore_filestamp *b);

/*
 * Parses a record (no I/O).  Returns 0 and fills *ret, or -EBADMSG with a
 * reason in err (errlen bytes) when the JSON is damaged or a field is missing,
 * of the wrong type or out of range.
 */
int vmstore_record_parse(const char *buf, size_t len, struct vmstore_record *ret, char *err,
			 size_t errlen);

/* Formats a record as pretty JSON, malloc()ed into *ret.  0 or -ENOMEM. */
int vmstore_record_format(const struct vmstore_record *rec, char **ret);

/* Loads STATE/ID/vm.json.  -ENOENT: no such VM; -EBADMSG: damaged (err says why). */
int vmstore_record_load(const char *state, const char *id, struct vmstore_record *ret, char *err,
			size_t errlen);

/* Saves STATE/ID/vm.json atomically (creating STATE/ID if needed).  0 or -errno. */
int vmstore_record_save(const char *state, const struct vmstore_record *rec);

/*
 * Writes path atomically: a temp file in the same directory, fsync, rename
 * over path, fsync the directory.  A crash leaves the old or the new content,
 * never a mix.  0 or -errno.
 */
int vmstore_write_atomic(const char *path, const void *buf, size_t len);

/*
 * mkdir(path) that survives a crash: when the folder is new, its parent is
 * fsynced (a new directory entry is durable only then).  Returns 0, also when
 * the folder existed, or -errno.
 */
int vmstore_mkdir(const char *path);

/*
 * The create marker, STATE/ID/creating: the record of a VM being created.
 * create writes it (atomically and durably) BEFORE it makes the COW file, and
 * commits the VM by renaming it to vm.json (one rename: the record appears
 * and the marker goes at once).  So a COW file beside the marker and without a
 * record is what a killed create left (no guest ever wrote to it) and may be
 * removed, while a COW file with neither is a VM whose record is missing and
 * must be left alone.  Each returns 0 or -errno.
 */
int vmstore_marker_write(const char *state, const struct vmstore_record *rec);
/* creating -> vm.json, then fsync of the folder. */
int vmstore_marker_commit(const char *state, const char *id);
/* vm.json -> creating, then fsync of the folder: a failed create turns its VM back into a leftover. */
int vmstore_marker_revert(const char *state, const char *id);
/* Removes the marker (none: 0). */
int vmstore_marker_remove(const char *state, const char *id);
/* 1 when STATE/ID/creating exists, 0 when not, or -errno. */
int vmstore_marker_exists(const char *state, const char *id);

/*
 * Removes the temp files a killed vmstore_write_atomic() left in STATE/ID
 * (vm.json.tmp.PID, creating.tmp.PID).  Only under the VM's lock: every writer
 * of those files holds it, so any such file is stale.  Returns how many were
 * removed, or -errno.
 */
int vmstore_remove_stale_temps(const char *state, const char *id);

/*
 * Takes the VM's lock without waiting.  Returns the lock fd (close it to
 * release), -EWOULDBLOCK when another command holds it, or -errno.
 */
int vmstore_lock_vm(const char *state, const char *id);

/* Takes the host-wide loop lock, waiting for it.  Returns the fd or -errno. */
int vmstore_lock_host(const char *state);

/* IDs of the VMs in STATE (folders holding a vm.json), sorted.  Count or -errno. */
int vmstore_list(const char *state, char ***ret_ids);
void vmstore_list_free(char **ids, int n);

/* "off", "auto", "on" <-> enum loopdev_dio.  Parse: 0 or -EINVAL. */
const char *vmstore_dio_name(enum loopdev_dio dio);
int vmstore_dio_parse(const char *s, enum loopdev_dio *ret);

/* time_t <-> "2026-11-27T10:41:09Z". */
void vmstore_format_time(time_t t, char buf[32]);

#endif
