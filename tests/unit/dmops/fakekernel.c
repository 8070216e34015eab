/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A fake kernel for dmops unit tests, linked in with -Wl,--wrap= (see the
 * test's .ldflags), after multipath-tools' tests: loop devices are regular
 * files in a temp dir whose ioctls this file answers, and libdevmapper's task
 * API keeps a table of fake dm devices.  #included by one test program.
 *
 * It models what the code relies on: LOOP_CTL_GET_FREE/LOOP_CONFIGURE (with
 * the EBUSY race and the pre-5.8 EINVAL), direct I/O taken, dropped or refused
 * (fake.dio), autoclear (a bound loop with
 * LO_FLAGS_AUTOCLEAR goes when no fd and no dm table holds it), DM_DEVICE_CREATE
 * undone on failure, tables that must name live devices, EBUSY on removing an
 * open device, and udev cookies that must all be waited for.  fsync() of one
 * watched file is counted.
 *
 * Failure injection: every faked operation is a numbered step; with
 * fake.fail_at == N the Nth one fails with fake.fail_errno.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/loop.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dmops/loopdev.h"

#define FAKE_LOOPS   8
#define FAKE_DEVS    64
#define FAKE_TARGETS 2

struct fake_loop {
	bool bound;
	uint64_t dev, ino;
	uint32_t flags;
};

struct fake_target {
	uint64_t start, len;
	char type[16];
	char params[512];
};

struct fake_dev {
	bool exists;
	char name[128];
	uint32_t minor;
	int32_t open_count;
	bool suspended;
	unsigned ntargets;
	struct fake_target t[FAKE_TARGETS];
};

struct fake_task {
	int type;
	char name[128];
	unsigned ntargets;
	struct fake_target t[FAKE_TARGETS];
	bool ran;
	int err;
	struct dm_info info;
	char status_params[512];
	bool status_taken;
};

static struct {
	char dir[64];
	struct fake_loop loop[FAKE_LOOPS];
	struct fake_dev dev[FAKE_DEVS];
	uint32_t next_minor;
	unsigned steps;
	unsigned fail_at;
	int fail_errno;
	unsigned configure_ebusy; /* LOOP_CONFIGURE answers EBUSY this many times */
	bool no_configure;	  /* a kernel before 5.8 */
	enum {
		FAKE_DIO_OK,	 /* direct I/O works on every file */
		FAKE_DIO_DROP,	 /* dropped silently (6.1 on tmpfs); LOOP_SET_DIRECT_IO: EINVAL */
		FAKE_DIO_EINVAL, /* LOOP_CONFIGURE asking for it fails with EINVAL */
	} dio;
	unsigned cookies_set, cookies_waited;
	unsigned loops_configured;
	char snapshot_status[256];   /* what STATUS of a snapshot reports */
	uint64_t sync_dev, sync_ino; /* the file whose fsync() calls are watched */
	unsigned syncs;		     /* fsync() calls of it */
	unsigned live_at_sync;	     /* dm devices + loops still there at the last one */
	int sync_errno;		     /* its fsync() fails with this (0: works) */
} fake;

/* Counts a step; true when this one must fail. */
static bool fake_step(void)
{
	fake.steps++;
	return fake.fail_at && fake.steps == fake.fail_at;
}

static void fake_setup(void)
{
	char path[128];

	memset(&fake, 0, sizeof(fake));
	snprintf(fake.dir, sizeof(fake.dir), "/tmp/cowpunch-fakedev-XXXXXX");
	if (!mkdtemp(fake.dir))
		abort();
	snprintf(path, sizeof(path), "%s/loop-control", fake.dir);
	close(open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600));
	for (int i = 0; i < FAKE_LOOPS; i++) {
		snprintf(path, sizeof(path), "%s/loop%d", fake.dir, i);
		close(open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600));
	}
	fake.fail_errno = EIO;
	snprintf(fake.snapshot_status, sizeof(fake.snapshot_status), "16/65800 16");
	loopdev_dev_dir = fake.dir;
}

static void fake_teardown(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/loop-control", fake.dir);
	unlink(path);
	for (int i = 0; i < FAKE_LOOPS; i++) {
		snprintf(path, sizeof(path), "%s/loop%d", fake.dir, i);
		unlink(path);
	}
	rmdir(fake.dir);
}

/* Which fake file fd is: -2 loop-control, 0.. a loop index, -1 not ours. */
static int fake_fd_kind(int fd)
{
	char link[64], target[256];
	ssize_t n;
	size_t dl = strlen(fake.dir);

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = '\0';
	if (strncmp(target, fake.dir, dl) != 0 || target[dl] != '/')
		return -1;
	if (!strcmp(target + dl + 1, "loop-control"))
		return -2;
	if (!strncmp(target + dl + 1, "loop", 4))
		return atoi(target + dl + 5);
	return -1;
}

static bool fake_loop_open_by_fd(int index)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	bool found = false;

	if (!d)
		abort();
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (atoi(de->d_name) != dirfd(d) && fake_fd_kind(atoi(de->d_name)) == index)
			found = true;
	}
	closedir(d);
	return found;
}

static bool fake_params_name(const char *params, const char *dev)
{
	size_t n = strlen(dev);
	const char *p = params;

	while ((p = strstr(p, dev))) {
		if ((p == params || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

static bool fake_loop_in_tables(int index)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/loop%d", fake.dir, index);
	for (int d = 0; d < FAKE_DEVS; d++)
		for (unsigned t = 0; fake.dev[d].exists && t < fake.dev[d].ntargets; t++)
			if (fake_params_name(fake.dev[d].t[t].params, path))
				return true;
	return false;
}

/* Autoclear: the kernel detaches such a loop on its last close. */
static void fake_gc(void)
{
	for (int i = 0; i < FAKE_LOOPS; i++) {
		struct fake_loop *l = &fake.loop[i];

		if (l->bound && (l->flags & LO_FLAGS_AUTOCLEAR) && !fake_loop_in_tables(i) &&
		    !fake_loop_open_by_fd(i))
			memset(l, 0, sizeof(*l));
	}
}

static unsigned fake_live_loops(void)
{
	unsigned n = 0;

	fake_gc();
	for (int i = 0; i < FAKE_LOOPS; i++)
		n += fake.loop[i].bound;
	return n;
}

static unsigned fake_live_devs(void)
{
	unsigned n = 0;

	for (int d = 0; d < FAKE_DEVS; d++)
		n += fake.dev[d].exists;
	return n;
}

static struct fake_dev *fake_dev_find(const char *name)
{
	for (int d = 0; d < FAKE_DEVS; d++)
		if (fake.dev[d].exists && !strcmp(fake.dev[d].name, name))
			return &fake.dev[d];
	return NULL;
}

static unsigned fake_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- ioctl ---- */
int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int kind = fake_fd_kind(fd);

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (kind == -1)
		return __real_ioctl(fd, req, arg);
	fake_gc();
	if (fake_step()) {
		errno = fake.fail_errno;
		return -1;
	}
	if (kind == -2) {
		if (req != LOOP_CTL_GET_FREE) {
			errno = ENOTTY;
			return -1;
		}
		for (int i = 0; i < FAKE_LOOPS; i++)
			if (!fake.loop[i].bound)
				return i;
		errno = ENOSPC;
		return -1;
	}
	struct fake_loop *l = &fake.loop[kind];
	struct stat st;

	switch (req) {
	case LOOP_CONFIGURE: {
		const struct loop_config *cfg = arg;

		if (fake.no_configure) {
			errno = EINVAL;
			return -1;
		}
		if (fake.configure_ebusy) {
			fake.configure_ebusy--;
			errno = EBUSY;
			return -1;
		}
		if (l->bound) {
			errno = EBUSY;
			return -1;
		}
		if ((cfg->info.lo_flags & LO_FLAGS_DIRECT_IO) && fake.dio == FAKE_DIO_EINVAL) {
			errno = EINVAL;
			return -1;
		}
		if (fstat((int)cfg->fd, &st) < 0)
			return -1;
		l->bound = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		l->flags = cfg->info.lo_flags & LOOP_CONFIGURE_SETTABLE_FLAGS;
		if (fake.dio != FAKE_DIO_OK)
			l->flags &= ~LO_FLAGS_DIRECT_IO;
		if ((fcntl((int)cfg->fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
			l->flags |= LO_FLAGS_READ_ONLY;
		fake.loops_configured++;
		return 0;
	}
	case LOOP_SET_FD: {
		int ffd = (int)(intptr_t)arg;

		if (l->bound) {
			errno = EBUSY;
			return -1;
		}
		if (fstat(ffd, &st) < 0)
			return -1;
		l->bound = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		l->flags = (fcntl(ffd, F_GETFL) & O_ACCMODE) == O_RDONLY ? LO_FLAGS_READ_ONLY : 0;
		fake.loops_configured++;
		return 0;
	}
	case LOOP_SET_STATUS64: {
		const struct loop_info64 *info = arg;

		if (!l->bound) {
			errno = ENXIO;
			return -1;
		}
		l->flags = (l->flags & ~LOOP_SET_STATUS_CLEARABLE_FLAGS) |
			   (info->lo_flags & LOOP_SET_STATUS_SETTABLE_FLAGS);
		return 0;
	}
	case LOOP_GET_STATUS64: {
		struct loop_info64 *info = arg;

		if (!l->bound) {
			errno = ENXIO;
			return -1;
		}
		memset(info, 0, sizeof(*info));
		info->lo_device = l->dev;
		info->lo_inode = l->ino;
		info->lo_flags = l->flags;
		return 0;
	}
	case LOOP_SET_DIRECT_IO:
		if (!l->bound) {
			errno = ENXIO;
			return -1;
		}
		if (!arg) {
			l->flags &= ~LO_FLAGS_DIRECT_IO;
			return 0;
		}
		if (fake.dio != FAKE_DIO_OK) {
			errno = EINVAL; /* as Linux 6.1's loop_set_dio() */
			return -1;
		}
		l->flags |= LO_FLAGS_DIRECT_IO;
		return 0;
	case LOOP_CLR_FD:
		if (!l->bound) {
			errno = ENXIO;
			return -1;
		}
		memset(l, 0, sizeof(*l));
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

/* fsync: the watched file's calls are counted, with what was still live at the time. */
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	struct stat st;

	if (fake.sync_ino && fstat(fd, &st) == 0 && st.st_dev == fake.sync_dev &&
	    st.st_ino == fake.sync_ino) {
		fake.syncs++;
		fake.live_at_sync = fake_live_devs() + fake_live_loops();
		if (fake.sync_errno) {
			errno = fake.sync_errno;
			return -1;
		}
	}
	return __real_fsync(fd);
}

/* loopscan walks /sys/block and /dev: answer from the fake loops instead. */
int __wrap_loopdev_find_backing(dev_t dev, ino_t ino, char *ret_name, size_t len);
int __wrap_loopdev_find_backing(dev_t dev, ino_t ino, char *ret_name, size_t len)
{
	fake_gc();
	if (fake_step()) {
		errno = fake.fail_errno;
		return -fake.fail_errno;
	}
	for (int i = 0; i < FAKE_LOOPS; i++)
		if (fake.loop[i].bound && fake.loop[i].dev == (uint64_t)dev &&
		    fake.loop[i].ino == (uint64_t)ino) {
			snprintf(ret_name, len, "%s/loop%d", fake.dir, i);
			return 1;
		}
	return 0;
}

/* ---- libdevmapper ---- */
struct dm_task *__wrap_dm_task_create(int type);
void __wrap_dm_task_destroy(struct dm_task *dmt);
int __wrap_dm_task_set_name(struct dm_task *dmt, const char *name);
int __wrap_dm_task_add_target(struct dm_task *dmt, uint64_t start, uint64_t size, const char *ttype,
			      const char *params);
int __wrap_dm_task_run(struct dm_task *dmt);
int __wrap_dm_task_get_info(struct dm_task *dmt, struct dm_info *dmi);
int __wrap_dm_task_get_errno(struct dm_task *dmt);
int __wrap_dm_task_set_cookie(struct dm_task *dmt, uint32_t *cookie, uint16_t flags);
int __wrap_dm_udev_wait(uint32_t cookie);
int __wrap_dm_task_retry_remove(struct dm_task *dmt);
int __wrap_dm_task_skip_lockfs(struct dm_task *dmt);
void *__wrap_dm_get_next_target(struct dm_task *dmt, void *next, uint64_t *start, uint64_t *length,
				char **target_type, char **params);
void __wrap_dm_udev_set_sync_support(int sync_with_udev);
void __wrap_dm_log_with_errno_init(dm_log_with_errno_fn fn);

struct dm_task *__wrap_dm_task_create(int type)
{
	struct fake_task *t = calloc(1, sizeof(*t));

	if (t)
		t->type = type;
	return (struct dm_task *)t;
}

void __wrap_dm_task_destroy(struct dm_task *dmt)
{
	free(dmt);
}

int __wrap_dm_task_set_name(struct dm_task *dmt, const char *name)
{
	struct fake_task *t = (struct fake_task *)dmt;

	snprintf(t->name, sizeof(t->name), "%s", name);
	return 1;
}

int __wrap_dm_task_add_target(struct dm_task *dmt, uint64_t start, uint64_t size, const char *ttype,
			      const char *params)
{
	struct fake_task *t = (struct fake_task *)dmt;
	struct fake_target *tg;

	if (t->ntargets == FAKE_TARGETS)
		return 0;
	tg = &t->t[t->ntargets++];
	tg->start = start;
	tg->len = size;
	snprintf(tg->type, sizeof(tg->type), "%s", ttype);
	snprintf(tg->params, sizeof(tg->params), "%s", params);
	return 1;
}

/* A table may only name live devices: bound loops (by path) and dm devices (253:minor). */
static int fake_check_table(const struct fake_task *t)
{
	for (unsigned i = 0; i < t->ntargets; i++) {
		char params[512], *save = NULL, *tok;

		snprintf(params, sizeof(params), "%s", t->t[i].params);
		for (tok = strtok_r(params, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			unsigned maj, min;

			if (!strncmp(tok, fake.dir, strlen(fake.dir))) {
				int idx = atoi(strrchr(tok, '/') + 5);

				if (idx < 0 || idx >= FAKE_LOOPS || !fake.loop[idx].bound)
					return -ENXIO;
			} else if (sscanf(tok, "%u:%u", &maj, &min) == 2) {
				bool ok = false;

				for (int d = 0; d < FAKE_DEVS; d++)
					if (fake.dev[d].exists && maj == 253 &&
					    fake.dev[d].minor == min)
						ok = true;
				if (!ok)
					return -ENXIO;
			}
		}
	}
	return 0;
}

int __wrap_dm_task_run(struct dm_task *dmt)
{
	struct fake_task *t = (struct fake_task *)dmt;
	struct fake_dev *d = fake_dev_find(t->name);
	int r;

	t->ran = true;
	fake_gc();
	if (fake_step()) {
		t->err = fake.fail_errno;
		return 0;
	}
	memset(&t->info, 0, sizeof(t->info));
	switch (t->type) {
	case DM_DEVICE_INFO:
	case DM_DEVICE_STATUS:
		if (d) {
			t->info.exists = 1;
			t->info.major = 253;
			t->info.minor = d->minor;
			t->info.live_table = d->ntargets > 0;
			t->info.open_count = d->open_count;
			t->info.suspended = d->suspended;
			t->info.target_count = (int32_t)d->ntargets;
			if (t->type == DM_DEVICE_STATUS && d->ntargets) {
				t->ntargets = 1;
				t->t[0] = d->t[0];
				snprintf(t->status_params, sizeof(t->status_params), "%s",
					 strcmp(d->t[0].type, "snapshot") ? ""
									  : fake.snapshot_status);
			}
		}
		return 1;
	case DM_DEVICE_CREATE:
		if (d) {
			t->err = EBUSY;
			return 0;
		}
		r = fake_check_table(t);
		if (r < 0) {
			t->err = -r;
			return 0;
		}
		for (int i = 0; i < FAKE_DEVS; i++) {
			if (fake.dev[i].exists)
				continue;
			d = &fake.dev[i];
			memset(d, 0, sizeof(*d));
			d->exists = true;
			snprintf(d->name, sizeof(d->name), "%s", t->name);
			d->minor = fake.next_minor++;
			d->ntargets = t->ntargets;
			memcpy(d->t, t->t, sizeof(d->t));
			return 1;
		}
		t->err = ENOSPC;
		return 0;
	case DM_DEVICE_REMOVE:
		if (!d) {
			t->err = ENXIO;
			return 0;
		}
		if (d->open_count > 0) {
			t->err = EBUSY;
			return 0;
		}
		/* A device something else is built on is open, for the kernel. */
		for (int i = 0; i < FAKE_DEVS; i++) {
			char mm[32];

			snprintf(mm, sizeof(mm), "253:%u", d->minor);
			for (unsigned k = 0; fake.dev[i].exists && k < fake.dev[i].ntargets; k++)
				if (fake_params_name(fake.dev[i].t[k].params, mm)) {
					t->err = EBUSY;
					return 0;
				}
		}
		d->exists = false;
		return 1;
	case DM_DEVICE_LIST:
		return 1;
	case DM_DEVICE_DEPS:
		if (!d) {
			t->err = ENXIO;
			return 0;
		}
		t->ntargets = d->ntargets;
		memcpy(t->t, d->t, sizeof(t->t));
		return 1;
	case DM_DEVICE_MKNODES:
	case DM_DEVICE_SUSPEND:
	case DM_DEVICE_RESUME:
	case DM_DEVICE_RELOAD:
	case DM_DEVICE_CLEAR:
		if (!d) {
			t->err = ENXIO;
			return 0;
		}
		if (t->type == DM_DEVICE_SUSPEND)
			d->suspended = true;
		if (t->type == DM_DEVICE_RESUME)
			d->suspended = false;
		return 1;
	}
	t->err = EINVAL;
	return 0;
}

int __wrap_dm_task_get_info(struct dm_task *dmt, struct dm_info *dmi)
{
	struct fake_task *t = (struct fake_task *)dmt;

	if (!t->ran)
		return 0;
	*dmi = t->info;
	return 1;
}

int __wrap_dm_task_get_errno(struct dm_task *dmt)
{
	return ((struct fake_task *)dmt)->err;
}

int __wrap_dm_task_set_cookie(struct dm_task *dmt, uint32_t *cookie, uint16_t flags)
{
	*cookie = ++fake.cookies_set;
	return 1;
}

int __wrap_dm_udev_wait(uint32_t cookie)
{
	fake.cookies_waited++;
	return 1;
}

int __wrap_dm_task_retry_remove(struct dm_task *dmt)
{
	return 1;
}

int __wrap_dm_task_skip_lockfs(struct dm_task *dmt)
{
	return 1;
}

void *__wrap_dm_get_next_target(struct dm_task *dmt, void *next, uint64_t *start, uint64_t *length,
				char **target_type, char **params)
{
	struct fake_task *t = (struct fake_task *)dmt;

	if (!t->ntargets) {
		*target_type = NULL;
		*params = NULL;
		return NULL;
	}
	*start = t->t[0].start;
	*length = t->t[0].len;
	*target_type = t->t[0].type;
	*params = t->status_params;
	return NULL;
}

void __wrap_dm_udev_set_sync_support(int sync_with_udev)
{
}

void __wrap_dm_log_with_errno_init(dm_log_with_errno_fn fn)
{
}

/* DM_DEVICE_LIST's answer: every fake device, as the kernel's packed dm_names list. */
struct dm_names *__wrap_dm_task_get_names(struct dm_task *dmt);
struct dm_names *__wrap_dm_task_get_names(struct dm_task *dmt)
{
	static uint64_t buf[FAKE_DEVS * 24];
	struct dm_names *prev = NULL, *n;
	size_t off = 0;

	memset(buf, 0, sizeof(buf));
	for (int i = 0; i < FAKE_DEVS; i++) {
		size_t len;

		if (!fake.dev[i].exists)
			continue;
		n = (struct dm_names *)((char *)buf + off);
		n->dev = makedev(253, fake.dev[i].minor);
		strcpy(n->name, fake.dev[i].name);
		len = (offsetof(struct dm_names, name) + strlen(n->name) + 1 + 7) & ~(size_t)7;
		if (prev)
			prev->next = (uint32_t)((char *)n - (char *)prev);
		prev = n;
		off += len;
	}
	return (struct dm_names *)buf; /* dev 0: no devices */
}

/* DM_DEVICE_DEPS' answer: the devices the table names (loops as 7:N, dm as 253:N). */
struct dm_deps *__wrap_dm_task_get_deps(struct dm_task *dmt);
struct dm_deps *__wrap_dm_task_get_deps(struct dm_task *dmt)
{
	static uint64_t buf[1 + 8];
	struct dm_deps *deps = (struct dm_deps *)buf;
	struct fake_task *t = (struct fake_task *)dmt;

	memset(buf, 0, sizeof(buf));
	for (unsigned i = 0; i < t->ntargets && deps->count < 8; i++) {
		char params[512], *save = NULL, *tok;

		snprintf(params, sizeof(params), "%s", t->t[i].params);
		for (tok = strtok_r(params, " ", &save); tok && deps->count < 8;
		     tok = strtok_r(NULL, " ", &save)) {
			unsigned maj, min;

			if (!strncmp(tok, fake.dir, strlen(fake.dir)))
				deps->device[deps->count++] =
					makedev(7, atoi(strrchr(tok, '/') + 5));
			else if (sscanf(tok, "%u:%u", &maj, &min) == 2)
				deps->device[deps->count++] = makedev(maj, min);
		}
	}
	return deps;
}

bool __wrap_dmops_dm_loaded(void);
bool __wrap_dmops_dm_loaded(void)
{
	return true;
}
