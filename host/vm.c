/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/table.h"
#include "host/doctor.h"
#include "host/vm.h"

/* The discard tail: large enough for any VM, costs nothing (sparse). */
#define VM_TAIL_BYTES (8ULL << 40)

int vm_check_id(const char *id, struct host_error *err)
{
	if (vmstore_id_valid(id))
		return 0;
	host_seterr(err,
		    "invalid VM ID '%s': want 1-64 of [A-Za-z0-9_.-], starting with a letter or "
		    "digit",
		    id ? id : "");
	return -EINVAL;
}

int vm_open(const char *state, const char *id, bool lock, struct vm *ret, struct host_error *err)
{
	char why[256] = "";
	struct vm v = {.state = state, .id = id, .lock_fd = -1};
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->lock_fd = -1;
	r = vm_check_id(id, err);
	if (r < 0)
		return r;
	v.cow_path = vmstore_path(state, id, "cow");
	if (!v.cow_path) {
		host_seterr(err, "out of memory");
		return -ENOMEM;
	}
	/* The lock first: a record read before it may be rewritten by its holder. */
	if (lock) {
		v.lock_fd = vmstore_lock_vm(state, id);
		if (v.lock_fd < 0) {
			r = v.lock_fd;
			if (r == -ENOENT)
				host_seterr(err, "no VM '%s' in %s", id, state);
			else if (r == -EWOULDBLOCK)
				host_seterr(err, "VM '%s' is locked by another cowpunch command",
					    id);
			else
				host_seterr(err, "%s/%s/lock: %s", state, id, strerror(-r));
			vm_close(&v);
			return r;
		}
		/* Under the lock, a temp record is what a killed writer left. */
		vmstore_remove_stale_temps(state, id);
	}
	r = vmstore_record_load(state, id, &v.rec, why, sizeof(why));
	if (r < 0) {
		if (r == -ENOENT)
			host_seterr(err, "no VM '%s' in %s", id, state);
		else if (r == -EBADMSG)
			host_seterr(err, "%s/%s/vm.json: damaged record: %s", state, id, why);
		else
			host_seterr(err, "%s/%s/vm.json: %s", state, id, strerror(-r));
		vm_close(&v);
		return r;
	}
	if (strcmp(v.rec.id, id) != 0) {
		host_seterr(err, "%s/%s/vm.json: record is for VM '%s'", state, id, v.rec.id);
		vm_close(&v);
		return -EBADMSG;
	}
	*ret = v;
	return 0;
}

void vm_close(struct vm *v)
{
	if (v->lock_fd >= 0)
		close(v->lock_fd);
	v->lock_fd = -1;
	free(v->cow_path);
	v->cow_path = NULL;
}

int vm_save(struct vm *v, struct host_error *err)
{
	int r = vmstore_record_save(v->state, &v->rec);

	if (r < 0)
		host_seterr(err, "%s/%s/vm.json: cannot save the record: %s", v->state, v->id,
			    strerror(-r));
	return r;
}

char *vm_tail_path(const char *state)
{
	char *p;

	if (asprintf(&p, "%s/discard-tail.img", state) < 0)
		return NULL;
	return p;
}

/* Creates the shared sparse tail file once (read-only to everyone, all zeros). */
static int vm_ensure_tail(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0400);
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < VM_TAIL_BYTES && ftruncate(fd, (off_t)VM_TAIL_BYTES) < 0)
		return -errno;
	return 0;
}

static const char *vm_errstr(int r)
{
	const char *dm = dmops_last_error();

	return *dm ? dm : strerror(-r);
}

int vm_attach(struct vm *v, struct vmdisk_attached *ret, struct host_error *err)
{
	_cleanup_free_ char *tail = NULL;
	_cleanup_close_ int host = -1, cow_fd = -1;
	struct vmstore_identity now;
	struct vmdisk_attached out;
	struct vmdisk_spec spec = {
		.id = v->id,
		.base_path = v->rec.base_path,
		.cow_path = v->cow_path,
		.virt_bytes = v->rec.virt_bytes,
		.chunk_sectors = (uint32_t)(v->rec.chunk_bytes / 512),
		.discard = v->rec.discard,
		.cow_dio = v->rec.cow_dio,
	};
	const char *bad;
	int r;

	r = vmstore_identity_read(v->rec.base_path, &now);
	if (r < 0) {
		host_seterr(err, "%s: cannot read the base image: %s", v->rec.base_path,
			    strerror(-r));
		return r;
	}
	bad = vmstore_identity_mismatch(&v->rec.base, &now);
	if (bad) {
		host_seterr(err,
			    "%s: base image changed since VM '%s' was created (%s differs); "
			    "attaching its COW to a different base would corrupt the guest "
			    "filesystem: refusing",
			    v->rec.base_path, v->id, bad);
		return -ESTALE;
	}
	if (v->rec.discard) {
		tail = vm_tail_path(v->state);
		if (!tail) {
			host_seterr(err, "out of memory");
			return -ENOMEM;
		}
		r = vm_ensure_tail(tail);
		if (r < 0) {
			host_seterr(err, "%s: %s", tail, strerror(-r));
			return r;
		}
		spec.tail_path = tail;
	}
	/*
	 * `cowpunch reclaim COW` locks the COW file itself, then checks that no loop
	 * serves it: holding that lock until the overlay exists closes the window in
	 * which a reclaim could punch a chunk the guest has just written.
	 */
	cow_fd = open(v->cow_path, O_RDONLY | O_CLOEXEC);
	if (cow_fd < 0) {
		r = -errno;
		host_seterr(err, "%s: %s", v->cow_path, strerror(-r));
		return r;
	}
	if (flock(cow_fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r != -EWOULDBLOCK)
			host_seterr(err, "%s: cannot lock: %s", v->cow_path, strerror(-r));
		else
			host_seterr(
				err,
				"%s: locked by another process (a reclaim?): busy, not attached",
				v->cow_path);
		return r;
	}
	host = vmstore_lock_host(v->state);
	if (host < 0) {
		host_seterr(err, "host loop lock: %s", strerror(-host));
		return host;
	}
	r = vmdisk_attach(&spec, &out);
	if (r == -EBUSY) {
		host_seterr(err,
			    "VM '%s': %s is in use by a loop device cowpunch did not set up, or "
			    "the base image is attached writable",
			    v->id, v->cow_path);
		return r;
	}
	if (r == -EOPNOTSUPP && v->rec.cow_dio == LOOPDEV_DIO_ON) {
		host_seterr(err,
			    "VM '%s': the file system of %s refuses direct I/O, which the VM's "
			    "cow_direct_io \"on\" requires: not attached (nothing was left behind)",
			    v->id, v->cow_path);
		return r;
	}
	if (r < 0) {
		host_seterr(err, "VM '%s': attach failed: %s (nothing was left behind)", v->id,
			    vm_errstr(r));
		return r;
	}
	if (!out.already) {
		v->rec.cow_dio_active = out.cow_direct_io;
		v->rec.attached = time(NULL);
		r = vm_save(v, err);
		if (r < 0) {
			/* Nothing left behind, as promised: create's undo then removes the COW. */
			vmdisk_detach(v->id, v->cow_path);
			return r;
		}
	}
	*ret = out;
	return 0;
}

int vm_detach(struct vm *v, struct host_error *err)
{
	_cleanup_close_ int host = -1;
	struct vmdisk_state st;
	int r;

	r = vmdisk_get_state_settled(v->id, &st);
	if (r < 0) {
		host_seterr(err, "VM '%s': %s", v->id, vm_errstr(r));
		return r;
	}
	if (st.attached && st.open_count > 0) {
		host_seterr(err,
			    "VM '%s': /dev/mapper/overlay-%s is open (%d opener%s): stop the VM "
			    "first",
			    v->id, v->id, st.open_count, st.open_count == 1 ? "" : "s");
		return -EBUSY;
	}
	host = vmstore_lock_host(v->state);
	if (host < 0) {
		host_seterr(err, "host loop lock: %s", strerror(-host));
		return host;
	}
	r = vmdisk_detach(v->id, v->cow_path);
	if (r == -EBUSY) {
		host_seterr(err,
			    "VM '%s': /dev/mapper/overlay-%s is open, or %s is held by a loop "
			    "cowpunch did not set up",
			    v->id, v->id, v->cow_path);
		return r;
	}
	if (r < 0) {
		host_seterr(err, "VM '%s': detach failed: %s", v->id, vm_errstr(r));
		return r;
	}
	if (st.attached || st.base_exists) {
		v->rec.detached = time(NULL);
		return vm_save(v, err);
	}
	return 0;
}

int vm_is_attached(const struct vm *v, struct host_error *err)
{
	struct vmdisk_state st;
	int r = vmdisk_get_state(v->id, &st);

	if (r < 0) {
		host_seterr(err, "VM '%s': cannot tell whether it is attached: %s", v->id,
			    vm_errstr(r));
		return r;
	}
	return st.attached || st.base_exists;
}

int vm_check_base(const char *path, uint64_t virt_bytes, char **ret_real, struct host_error *err)
{
	_cleanup_free_ char *real = realpath(path, NULL);
	struct stat st;
	int r;

	if (!real) {
		r = -errno;
		host_seterr(err, "%s: %s", path, strerror(-r));
		return r;
	}
	if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
		host_seterr(err, "%s: not a regular file", real);
		return -EINVAL;
	}
	if (st.st_size == 0 || st.st_size % 512) {
		host_seterr(err, "%s: size %lld is not a non-zero multiple of 512 bytes", real,
			    (long long)st.st_size);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > virt_bytes) {
		host_seterr(err, "create: --size %llu is smaller than the base image (%lld bytes)",
			    (unsigned long long)virt_bytes, (long long)st.st_size);
		return -EINVAL;
	}
	*ret_real = TAKE_PTR(real);
	return 0;
}

int vm_mem_path(const char *path, char **ret, struct host_error *err)
{
	_cleanup_free_ char *copy = NULL, *dir = NULL, *abs = NULL;
	const char *base;

	if (!path || !path[0]) {
		host_seterr(err, "--mem-file: an empty path");
		return -EINVAL;
	}
	abs = realpath(path, NULL);
	if (!abs) {
		/* Not there yet: its folder resolved when it exists, else the working directory's. */
		copy = strdup(path);
		if (!copy)
			goto oom;
		base = basename(copy);
		dir = realpath(dirname(strdupa(path)), NULL);
		if (dir && asprintf(&abs, "%s/%s", strcmp(dir, "/") ? dir : "", base) < 0)
			abs = NULL;
		else if (!dir && path[0] == '/')
			abs = strdup(path);
		else if (!dir) {
			_cleanup_free_ char *cwd = getcwd(NULL, 0);

			if (cwd && asprintf(&abs, "%s/%s", cwd, path) < 0)
				abs = NULL;
		}
		if (!abs)
			goto oom;
	}
	if (strlen(abs) >= PATH_MAX) {
		host_seterr(err, "%s: --mem-file: the path is longer than %d bytes", path,
			    PATH_MAX - 1);
		return -EINVAL;
	}
	*ret = TAKE_PTR(abs);
	return 0;
oom:
	host_seterr(err, "out of memory");
	return -ENOMEM;
}

/* Same file: the same path, or the same inode when both exist. */
static bool vm_same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	if (strcmp(a, b) == 0)
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int vm_check_mem_file(const char *path, const char *base_path, const char *cow_path,
		      struct host_error *err)
{
	if (!path || !path[0])
		return 0;
	if (path[0] != '/') {
		host_seterr(err, "%s: --mem-file: not an absolute path", path);
		return -EINVAL;
	}
	if (vm_same_file(path, base_path) || vm_same_file(path, cow_path)) {
		host_seterr(err,
			    "%s: --mem-file names the VM's %s: a memory file is punched where it "
			    "reads as zeros, which would change that file: refused",
			    path, vm_same_file(path, cow_path) ? "COW file" : "base image");
		return -EINVAL;
	}
	return 0;
}

static int vm_check_mem_path(const struct vm *v, const char *path, struct host_error *err)
{
	return vm_check_mem_file(path, v->rec.base_path, v->cow_path, err);
}

int vm_set_mem_path(struct vm *v, const char *path, struct host_error *err)
{
	char old[sizeof(v->rec.mem_path)];
	int r = vm_check_mem_path(v, path, err);

	if (r < 0)
		return r;
	memcpy(old, v->rec.mem_path, sizeof(old));
	snprintf(v->rec.mem_path, sizeof(v->rec.mem_path), "%s", path ? path : "");
	r = vm_save(v, err);
	if (r < 0)
		memcpy(v->rec.mem_path, old, sizeof(old));
	return r;
}

/*
 * Undoes a failed create.  A committed record first turns back into the
 * marker (one rename), so that a kill anywhere in here leaves a COW beside
 * the marker, which the next create removes: never a COW without record and
 * marker, which create refuses to touch.  When that rename fails the VM stays
 * as it is (record and COW, detached).
 */
static void vm_create_undo(const struct vm *v, const char *dir, bool committed)
{
	_cleanup_free_ char *lock = vmstore_path(v->state, v->id, "lock");

	if (committed && vmstore_marker_revert(v->state, v->id) < 0)
		return;
	unlink(v->cow_path);
	vmstore_marker_remove(v->state, v->id);
	if (lock)
		unlink(lock);
	rmdir(dir);
}

/*
 * What may be in STATE/ID before create makes anything (under the VM's lock,
 * no record): nothing, the marker alone, or a COW.  A COW beside the marker is
 * a killed create's (no guest wrote to it) and is removed.  A COW without the
 * marker can be a VM whose vm.json was lost or is not restored yet: refused
 * (-EEXIST).  0 or -errno.
 */
static int vm_create_check_leftover(const struct vm *v, struct host_error *err)
{
	struct stat st;
	int r;

	if (lstat(v->cow_path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		r = -errno;
		host_seterr(err, "%s: %s", v->cow_path, strerror(-r));
		return r;
	}
	r = vmstore_marker_exists(v->state, v->id);
	if (r < 0) {
		host_seterr(err, "%s/%s/" VMSTORE_MARKER ": %s", v->state, v->id, strerror(-r));
		return r;
	}
	if (r == 0) {
		host_seterr(err,
			    "%s exists but VM '%s' has no record (%s/%s/vm.json) and no create of "
			    "it was under way: it may be the disk of a VM whose record was lost, "
			    "so it is left alone.  To adopt it, put its record back and run "
			    "'cowpunch attach %s'; to create VM '%s' anew, remove %s first",
			    v->cow_path, v->id, v->state, v->id, v->id, v->id, v->cow_path);
		return -EEXIST;
	}
	if (unlink(v->cow_path) < 0) {
		r = -errno;
		host_seterr(err, "%s: cannot remove what a killed create left: %s", v->cow_path,
			    strerror(-r));
		return r;
	}
	return 0;
}

int vm_create(const char *state, const char *id, const struct vm_create_spec *spec, struct vm *ret,
	      struct vmdisk_attached *ret_att, struct host_error *err)
{
	_cleanup_free_ char *dir = NULL, *json_path = NULL;
	_cleanup_(vm_close) struct vm v = {.state = state, .id = id, .lock_fd = -1};
	struct vmdisk_attached att;
	bool committed = false;
	int r;

	r = vm_check_id(id, err);
	if (r < 0)
		return r;
	/* Before anything is made: a refused create leaves nothing behind. */
	if (spec->discard && !spec->discard_unchecked) {
		r = doctor_discard_allowed(state, err);
		if (r < 0)
			return r;
	}
	r = vmstore_mkdir(state);
	if (r < 0) {
		host_seterr(err, "%s: %s", state, strerror(-r));
		return r;
	}
	dir = vmstore_path(state, id, NULL);
	json_path = vmstore_path(state, id, "vm.json");
	v.cow_path = vmstore_path(state, id, "cow");
	if (!dir || !json_path || !v.cow_path) {
		host_seterr(err, "out of memory");
		return -ENOMEM;
	}
	r = vmstore_mkdir(dir);
	if (r < 0) {
		host_seterr(err, "%s: %s", dir, strerror(-r));
		return r;
	}
	v.lock_fd = vmstore_lock_vm(state, id);
	if (v.lock_fd < 0) {
		host_seterr(err, "VM '%s' is locked by another cowpunch command", id);
		return v.lock_fd;
	}
	vmstore_remove_stale_temps(state, id);
	if (access(json_path, F_OK) == 0) {
		host_seterr(err, "VM '%s' exists already in %s (cowpunch destroy %s first)", id,
			    state, id);
		return -EEXIST;
	}
	r = vm_create_check_leftover(&v, err);
	if (r < 0)
		return r;

	memset(&v.rec, 0, sizeof(v.rec));
	snprintf(v.rec.id, sizeof(v.rec.id), "%s", id);
	snprintf(v.rec.base_path, sizeof(v.rec.base_path), "%s", spec->base_path);
	v.rec.virt_bytes = spec->virt_bytes;
	v.rec.chunk_bytes = spec->chunk_bytes;
	v.rec.discard = spec->discard;
	v.rec.cow_dio = spec->cow_dio;
	v.rec.cow_dio_active = -1;
	v.rec.created = time(NULL);
	r = vm_check_mem_path(&v, spec->mem_path, err);
	if (r < 0)
		goto undo;
	if (spec->mem_path)
		snprintf(v.rec.mem_path, sizeof(v.rec.mem_path), "%s", spec->mem_path);
	r = vmstore_identity_read(spec->base_path, &v.rec.base);
	if (r < 0) {
		host_seterr(err, "%s: %s", spec->base_path, strerror(-r));
		goto undo;
	}
	r = dmops_cow_bytes(spec->virt_bytes, (uint32_t)(spec->chunk_bytes / 512),
			    &v.rec.cow_bytes);
	if (r < 0) {
		host_seterr(err, "create: %s", strerror(-r));
		goto undo;
	}
	/* The marker is durable before the COW exists: see vmstore_marker_write(). */
	r = vmstore_marker_write(state, &v.rec);
	if (r < 0) {
		host_seterr(err, "%s/%s/" VMSTORE_MARKER ": %s", state, id, strerror(-r));
		goto undo;
	}
	r = vmdisk_cow_create(v.cow_path, spec->virt_bytes, (uint32_t)(spec->chunk_bytes / 512));
	if (r == 0)
		r = util_fsync_dir_of(v.cow_path);
	if (r < 0) {
		host_seterr(err, "%s: cannot create the COW file: %s", v.cow_path, strerror(-r));
		goto undo;
	}
	r = vmstore_marker_commit(state, id);
	if (r < 0) {
		host_seterr(err, "%s: cannot save the record: %s", json_path, strerror(-r));
		goto undo;
	}
	committed = true;
	r = vm_attach(&v, &att, err);
	if (r < 0)
		goto undo;
	*ret_att = att;
	*ret = v;
	v.lock_fd = -1;
	v.cow_path = NULL;
	return 0;

undo:
	vm_create_undo(&v, dir, committed);
	return r;
}

int vm_destroy(struct vm *v, struct host_error *err)
{
	_cleanup_free_ char *json = NULL, *lock = NULL, *dir = NULL;
	int r;

	r = vm_detach(v, err);
	if (r < 0) {
		vm_close(v);
		return r;
	}
	json = vmstore_path(v->state, v->id, "vm.json");
	lock = vmstore_path(v->state, v->id, "lock");
	dir = vmstore_path(v->state, v->id, NULL);
	if (!json || !lock || !dir) {
		host_seterr(err, "out of memory");
		vm_close(v);
		return -ENOMEM;
	}
	/*
	 * The COW goes first: a crash after it leaves a record without a COW, which
	 * destroy removes when run again.  The other order would leave a COW without
	 * a record, which create refuses to touch (it may be a VM whose record was lost).
	 */
	if ((unlink(v->cow_path) < 0 && errno != ENOENT) || unlink(json) < 0) {
		r = -errno;
		host_seterr(err, "%s: %s", dir, strerror(-r));
		vm_close(v);
		return r;
	}
	unlink(lock);
	vm_close(v);
	if (rmdir(dir) < 0) {
		r = -errno;
		host_seterr(err, "%s: %s (the VM is destroyed; remove the folder by hand)", dir,
			    strerror(-r));
		return r;
	}
	return 0;
}

static void vm_add_time(json_object *o, const char *key, time_t t)
{
	char buf[32];

	if (!t) {
		json_object_object_add(o, key, NULL);
		return;
	}
	vmstore_format_time(t, buf);
	json_object_object_add(o, key, json_object_new_string(buf));
}

static void vm_add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

json_object *vm_describe(const struct vm *v)
{
	json_object *o = json_object_new_object();
	char base[VMDISK_NAME_MAX], overlay[VMDISK_NAME_MAX], dev[VMDISK_PATH_MAX];
	struct vmdisk_state st;
	struct stat cs;
	int r;

	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(v->id));
	json_object_object_add(o, "base", json_object_new_string(v->rec.base_path));
	vm_add_u64(o, "virtual_size", v->rec.virt_bytes);
	vm_add_u64(o, "chunk_size", v->rec.chunk_bytes);
	json_object_object_add(o, "discard", json_object_new_boolean(v->rec.discard));
	json_object_object_add(o, "cow_direct_io",
			       json_object_new_string(vmstore_dio_name(v->rec.cow_dio)));
	json_object_object_add(
		o, "cow_direct_io_active",
		v->rec.cow_dio_active < 0 ? NULL : json_object_new_boolean(v->rec.cow_dio_active));
	json_object_object_add(o, "cow", json_object_new_string(v->cow_path));
	vm_add_u64(o, "cow_size", v->rec.cow_bytes);
	if (stat(v->cow_path, &cs) == 0)
		vm_add_u64(o, "cow_allocated", (uint64_t)cs.st_blocks * 512);
	else
		json_object_object_add(o, "cow_allocated", NULL);
	json_object_object_add(o, "mem_file",
			       v->rec.mem_path[0] ? json_object_new_string(v->rec.mem_path) : NULL);
	if (v->rec.mem_path[0] && stat(v->rec.mem_path, &cs) == 0)
		vm_add_u64(o, "mem_allocated", (uint64_t)cs.st_blocks * 512);
	else
		json_object_object_add(o, "mem_allocated", NULL);

	r = vmdisk_get_state(v->id, &st);
	if (r < 0) {
		json_object_object_add(o, "attached", NULL);
		json_object_object_add(o, "dm_error", json_object_new_string(vm_errstr(r)));
	} else {
		json_object_object_add(o, "attached", json_object_new_boolean(st.attached));
		vmdisk_names(v->id, base, overlay);
		snprintf(dev, sizeof(dev), "/dev/mapper/%s", overlay);
		json_object_object_add(o, "device",
				       st.attached ? json_object_new_string(dev) : NULL);
		json_object_object_add(o, "open_count", json_object_new_int(st.open_count));
		json_object_object_add(o, "leftover_base",
				       json_object_new_boolean(!st.attached && st.base_exists));
		if (st.has_status) {
			json_object *s = json_object_new_object();
			const char *state = st.status.invalid	     ? "invalid"
					    : st.status.overflow     ? "overflow"
					    : st.status.merge_failed ? "merge_failed"
								     : "valid";

			json_object_object_add(s, "state", json_object_new_string(state));
			vm_add_u64(s, "allocated_bytes", st.status.used_sectors * 512);
			vm_add_u64(s, "total_bytes", st.status.total_sectors * 512);
			vm_add_u64(s, "metadata_bytes", st.status.metadata_sectors * 512);
			json_object_object_add(o, "snapshot", s);
		} else
			json_object_object_add(o, "snapshot", NULL);
	}
	vm_add_time(o, "created", v->rec.created);
	vm_add_time(o, "attached_at", v->rec.attached);
	vm_add_time(o, "detached_at", v->rec.detached);
	if (v->rec.last_reclaim.present) {
		const struct vmstore_reclaim *rc = &v->rec.last_reclaim;
		json_object *l = json_object_new_object();

		vm_add_time(l, "time", rc->time);
		json_object_object_add(l, "exit_code", json_object_new_int(rc->exit_code));
		vm_add_u64(l, "reclaimed_bytes", rc->reclaimed_bytes);
		vm_add_u64(l, "allocated_before", rc->allocated_before);
		vm_add_u64(l, "allocated_after", rc->allocated_after);
		json_object_object_add(l, "seconds", json_object_new_double(rc->seconds));
		vm_add_u64(l, "zero_bytes", rc->zero_bytes);
		vm_add_u64(l, "fs_free_bytes", rc->fs_free_bytes);
		vm_add_u64(l, "mem_reclaimed_bytes", rc->mem_reclaimed_bytes);
		vm_add_u64(l, "bytes_read", rc->bytes_read);
		json_object_object_add(l, "fs_aware",
				       rc->fs_aware[0] ? json_object_new_string(rc->fs_aware)
						       : NULL);
		json_object_object_add(l, "fs_aware_reason",
				       json_object_new_string(rc->fs_aware_reason));
		json_object_object_add(l, "strategy",
				       rc->strategy[0] ? json_object_new_string(rc->strategy)
						       : NULL);
		json_object_object_add(l, "strategy_reason",
				       json_object_new_string(rc->strategy_reason));
		json_object_object_add(
			l, "mem_strategy",
			rc->mem_strategy[0] ? json_object_new_string(rc->mem_strategy) : NULL);
		json_object_object_add(l, "interrupted", json_object_new_boolean(rc->interrupted));
		json_object_object_add(l, "error", json_object_new_string(rc->error));
		json_object_object_add(o, "last_reclaim", l);
	} else
		json_object_object_add(o, "last_reclaim", NULL);
	return o;
}

int vm_open_for_reclaim(const char *state, const char *arg, struct vm *ret, bool *ret_is_vm,
			struct host_error *err)
{
	_cleanup_free_ char *rec = NULL;
	struct vm v;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->lock_fd = -1;
	if (strchr(arg, '/') || !vmstore_id_valid(arg)) {
		*ret_is_vm = false;
		return 0;
	}
	rec = vmstore_path(state, arg, "vm.json");
	if (!rec || access(rec, F_OK) < 0) {
		*ret_is_vm = false;
		return 0;
	}
	r = vm_open(state, arg, true, &v, err);
	if (r < 0)
		return r;
	r = vm_is_attached(&v, NULL);
	if (r < 0) {
		host_seterr(err, "VM '%s': cannot tell whether it is attached: %s; not touched",
			    v.id, vm_errstr(r));
		vm_close(&v);
		return r;
	}
	if (r > 0) {
		host_seterr(err,
			    "VM '%s' is attached (/dev/mapper/overlay-%s): busy, not touched "
			    "(cowpunch detach %s first)",
			    v.id, v.id, v.id);
		vm_close(&v);
		return -EBUSY;
	}
	*ret = v;
	*ret_is_vm = true;
	return 0;
}
