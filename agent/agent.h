/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The CLI face: subcommands, exit codes, output.  Only agent/ prints or exits.
 */
#ifndef COWPUNCH_AGENT_AGENT_H
#define COWPUNCH_AGENT_AGENT_H

#include <stdbool.h>
#include <stdio.h>

/* Exit codes: a contract scripts rely on (README, docs/operations.md). */
enum {
	EXIT_OK = 0,
	EXIT_RUNTIME = 1, /* I/O error, kernel refused, out of memory */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_INVALID = 3, /* invalid or damaged store, base mismatch: nothing written */
	EXIT_BUSY = 4,    /* attached, open or locked */
	EXIT_UNSAFE = 5,  /* fs-aware reclaim refused as unsafe: nothing written */
};

struct agent_command {
	const char *name;
	const char *summary; /* one line, for `cowpunch --help` */
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand; returns an exit code */
	void (*help)(FILE *out);           /* full help for `cowpunch CMD --help` */
};

/* Prints "cowpunch: " + message + "\n" to stderr.  The one place errors are printed. */
void agent_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Maps a -errno from a library to an exit code (EBUSY/EWOULDBLOCK -> 4, EBADMSG -> 3, else 1). */
int agent_exit_code(int neg_errno);

/* Subcommands: one file each, agent/cmd-NAME.c, listed in the table in agent/main.c. */
int cmd_reclaim(int argc, char **argv);
void cmd_reclaim_help(FILE *out);

#endif
