/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The CLI face: subcommands, exit codes, output.  Only agent/ prints or exits:
 * the library (common/, reclaim/, dmops/, host/) returns -errno and says what
 * failed in a struct host_error, which the commands print with agent_error().
 * The exit statuses (EXIT_*) are in host/error.h.
 */
#ifndef COWPUNCH_AGENT_AGENT_H
#define COWPUNCH_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "host/error.h"
#include "reclaim/reclaim.h"

struct agent_command {
	const char *name;
	const char *summary;		   /* one line, for `cowpunch --help` */
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand; returns an exit code */
	void (*help)(FILE *out);	   /* full help for `cowpunch CMD --help` */
};

/* Prints "cowpunch: " + message + "\n" to stderr.  The one place errors are printed. */
void agent_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The message of the last agent_error() ("" before any), e.g. for a JSON report. */
const char *agent_last_error(void);

/*
 * --json: a command sets agent_json when it is asked for JSON and prints its
 * object with agent_print_json().  When such a command fails without having
 * printed one, main() prints {"error": the last agent_error() message,
 * "exit_code": N} on stdout, so that a machine reading stdout always gets one
 * JSON object.
 */
extern bool agent_json;
struct json_object;
/* Prints o on stdout (json-c's JSON_C_TO_STRING_* flags) and drops it. */
void agent_print_json(struct json_object *o, int flags);

/*
 * Maps a library result to an exit code: host_exit_status() (0 -> 0,
 * EBUSY/EWOULDBLOCK -> 4, EBADMSG/ESTALE -> 3, HOST_RECLAIM_REFUSED -> 5, else
 * 1).  A command whose -EINVAL means a usage error maps that itself.
 */
int agent_exit_code(int neg_errno);

/* Prints err->msg with agent_error() and returns agent_exit_code(r). */
int agent_host_error(int r, const struct host_error *err);

/*
 * For main(): a failed --json command that printed nothing on stdout says why
 * there, as {"error": ..., "exit_code": rc}.  Returns rc.
 */
int agent_json_failure(int rc);

/*
 * host_open_cow_exclusive() (host/reclaimcow.h) for a command: prints the
 * reason when it refuses.  Returns EXIT_OK and writes *ret_fd (the lock lives
 * as long as the fd), or the exit code: EXIT_BUSY when locked or attached,
 * EXIT_RUNTIME otherwise.
 */
int agent_open_cow_exclusive(const char *path, int *ret_fd);

/*
 * The options of the commands that scan files (reclaim, sparsify), parsed
 * alike: -n/--dry-run, -j/--json, -e/--engine ENGINE, -p/--progress,
 * --no-progress, --strategy STRATEGY.  Put AGENT_SCAN_LONGOPTS in the getopt_long table and
 * AGENT_SCAN_SHORTOPTS in the short options; a command's own long-only options
 * number from AGENT_OPT_FIRST_FREE.
 */
struct agent_scan_args {
	bool dry_run, json;
	int progress; /* -1 auto (stderr is a tty), 0 never, 1 always */
	enum reclaim_engine_kind engine;
	enum reclaim_strategy strategy; /* --strategy: auto (default), punch, rewrite */
};
#define AGENT_SCAN_ARGS_DEFAULT \
	((struct agent_scan_args){.progress = -1, .engine = RECLAIM_ENGINE_AUTO})
#define AGENT_OPT_NO_PROGRESS 256
#define AGENT_OPT_STRATEGY    257
#define AGENT_OPT_FIRST_FREE  258
#define AGENT_SCAN_SHORTOPTS  "nje:p"
/* clang-format off */
#define AGENT_SCAN_LONGOPTS \
	{"dry-run", no_argument, NULL, 'n'}, \
	{"json", no_argument, NULL, 'j'}, \
	{"engine", required_argument, NULL, 'e'}, \
	{"progress", no_argument, NULL, 'p'}, \
	{"no-progress", no_argument, NULL, AGENT_OPT_NO_PROGRESS}, \
	{"strategy", required_argument, NULL, AGENT_OPT_STRATEGY}
/* clang-format on */

/*
 * Takes option c (getopt_long's return, arg its optarg) into s when it is one
 * of those.  Returns 1 when it was, 0 when c is another option, -EINVAL for an
 * unknown engine or strategy (printed, naming the command cmd).
 */
int agent_scan_option(const char *cmd, int c, const char *arg, struct agent_scan_args *s);

/* Whether to show progress: --progress, or by default when stderr is a terminal. */
bool agent_want_progress(const struct agent_scan_args *s);

/*
 * Prints the summary line of a scan of path: what was reclaimed (or, dry, would
 * be), in zero units ("chunks", "blocks") and ranges.
 */
void agent_print_reclaimed(const char *path, const struct reclaim_report *r, const char *unit);

/* The strategy that ran and why: a line of the summary, and the --json keys. */
struct json_object;
void agent_print_strategy(const struct reclaim_report *r);
void agent_add_strategy_json(struct json_object *o, const struct reclaim_report *r);

/* Subcommands: one file each, agent/cmd-NAME.c, listed in the table in agent/main.c. */
int cmd_inspect(int argc, char **argv);
void cmd_inspect_help(FILE *out);
int cmd_reclaim(int argc, char **argv);
void cmd_reclaim_help(FILE *out);
int cmd_sparsify(int argc, char **argv);
int cmd_agent(int argc, char **argv);
void cmd_agent_help(FILE *out);
void cmd_sparsify_help(FILE *out);
int cmd_create(int argc, char **argv);
void cmd_create_help(FILE *out);
int cmd_attach(int argc, char **argv);
void cmd_attach_help(FILE *out);
int cmd_detach(int argc, char **argv);
void cmd_detach_help(FILE *out);
int cmd_destroy(int argc, char **argv);
void cmd_destroy_help(FILE *out);
int cmd_list(int argc, char **argv);
void cmd_list_help(FILE *out);
int cmd_status(int argc, char **argv);
void cmd_status_help(FILE *out);
int cmd_set(int argc, char **argv);
void cmd_set_help(FILE *out);
int cmd_doctor(int argc, char **argv);
void cmd_doctor_help(FILE *out);

/* What `cowpunch reclaim` does to one COW file, whoever resolved the paths. */
struct agent_reclaim_request {
	const char *cow_path;  /* the COW file (or, before vm_open_for_reclaim, the ID) */
	const char *state_dir; /* --state-dir, NULL for the default */
	bool fs_aware;	       /* also punch chunks free in the guest's ext2/3/4 */
	const char *base_path; /* fs-aware: the base image under the COW */
	int base_fd;	       /* fs-aware: the base already open (not closed here), or -1 */
	bool base_verified;    /* fs-aware: base_fd's recorded identity matched (reclaim ID) */
	uint64_t disk_size;    /* fs-aware: the VM's disk size in bytes */
	struct agent_scan_args scan;
	uint32_t read_bytes, queue_depth; /* 0: the engine's defaults */
	bool direct_reads;		  /* --direct-reads */
};

/*
 * host_reclaim_cow() for `cowpunch reclaim`: locks the COW, refuses when a loop
 * device uses it, validates the store and runs zero reclaim, plus fs-aware
 * reclaim when asked (reclaim/fsaware.h), printing the report (text or --json),
 * the progress and errors.  The caller (`reclaim COW`, or `reclaim
 * ID` with the paths and the size from the VM record) has checked the arguments.
 * Returns an exit code: 0, 1, 3 (invalid store), 4 (busy), 5 (fs-aware refused).
 * ret_report (may be NULL) is filled on 0, e.g. to record it in the VM's record;
 * ret_fs (may be NULL) is filled on 0 and 5 when req->fs_aware.
 */
struct fsaware_result;
int agent_reclaim_cow(const struct agent_reclaim_request *req, struct reclaim_report *ret_report,
		      struct fsaware_result *ret_fs);

#endif
