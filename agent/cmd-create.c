/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/table.h"

void cmd_create_help(FILE *out)
{
	fputs("Usage: cowpunch create ID --base IMAGE --size SIZE [--chunk-size SIZE] [--discard]\n"
	      "                       [--cow-direct-io auto|on|off] [--json] [--state-dir DIR]\n"
	      "\n"
	      "Creates VM ID's disk and attaches it: a sparse COW file and a record in\n"
	      "STATE/ID/, then base-ID (the base image through a read-only loop shared by every\n"
	      "VM on that image, extended with zeros to SIZE) and overlay-ID (a persistent\n"
	      "dm-snapshot whose exception store is the COW file).  Prints the device to give\n"
	      "the VM: /dev/mapper/overlay-ID.\n"
	      "\n"
	      "The COW file is sized with LVM2's formula (room for an exception for every chunk\n"
	      "plus its metadata), so a guest that writes its whole disk never overflows it.\n"
	      "It is sparse: only what the guest writes takes space.  The base image must not\n"
	      "change afterwards: its size, mtime and a sampled sha256 are recorded, and attach\n"
	      "refuses a changed base.  On failure nothing is left behind.\n"
	      "\n"
	      "A COW file already in STATE/ID/ without a record (vm.json) is refused: it may\n"
	      "be a VM whose record was lost.  Only the leftover of a killed create (marked by\n"
	      "STATE/ID/creating, written before the COW file and renamed to vm.json once it\n"
	      "exists) is removed and made anew.\n"
	      "\n"
	      "Options:\n"
	      "  --base IMAGE       the shared, read-only base image (size a multiple of 512)\n"
	      "  --size SIZE        the disk size the VM sees, >= the base image (e.g. 10G;\n"
	      "                     binary units; a multiple of the chunk size)\n"
	      "  --chunk-size SIZE  snapshot chunk size, a power of two from 4K to 1G\n"
	      "                     (default 4K: the finest granularity for reclaim)\n"
	      "  --discard          pass guest discards to the COW file (discard_zeroes_cow).\n"
	      "                     Risky: current kernels corrupt other chunks on a discard\n"
	      "                     not aligned to the chunk size.  Only with 4K chunks.\n"
	      "  --cow-direct-io auto|on|off\n"
	      "                     whether the COW file's loop device does direct I/O\n"
	      "                     (O_DIRECT: the guest's writes are not cached a second\n"
	      "                     time in the host's page cache).  auto (default): where\n"
	      "                     the COW's file system takes it, else buffered; on: attach\n"
	      "                     fails where it does not; off: buffered.  Kept in the\n"
	      "                     record for every attach; the mode in effect is recorded\n"
	      "                     at each attach and shown by status and list\n"
	      "  --json             print a JSON object (with a Firecracker drive snippet)\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  created and attached\n"
	      "  1  runtime error (I/O, device-mapper, the VM exists already, or a COW\n"
	      "     file without a record is in the way)\n"
	      "  2  usage error (bad ID, size or option)\n"
	      "  4  the VM is locked by another cowpunch command\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch create vm1 --base /srv/images/debian.ext4 --size 4G\n"
	      "  cowpunch create vm2 --base /srv/images/debian.ext4 --size 4G --json\n",
	      out);
}

/*
 * Undoes a failed create.  A committed record first turns back into the
 * marker (one rename), so that a kill anywhere in here leaves a COW beside
 * the marker, which the next create removes: never a COW without record and
 * marker, which create refuses to touch.  When that rename fails the VM stays
 * as it is (record and COW, detached).
 */
static void create_fail_undo(const struct vmcmd *c, const char *dir, bool committed)
{
	_cleanup_free_ char *lock = vmstore_path(c->state, c->id, "lock");

	if (committed && vmstore_marker_revert(c->state, c->id) < 0)
		return;
	unlink(c->cow_path);
	vmstore_marker_remove(c->state, c->id);
	if (lock)
		unlink(lock);
	rmdir(dir);
}

/*
 * What may be in STATE/ID before create makes anything (under the VM's lock,
 * no record): nothing, the marker alone, or a COW.  A COW beside the marker is
 * a killed create's (no guest wrote to it) and is removed.  A COW without the
 * marker can be a VM whose vm.json was lost or is not restored yet: refused.
 * Returns an exit code.
 */
static int create_check_leftover(const struct vmcmd *c)
{
	struct stat st;
	int r;

	if (lstat(c->cow_path, &st) < 0) {
		if (errno == ENOENT)
			return EXIT_OK;
		agent_error("%s: %s", c->cow_path, strerror(errno));
		return EXIT_RUNTIME;
	}
	r = vmstore_marker_exists(c->state, c->id);
	if (r < 0) {
		agent_error("%s/%s/" VMSTORE_MARKER ": %s", c->state, c->id, strerror(-r));
		return EXIT_RUNTIME;
	}
	if (r == 0) {
		agent_error("%s exists but VM '%s' has no record (%s/%s/vm.json) and no create of "
			    "it was under way: it may be the disk of a VM whose record was lost, "
			    "so it is left alone.  To adopt it, put its record back and run "
			    "'cowpunch attach %s'; to create VM '%s' anew, remove %s first",
			    c->cow_path, c->id, c->state, c->id, c->id, c->id, c->cow_path);
		return EXIT_RUNTIME;
	}
	if (unlink(c->cow_path) < 0) {
		agent_error("%s: cannot remove what a killed create left: %s", c->cow_path,
			    strerror(errno));
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

static void create_print_json(const struct vmcmd *c, const struct vmdisk_attached *a)
{
	json_object *o = json_object_new_object(), *fc = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(c->id));
	json_object_object_add(o, "device", json_object_new_string(a->overlay_path));
	json_object_object_add(o, "virtual_size",
			       json_object_new_int64((int64_t)c->rec.virt_bytes));
	json_object_object_add(o, "chunk_size", json_object_new_int64((int64_t)c->rec.chunk_bytes));
	json_object_object_add(o, "cow", json_object_new_string(c->cow_path));
	json_object_object_add(o, "cow_size", json_object_new_int64((int64_t)c->rec.cow_bytes));
	json_object_object_add(o, "base", json_object_new_string(c->rec.base_path));
	json_object_object_add(o, "base_loop", json_object_new_string(a->base_loop));
	json_object_object_add(o, "base_loop_shared", json_object_new_boolean(a->base_loop_shared));
	json_object_object_add(o, "discard", json_object_new_boolean(c->rec.discard));
	json_object_object_add(o, "cow_direct_io",
			       json_object_new_string(vmstore_dio_name(c->rec.cow_dio)));
	json_object_object_add(o, "cow_direct_io_active",
			       json_object_new_boolean(a->cow_direct_io));
	/* Firecracker's PUT /drives/{drive_id} body. */
	json_object_object_add(fc, "drive_id", json_object_new_string("rootfs"));
	json_object_object_add(fc, "path_on_host", json_object_new_string(a->overlay_path));
	json_object_object_add(fc, "is_root_device", json_object_new_boolean(true));
	json_object_object_add(fc, "is_read_only", json_object_new_boolean(false));
	json_object_object_add(o, "firecracker_drive", fc);
	vmcmd_print_json(o);
	json_object_put(o);
}

int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"base", required_argument, NULL, 'b'},
		{"size", required_argument, NULL, 's'},
		{"chunk-size", required_argument, NULL, 'c'},
		{"discard", no_argument, NULL, 'd'},
		{"cow-direct-io", required_argument, NULL, 'D'},
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *base = NULL, *size_s = NULL, *chunk_s = "4K", *state_opt = NULL, *id;
	_cleanup_free_ char *base_real = NULL, *dir = NULL, *json_path = NULL;
	uint64_t size, chunk;
	bool discard = false, json = false, committed = false;
	enum loopdev_dio dio = LOOPDEV_DIO_AUTO;
	struct vmdisk_attached att;
	struct vmcmd c = {.lock_fd = -1};
	struct stat st;
	const char *state;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			base = optarg;
			break;
		case 's':
			size_s = optarg;
			break;
		case 'c':
			chunk_s = optarg;
			break;
		case 'd':
			discard = true;
			break;
		case 'D':
			if (vmstore_dio_parse(optarg, &dio) < 0) {
				agent_error("create: --cow-direct-io '%s': want auto, on or off",
					    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'j':
			json = agent_json = true;
			break;
		case 'S':
			state_opt = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		agent_error("create: want exactly one VM ID (see 'cowpunch create --help')");
		return EXIT_USAGE;
	}
	id = argv[optind];
	r = vmcmd_check_id(id);
	if (r != EXIT_OK)
		return r;
	if (!base || !size_s) {
		agent_error("create: --base and --size are required");
		return EXIT_USAGE;
	}
	if (util_parse_size(size_s, &size) < 0 || size == 0 || size % 512) {
		agent_error("create: --size '%s': want a size that is a multiple of 512 bytes",
			    size_s);
		return EXIT_USAGE;
	}
	if (util_parse_size(chunk_s, &chunk) < 0 || chunk % 512 ||
	    !dmops_chunk_sectors_valid(chunk / 512)) {
		agent_error("create: --chunk-size '%s': want a power of two from 4K to 1G",
			    chunk_s);
		return EXIT_USAGE;
	}
	if (size % chunk) {
		agent_error("create: --size %llu is not a multiple of the chunk size (%llu): the "
			    "snapshot works in whole chunks",
			    (unsigned long long)size, (unsigned long long)chunk);
		return EXIT_USAGE;
	}
	if (discard && chunk != 4096) {
		agent_error("create: --discard needs --chunk-size 4K: with larger chunks, guest "
			    "discards damage the filesystem on current kernels");
		return EXIT_USAGE;
	}
	if (discard)
		fprintf(stderr,
			"cowpunch: warning: --discard enables discard_zeroes_cow.  Linux 6.1 and "
			"6.12 pass a discard\n"
			"cowpunch: warning: that is not chunk-aligned to the COW at the remapped "
			"offset without cutting\n"
			"cowpunch: warning: it at the chunk end, zeroing part of the NEXT COW "
			"chunk (another block's data,\n"
			"cowpunch: warning: or a metadata area: exceptions lost on re-attach).  Use "
			"only with guests\n"
			"cowpunch: warning: whose filesystem has 4 KiB blocks, and prefer offline "
			"reclaim (cowpunch reclaim).\n");

	base_real = realpath(base, NULL);
	if (!base_real) {
		agent_error("%s: %s", base, strerror(errno));
		return EXIT_RUNTIME;
	}
	if (stat(base_real, &st) < 0 || !S_ISREG(st.st_mode)) {
		agent_error("%s: not a regular file", base_real);
		return EXIT_USAGE;
	}
	if (st.st_size == 0 || st.st_size % 512) {
		agent_error("%s: size %lld is not a non-zero multiple of 512 bytes", base_real,
			    (long long)st.st_size);
		return EXIT_USAGE;
	}
	if ((uint64_t)st.st_size > size) {
		agent_error("create: --size %llu is smaller than the base image (%lld bytes)",
			    (unsigned long long)size, (long long)st.st_size);
		return EXIT_USAGE;
	}

	state = vmstore_state_dir(state_opt);
	r = vmstore_mkdir(state);
	if (r < 0) {
		agent_error("%s: %s", state, strerror(-r));
		return EXIT_RUNTIME;
	}
	dir = vmstore_path(state, id, NULL);
	json_path = vmstore_path(state, id, "vm.json");
	c.cow_path = vmstore_path(state, id, "cow");
	c.state = state;
	c.id = id;
	if (!dir || !json_path || !c.cow_path) {
		agent_error("out of memory");
		vmcmd_close(&c);
		return EXIT_RUNTIME;
	}
	r = vmstore_mkdir(dir);
	if (r < 0) {
		agent_error("%s: %s", dir, strerror(-r));
		vmcmd_close(&c);
		return EXIT_RUNTIME;
	}
	c.lock_fd = vmstore_lock_vm(state, id);
	if (c.lock_fd < 0) {
		agent_error("VM '%s' is locked by another cowpunch command", id);
		r = agent_exit_code(c.lock_fd);
		vmcmd_close(&c);
		return r;
	}
	vmstore_remove_stale_temps(state, id);
	if (access(json_path, F_OK) == 0) {
		agent_error("VM '%s' exists already in %s (cowpunch destroy %s first)", id, state,
			    id);
		vmcmd_close(&c);
		return EXIT_RUNTIME;
	}
	r = create_check_leftover(&c);
	if (r != EXIT_OK) {
		vmcmd_close(&c);
		return r;
	}

	memset(&c.rec, 0, sizeof(c.rec));
	snprintf(c.rec.id, sizeof(c.rec.id), "%s", id);
	snprintf(c.rec.base_path, sizeof(c.rec.base_path), "%s", base_real);
	c.rec.virt_bytes = size;
	c.rec.chunk_bytes = chunk;
	c.rec.discard = discard;
	c.rec.cow_dio = dio;
	c.rec.cow_dio_active = -1;
	c.rec.created = time(NULL);
	r = vmstore_identity_read(base_real, &c.rec.base);
	if (r < 0) {
		agent_error("%s: %s", base_real, strerror(-r));
		r = EXIT_RUNTIME;
		goto undo;
	}
	r = dmops_cow_bytes(size, (uint32_t)(chunk / 512), &c.rec.cow_bytes);
	if (r < 0) {
		agent_error("create: %s", strerror(-r));
		r = EXIT_RUNTIME;
		goto undo;
	}
	/* The marker is durable before the COW exists: see vmstore_marker_write(). */
	r = vmstore_marker_write(state, &c.rec);
	if (r < 0) {
		agent_error("%s/%s/" VMSTORE_MARKER ": %s", state, id, strerror(-r));
		r = EXIT_RUNTIME;
		goto undo;
	}
	r = vmdisk_cow_create(c.cow_path, size, (uint32_t)(chunk / 512));
	if (r == 0)
		r = vmstore_sync_dir_of(c.cow_path);
	if (r < 0) {
		agent_error("%s: cannot create the COW file: %s", c.cow_path, strerror(-r));
		r = EXIT_RUNTIME;
		goto undo;
	}
	r = vmstore_marker_commit(state, id);
	if (r < 0) {
		agent_error("%s: cannot save the record: %s", json_path, strerror(-r));
		r = EXIT_RUNTIME;
		goto undo;
	}
	committed = true;
	r = vmcmd_attach(&c, &att);
	if (r != EXIT_OK)
		goto undo;
	if (json)
		create_print_json(&c, &att);
	else
		printf("%s\n", att.overlay_path);
	vmcmd_close(&c);
	return EXIT_OK;

undo:
	create_fail_undo(&c, dir, committed);
	vmcmd_close(&c);
	return r;
}
