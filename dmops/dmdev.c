/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdarg.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "dmops/dmdev.h"

const char *dmops_udev_control = "/run/udev/control";

static void cleanup_dm_taskp(struct dm_task **t)
{
	if (*t)
		dm_task_destroy(*t);
}
#define _cleanup_dm_task_ _cleanup_(cleanup_dm_taskp)

static void cleanup_dm_poolp(struct dm_pool **p)
{
	if (*p)
		dm_pool_destroy(*p);
}

bool dmops_dm_loaded(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/devices", "re");
	char line[128];

	if (!f)
		return true; /* cannot tell: let libdm answer */
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " device-mapper\n"))
			return true;
	return false;
}

bool dmops_udev_running(void)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	/* A socket file alone proves nothing: udevd may have died and left it. */
	if (access(dmops_udev_control, F_OK) < 0)
		return false;
	if (strlen(dmops_udev_control) >= sizeof(sa.sun_path))
		return false;
	strcpy(sa.sun_path, dmops_udev_control);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	return errno == EAGAIN || errno == EINPROGRESS; /* alive, just busy */
}

static char dmops_last_msg[256];

const char *dmops_last_error(void)
{
	return dmops_last_msg;
}

/* libdm logs to stderr by default; a library must not print, so keep the last error. */
__attribute__((format(printf, 5, 6))) static void dmops_log(int level, const char *file, int line,
							    int dm_errno_or_class, const char *f,
							    ...)
{
	va_list ap;

	if ((level & 7) > 3) /* above _LOG_ERR: notices and debug */
		return;
	va_start(ap, f);
	vsnprintf(dmops_last_msg, sizeof(dmops_last_msg), f, ap);
	va_end(ap);
}

/* Decides udev sync and logging once per process, before the first dm call. */
static void dmops_udev_setup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	dm_log_with_errno_init(dmops_log);
	dm_udev_set_sync_support(dmops_udev_running() ? 1 : 0);
}

/* -errno of a failed task: libdm's errno when it kept one, else -EIO. */
static int dmops_task_errno(struct dm_task *t)
{
	int e = t ? dm_task_get_errno(t) : 0;

	return e > 0 ? -e : -EIO;
}

static struct dm_task *dmops_task(int type, const char *name)
{
	struct dm_task *t;

	dmops_udev_setup();
	t = dm_task_create(type);
	if (!t)
		return NULL;
	if (name && !dm_task_set_name(t, name)) {
		dm_task_destroy(t);
		return NULL;
	}
	return t;
}

/*
 * Runs a task that creates, resumes or removes a node, with a udev cookie that
 * is always waited for (that is also when libdm makes/removes nodes without udev).
 */
static int dmops_run_with_cookie(struct dm_task *t)
{
	uint32_t cookie = 0;
	int r = 0;

	if (!dm_task_set_cookie(t, &cookie, 0))
		return dmops_task_errno(t);
	if (!dm_task_run(t))
		r = dmops_task_errno(t);
	/* Even after a failure: libdm may have taken a udev semaphore for the cookie. */
	dm_udev_wait(cookie);
	return r;
}

static int dmops_add_targets(struct dm_task *t, const struct dmops_table *tbl)
{
	for (unsigned i = 0; i < tbl->count; i++) {
		const struct dmops_target *tg = &tbl->targets[i];

		if (!dm_task_add_target(t, tg->start, tg->length, tg->type, tg->params))
			return -ENOMEM;
	}
	return 0;
}

int dmops_dev_info(const char *name, struct dmops_dev_info *ret)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_INFO, name);
	struct dm_info info;
	struct dmops_dev_info out = {0};

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	memset(&info, 0, sizeof(info));
	if (!dm_task_get_info(t, &info))
		return dmops_task_errno(t);
	out.exists = info.exists;
	if (info.exists) {
		out.live_table = info.live_table;
		out.suspended = info.suspended;
		out.open_count = info.open_count;
		out.major = info.major;
		out.minor = info.minor;
		out.target_count = info.target_count;
	}
	*ret = out;
	return 0;
}

int dmops_dev_create(const char *name, const struct dmops_table *tbl)
{
	_cleanup_dm_task_ struct dm_task *t = NULL;
	struct dmops_dev_info info;
	int r;

	r = dmops_dev_info(name, &info);
	if (r < 0)
		return r;
	if (info.exists)
		return -EEXIST;
	t = dmops_task(DM_DEVICE_CREATE, name);
	if (!t)
		return -ENOMEM;
	r = dmops_add_targets(t, tbl);
	if (r < 0)
		return r;
	return dmops_run_with_cookie(t);
}

int dmops_dev_remove(const char *name)
{
	_cleanup_dm_task_ struct dm_task *t = NULL;
	struct dmops_dev_info info;
	int r;

	r = dmops_dev_info(name, &info);
	if (r < 0)
		return r;
	if (!info.exists)
		return -ENXIO;
	t = dmops_task(DM_DEVICE_REMOVE, name);
	if (!t)
		return -ENOMEM;
	/* blkid/udev may hold the node for a moment after the last real user left. */
	if (!dm_task_retry_remove(t))
		return -ENOMEM;
	return dmops_run_with_cookie(t);
}

int dmops_dev_mknodes(const char *name)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_MKNODES, name);

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	dm_task_update_nodes();
	return 0;
}

int dmops_dev_suspend(const char *name, bool skip_lockfs)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_SUSPEND, name);

	if (!t)
		return -ENOMEM;
	if (skip_lockfs && !dm_task_skip_lockfs(t))
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	return 0;
}

int dmops_dev_resume(const char *name)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_RESUME, name);

	if (!t)
		return -ENOMEM;
	return dmops_run_with_cookie(t);
}

static int dmops_dev_clear(const char *name)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_CLEAR, name);

	if (!t)
		return -ENOMEM;
	return dm_task_run(t) ? 0 : dmops_task_errno(t);
}

int dmops_dev_reload(const char *name, const struct dmops_table *tbl)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_RELOAD, name);
	int r;

	if (!t)
		return -ENOMEM;
	r = dmops_add_targets(t, tbl);
	if (r < 0)
		return r;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	r = dmops_dev_suspend(name, false);
	if (r < 0) {
		/* The new table never went live: drop it, and make sure I/O flows. */
		dmops_dev_clear(name);
		dmops_dev_resume(name);
		return r;
	}
	r = dmops_dev_resume(name);
	if (r < 0) {
		/* A device left suspended blocks all I/O: try once more on the old table. */
		dmops_dev_clear(name);
		dmops_dev_resume(name);
	}
	return r;
}

int dmops_dev_snapshot_status(const char *name, struct dmops_snapshot_status *ret)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_STATUS, name);
	_cleanup_(cleanup_dm_poolp) struct dm_pool *mem = NULL;
	struct dm_status_snapshot *st = NULL;
	struct dmops_snapshot_status out = {0};
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	struct dm_info info;

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	if (!dm_task_get_info(t, &info))
		return dmops_task_errno(t);
	if (!info.exists)
		return -ENXIO;
	dm_get_next_target(t, NULL, &start, &length, &type, &params);
	if (!type || strcmp(type, "snapshot") != 0 || !params)
		return -EMEDIUMTYPE;
	mem = dm_pool_create("cowpunch-status", 256);
	if (!mem)
		return -ENOMEM;
	if (!dm_get_status_snapshot(mem, params, &st))
		return -EBADMSG;
	out.invalid = st->invalid;
	out.overflow = st->overflow;
	out.merge_failed = st->merge_failed;
	out.used_sectors = st->used_sectors;
	out.total_sectors = st->total_sectors;
	out.metadata_sectors = st->has_metadata_sectors ? st->metadata_sectors : 0;
	*ret = out;
	return 0;
}

int dmops_dev_deps(const char *name, uint64_t *ret_devs, unsigned max)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_DEPS, name);
	struct dm_deps *deps;
	unsigned n;

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	deps = dm_task_get_deps(t);
	if (!deps)
		return -ENXIO;
	n = deps->count < max ? deps->count : max;
	for (unsigned i = 0; i < n; i++)
		ret_devs[i] = deps->device[i];
	return (int)n;
}

int dmops_target_versions(struct dmops_target_version *ret, unsigned max, char *ret_driver,
			  size_t len)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_LIST_VERSIONS, NULL);
	struct dm_versions *v;
	unsigned n = 0;
	uint32_t next;

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	if (ret_driver && len && !dm_task_get_driver_version(t, ret_driver, len))
		ret_driver[0] = '\0';
	v = dm_task_get_versions(t);
	if (!v)
		return -EIO;
	do {
		if (n < max) {
			snprintf(ret[n].name, sizeof(ret[n].name), "%s", v->name);
			memcpy(ret[n].version, v->version, sizeof(ret[n].version));
		}
		n++;
		next = v->next;
		v = (struct dm_versions *)((char *)v + next);
	} while (next);
	return (int)n;
}

int dmops_list_devices(struct dmops_name *ret, unsigned max)
{
	_cleanup_dm_task_ struct dm_task *t = dmops_task(DM_DEVICE_LIST, NULL);
	struct dm_names *names;
	unsigned n = 0;
	uint32_t next;

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t))
		return dmops_task_errno(t);
	names = dm_task_get_names(t);
	if (!names)
		return -EIO;
	if (!names->dev)
		return 0; /* no devices */
	do {
		if (n < max) {
			snprintf(ret[n].name, sizeof(ret[n].name), "%s", names->name);
			ret[n].dev = names->dev;
		}
		n++;
		next = names->next;
		names = (struct dm_names *)((char *)names + next);
	} while (next);
	return (int)n;
}
