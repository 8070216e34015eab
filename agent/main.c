/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch: builds layered dm-snapshot disks for VMs and gives back the space
 * their COW files no longer need.  Table-driven dispatch to agent/cmd-*.c.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/agent.h"
#include "common/cleanup.h"

static int cmd_version(int argc, char **argv);
static void cmd_version_help(FILE *out);

static const struct agent_command commands[] = {
	/* Keep in the order a user meets them: inspect/reclaim, then the VM lifecycle. */
	{"inspect", "validate a COW file's exception store and describe it", cmd_inspect,
	 cmd_inspect_help},
	{"reclaim", "punch the all-zero data chunks out of a COW file", cmd_reclaim,
	 cmd_reclaim_help},
	{"sparsify", "punch the all-zero blocks out of files (memory snapshots, raw images)",
	 cmd_sparsify, cmd_sparsify_help},
	{"create", "create a VM's layered disk and attach it", cmd_create, cmd_create_help},
	{"attach", "build a VM's devices from its record", cmd_attach, cmd_attach_help},
	{"detach", "tear down a VM's devices (hibernate)", cmd_detach, cmd_detach_help},
	{"destroy", "detach a VM and delete its COW and record", cmd_destroy, cmd_destroy_help},
	{"list", "list the VMs in the state directory", cmd_list, cmd_list_help},
	{"status", "show one VM: attached, sizes, COW use, last reclaim", cmd_status,
	 cmd_status_help},
	{"set", "change a VM's record: its memory snapshot file", cmd_set, cmd_set_help},
	{"doctor", "check the host: device-mapper, the discard self-test, io_uring, leftovers",
	 cmd_doctor, cmd_doctor_help},
	{"agent", "reclaim every hibernated VM periodically; serve metrics", cmd_agent,
	 cmd_agent_help},
	{"version", "print the version", cmd_version, cmd_version_help},
};

static void usage(FILE *out)
{
	fputs("Usage: cowpunch COMMAND [OPTIONS] ...\n"
	      "\n"
	      "Layered copy-on-write disks for hibernated VMs (dm-snapshot over a shared base\n"
	      "image), and reclaim of the space their COW files no longer need.\n"
	      "\n"
	      "Commands:\n",
	      out);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fputs("\n"
	      "Run 'cowpunch COMMAND --help' for a command's options.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  success\n"
	      "  1  runtime error (I/O, kernel, memory)\n"
	      "  2  usage error\n"
	      "  3  invalid or damaged store, or base image mismatch: nothing was written\n"
	      "  4  busy: the COW file is attached, open or locked\n"
	      "  5  fs-aware reclaim refused as unsafe: nothing was written\n"
	      "\n"
	      "With --json, a command that fails without printing its JSON object prints\n"
	      "{\"error\": MESSAGE, \"exit_code\": N} on standard output instead; the\n"
	      "message also goes to standard error, as without --json.\n",
	      out);
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("cowpunch %s\n", COWPUNCH_VERSION);
	return EXIT_OK;
}

static void cmd_version_help(FILE *out)
{
	fputs("Usage: cowpunch version\n\nPrints the version of cowpunch.\n", out);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
				if (!strcmp(argv[2], commands[i].name)) {
					commands[i].help(stdout);
					return EXIT_OK;
				}
		}
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("cowpunch %s\n", COWPUNCH_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		for (int a = 2; a < argc; a++) {
			if (!strcmp(argv[a], "--"))
				break;
			if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
				commands[i].help(stdout);
				return EXIT_OK;
			}
		}
		return agent_json_failure(commands[i].run(argc - 1, argv + 1));
	}
	agent_error("unknown command '%s' (see 'cowpunch --help')", argv[1]);
	return EXIT_USAGE;
}
