/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * `cowpunch doctor`: checks whether this host can be trusted with cowpunch's
 * disks, as data.  Each check says ok, warning or fail, why (reason) and what
 * to do (action); the leftover checks also list what they found (items) and,
 * when asked to fix, what they removed.  Library code: nothing is printed.
 *
 * The discard self-test's result is kept in STATE/.doctor/discard-RELEASE.json
 * (RELEASE: uname -r), and `create --discard` is allowed only when the result
 * kept for the running kernel (release and build) says its unaligned discards
 * leave other chunks alone (doctor_discard_allowed()).
 */
#ifndef COWPUNCH_HOST_DOCTOR_H
#define COWPUNCH_HOST_DOCTOR_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "host/error.h"

enum doctor_status {
	DOCTOR_OK,
	DOCTOR_WARNING, /* works, with a limit the reason names */
	DOCTOR_FAIL,	/* cowpunch cannot be trusted here until the action is taken */
};

/* Something a leftover check found: a device, a lock, a file. */
struct doctor_item {
	char kind[16]; /* "dm", "loop", "lock", "temp", "create", "selftest", "record", "cow" */
	char name[PATH_MAX];	     /* device name or path */
	char detail[PATH_MAX + 512]; /* what it is and why it is a leftover */
	bool fixable;		     /* --fix may remove it (cowpunch made it, nothing uses it) */
	bool fixed;		     /* --fix removed it */
	char error[256];	     /* why it was not removed ("" when fixed or not asked) */
};

struct doctor_check {
	const char *name; /* "device-mapper", "dm-targets", ... (static) */
	enum doctor_status status;
	char reason[1024]; /* what was found */
	char action[512];  /* what to do about it ("" when nothing) */
	struct doctor_item *items;
	unsigned nitems;
};

enum {
	DOCTOR_DM,
	DOCTOR_DM_TARGETS,
	DOCTOR_DISCARD,
	DOCTOR_IO_URING,
	DOCTOR_DIRECT_IO,
	DOCTOR_PUNCH_HOLE,
	DOCTOR_LEFTOVER_DEVICES,
	DOCTOR_STALE_LOCKS,
	DOCTOR_RECORDS,
	DOCTOR_NCHECKS,
};

struct doctor_report {
	struct doctor_check checks[DOCTOR_NCHECKS];
};

/* Where doctor reads the kernel's views ("/proc", "/sys"; unit tests point elsewhere). */
extern const char *doctor_proc_dir;
extern const char *doctor_sys_dir;

/*
 * Runs every check for state directory state (made when missing: the self-test
 * and the file system checks work in STATE/.doctor), removing leftovers when
 * fix.  Returns 0 with *ret filled (free it with doctor_report_free()) or
 * -ENOMEM; a check that cannot run says so as its own result.
 */
int doctor_run(const char *state, bool fix, struct doctor_report *ret);
void doctor_report_free(struct doctor_report *r);

/* True when some check failed (the exit status of `cowpunch doctor` is then 1). */
bool doctor_report_failed(const struct doctor_report *r);

/* "ok", "warning", "fail". */
const char *doctor_status_name(enum doctor_status s);

/* The checks doctor_run() makes, for tests.  Each fills *c (name included). */
void doctor_check_dm(struct doctor_check *c_dm, struct doctor_check *c_targets);
void doctor_check_io_uring(struct doctor_check *c);
void doctor_check_state_fs(const char *state, struct doctor_check *c_dio,
			   struct doctor_check *c_punch);
void doctor_check_devices(const char *state, bool fix, struct doctor_check *c);
void doctor_check_locks(const char *state, bool fix, struct doctor_check *c);
void doctor_check_records(const char *state, struct doctor_check *c);

/*
 * The discard self-test (docs/kernel-facts.md, the discard corruption): on
 * scratch files in STATE/.doctor/selftest-PID-*, its own loop devices and dm
 * devices cowpunch-doctor-PID-{origin,snap}, all removed before it returns:
 * a 1 MiB disk like a VM's with --discard (two linear maps as origin, as
 * base-ID's image and tail; a persistent snapshot with 4 KiB chunks and
 * discard_zeroes_cow), origin chunks 11, 10 and 200 written
 * (COW chunks 2, 3, 4), then a 2 KiB discard from byte 10*4096+3072, which
 * runs past the end of chunk 10; chunks 11 and 200 and the rest of chunk 10
 * must read back as written.  Fills *c and records the result for the running
 * kernel (doctor_discard_record()).
 */
void doctor_discard_selftest(const char *state, struct doctor_check *c);

/* What the self-test found, as kept in its record. */
enum doctor_discard_result {
	DOCTOR_DISCARD_SAFE,	    /* neighbouring chunks unchanged */
	DOCTOR_DISCARD_CORRUPTS,    /* a neighbouring chunk changed */
	DOCTOR_DISCARD_UNSUPPORTED, /* no discard_zeroes_cow, or the snapshot refuses discards */
};

/*
 * Keeps the result for kernel release/version (uname -r / -v) in
 * STATE/.doctor/discard-RELEASE.json (atomically).  0 or -errno.
 */
int doctor_discard_record(const char *state, const char *release, const char *version,
			  enum doctor_discard_result result, const char *detail);

/*
 * Whether `create --discard` may go ahead for kernel release/version: 0 when
 * its kept result is "safe"; -EPERM when there is none, it is for another
 * build of that release, or it says the kernel corrupts or cannot discard
 * (err says which, and what to run); -EBADMSG on a damaged record; -errno.
 */
int doctor_discard_verdict(const char *state, const char *release, const char *version,
			   struct host_error *err);

/* doctor_discard_verdict() for the running kernel. */
int doctor_discard_allowed(const char *state, struct host_error *err);

/* Adds an item to c; returns it (NULL on no memory: the check then says so). */
struct doctor_item *doctor_add_item(struct doctor_check *c, const char *kind, const char *name);

/* printf into c->reason / c->action, setting c->status. */
void doctor_set(struct doctor_check *c, enum doctor_status s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void doctor_set_action(struct doctor_check *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* STATE/.doctor (made when missing, with STATE) into a malloc()ed string.  0 or -errno. */
int doctor_dir(const char *state, char **ret);

/* True while process pid exists (kill(pid, 0)). */
bool doctor_pid_alive(long pid);

#endif
