/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * `cowpunch doctor`'s report and its host checks: device-mapper and its
 * targets, io_uring, O_DIRECT and PUNCH_HOLE on the state directory's file
 * system.  The discard self-test is in discardtest.c, the leftover checks in
 * leftovers.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/dmdev.h"
#include "host/doctor.h"
#include "host/vmstore.h"

const char *doctor_proc_dir = "/proc";
const char *doctor_sys_dir = "/sys";

/* The targets a VM disk uses: snapshot (overlay-ID), linear and zero (base-ID). */
static const char *const doctor_targets[] = {"snapshot", "linear", "zero"};

/* The scratch file of the file system checks: 64 KiB written, 32 KiB of it punched. */
#define DOCTOR_FS_BYTES	   (64 * 1024)
#define DOCTOR_PUNCH_BYTES (32 * 1024)

const char *doctor_status_name(enum doctor_status s)
{
	switch (s) {
	case DOCTOR_OK:
		return "ok";
	case DOCTOR_WARNING:
		return "warning";
	default:
		return "fail";
	}
}

void doctor_set(struct doctor_check *c, enum doctor_status s, const char *fmt, ...)
{
	va_list ap;

	c->status = s;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

void doctor_set_action(struct doctor_check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->action, sizeof(c->action), fmt, ap);
	va_end(ap);
}

struct doctor_item *doctor_add_item(struct doctor_check *c, const char *kind, const char *name)
{
	struct doctor_item *grown = realloc(c->items, sizeof(*grown) * (c->nitems + 1));
	struct doctor_item *it;

	if (!grown)
		return NULL;
	c->items = grown;
	it = &c->items[c->nitems++];
	memset(it, 0, sizeof(*it));
	snprintf(it->kind, sizeof(it->kind), "%s", kind);
	snprintf(it->name, sizeof(it->name), "%s", name);
	return it;
}

bool doctor_pid_alive(long pid)
{
	if (pid <= 0)
		return false;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int doctor_dir(const char *state, char **ret)
{
	char *dir;
	int r;

	r = vmstore_mkdir(state);
	if (r < 0)
		return r;
	if (asprintf(&dir, "%s/.doctor", state) < 0)
		return -ENOMEM;
	r = vmstore_mkdir(dir);
	if (r < 0) {
		free(dir);
		return r;
	}
	*ret = dir;
	return 0;
}

static bool doctor_has_target(const struct dmops_target_version *v, int n, const char *name)
{
	for (int i = 0; i < n && i < 64; i++)
		if (strcmp(v[i].name, name) == 0)
			return true;
	return false;
}

/*
 * The kernel lists a target only once its module is loaded, and loads it for
 * the first table naming it: a device of `zero` (cowpunch-doctor-PID-zero,
 * removed at once) tells whether it can be had.  The self-test's tables load
 * snapshot and linear.  0 when the device could be made.
 */
static int doctor_probe_zero(void)
{
	struct dmops_table t = {.count = 1};
	char name[64];
	int r;

	snprintf(name, sizeof(name), "cowpunch-doctor-%ld-zero", (long)getpid());
	t.targets[0].length = 8;
	snprintf(t.targets[0].type, sizeof(t.targets[0].type), "zero");
	r = dmops_dev_create(name, &t);
	if (r == 0)
		dmops_dev_remove(name);
	return r;
}

void doctor_check_dm(struct doctor_check *c_dm, struct doctor_check *c_targets)
{
	struct dmops_target_version v[64];
	char driver[32] = "", have[256] = "", missing[64] = "";
	size_t hl = 0, ml = 0;
	int n;

	c_dm->name = "device-mapper";
	c_targets->name = "dm-targets";
	if (!dmops_dm_loaded()) {
		doctor_set(c_dm, DOCTOR_FAIL,
			   "the device-mapper driver is not loaded (%s/devices lists no "
			   "device-mapper): no VM disk can be made here",
			   doctor_proc_dir);
		doctor_set_action(c_dm, "load it (modprobe dm-mod dm-snapshot dm-zero) or use a "
					"kernel built with CONFIG_BLK_DEV_DM");
		doctor_set(c_targets, DOCTOR_FAIL, "not checked: no device-mapper");
		doctor_set_action(c_targets, "load device-mapper first");
		return;
	}
	n = dmops_target_versions(v, 64, driver, sizeof(driver));
	if (n < 0) {
		doctor_set(c_dm, DOCTOR_FAIL, "device-mapper does not answer: %s",
			   *dmops_last_error() ? dmops_last_error() : strerror(-n));
		doctor_set_action(c_dm, "run doctor as root (CAP_SYS_ADMIN); check that "
					"/dev/mapper/control exists");
		doctor_set(c_targets, DOCTOR_FAIL, "not checked: device-mapper does not answer");
		doctor_set_action(c_targets, "see the device-mapper check");
		return;
	}
	if (!doctor_has_target(v, n, "zero") && doctor_probe_zero() == 0)
		n = dmops_target_versions(v, 64, driver, sizeof(driver));
	if (n < 0) {
		doctor_set(c_dm, DOCTOR_FAIL, "device-mapper does not answer: %s", strerror(-n));
		doctor_set(c_targets, DOCTOR_FAIL, "not checked: device-mapper does not answer");
		return;
	}
	doctor_set(c_dm, DOCTOR_OK, "driver %s", driver[0] ? driver : "(version unknown)");
	for (size_t t = 0; t < ARRAY_SIZE(doctor_targets); t++) {
		int i;

		for (i = 0; i < n && i < 64; i++)
			if (strcmp(v[i].name, doctor_targets[t]) == 0)
				break;
		if (i < n && i < 64)
			hl += (size_t)snprintf(have + hl, sizeof(have) - hl, "%s%s %u.%u.%u",
					       hl ? ", " : "", v[i].name, v[i].version[0],
					       v[i].version[1], v[i].version[2]);
		else
			ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%s%s",
					       ml ? ", " : "", doctor_targets[t]);
		if (hl >= sizeof(have) || ml >= sizeof(missing))
			break;
	}
	if (ml) {
		doctor_set(c_targets, DOCTOR_FAIL,
			   "target%s %s not available (loaded: %s); a VM disk needs snapshot, "
			   "linear and zero",
			   strchr(missing, ',') ? "s" : "", missing, hl ? have : "none of them");
		doctor_set_action(c_targets, "modprobe dm-snapshot dm-zero (the kernel also "
					     "loads them on first use: missing here means it "
					     "could not)");
		return;
	}
	doctor_set(c_targets, DOCTOR_OK, "%s", have);
}

/* Reads a small number from a /proc file; -1 when it cannot. */
static long doctor_read_long(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	long v;

	if (!f || fscanf(f, "%ld", &v) != 1)
		return -1;
	return v;
}

/* Seccomp mode of this process from /proc/self/status (0 none, 2 filter), or -1. */
static long doctor_seccomp_mode(void)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	char line[256];
	long mode = -1;

	if (asprintf(&path, "%s/self/status", doctor_proc_dir) < 0)
		return -1;
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %ld", &mode) == 1)
			break;
	return mode;
}

void doctor_check_io_uring(struct doctor_check *c)
{
	_cleanup_free_ char *path = NULL;
	struct io_uring_probe *probe;
	struct io_uring ring;
	long disabled, seccomp;
	bool fallocate_op;
	int r;

	c->name = "io_uring";
	r = io_uring_queue_init(4, &ring, 0);
	if (r == 0) {
		probe = io_uring_get_probe_ring(&ring);
		fallocate_op = probe && io_uring_opcode_supported(probe, IORING_OP_FALLOCATE) &&
			       io_uring_opcode_supported(probe, IORING_OP_READ);
		if (probe)
			io_uring_free_probe(probe);
		io_uring_queue_exit(&ring);
		if (fallocate_op)
			doctor_set(c, DOCTOR_OK,
				   "usable, with IORING_OP_READ and "
				   "IORING_OP_FALLOCATE (the uring reclaim engine)");
		else {
			doctor_set(c, DOCTOR_WARNING,
				   "a ring can be set up, but its probe lacks IORING_OP_READ or "
				   "IORING_OP_FALLOCATE (Linux < 5.6): reclaim uses libaio");
			doctor_set_action(c, "nothing needed: reclaim falls back to libaio, then "
					     "to plain syscalls");
		}
		return;
	}
	if (asprintf(&path, "%s/sys/kernel/io_uring_disabled", doctor_proc_dir) < 0) {
		doctor_set(c, DOCTOR_WARNING, "io_uring_queue_init: %s", strerror(-r));
		return;
	}
	disabled = doctor_read_long(path);
	seccomp = doctor_seccomp_mode();
	doctor_set_action(c, "nothing needed: reclaim falls back to libaio, then to plain "
			     "syscalls (slower); to use io_uring, lift the block named here");
	if (r == -EPERM && disabled == 2)
		doctor_set(c, DOCTOR_WARNING,
			   "io_uring_setup refused (EPERM): the sysctl kernel.io_uring_disabled "
			   "is 2 (io_uring off for every process)");
	else if (r == -EPERM && disabled == 1)
		doctor_set(c, DOCTOR_WARNING,
			   "io_uring_setup refused (EPERM): the sysctl kernel.io_uring_disabled "
			   "is 1 (only members of kernel.io_uring_group, or CAP_SYS_ADMIN)");
	else if ((r == -EPERM || r == -ENOSYS) && seccomp == 2)
		doctor_set(c, DOCTOR_WARNING,
			   "io_uring_setup refused (%s) by a seccomp filter on this process (a "
			   "container runtime's or systemd's SystemCallFilter)",
			   r == -EPERM ? "EPERM" : "ENOSYS");
	else if (r == -ENOSYS)
		doctor_set(c, DOCTOR_WARNING,
			   "io_uring_setup does not exist (ENOSYS): a kernel without io_uring "
			   "(CONFIG_IO_URING off)");
	else
		doctor_set(c, DOCTOR_WARNING,
			   "io_uring_queue_init: %s (kernel.io_uring_disabled %ld, seccomp mode "
			   "%ld)",
			   strerror(-r), disabled, seccomp);
}

/* Writes the scratch file with O_DIRECT (or buffered when not taken); 1 when direct. */
static int doctor_fs_write(const char *path, struct doctor_check *c_dio)
{
	_cleanup_free_ void *buf = NULL;
	_cleanup_close_ int fd = -1;
	bool direct = true;
	ssize_t n;

	if (posix_memalign(&buf, 4096, DOCTOR_FS_BYTES))
		return -ENOMEM;
	memset(buf, 0xa5, DOCTOR_FS_BYTES);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EINVAL) {
		/* tmpfs before Linux 6.6 refuses O_DIRECT at open. */
		direct = false;
		doctor_set(c_dio, DOCTOR_WARNING, "open(O_DIRECT) refused (EINVAL)");
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		return -errno;
	n = util_pwrite_full(fd, buf, DOCTOR_FS_BYTES, 0);
	if (n < 0 && direct && n == -EINVAL) {
		direct = false;
		doctor_set(c_dio, DOCTOR_WARNING, "an aligned O_DIRECT write failed (EINVAL)");
		close(TAKE_FD(fd));
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		n = util_pwrite_full(fd, buf, DOCTOR_FS_BYTES, 0);
	}
	if (n < 0)
		return (int)n;
	if (fsync(fd) < 0)
		return -errno;
	return direct;
}

void doctor_check_state_fs(const char *state, struct doctor_check *c_dio,
			   struct doctor_check *c_punch)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;
	_cleanup_close_ int fd = -1;
	struct stat before, after;
	struct statfs sfs;
	int r, direct;

	c_dio->name = "direct-io";
	c_punch->name = "punch-hole";
	r = doctor_dir(state, &dir);
	if (r < 0 || asprintf(&path, "%s/fscheck-%ld", dir, (long)getpid()) < 0) {
		doctor_set(c_dio, DOCTOR_FAIL, "%s/.doctor: cannot make the scratch folder: %s",
			   state, strerror(r < 0 ? -r : ENOMEM));
		doctor_set_action(c_dio, "run doctor as root, with --state-dir naming a "
					 "writable folder");
		*c_punch = *c_dio;
		c_punch->name = "punch-hole";
		return;
	}
	unlink(path); /* a dead doctor of the same PID */
	direct = doctor_fs_write(path, c_dio);
	if (direct < 0) {
		doctor_set(c_dio, DOCTOR_FAIL, "%s: cannot write a scratch file: %s", path,
			   strerror(-direct));
		doctor_set_action(c_dio, "free space in the state directory's file system, or "
					 "make it writable");
		doctor_set(c_punch, DOCTOR_FAIL, "not checked: %s cannot be written", path);
		doctor_set_action(c_punch, "see the direct-io check");
		unlink(path);
		return;
	}
	if (direct)
		doctor_set(c_dio, DOCTOR_OK,
			   "%s takes O_DIRECT: COW loops can do direct I/O "
			   "(--cow-direct-io auto|on)",
			   state);
	else {
		size_t l = strlen(c_dio->reason);

		snprintf(c_dio->reason + l, sizeof(c_dio->reason) - l,
			 " on %s: COW loops there are buffered (--cow-direct-io auto falls back, "
			 "on is refused)",
			 state);
		doctor_set_action(c_dio, "nothing needed; for direct I/O, keep the state "
					 "directory on ext4 or XFS");
	}

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &before) < 0) {
		doctor_set(c_punch, DOCTOR_FAIL, "%s: %s", path, strerror(errno));
		unlink(path);
		return;
	}
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, DOCTOR_PUNCH_BYTES) < 0) {
		r = -errno;
		doctor_set(c_punch, DOCTOR_FAIL,
			   "%s: fallocate(PUNCH_HOLE|KEEP_SIZE): %s: cowpunch cannot give space "
			   "back on this file system",
			   path, strerror(-r));
		doctor_set_action(c_punch, "keep the state directory (and memory files) on ext4, "
					   "XFS, btrfs or tmpfs");
		unlink(path);
		return;
	}
	if (fsync(fd) < 0 || fstat(fd, &after) < 0) {
		doctor_set(c_punch, DOCTOR_FAIL, "%s: %s", path, strerror(errno));
		unlink(path);
		return;
	}
	if (statfs(path, &sfs) < 0)
		sfs.f_type = 0;
	unlink(path);
	if (after.st_blocks >= before.st_blocks) {
		doctor_set(
			c_punch, DOCTOR_FAIL,
			"%s: punching %d KiB of a %d KiB file left st_blocks at %lld (was %lld): "
			"the file system accepts the call but frees nothing",
			state, DOCTOR_PUNCH_BYTES / 1024, DOCTOR_FS_BYTES / 1024,
			(long long)after.st_blocks, (long long)before.st_blocks);
		doctor_set_action(c_punch, "keep the state directory on ext4, XFS, btrfs or tmpfs");
		return;
	}
	doctor_set(c_punch, DOCTOR_OK,
		   "%s (file system 0x%llx): punching %d KiB dropped st_blocks %lld -> %lld", state,
		   (unsigned long long)sfs.f_type, DOCTOR_PUNCH_BYTES / 1024,
		   (long long)before.st_blocks, (long long)after.st_blocks);
}

int doctor_run(const char *state, bool fix, struct doctor_report *ret)
{
	struct doctor_report r;

	memset(&r, 0, sizeof(r));
	doctor_check_dm(&r.checks[DOCTOR_DM], &r.checks[DOCTOR_DM_TARGETS]);
	if (r.checks[DOCTOR_DM].status == DOCTOR_OK) {
		/* The self-test loads dm-snapshot (and dm-zero) when they are modules: list after. */
		doctor_discard_selftest(state, &r.checks[DOCTOR_DISCARD]);
		doctor_check_dm(&r.checks[DOCTOR_DM], &r.checks[DOCTOR_DM_TARGETS]);
	} else {
		r.checks[DOCTOR_DISCARD].name = "discard-selftest";
		doctor_set(&r.checks[DOCTOR_DISCARD], DOCTOR_FAIL,
			   "not run: device-mapper is missing; create --discard is refused "
			   "until it has run on this kernel");
		doctor_set_action(&r.checks[DOCTOR_DISCARD], "load device-mapper, then run "
							     "cowpunch doctor again");
	}
	doctor_check_io_uring(&r.checks[DOCTOR_IO_URING]);
	doctor_check_state_fs(state, &r.checks[DOCTOR_DIRECT_IO], &r.checks[DOCTOR_PUNCH_HOLE]);
	doctor_check_devices(state, fix, &r.checks[DOCTOR_LEFTOVER_DEVICES]);
	doctor_check_locks(state, fix, &r.checks[DOCTOR_STALE_LOCKS]);
	doctor_check_records(state, &r.checks[DOCTOR_RECORDS]);
	*ret = r;
	return 0;
}

void doctor_report_free(struct doctor_report *r)
{
	for (int i = 0; i < DOCTOR_NCHECKS; i++) {
		free(r->checks[i].items);
		r->checks[i].items = NULL;
		r->checks[i].nitems = 0;
	}
}

bool doctor_report_failed(const struct doctor_report *r)
{
	for (int i = 0; i < DOCTOR_NCHECKS; i++)
		if (r->checks[i].status == DOCTOR_FAIL)
			return true;
	return false;
}
