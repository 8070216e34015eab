/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch inspect: validate a COW file's exception store and describe it.
 * Read-only: the file is opened O_RDONLY and nothing is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/snapstore.h"

void cmd_inspect_help(FILE *out)
{
	fputs("Usage: cowpunch inspect [--json] COW\n"
	      "\n"
	      "Reads the dm-snapshot persistent exception store in the COW file COW, checks\n"
	      "every rule of the format (docs/format.md) and describes the store: chunk size,\n"
	      "exceptions, metadata areas, how much of the file is allocated and how many\n"
	      "listed data chunks are already holes.  A store that breaks any rule is reported\n"
	      "with the byte offset and the rule, and exit status 3.\n"
	      "\n"
	      "COW is opened read-only; nothing is written, and the file may be in use.\n"
	      "\n"
	      "Options:\n"
	      "  --json      print one JSON object on standard output instead of text\n"
	      "  -h, --help  show this help\n"
	      "\n"
	      "Output keys (--json; the text output shows the same values):\n"
	      "  valid            true if the store passed every check, false if refused\n"
	      "  path             COW as given\n"
	      "  version          on-disk store version (always 1)\n"
	      "  chunk_bytes      chunk size in bytes\n"
	      "  chunk_sectors    chunk size in 512-byte sectors\n"
	      "  exceptions       origin chunks stored in the COW file\n"
	      "  metadata_areas   metadata areas read, including the one ending the list\n"
	      "  next_free_chunk  COW chunk the kernel would allocate next\n"
	      "  max_old_chunk    highest origin chunk with an exception\n"
	      "  file_size        size of COW in bytes\n"
	      "  file_chunks      whole chunks in COW\n"
	      "  allocated_bytes  bytes COW holds on disk (st_blocks * 512)\n"
	      "  data_chunks_listed  data chunks the store lists (= exceptions)\n"
	      "  hole_chunks      listed data chunks that are entirely holes (SEEK_DATA/SEEK_HOLE)\n"
	      "  error            on refusal only: { \"offset\": byte offset, \"rule\": text }\n"
	      "\n"
	      "Exit status:\n"
	      "  0  the store is valid\n"
	      "  1  runtime error: COW cannot be opened or read\n"
	      "  2  usage error\n"
	      "  3  invalid or damaged store (also printed with --json, with \"valid\": false)\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch inspect /var/lib/vms/vm1.cow\n"
	      "  cowpunch inspect --json vm1.cow | jq .exceptions\n",
	      out);
}

static void print_json(json_object *o)
{
	agent_print_json(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct snapstore_info info;
	struct snapstore_error err = {0};
	_cleanup_close_ int fd = -1;
	uint64_t holes = 0;
	const char *path;
	bool json = false;
	struct stat st;
	int c, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = agent_json = true;
			break;
		case 'h':
			cmd_inspect_help(stdout);
			return EXIT_OK;
		default:
			agent_error("inspect: unknown option '%s' (see 'cowpunch inspect --help')",
				    argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		agent_error("inspect: expected one COW file (see 'cowpunch inspect --help')");
		return EXIT_USAGE;
	}
	path = argv[optind];

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		agent_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	if (fstat(fd, &st) < 0) {
		agent_error("%s: cannot stat: %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	r = snapstore_load(fd, &info, NULL, NULL, &err);
	if (r == -EBADMSG) {
		agent_error("%s: invalid store at byte %" PRIu64 ": %s", path, err.offset,
			    err.rule);
		if (json) {
			json_object *o = json_object_new_object(), *e = json_object_new_object();

			json_object_object_add(o, "valid", json_object_new_boolean(0));
			json_object_object_add(o, "path", json_object_new_string(path));
			add_u64(o, "file_size", (uint64_t)st.st_size);
			add_u64(o, "allocated_bytes", (uint64_t)st.st_blocks * 512);
			add_u64(e, "offset", err.offset);
			json_object_object_add(e, "rule", json_object_new_string(err.rule));
			json_object_object_add(o, "error", e);
			print_json(o);
		}
		return EXIT_INVALID;
	}
	if (r == -EINVAL) {
		agent_error("%s: not a regular file or block device", path);
		return EXIT_RUNTIME;
	}
	if (r < 0) {
		agent_error("%s: cannot read the store: %s", path, strerror(-r));
		return agent_exit_code(r);
	}
	r = snapstore_hole_chunks(fd, &info, &holes);
	if (r < 0) {
		agent_error("%s: cannot map holes (SEEK_DATA/SEEK_HOLE): %s", path, strerror(-r));
		snapstore_info_free(&info);
		return EXIT_RUNTIME;
	}

	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "valid", json_object_new_boolean(1));
		json_object_object_add(o, "path", json_object_new_string(path));
		add_u64(o, "version", info.hdr.version);
		add_u64(o, "chunk_bytes", info.geom.chunk_bytes);
		add_u64(o, "chunk_sectors", info.geom.chunk_sectors);
		add_u64(o, "exceptions", info.exceptions);
		add_u64(o, "metadata_areas", info.metadata_areas);
		add_u64(o, "next_free_chunk", info.next_free_chunk);
		add_u64(o, "max_old_chunk", info.max_old_chunk);
		add_u64(o, "file_size", info.file_size);
		add_u64(o, "file_chunks", info.geom.file_chunks);
		add_u64(o, "allocated_bytes", (uint64_t)st.st_blocks * 512);
		add_u64(o, "data_chunks_listed", info.exceptions);
		add_u64(o, "hole_chunks", holes);
		print_json(o);
	} else {
		char a[32], b[32], d[32];
		uint64_t cb = info.geom.chunk_bytes;

		printf("%-18s %s\n", "path:", path);
		printf("%-18s %s\n", "valid:", "yes");
		printf("%-18s %" PRIu32 "\n", "version:", info.hdr.version);
		printf("%-18s %s (%" PRIu32 " sectors)\n",
		       "chunk size:", util_format_bytes(cb, a, sizeof(a)), info.geom.chunk_sectors);
		printf("%-18s %" PRIu64 " (%s of data)\n", "exceptions:", info.exceptions,
		       util_format_bytes(info.exceptions * cb, a, sizeof(a)));
		printf("%-18s %" PRIu64 "\n", "metadata areas:", info.metadata_areas);
		printf("%-18s %" PRIu64 "\n", "next free chunk:", info.next_free_chunk);
		printf("%-18s %s (%" PRIu64 " bytes, %" PRIu64 " chunks)\n",
		       "file size:", util_format_bytes(info.file_size, b, sizeof(b)),
		       info.file_size, info.geom.file_chunks);
		printf("%-18s %s (%" PRIu64 " bytes)\n",
		       "allocated:", util_format_bytes((uint64_t)st.st_blocks * 512, d, sizeof(d)),
		       (uint64_t)st.st_blocks * 512);
		printf("%-18s %" PRIu64 " (%s)\n", "hole chunks:", holes,
		       util_format_bytes(holes * cb, a, sizeof(a)));
	}
	snapstore_info_free(&info);
	return EXIT_OK;
}
