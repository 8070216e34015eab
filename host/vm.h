/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A VM of the state directory as the lifecycle works on it: its record loaded
 * under its lock, create (with the create marker), attach with the base
 * identity check, detach, destroy, and a description for list and status.
 * Library code: returns -errno, never prints; what failed is said in the
 * struct host_error the caller passes.
 */
#ifndef COWPUNCH_HOST_VM_H
#define COWPUNCH_HOST_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "dmops/vmdisk.h"
#include "host/error.h"
#include "host/vmstore.h"

struct json_object;

struct vm {
	const char *state;
	const char *id;
	int lock_fd; /* the VM's lock, or -1 */
	char *cow_path;
	struct vmstore_record rec;
};

/* 0 when id is a valid VM ID, else -EINVAL (err says the rule). */
int vm_check_id(const char *id, struct host_error *err);

/*
 * Takes the VM's lock (when lock; then also removes the temp files of killed
 * record writes) and loads its record.  Returns 0 with *ret filled (release it
 * with vm_close()), -EINVAL for a bad ID, -ENOENT when there is no such VM,
 * -EWOULDBLOCK when another command holds the lock, -EBADMSG on a damaged
 * record (or one for another ID), or -errno.  err says why.
 */
int vm_open(const char *state, const char *id, bool lock, struct vm *ret, struct host_error *err);

/* Releases the lock and the paths; harmless on a closed or zeroed struct vm (lock_fd -1). */
void vm_close(struct vm *v);

/* Saves the record atomically.  0 or -errno. */
int vm_save(struct vm *v, struct host_error *err);

/*
 * Attaches the VM: -ESTALE when the base image no longer has the recorded
 * identity, -EWOULDBLOCK when the COW file is locked (a reclaim?), -EBUSY when
 * a loop cowpunch did not set up serves the COW or the base is attached
 * writable, -errno otherwise (nothing left behind).  Records the attach time
 * and the COW loop's direct I/O.  0 with *ret filled.
 */
int vm_attach(struct vm *v, struct vmdisk_attached *ret, struct host_error *err);

/* Detaches (-EBUSY while the overlay is open) and records the time.  0 or -errno. */
int vm_detach(struct vm *v, struct host_error *err);

/*
 * 1 when the VM is attached (overlay-ID, or a base-ID left behind, exists), 0
 * when not, -errno when device-mapper cannot be asked (a kernel without the
 * dm driver counts as not attached, as vmdisk_get_state() says).
 */
int vm_is_attached(const struct vm *v, struct host_error *err);

/* What create records besides the geometry. */
struct vm_create_spec {
	const char *base_path; /* absolute (vm_check_base()'s) */
	uint64_t virt_bytes;
	uint64_t chunk_bytes;
	bool discard;
	/*
	 * With discard: skip the discard self-test's verdict (doctor_discard_allowed()),
	 * which is otherwise required.  For reproducing the kernel bug in tests.
	 */
	bool discard_unchecked;
	enum loopdev_dio cow_dio;
	const char *mem_path; /* the memory snapshot file (vm_mem_path()'s), or NULL */
};

/*
 * The checks of a base image given to create: path resolved to an absolute
 * one (*ret_real, malloc()ed), a regular file, a non-zero multiple of 512
 * bytes, no larger than virt_bytes.  0; -EINVAL when the image breaks a rule
 * (a usage error); -errno when it cannot be resolved.
 */
int vm_check_base(const char *path, uint64_t virt_bytes, char **ret_real, struct host_error *err);

/*
 * The memory snapshot file path as a record keeps it: absolute (relative to
 * the working directory; the file need not exist yet, its folder is resolved
 * when it exists), malloc()ed into *ret.  -EINVAL for an empty or too long
 * path, -errno.
 */
int vm_mem_path(const char *path, char **ret, struct host_error *err);

/*
 * 0 when path (absolute, or NULL/"" for none) may be a VM's memory file:
 * -EINVAL when it is not absolute, or names the VM's base image or COW file
 * (the same path, or the same inode).  vm_create() and vm_set_mem_path()
 * check it too; a command checks first to call that a usage error.
 */
int vm_check_mem_file(const char *path, const char *base_path, const char *cow_path,
		      struct host_error *err);

/*
 * Sets (path from vm_mem_path(), or NULL for none) the VM's memory file and
 * saves the record; v is open under its lock.  -EINVAL when path names the
 * VM's base image or COW file (a reclaim would punch it as a memory file).
 */
int vm_set_mem_path(struct vm *v, const char *path, struct host_error *err);

/*
 * Creates VM id in state and attaches it: the create marker, the sparse COW
 * file, the record (one rename), then vm_attach().  With spec->discard, first
 * asks the kept discard self-test result (doctor_discard_allowed(): -EPERM when
 * it does not say safe) unless spec->discard_unchecked.  On failure nothing is
 * left behind.  Returns 0 with *ret open and locked (vm_close() it) and *ret_att
 * filled; -EWOULDBLOCK when locked, -EEXIST when the VM exists or a COW file
 * without a record is in the way, vm_attach()'s errors, or -errno.
 */
int vm_create(const char *state, const char *id, const struct vm_create_spec *spec, struct vm *ret,
	      struct vmdisk_attached *ret_att, struct host_error *err);

/*
 * Detaches v (open under its lock) and deletes its COW file, record, lock and
 * folder.  v is closed on return (vm_close() again is harmless).  0, -EBUSY
 * while the overlay is open, or -errno.
 */
int vm_destroy(struct vm *v, struct host_error *err);

/*
 * Describes a VM as a JSON object (record, kernel state, COW allocation): the
 * one source for 'list' and 'status', text and --json.  "attached" is null
 * (and "dm_error" set) when device-mapper cannot be asked.  NULL on no memory.
 */
struct json_object *vm_describe(const struct vm *v);

/*
 * For `reclaim ID`: when arg names a VM in state (no '/', and
 * STATE/arg/vm.json exists), opens it under its lock, refuses while it is
 * attached (-EBUSY) and sets *ret_is_vm; ret->cow_path is then the file to
 * reclaim.  Otherwise returns 0 with *ret_is_vm false (arg is a COW path).
 * vm_open()'s errors, or -errno when device-mapper cannot be asked.
 */
int vm_open_for_reclaim(const char *state, const char *arg, struct vm *ret, bool *ret_is_vm,
			struct host_error *err);

/* Path of the discard tail file (a sparse zero file shared by every VM); NULL on no memory. */
char *vm_tail_path(const char *state);

#endif
