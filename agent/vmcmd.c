/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/cleanup.h"
#include "reclaim/reclaim.h"

/* The discard tail: large enough for any VM, costs nothing (sparse). */
#define VMCMD_TAIL_BYTES (8ULL << 40)

void vmcmd_help_state_dir(FILE *out)
{
	fputs("  --state-dir DIR  state directory (default $COWPUNCH_STATE_DIR, else\n"
	      "                   " VMSTORE_DEFAULT_DIR ")\n",
	      out);
}

int vmcmd_parse_id_args(int argc, char **argv, bool *ret_json, const char **ret_state,
			const char **ret_id)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL;
	bool json = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'S')
			state_opt = optarg;
		else if (opt == 'j' && ret_json)
			json = agent_json = true;
		else {
			if (opt == 'j')
				agent_error("%s: no --json here", argv[0]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		agent_error("%s: want exactly one VM ID (see 'cowpunch %s --help')", argv[0],
			    argv[0]);
		return EXIT_USAGE;
	}
	if (ret_json)
		*ret_json = json;
	*ret_state = vmstore_state_dir(state_opt);
	*ret_id = argv[optind];
	return EXIT_OK;
}

void vmcmd_print_json(json_object *o)
{
	/* The caller keeps its reference. */
	agent_print_json(json_object_get(o), JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
}

int vmcmd_check_id(const char *id)
{
	if (vmstore_id_valid(id))
		return EXIT_OK;
	agent_error("invalid VM ID '%s': want 1-64 of [A-Za-z0-9_.-], starting with a letter or "
		    "digit",
		    id ? id : "");
	return EXIT_USAGE;
}

int vmcmd_open(const char *state, const char *id, bool lock, struct vmcmd *c)
{
	char err[256] = "";
	int r;

	memset(c, 0, sizeof(*c));
	c->state = state;
	c->id = id;
	c->lock_fd = -1;
	r = vmcmd_check_id(id);
	if (r != EXIT_OK)
		return r;
	c->cow_path = vmstore_path(state, id, "cow");
	if (!c->cow_path) {
		agent_error("out of memory");
		return EXIT_RUNTIME;
	}
	/* The lock first: a record read before it may be rewritten by its holder. */
	if (lock) {
		c->lock_fd = vmstore_lock_vm(state, id);
		if (c->lock_fd == -ENOENT) {
			agent_error("no VM '%s' in %s", id, state);
			vmcmd_close(c);
			return EXIT_RUNTIME;
		}
		if (c->lock_fd < 0) {
			r = c->lock_fd;
			if (r == -EWOULDBLOCK)
				agent_error("VM '%s' is locked by another cowpunch command", id);
			else
				agent_error("%s/%s/lock: %s", state, id, strerror(-r));
			vmcmd_close(c);
			return agent_exit_code(r);
		}
		/* Under the lock, a temp record is what a killed writer left. */
		vmstore_remove_stale_temps(state, id);
	}
	r = vmstore_record_load(state, id, &c->rec, err, sizeof(err));
	if (r == -ENOENT) {
		agent_error("no VM '%s' in %s", id, state);
		vmcmd_close(c);
		return EXIT_RUNTIME;
	}
	if (r == -EBADMSG) {
		agent_error("%s/%s/vm.json: damaged record: %s", state, id, err);
		vmcmd_close(c);
		return EXIT_INVALID;
	}
	if (r < 0) {
		agent_error("%s/%s/vm.json: %s", state, id, strerror(-r));
		vmcmd_close(c);
		return EXIT_RUNTIME;
	}
	if (strcmp(c->rec.id, id) != 0) {
		agent_error("%s/%s/vm.json: record is for VM '%s'", state, id, c->rec.id);
		vmcmd_close(c);
		return EXIT_INVALID;
	}
	return EXIT_OK;
}

void vmcmd_close(struct vmcmd *c)
{
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	c->lock_fd = -1;
	free(c->cow_path);
	c->cow_path = NULL;
}

int vmcmd_save(struct vmcmd *c)
{
	int r = vmstore_record_save(c->state, &c->rec);

	if (r < 0) {
		agent_error("%s/%s/vm.json: cannot save the record: %s", c->state, c->id,
			    strerror(-r));
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

char *vmcmd_tail_path(const char *state)
{
	char *p;

	if (asprintf(&p, "%s/discard-tail.img", state) < 0)
		return NULL;
	return p;
}

/* Creates the shared sparse tail file once (read-only to everyone, all zeros). */
static int vmcmd_ensure_tail(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0400);
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < VMCMD_TAIL_BYTES && ftruncate(fd, (off_t)VMCMD_TAIL_BYTES) < 0)
		return -errno;
	return 0;
}

static const char *vmcmd_errstr(int r)
{
	const char *dm = dmops_last_error();

	return *dm ? dm : strerror(-r);
}

int vmcmd_attach(struct vmcmd *c, struct vmdisk_attached *ret)
{
	_cleanup_free_ char *tail = NULL;
	_cleanup_close_ int host = -1, cow_fd = -1;
	struct vmstore_identity now;
	struct vmdisk_attached out;
	struct vmdisk_spec spec = {
		.id = c->id,
		.base_path = c->rec.base_path,
		.cow_path = c->cow_path,
		.virt_bytes = c->rec.virt_bytes,
		.chunk_sectors = (uint32_t)(c->rec.chunk_bytes / 512),
		.discard = c->rec.discard,
		.cow_dio = c->rec.cow_dio,
	};
	const char *bad;
	int r;

	r = vmstore_identity_read(c->rec.base_path, &now);
	if (r < 0) {
		agent_error("%s: cannot read the base image: %s", c->rec.base_path, strerror(-r));
		return EXIT_RUNTIME;
	}
	bad = vmstore_identity_mismatch(&c->rec.base, &now);
	if (bad) {
		agent_error("%s: base image changed since VM '%s' was created (%s differs); "
			    "attaching its COW to a different base would corrupt the guest "
			    "filesystem: refusing",
			    c->rec.base_path, c->id, bad);
		return EXIT_INVALID;
	}
	if (c->rec.discard) {
		tail = vmcmd_tail_path(c->state);
		if (!tail)
			return EXIT_RUNTIME;
		r = vmcmd_ensure_tail(tail);
		if (r < 0) {
			agent_error("%s: %s", tail, strerror(-r));
			return EXIT_RUNTIME;
		}
		spec.tail_path = tail;
	}
	/*
	 * `cowpunch reclaim COW` locks the COW file itself, then checks that no loop
	 * serves it: holding that lock until the overlay exists closes the window in
	 * which a reclaim could punch a chunk the guest has just written.
	 */
	cow_fd = open(c->cow_path, O_RDONLY | O_CLOEXEC);
	if (cow_fd < 0) {
		agent_error("%s: %s", c->cow_path, strerror(errno));
		return EXIT_RUNTIME;
	}
	if (flock(cow_fd, LOCK_EX | LOCK_NB) < 0) {
		/* Read errno before printing: stdio may change it. */
		if (errno != EWOULDBLOCK) {
			agent_error("%s: cannot lock: %s", c->cow_path, strerror(errno));
			return EXIT_RUNTIME;
		}
		agent_error("%s: locked by another process (a reclaim?): busy, not attached",
			    c->cow_path);
		return EXIT_BUSY;
	}
	host = vmstore_lock_host(c->state);
	if (host < 0) {
		agent_error("host loop lock: %s", strerror(-host));
		return EXIT_RUNTIME;
	}
	r = vmdisk_attach(&spec, &out);
	if (r == -EBUSY) {
		agent_error("VM '%s': %s is in use by a loop device cowpunch did not set up, or "
			    "the base image is attached writable",
			    c->id, c->cow_path);
		return EXIT_BUSY;
	}
	if (r == -EOPNOTSUPP && c->rec.cow_dio == LOOPDEV_DIO_ON) {
		agent_error("VM '%s': the file system of %s refuses direct I/O, which the VM's "
			    "cow_direct_io \"on\" requires: not attached (nothing was left behind)",
			    c->id, c->cow_path);
		return EXIT_RUNTIME;
	}
	if (r < 0) {
		agent_error("VM '%s': attach failed: %s (nothing was left behind)", c->id,
			    vmcmd_errstr(r));
		return EXIT_RUNTIME;
	}
	if (!out.already) {
		c->rec.cow_dio_active = out.cow_direct_io;
		c->rec.attached = time(NULL);
		r = vmcmd_save(c);
		if (r != EXIT_OK) {
			/* Nothing left behind, as promised: create's undo then removes the COW. */
			vmdisk_detach(c->id, c->cow_path);
			return r;
		}
	}
	*ret = out;
	return EXIT_OK;
}

int vmcmd_detach(struct vmcmd *c)
{
	_cleanup_close_ int host = -1;
	struct vmdisk_state st;
	int r;

	r = vmdisk_get_state(c->id, &st);
	if (r < 0) {
		agent_error("VM '%s': %s", c->id, vmcmd_errstr(r));
		return EXIT_RUNTIME;
	}
	if (st.attached && st.open_count > 0) {
		agent_error("VM '%s': /dev/mapper/overlay-%s is open (%d opener%s): stop the VM "
			    "first",
			    c->id, c->id, st.open_count, st.open_count == 1 ? "" : "s");
		return EXIT_BUSY;
	}
	host = vmstore_lock_host(c->state);
	if (host < 0) {
		agent_error("host loop lock: %s", strerror(-host));
		return EXIT_RUNTIME;
	}
	r = vmdisk_detach(c->id, c->cow_path);
	if (r == -EBUSY) {
		agent_error("VM '%s': /dev/mapper/overlay-%s is open, or %s is held by a loop "
			    "cowpunch did not set up",
			    c->id, c->id, c->cow_path);
		return EXIT_BUSY;
	}
	if (r < 0) {
		agent_error("VM '%s': detach failed: %s", c->id, vmcmd_errstr(r));
		return EXIT_RUNTIME;
	}
	if (st.attached || st.base_exists) {
		c->rec.detached = time(NULL);
		return vmcmd_save(c);
	}
	return EXIT_OK;
}

static void vmcmd_add_time(json_object *o, const char *key, time_t t)
{
	char buf[32];

	if (!t) {
		json_object_object_add(o, key, NULL);
		return;
	}
	vmstore_format_time(t, buf);
	json_object_object_add(o, key, json_object_new_string(buf));
}

static void vmcmd_add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

json_object *vmcmd_describe(const struct vmcmd *c)
{
	json_object *o = json_object_new_object();
	char base[VMDISK_NAME_MAX], overlay[VMDISK_NAME_MAX], dev[VMDISK_PATH_MAX];
	struct vmdisk_state st;
	struct stat cs;
	int r;

	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(c->id));
	json_object_object_add(o, "base", json_object_new_string(c->rec.base_path));
	vmcmd_add_u64(o, "virtual_size", c->rec.virt_bytes);
	vmcmd_add_u64(o, "chunk_size", c->rec.chunk_bytes);
	json_object_object_add(o, "discard", json_object_new_boolean(c->rec.discard));
	json_object_object_add(o, "cow_direct_io",
			       json_object_new_string(vmstore_dio_name(c->rec.cow_dio)));
	json_object_object_add(
		o, "cow_direct_io_active",
		c->rec.cow_dio_active < 0 ? NULL : json_object_new_boolean(c->rec.cow_dio_active));
	json_object_object_add(o, "cow", json_object_new_string(c->cow_path));
	vmcmd_add_u64(o, "cow_size", c->rec.cow_bytes);
	if (stat(c->cow_path, &cs) == 0)
		vmcmd_add_u64(o, "cow_allocated", (uint64_t)cs.st_blocks * 512);
	else
		json_object_object_add(o, "cow_allocated", NULL);

	r = vmdisk_get_state(c->id, &st);
	if (r < 0) {
		json_object_object_add(o, "attached", NULL);
		json_object_object_add(o, "dm_error", json_object_new_string(vmcmd_errstr(r)));
	} else {
		json_object_object_add(o, "attached", json_object_new_boolean(st.attached));
		vmdisk_names(c->id, base, overlay);
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
			vmcmd_add_u64(s, "allocated_bytes", st.status.used_sectors * 512);
			vmcmd_add_u64(s, "total_bytes", st.status.total_sectors * 512);
			vmcmd_add_u64(s, "metadata_bytes", st.status.metadata_sectors * 512);
			json_object_object_add(o, "snapshot", s);
		} else
			json_object_object_add(o, "snapshot", NULL);
	}
	vmcmd_add_time(o, "created", c->rec.created);
	vmcmd_add_time(o, "attached_at", c->rec.attached);
	vmcmd_add_time(o, "detached_at", c->rec.detached);
	if (c->rec.last_reclaim.present) {
		const struct vmstore_reclaim *rc = &c->rec.last_reclaim;
		json_object *l = json_object_new_object();

		vmcmd_add_time(l, "time", rc->time);
		json_object_object_add(l, "exit_code", json_object_new_int(rc->exit_code));
		vmcmd_add_u64(l, "reclaimed_bytes", rc->reclaimed_bytes);
		vmcmd_add_u64(l, "allocated_before", rc->allocated_before);
		vmcmd_add_u64(l, "allocated_after", rc->allocated_after);
		json_object_object_add(l, "seconds", json_object_new_double(rc->seconds));
		json_object_object_add(o, "last_reclaim", l);
	} else
		json_object_object_add(o, "last_reclaim", NULL);
	return o;
}

const char *vmcmd_cow_io(json_object *o)
{
	json_object *v;

	if (!json_object_object_get_ex(o, "cow_direct_io_active", &v) || !v)
		return "-";
	return json_object_get_boolean(v) ? "direct" : "buffered";
}

int vmcmd_open_for_reclaim(const char *state, const char *arg, struct vmcmd *c, bool *ret_is_vm)
{
	_cleanup_free_ char *rec = NULL;
	struct vmdisk_state st;
	int r;

	memset(c, 0, sizeof(*c));
	c->lock_fd = -1;
	*ret_is_vm = false;
	if (strchr(arg, '/') || !vmstore_id_valid(arg))
		return EXIT_OK;
	rec = vmstore_path(state, arg, "vm.json");
	if (!rec || access(rec, F_OK) < 0)
		return EXIT_OK;
	r = vmcmd_open(state, arg, true, c);
	if (r != EXIT_OK)
		return r;
	r = vmdisk_get_state(c->id, &st);
	if (r < 0) {
		agent_error("VM '%s': cannot tell whether it is attached: %s; not touched", c->id,
			    vmcmd_errstr(r));
		vmcmd_close(c);
		return EXIT_RUNTIME;
	}
	if (st.attached || st.base_exists) {
		agent_error("VM '%s' is attached (/dev/mapper/overlay-%s): busy, not touched "
			    "(cowpunch detach %s first)",
			    c->id, c->id, c->id);
		vmcmd_close(c);
		return EXIT_BUSY;
	}
	*ret_is_vm = true;
	return EXIT_OK;
}

int vmcmd_record_reclaim(struct vmcmd *c, int exit_code, const struct reclaim_report *rep)
{
	struct stat st;
	uint64_t now = stat(c->cow_path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
	int r;

	if (rep && rep->dry_run)
		return exit_code;
	c->rec.last_reclaim = (struct vmstore_reclaim){
		.present = true,
		.time = time(NULL),
		.exit_code = exit_code,
		.reclaimed_bytes = rep ? rep->reclaimed_bytes : 0,
		.allocated_before = rep ? rep->allocated_before : now,
		.allocated_after = rep ? rep->allocated_after : now,
		.seconds = rep ? rep->seconds : 0,
	};
	r = vmcmd_save(c);
	return r == EXIT_OK ? exit_code : r;
}
