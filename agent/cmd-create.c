/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/table.h"

void cmd_create_help(FILE *out)
{
	fputs("Usage: cowpunch create ID --base IMAGE --size SIZE [--chunk-size SIZE] [--discard]\n"
	      "                       [--unsafe-discard] [--cow-direct-io auto|on|off]\n"
	      "                       [--mem-file PATH] [--json]\n"
	      "                       [--state-dir DIR]\n"
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
	      "                     not aligned to the chunk size.  Only with 4K chunks, and\n"
	      "                     only where 'cowpunch doctor' has run on the running kernel\n"
	      "                     and found its discards safe (refused otherwise)\n"
	      "  --unsafe-discard   like --discard, without asking doctor's result: for\n"
	      "                     reproducing the kernel bug on a test machine; corrupts\n"
	      "                     guest data on affected kernels\n"
	      "  --cow-direct-io auto|on|off\n"
	      "                     whether the COW file's loop device does direct I/O\n"
	      "                     (O_DIRECT: the guest's writes are not cached a second\n"
	      "                     time in the host's page cache).  auto (default): where\n"
	      "                     the COW's file system takes it, else buffered; on: attach\n"
	      "                     fails where it does not; off: buffered.  Kept in the\n"
	      "                     record for every attach; the mode in effect is recorded\n"
	      "                     at each attach and shown by status and list\n"
	      "  --mem-file PATH    the VM's memory snapshot file, recorded (made absolute)\n"
	      "                     for the agent to reclaim with the COW file; it need not\n"
	      "                     exist yet (see 'cowpunch set' to change it)\n"
	      "  --json             print a JSON object (with a Firecracker drive snippet)\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  created and attached\n"
	      "  1  runtime error (I/O, device-mapper, the VM exists already, a COW\n"
	      "     file without a record is in the way, or --discard refused: no passing\n"
	      "     discard self-test of 'cowpunch doctor' for the running kernel)\n"
	      "  2  usage error (bad ID, size or option; --mem-file naming the base image or\n"
	      "     the COW file)\n"
	      "  4  the VM is locked by another cowpunch command\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch create vm1 --base /srv/images/debian.ext4 --size 4G\n"
	      "  cowpunch create vm2 --base /srv/images/debian.ext4 --size 4G --json\n",
	      out);
}

static void create_print_json(const struct vm *c, const struct vmdisk_attached *a)
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
	json_object_object_add(o, "mem_file",
			       c->rec.mem_path[0] ? json_object_new_string(c->rec.mem_path) : NULL);
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
		{"unsafe-discard", no_argument, NULL, 'U'},
		{"cow-direct-io", required_argument, NULL, 'D'},
		{"mem-file", required_argument, NULL, 'm'},
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *base = NULL, *size_s = NULL, *chunk_s = "4K", *state_opt = NULL, *id;
	_cleanup_free_ char *base_real = NULL, *mem = NULL;
	const char *mem_opt = NULL;
	uint64_t size, chunk;
	bool discard = false, unchecked = false, json = false;
	enum loopdev_dio dio = LOOPDEV_DIO_AUTO;
	struct host_error err = {""};
	struct vm_create_spec spec;
	struct vmdisk_attached att;
	struct vm c;
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
		case 'U':
			discard = unchecked = true;
			break;
		case 'D':
			if (vmstore_dio_parse(optarg, &dio) < 0) {
				agent_error("create: --cow-direct-io '%s': want auto, on or off",
					    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'm':
			mem_opt = optarg;
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
	if (vm_check_id(id, &err) < 0) {
		agent_error("%s", err.msg);
		return EXIT_USAGE;
	}
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

	r = vm_check_base(base, size, &base_real, &err);
	if (r < 0) {
		agent_error("%s", err.msg);
		return r == -EINVAL ? EXIT_USAGE : agent_exit_code(r);
	}
	if (mem_opt) {
		r = vm_mem_path(mem_opt, &mem, &err);
		if (r < 0) {
			agent_error("create: %s", err.msg);
			return r == -EINVAL ? EXIT_USAGE : agent_exit_code(r);
		}
	}
	if (mem) {
		_cleanup_free_ char *cow = vmstore_path(vmstore_state_dir(state_opt), id, "cow");

		if (!cow) {
			agent_error("out of memory");
			return EXIT_RUNTIME;
		}
		if (vm_check_mem_file(mem, base_real, cow, &err) < 0) {
			agent_error("create: %s", err.msg);
			return EXIT_USAGE;
		}
	}
	spec = (struct vm_create_spec){
		.base_path = base_real,
		.virt_bytes = size,
		.chunk_bytes = chunk,
		.discard = discard,
		.discard_unchecked = unchecked,
		.cow_dio = dio,
		.mem_path = mem,
	};
	r = vm_create(vmstore_state_dir(state_opt), id, &spec, &c, &att, &err);
	if (r < 0)
		return agent_host_error(r, &err);
	if (json)
		create_print_json(&c, &att);
	else
		printf("%s\n", att.overlay_path);
	vm_close(&c);
	return EXIT_OK;
}
