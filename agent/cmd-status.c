/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/util.h"

void cmd_status_help(FILE *out)
{
	fputs("Usage: cowpunch status ID [--json] [--state-dir DIR]\n"
	      "\n"
	      "Shows VM ID: whether it is attached (and how many openers its overlay has),\n"
	      "its virtual size and chunk size, what its COW file holds on the host (st_blocks),\n"
	      "the snapshot's own accounting while attached (allocated and metadata bytes,\n"
	      "valid/invalid/overflow), its base image, whether its COW loop does direct I/O\n"
	      "(as recorded at the last attach, and the create option asking for it), its\n"
	      "memory snapshot file (mem_file, and what it holds on the host: mem_allocated,\n"
	      "null when the file is missing), and the last reclaim: what it gave back, split\n"
	      "into zero chunks, chunks free in the guest's file system and the memory file,\n"
	      "the fs-aware outcome and the error when it failed.  Takes no lock.\n"
	      "\n"
	      "Options:\n"
	      "  --json           print one JSON object\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  shown\n"
	      "  1  runtime error (no such VM)\n"
	      "  2  usage error (bad ID)\n"
	      "  3  the record is damaged\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch status vm1 --json | jq .cow_allocated\n",
	      out);
}

static const char *status_bytes(json_object *o, const char *key, char *buf, size_t len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return "-";
	return util_format_bytes((uint64_t)json_object_get_int64(v), buf, len);
}

static const char *status_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return "-";
	return json_object_get_string(v);
}

static bool status_has(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && v;
}

static void status_print_text(json_object *o)
{
	char b1[32], b2[32], b3[32];
	json_object *att, *snap, *rc;

	json_object_object_get_ex(o, "attached", &att);
	printf("VM %s\n", status_str(o, "id"));
	if (!att)
		printf("  attached:      unknown (%s)\n", status_str(o, "dm_error"));
	else if (json_object_get_boolean(att))
		printf("  attached:      yes, %s (%s opener(s))\n", status_str(o, "device"),
		       status_str(o, "open_count"));
	else
		printf("  attached:      no\n");
	printf("  virtual size:  %s, chunk %s%s\n", status_bytes(o, "virtual_size", b1, 32),
	       status_bytes(o, "chunk_size", b2, 32),
	       json_object_get_boolean(json_object_object_get(o, "discard")) ? ", discard on" : "");
	printf("  base:          %s\n", status_str(o, "base"));
	printf("  cow:           %s\n", status_str(o, "cow"));
	printf("  cow allocated: %s of %s (sparse)\n", status_bytes(o, "cow_allocated", b1, 32),
	       status_bytes(o, "cow_size", b2, 32));
	if (!status_has(o, "mem_file"))
		printf("  mem file:      none\n");
	else if (!status_has(o, "mem_allocated"))
		printf("  mem file:      %s (missing)\n", status_str(o, "mem_file"));
	else
		printf("  mem file:      %s, %s allocated\n", status_str(o, "mem_file"),
		       status_bytes(o, "mem_allocated", b1, 32));
	if (strcmp(vmcmd_cow_io(o), "-") == 0)
		printf("  cow I/O:       not known yet (--cow-direct-io %s)\n",
		       status_str(o, "cow_direct_io"));
	else
		printf("  cow I/O:       %s at the last attach (--cow-direct-io %s)\n",
		       vmcmd_cow_io(o), status_str(o, "cow_direct_io"));
	if (json_object_object_get_ex(o, "snapshot", &snap) && snap)
		printf("  snapshot:      %s, %s used (%s metadata) of %s\n",
		       status_str(snap, "state"), status_bytes(snap, "allocated_bytes", b1, 32),
		       status_bytes(snap, "metadata_bytes", b2, 32),
		       status_bytes(snap, "total_bytes", b3, 32));
	printf("  created:       %s\n", status_str(o, "created"));
	printf("  last attach:   %s\n", status_str(o, "attached_at"));
	printf("  last detach:   %s\n", status_str(o, "detached_at"));
	if (json_object_object_get_ex(o, "last_reclaim", &rc) && rc) {
		printf("  last reclaim:  %s, exit %s, %s given back (%s -> %s)\n",
		       status_str(rc, "time"), status_str(rc, "exit_code"),
		       status_bytes(rc, "reclaimed_bytes", b1, 32),
		       status_bytes(rc, "allocated_before", b2, 32),
		       status_bytes(rc, "allocated_after", b3, 32));
		printf("                 zero chunks %s, fs-free chunks %s, memory file %s%s%s%s\n",
		       status_bytes(rc, "zero_bytes", b1, 32),
		       status_bytes(rc, "fs_free_bytes", b2, 32),
		       status_bytes(rc, "mem_reclaimed_bytes", b3, 32),
		       status_has(rc, "fs_aware") ? "; fs-aware " : "",
		       status_has(rc, "fs_aware") ? status_str(rc, "fs_aware") : "",
		       json_object_get_boolean(json_object_object_get(rc, "interrupted"))
			       ? "; interrupted"
			       : "");
		if (*status_str(rc, "error"))
			printf("                 error: %s\n", status_str(rc, "error"));
	} else
		printf("  last reclaim:  never\n");
}

int cmd_status(int argc, char **argv)
{
	const char *state, *id;
	bool json = false;
	json_object *o;
	struct vm v;
	int r;

	r = vmcmd_parse_id_args(argc, argv, &json, &state, &id);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_open(state, id, false, &v);
	if (r != EXIT_OK)
		return r;
	o = vm_describe(&v);
	vm_close(&v);
	if (!o) {
		agent_error("out of memory");
		return EXIT_RUNTIME;
	}
	if (json)
		vmcmd_print_json(o);
	else
		status_print_text(o);
	json_object_put(o);
	return EXIT_OK;
}
