/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * `cowpunch doctor`'s leftover checks (host/doctor.h): devices named like
 * cowpunch's that no record explains, stale locks and temp records, and
 * records whose files are gone.  --fix removes only what cowpunch made and
 * nothing uses: never a device a record explains, never an open one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "dmops/dmdev.h"
#include "dmops/loopdev.h"
#include "dmops/vmdisk.h"
#include "host/doctor.h"
#include "host/vmstore.h"

#define LO_MAX_DEVS  1024
#define LO_MAX_DEPS  8
#define LO_DOCTOR_DM "cowpunch-doctor-"

static void lo_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define _cleanup_dir_ _cleanup_(lo_closedirp)

/* Reads a one-line sysfs/proc file into buf, newline cut.  0 or -errno. */
static int lo_read_line(const char *path, char *buf, size_t len)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f))
		return -EIO;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* True when path is inside dir (dir itself excluded); both absolute and resolved. */
static bool lo_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* 1 when the flock on path is held by someone, 0 when free, -ENOENT, -errno. */
static int lo_lock_held(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? 1 : -errno;
	return 0;
}

/* 1 when STATE/id/vm.json exists. */
static bool lo_has_record(const char *state, const char *id)
{
	_cleanup_free_ char *p = vmstore_path(state, id, "vm.json");

	return p && access(p, F_OK) == 0;
}

/*
 * The backing file of the block device dev when it is a loop ("" when not a
 * loop or unbound).  " (deleted)" stays on a file that was unlinked.
 */
static void lo_backing_of(uint64_t dev, char *buf, size_t len)
{
	char path[256];

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/dev/block/%u:%u/loop/backing_file", doctor_sys_dir,
		 major(dev), minor(dev));
	if (lo_read_line(path, buf, len) < 0)
		buf[0] = '\0';
}

/* True when some process other than this one has block device dev open. */
static bool lo_open_by_process(uint64_t dev)
{
	_cleanup_free_ char *procdir = NULL;
	_cleanup_dir_ DIR *d = NULL;
	struct dirent *de;
	long self = (long)getpid();

	if (asprintf(&procdir, "%s", doctor_proc_dir) < 0)
		return true;
	d = opendir(procdir);
	if (!d)
		return true; /* cannot tell: in use */
	while ((de = readdir(d))) {
		_cleanup_dir_ DIR *fds = NULL;
		struct dirent *fe;
		char path[300];
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid == self)
			continue;
		snprintf(path, sizeof(path), "%s/%ld/fd", procdir, pid);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((fe = readdir(fds))) {
			struct stat st;
			char fpath[600];

			if (fe->d_name[0] == '.')
				continue;
			snprintf(fpath, sizeof(fpath), "%s/%s", path, fe->d_name);
			if (stat(fpath, &st) == 0 && S_ISBLK(st.st_mode) &&
			    (uint64_t)st.st_rdev == dev)
				return true;
		}
	}
	return false;
}

/* The dm side: devices named base-ID/overlay-ID without a record, and dead doctors'. */
static void lo_scan_dm(const char *state, const char *real, bool fix, struct doctor_check *c,
		       int *ret_found)
{
	static struct dmops_name names[LO_MAX_DEVS];
	int n = dmops_list_devices(names, LO_MAX_DEVS);

	*ret_found = 0;
	if (n < 0) {
		doctor_set(c, DOCTOR_FAIL, "cannot list device-mapper devices: %s", strerror(-n));
		return;
	}
	if (n > LO_MAX_DEVS)
		n = LO_MAX_DEVS;
	/* Overlays before bases: a base is open while its overlay exists. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			const char *name = names[i].name, *id = NULL;
			struct dmops_dev_info info;
			struct doctor_item *it;
			uint64_t deps[LO_MAX_DEPS];
			bool is_overlay = strncmp(name, "overlay-", 8) == 0;
			bool is_doctor = strncmp(name, LO_DOCTOR_DM, strlen(LO_DOCTOR_DM)) == 0;
			_cleanup_free_ char *lock = NULL;
			char other[PATH_MAX] = "";
			int nd, r;

			if ((pass == 0) != (is_overlay || (is_doctor && strstr(name, "-snap"))))
				continue;
			if (is_doctor) {
				if (doctor_pid_alive(strtol(name + strlen(LO_DOCTOR_DM), NULL, 10)))
					continue; /* a doctor running now */
			} else {
				if (is_overlay)
					id = name + 8;
				else if (strncmp(name, "base-", 5) == 0)
					id = name + 5;
				if (!id || !vmstore_id_valid(id) || lo_has_record(state, id))
					continue;
				/* A create under way holds the VM's lock until its record exists. */
				lock = vmstore_path(state, id, "lock");
				if (lock && lo_lock_held(lock) == 1)
					continue;
			}
			if (dmops_dev_info(name, &info) < 0 || !info.exists)
				continue;
			/* A COW loop outside STATE: another state directory's VM, not ours. */
			nd = dmops_dev_deps(name, deps, LO_MAX_DEPS);
			for (int k = 0; is_overlay && k < nd; k++) {
				char b[PATH_MAX];

				lo_backing_of(deps[k], b, sizeof(b));
				if (b[0] && !lo_under(b, real))
					snprintf(other, sizeof(other), "%s", b);
				else if (b[0]) {
					other[0] = '\0';
					break;
				}
			}
			(*ret_found)++;
			it = doctor_add_item(c, "dm", name);
			if (!it)
				continue;
			it->fixable = info.open_count == 0 && !other[0];
			snprintf(it->detail, sizeof(it->detail), "%s, open count %d%s%s",
				 is_doctor ? "a self-test device of a doctor that is gone"
				 : id	   ? "named like a cowpunch VM device, but no record "
					     "explains it"
					   : "",
				 info.open_count, other[0] ? "; its COW loop is backed by " : "",
				 other);
			if (!fix)
				continue;
			if (!it->fixable) {
				snprintf(it->error, sizeof(it->error), "%s",
					 other[0] ? "its COW is outside this state directory: left "
						    "alone"
						  : "open: in use, left alone");
				continue;
			}
			r = dmops_dev_remove(name);
			if (r < 0 && r != -ENXIO)
				snprintf(it->error, sizeof(it->error), "remove: %s",
					 *dmops_last_error() ? dmops_last_error() : strerror(-r));
			else
				it->fixed = true;
		}
	}
}

/* The loop side: loops backed by files in STATE that nothing holds. */
static void lo_scan_loops(const char *real, bool fix, struct doctor_check *c, int *ret_found)
{
	_cleanup_free_ char *block = NULL;
	_cleanup_dir_ DIR *d = NULL;
	struct dirent *de;

	*ret_found = 0;
	if (asprintf(&block, "%s/block", doctor_sys_dir) < 0)
		return;
	d = opendir(block);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[600], back[PATH_MAX], devnum[32], flag[8];
		unsigned maj, min;
		struct doctor_item *it;
		struct loopdev lo = {.fd = -1};
		_cleanup_dir_ DIR *holders = NULL;
		struct dirent *he;
		bool held = false;
		uint64_t dev;

		if (strncmp(de->d_name, "loop", 4) != 0 || de->d_name[4] < '0' ||
		    de->d_name[4] > '9')
			continue;
		snprintf(path, sizeof(path), "%s/%s/loop/backing_file", block, de->d_name);
		if (lo_read_line(path, back, sizeof(back)) < 0 || !lo_under(back, real))
			continue;
		snprintf(path, sizeof(path), "%s/%s/holders", block, de->d_name);
		holders = opendir(path);
		while (holders && (he = readdir(holders)))
			held |= he->d_name[0] != '.';
		if (held)
			continue; /* a dm device uses it: judged with that device */
		/* Autoclear: a cowpunch command is setting it up, or a process holds it. */
		snprintf(path, sizeof(path), "%s/%s/loop/autoclear", block, de->d_name);
		if (lo_read_line(path, flag, sizeof(flag)) == 0 && flag[0] == '1')
			continue;
		snprintf(path, sizeof(path), "%s/%s/dev", block, de->d_name);
		if (lo_read_line(path, devnum, sizeof(devnum)) < 0 ||
		    sscanf(devnum, "%u:%u", &maj, &min) != 2)
			continue;
		dev = makedev(maj, min);
		(*ret_found)++;
		snprintf(path, sizeof(path), "%s/%s", loopdev_dev_dir, de->d_name);
		it = doctor_add_item(c, "loop", path);
		if (!it)
			continue;
		it->fixable = !lo_open_by_process(dev);
		snprintf(it->detail, sizeof(it->detail),
			 "backed by %s in the state directory; no dm device uses it and it is not "
			 "autoclear (cowpunch attaches every loop with autoclear)%s",
			 back, it->fixable ? "" : "; a process has it open");
		if (!fix)
			continue;
		if (!it->fixable) {
			snprintf(it->error, sizeof(it->error), "open by a process: left alone");
			continue;
		}
		lo.fd = open(path, O_RDONLY | O_CLOEXEC);
		if (lo.fd < 0 || loopdev_detach(&lo) < 0)
			snprintf(it->error, sizeof(it->error), "detach: %s", strerror(errno));
		else
			it->fixed = true;
		loopdev_close(&lo);
	}
}

/* Sums up a leftover check: fail while something found is left, ok when all were fixed. */
static void lo_conclude(struct doctor_check *c, enum doctor_status found_status, const char *what,
			const char *action)
{
	unsigned fixed = 0, fixable = 0;

	if (c->status == DOCTOR_FAIL && c->reason[0])
		return; /* the scan itself failed */
	for (unsigned i = 0; i < c->nitems; i++) {
		fixed += c->items[i].fixed;
		fixable += c->items[i].fixable;
	}
	if (c->nitems == 0) {
		doctor_set(c, DOCTOR_OK, "none: no %s", what);
		return;
	}
	if (fixed == c->nitems) {
		doctor_set(c, DOCTOR_OK, "%u found and removed (%s)", fixed, what);
		return;
	}
	doctor_set(c, found_status, "%u found (%s), %u removed, %u left", c->nitems, what, fixed,
		   c->nitems - fixed);
	if (fixable > fixed)
		doctor_set_action(c, "%s", action);
	else
		doctor_set_action(c, "the ones left are in use or not provably cowpunch's: look "
				     "at them (items) and remove them by hand if they are not "
				     "needed");
}

void doctor_check_devices(const char *state, bool fix, struct doctor_check *c)
{
	_cleanup_free_ char *real = realpath(state, NULL);
	int dm_found = 0, loops_found = 0;

	c->name = "leftover-devices";
	if (!real) {
		doctor_set(c, DOCTOR_FAIL, "%s: %s", state, strerror(errno));
		return;
	}
	if (dmops_dm_loaded())
		lo_scan_dm(state, real, fix, c, &dm_found);
	/* After the dm fixes, so that loops they held and nothing else holds are seen. */
	if (!(c->status == DOCTOR_FAIL && c->reason[0]))
		lo_scan_loops(real, fix, c, &loops_found);
	lo_conclude(c, DOCTOR_FAIL,
		    "dm devices named base-ID, overlay-ID or cowpunch-doctor-PID without a "
		    "record or a live owner, loops of files in the state directory that no dm "
		    "device holds",
		    "cowpunch doctor --fix removes those not in use (a record explains none of "
		    "them)");
}

/* STATE/ID: temp records of dead writers, and folders a killed create or destroy left. */
static void lo_scan_vm_dir(const char *state, const char *id, bool fix, struct doctor_check *c)
{
	_cleanup_free_ char *dir = vmstore_path(state, id, NULL);
	_cleanup_free_ char *lock = vmstore_path(state, id, "lock");
	_cleanup_free_ char *cow = vmstore_path(state, id, "cow");
	_cleanup_free_ char *marker = vmstore_path(state, id, VMSTORE_MARKER);
	_cleanup_close_ int lfd = -1;
	_cleanup_dir_ DIR *d = NULL;
	struct dirent *de;
	bool record, has_cow, has_marker, has_lock;
	struct doctor_item *it;

	if (!dir || !lock || !cow || !marker)
		return;
	record = lo_has_record(state, id);
	has_cow = access(cow, F_OK) == 0;
	has_marker = access(marker, F_OK) == 0;
	has_lock = access(lock, F_OK) == 0;

	/* Temp records: NAME.tmp.PID of a writer that is gone. */
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		char *t = strstr(de->d_name, ".tmp.");
		char *end;
		long pid;
		char path[PATH_MAX];

		if (!t || (strncmp(de->d_name, "vm.json.tmp.", 12) != 0 &&
			   strncmp(de->d_name, VMSTORE_MARKER ".tmp.", strlen(VMSTORE_MARKER) + 5)))
			continue;
		pid = strtol(t + 5, &end, 10);
		if (*end || doctor_pid_alive(pid))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		it = doctor_add_item(c, "temp", path);
		if (!it)
			continue;
		it->fixable = true;
		snprintf(it->detail, sizeof(it->detail),
			 "a record write killed before its rename (process %ld is gone)", pid);
	}
	if (!record && has_lock && !has_marker && !has_cow) {
		it = doctor_add_item(c, "lock", lock);
		if (it) {
			it->fixable = true;
			snprintf(it->detail, sizeof(it->detail),
				 "a lock with no VM: no record, no create marker, no COW (a create "
				 "killed before its marker, or a destroy killed at the end)");
		}
	}
	if (!record && has_marker) {
		it = doctor_add_item(c, "create", marker);
		if (it) {
			it->fixable = true;
			snprintf(it->detail, sizeof(it->detail),
				 "a create killed before its commit%s: no guest ever wrote to it",
				 has_cow ? ", with its COW file" : "");
		}
	}
	if (!fix)
		return;
	/* Under the VM's lock, as every writer of these files: none can be under way. */
	if (has_lock) {
		lfd = open(lock, O_RDONLY | O_CLOEXEC);
		if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) {
			for (unsigned i = 0; i < c->nitems; i++)
				if (strncmp(c->items[i].name, dir, strlen(dir)) == 0 &&
				    c->items[i].name[strlen(dir)] == '/')
					snprintf(c->items[i].error, sizeof(c->items[i].error),
						 "the VM's lock is held: a command is running");
			return;
		}
	}
	for (unsigned i = 0; i < c->nitems; i++) {
		struct doctor_item *x = &c->items[i];

		if (x->fixed || strncmp(x->name, dir, strlen(dir)) != 0 ||
		    x->name[strlen(dir)] != '/')
			continue;
		if (!strcmp(x->kind, "create") && has_cow && unlink(cow) < 0 && errno != ENOENT) {
			snprintf(x->error, sizeof(x->error), "%s: %s", cow, strerror(errno));
			continue;
		}
		if (unlink(x->name) < 0 && errno != ENOENT) {
			snprintf(x->error, sizeof(x->error), "%s", strerror(errno));
			continue;
		}
		x->fixed = true;
		/* A folder with nothing else in it goes too, lock last (as destroy does). */
		if (!strcmp(x->kind, "lock") || !strcmp(x->kind, "create")) {
			if (access(cow, F_OK) < 0 && !lo_has_record(state, id)) {
				unlink(lock);
				rmdir(dir);
			}
		}
	}
}

/*
 * STATE/.doctor/selftest-PID-* and fscheck-PID: scratch folders and files of
 * doctors killed before their clean-up.
 */
static void lo_scan_selftests(const char *state, bool fix, struct doctor_check *c)
{
	_cleanup_free_ char *ddir = NULL;
	_cleanup_dir_ DIR *d = NULL;
	struct dirent *de;

	if (asprintf(&ddir, "%s/.doctor", state) < 0)
		return;
	d = opendir(ddir);
	while (d && (de = readdir(d))) {
		static const char *const files[] = {"origin.img", "cow"};
		struct doctor_item *it;
		char path[PATH_MAX];
		bool busy = false;
		long pid;

		if (strncmp(de->d_name, "fscheck-", 8) == 0) {
			/* The file system checks' scratch file of a doctor killed meanwhile. */
			pid = strtol(de->d_name + 8, NULL, 10);
			if (doctor_pid_alive(pid))
				continue;
			snprintf(path, sizeof(path), "%s/%s", ddir, de->d_name);
			it = doctor_add_item(c, "selftest", path);
			if (!it)
				continue;
			it->fixable = true;
			snprintf(it->detail, sizeof(it->detail),
				 "the scratch file of a doctor (process %ld) that is gone", pid);
			if (fix && unlink(path) < 0)
				snprintf(it->error, sizeof(it->error), "%s", strerror(errno));
			else if (fix)
				it->fixed = true;
			continue;
		}
		if (strncmp(de->d_name, "selftest-", 9) != 0)
			continue;
		pid = strtol(de->d_name + 9, NULL, 10);
		if (doctor_pid_alive(pid))
			continue;
		snprintf(path, sizeof(path), "%s/%s", ddir, de->d_name);
		it = doctor_add_item(c, "selftest", path);
		if (!it)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			char f[PATH_MAX + 16];

			snprintf(f, sizeof(f), "%s/%s", path, files[i]);
			busy |= vmdisk_file_in_use(f) == 1;
		}
		it->fixable = !busy;
		snprintf(it->detail, sizeof(it->detail),
			 "the scratch folder of a discard self-test whose doctor (process %ld) is "
			 "gone%s",
			 pid, busy ? "; a loop device still serves a file in it" : "");
		if (!fix)
			continue;
		if (busy) {
			snprintf(it->error, sizeof(it->error), "a loop device uses it: left alone");
			continue;
		}
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			char f[PATH_MAX + 16];

			snprintf(f, sizeof(f), "%s/%s", path, files[i]);
			unlink(f);
		}
		if (rmdir(path) < 0)
			snprintf(it->error, sizeof(it->error), "rmdir: %s", strerror(errno));
		else
			it->fixed = true;
	}
}

void doctor_check_locks(const char *state, bool fix, struct doctor_check *c)
{
	_cleanup_dir_ DIR *d = opendir(state);
	struct dirent *de;

	c->name = "stale-locks";
	if (!d && errno != ENOENT) {
		doctor_set(c, DOCTOR_FAIL, "%s: %s", state, strerror(errno));
		return;
	}
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *lock = NULL;

		if (!vmstore_id_valid(de->d_name))
			continue;
		lock = vmstore_path(state, de->d_name, "lock");
		/* A held lock: a command is working on that VM now. */
		if (lock && lo_lock_held(lock) == 1)
			continue;
		lo_scan_vm_dir(state, de->d_name, fix, c);
	}
	lo_scan_selftests(state, fix, c);
	lo_conclude(c, DOCTOR_WARNING,
		    "lock files of VMs that do not exist, temp records of dead writers, killed "
		    "creates, scratch folders of killed self-tests",
		    "cowpunch doctor --fix removes them (the next command on the VM would too)");
}

void doctor_check_records(const char *state, struct doctor_check *c)
{
	char **ids = NULL;
	_cleanup_dir_ DIR *d = NULL;
	struct dirent *de;
	int n;

	c->name = "records";
	n = vmstore_list(state, &ids);
	if (n < 0) {
		doctor_set(c, DOCTOR_FAIL, "%s: %s", state, strerror(-n));
		return;
	}
	for (int i = 0; i < n; i++) {
		struct vmstore_record rec;
		struct doctor_item *it;
		char why[256] = "";
		_cleanup_free_ char *cow = vmstore_path(state, ids[i], "cow");
		int r = vmstore_record_load(state, ids[i], &rec, why, sizeof(why));

		if (r < 0) {
			it = doctor_add_item(c, "record", ids[i]);
			if (it)
				snprintf(it->detail, sizeof(it->detail), "%s/%s/vm.json: %s", state,
					 ids[i], r == -EBADMSG ? why : strerror(-r));
			continue;
		}
		if (cow && access(cow, F_OK) < 0) {
			it = doctor_add_item(c, "record", ids[i]);
			if (it)
				snprintf(it->detail, sizeof(it->detail),
					 "its COW file %s is gone (%s): the VM's disk is lost "
					 "(cowpunch destroy %s removes the record)",
					 cow, strerror(errno), ids[i]);
		}
		if (access(rec.base_path, F_OK) < 0) {
			it = doctor_add_item(c, "record", ids[i]);
			if (it)
				snprintf(
					it->detail, sizeof(it->detail),
					"its base image %s is gone (%s): the VM cannot be attached "
					"until it is back",
					rec.base_path, strerror(errno));
		}
	}
	vmstore_list_free(ids, n);
	/* A COW file with neither record nor marker: a VM whose record is lost. */
	d = opendir(state);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *cow = NULL;
		struct doctor_item *it;

		if (!vmstore_id_valid(de->d_name) || lo_has_record(state, de->d_name) ||
		    vmstore_marker_exists(state, de->d_name) != 0)
			continue;
		cow = vmstore_path(state, de->d_name, "cow");
		if (!cow || access(cow, F_OK) < 0)
			continue;
		it = doctor_add_item(c, "cow", cow);
		if (it)
			snprintf(it->detail, sizeof(it->detail),
				 "a COW file without a record: the disk of a VM whose vm.json is "
				 "lost (never removed by cowpunch)");
	}
	lo_conclude(c, DOCTOR_FAIL, "records whose files are gone, or COW files without one", "");
	if (c->nitems)
		doctor_set_action(c,
				  "restore the missing files, or destroy the VM (cowpunch "
				  "destroy ID); a COW without a record: put its vm.json back, or "
				  "remove the folder by hand.  --fix never touches these");
}
