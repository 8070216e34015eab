/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The discard self-test of `cowpunch doctor`, its record per kernel, and the
 * verdict `create --discard` asks for (host/doctor.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/dmdev.h"
#include "dmops/loopdev.h"
#include "dmops/table.h"
#include "dmops/vmdisk.h"
#include "host/doctor.h"
#include "host/vmstore.h"

#define DT_CHUNK	 4096u
#define DT_CHUNK_SECTORS (DT_CHUNK / DMOPS_SECTOR)
#define DT_DISK_BYTES	 (1024u * 1024u) /* 256 chunks */
/*
 * The origin is two linear maps of one origin file, as base-ID with --discard
 * (base image, then the tail file): every part of it takes discards.  With a
 * `zero` tail instead, Linux < 6.4 would turn the snapshot's discards off.
 */
#define DT_BASE_BYTES (512u * 1024u)
/* Written in this order they take COW chunks 2, 3 and 4 (0: header, 1: first area). */
#define DT_CHUNK_A     11u
#define DT_CHUNK_B     10u  /* the discard starts in it... */
#define DT_CHUNK_C     200u /* ...and must not reach this one, the next in the COW */
#define DT_DISCARD_IN  3072u
#define DT_DISCARD_LEN 2048u
#define DT_DISCARD_END (DT_DISCARD_IN + DT_DISCARD_LEN - DT_CHUNK) /* into chunk A */
#define DT_GONE_TRIES  250
#define DT_GONE_NS     (20 * 1000 * 1000)
#define DT_RECORD_MAX  65536

static const char *const dt_result_names[] = {
	[DOCTOR_DISCARD_SAFE] = "safe",
	[DOCTOR_DISCARD_CORRUPTS] = "corrupts",
	[DOCTOR_DISCARD_UNSUPPORTED] = "unsupported",
};

/* What one self-test holds, undone by dt_teardown() whatever happened. */
struct dt {
	char *dir, *origin_path, *cow_path;
	char origin_name[64], snap_name[64];
	bool origin_made, snap_made;
	struct loopdev origin_lo, cow_lo;
};

/* A byte pattern a chunk's content can be told apart by (never all zeros). */
static void dt_fill(uint8_t *buf, uint32_t chunk)
{
	uint32_t x = chunk * 2654435761u + 1;

	for (uint32_t i = 0; i < DT_CHUNK; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)(x | 1);
	}
}

static int dt_files(struct dt *t)
{
	_cleanup_free_ uint8_t *buf = malloc(DT_CHUNK);
	_cleanup_close_ int fd = -1;
	int r;

	if (!buf)
		return -ENOMEM;
	fd = open(t->origin_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (uint32_t c = 0; c < DT_DISK_BYTES / DT_CHUNK; c++) {
		ssize_t n;

		memset(buf, (int)(c & 0xff) | 0x80, DT_CHUNK);
		n = util_pwrite_full(fd, buf, DT_CHUNK, (uint64_t)c * DT_CHUNK);
		if (n < 0)
			return (int)n;
	}
	if (fsync(fd) < 0)
		return -errno;
	r = vmdisk_cow_create(t->cow_path, DT_DISK_BYTES, DT_CHUNK_SECTORS);
	return r;
}

/* Builds origin (as base-ID with --discard) and snap (as overlay-ID with --discard). */
static int dt_devices(const char *state, struct dt *t, bool *ret_no_feature)
{
	_cleanup_close_ int host = -1;
	struct dmops_dev_info info;
	struct dmops_table tbl;
	char origin[32];
	int r;

	*ret_no_feature = false;
	host = vmstore_lock_host(state);
	if (host < 0)
		return host;
	r = loopdev_attach(t->origin_path, true, &t->origin_lo);
	if (r < 0)
		return r;
	r = loopdev_attach_dio(t->cow_path, false, LOOPDEV_DIO_OFF, &t->cow_lo);
	if (r < 0)
		return r;
	r = dmops_table_base(t->origin_lo.path, DT_BASE_BYTES / DMOPS_SECTOR,
			     DT_DISK_BYTES / DMOPS_SECTOR, t->origin_lo.path, &tbl);
	if (r < 0)
		return r;
	r = dmops_dev_create(t->origin_name, &tbl);
	if (r < 0)
		return r;
	t->origin_made = true;
	r = dmops_dev_info(t->origin_name, &info);
	if (r < 0)
		return r;
	if (!info.exists)
		return -ENXIO;
	snprintf(origin, sizeof(origin), "%u:%u", info.major, info.minor);
	r = dmops_table_overlay(origin, t->cow_lo.path, DT_DISK_BYTES / DMOPS_SECTOR,
				DT_CHUNK_SECTORS, true, &tbl);
	if (r < 0)
		return r;
	r = dmops_dev_create(t->snap_name, &tbl);
	if (r == -EINVAL)
		*ret_no_feature = true; /* snapshot < 1.16: no discard_zeroes_cow */
	if (r < 0)
		return r;
	t->snap_made = true;
	/* The tables hold the loops now (autoclear: they go with the tables). */
	loopdev_close(&t->origin_lo);
	loopdev_close(&t->cow_lo);
	return 0;
}

/* Waits until no loop serves path any more (autoclear may finish late). */
static void dt_wait_loop_gone(const char *path)
{
	for (int i = 0; path && i < DT_GONE_TRIES; i++) {
		struct timespec ts = {0, DT_GONE_NS};

		if (vmdisk_file_in_use(path) <= 0)
			return;
		nanosleep(&ts, NULL);
	}
}

/* Removes what the self-test made.  0, or the first error (something may be left). */
static int dt_teardown(struct dt *t)
{
	int r = 0, e;

	if (t->snap_made && (e = dmops_dev_remove(t->snap_name)) < 0 && e != -ENXIO)
		r = e;
	if (t->origin_made && (e = dmops_dev_remove(t->origin_name)) < 0 && e != -ENXIO && !r)
		r = e;
	loopdev_close(&t->cow_lo);
	loopdev_close(&t->origin_lo);
	if (r < 0) {
		/* The tables still hold the loops: keep their files for doctor --fix to find. */
		free(t->dir);
		free(t->origin_path);
		free(t->cow_path);
		return r;
	}
	dt_wait_loop_gone(t->cow_path);
	dt_wait_loop_gone(t->origin_path);
	if (t->cow_path && unlink(t->cow_path) < 0 && errno != ENOENT && !r)
		r = -errno;
	if (t->origin_path && unlink(t->origin_path) < 0 && errno != ENOENT && !r)
		r = -errno;
	if (t->dir && rmdir(t->dir) < 0 && !r)
		r = -errno;
	free(t->dir);
	free(t->origin_path);
	free(t->cow_path);
	return r;
}

static int dt_io(int fd, bool write, uint8_t *buf, uint32_t chunk)
{
	ssize_t n = write ? util_pwrite_full(fd, buf, DT_CHUNK, (uint64_t)chunk * DT_CHUNK)
			  : util_pread_full(fd, buf, DT_CHUNK, (uint64_t)chunk * DT_CHUNK);

	if (n < 0)
		return (int)n;
	return n == DT_CHUNK ? 0 : -EIO;
}

/* Counts the bytes of got that differ from want; *ret_first is the first one's index. */
static uint32_t dt_diff(const uint8_t *want, const uint8_t *got, uint32_t len, uint32_t *ret_first)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < len; i++)
		if (want[i] != got[i] && n++ == 0)
			*ret_first = i;
	return n;
}

/*
 * Writes the three chunks through the snapshot, discards, reads them back.
 * Returns the result (>= 0) with detail filled, or -errno.
 */
static int dt_run(const char *dev, char *detail, size_t len)
{
	static const uint32_t chunks[] = {DT_CHUNK_A, DT_CHUNK_B, DT_CHUNK_C};
	_cleanup_free_ uint8_t *want = NULL, *got = NULL;
	_cleanup_close_ int fd = -1;
	uint64_t range[2] = {(uint64_t)DT_CHUNK_B * DT_CHUNK + DT_DISCARD_IN, DT_DISCARD_LEN};
	uint32_t first = 0, bad;
	int r;

	if (posix_memalign((void **)&want, 4096, DT_CHUNK) ||
	    posix_memalign((void **)&got, 4096, DT_CHUNK))
		return -ENOMEM;
	fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < ARRAY_SIZE(chunks); i++) {
		dt_fill(want, chunks[i]);
		r = dt_io(fd, true, want, chunks[i]);
		if (r < 0)
			return r;
	}
	if (ioctl(fd, BLKDISCARD, range) < 0) {
		if (errno != EOPNOTSUPP)
			return -errno;
		snprintf(detail, len,
			 "the snapshot refuses discards (BLKDISCARD: EOPNOTSUPP), so "
			 "discard_zeroes_cow cannot be used on this kernel");
		return DOCTOR_DISCARD_UNSUPPORTED;
	}
	for (size_t i = 0; i < ARRAY_SIZE(chunks); i++) {
		/* Bytes the discard covers may read as zeros; every other byte must stay. */
		uint32_t from = chunks[i] == DT_CHUNK_A ? DT_DISCARD_END : 0;
		uint32_t to = chunks[i] == DT_CHUNK_B ? DT_DISCARD_IN : DT_CHUNK;

		dt_fill(want, chunks[i]);
		r = dt_io(fd, false, got, chunks[i]);
		if (r < 0)
			return r;
		bad = dt_diff(want + from, got + from, to - from, &first);
		first += from;
		if (bad) {
			snprintf(
				detail, len,
				"a %u-byte discard from byte %llu of a discard_zeroes_cow snapshot "
				"(4 KiB chunks), which ends %u bytes into origin chunk %u, changed "
				"%u bytes of origin chunk %u (from byte %u of it)%s",
				DT_DISCARD_LEN, (unsigned long long)range[0], DT_DISCARD_END,
				DT_CHUNK_A, bad, chunks[i], first,
				chunks[i] == DT_CHUNK_C ? ", the next chunk in the COW file: the "
							  "discard was not cut at the chunk end"
							: "");
			return DOCTOR_DISCARD_CORRUPTS;
		}
	}
	snprintf(detail, len,
		 "a %u-byte discard from byte %llu of a discard_zeroes_cow snapshot (4 KiB chunks) "
		 "left origin chunk %u (the next chunk in the COW file) and the bytes of chunks "
		 "%u and %u outside the discard as written",
		 DT_DISCARD_LEN, (unsigned long long)range[0], DT_CHUNK_C, DT_CHUNK_B, DT_CHUNK_A);
	return DOCTOR_DISCARD_SAFE;
}

void doctor_discard_selftest(const char *state, struct doctor_check *c)
{
	_cleanup_free_ char *ddir = NULL, *tmpl = NULL;
	struct dt t = {.origin_lo = {.fd = -1}, .cow_lo = {.fd = -1}};
	char detail[768] = "", dev[96];
	struct utsname u;
	bool no_feature = false;
	long pid = (long)getpid();
	int r, res = -1, e;

	c->name = "discard-selftest";
	uname(&u);
	r = doctor_dir(state, &ddir);
	if (r < 0) {
		doctor_set(c, DOCTOR_FAIL, "not run: %s/.doctor: %s", state, strerror(-r));
		doctor_set_action(c, "run doctor as root with a writable --state-dir");
		return;
	}
	if (asprintf(&tmpl, "%s/selftest-%ld-XXXXXX", ddir, pid) < 0 || !mkdtemp(tmpl)) {
		doctor_set(c, DOCTOR_FAIL, "not run: %s: cannot make a scratch folder: %s", ddir,
			   strerror(errno));
		return;
	}
	t.dir = TAKE_PTR(tmpl);
	if (asprintf(&t.origin_path, "%s/origin.img", t.dir) < 0 ||
	    asprintf(&t.cow_path, "%s/cow", t.dir) < 0) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(t.origin_name, sizeof(t.origin_name), "cowpunch-doctor-%ld-origin", pid);
	snprintf(t.snap_name, sizeof(t.snap_name), "cowpunch-doctor-%ld-snap", pid);
	r = dt_files(&t);
	if (r < 0)
		goto out;
	r = dt_devices(state, &t, &no_feature);
	if (r < 0 && no_feature) {
		snprintf(detail, sizeof(detail),
			 "the snapshot target refuses the feature discard_zeroes_cow (it needs "
			 "snapshot 1.16.0, Linux 5.3)");
		res = DOCTOR_DISCARD_UNSUPPORTED;
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", t.snap_name);
	res = r = dt_run(dev, detail, sizeof(detail));
out:
	e = dt_teardown(&t);
	if (r < 0) {
		doctor_set(c, DOCTOR_FAIL, "could not run: %s; create --discard stays refused",
			   *dmops_last_error() ? dmops_last_error() : strerror(-r));
		doctor_set_action(c, "run doctor as root on a host with loop and device-mapper "
				     "(dm-snapshot) support");
	} else if (res == DOCTOR_DISCARD_CORRUPTS) {
		doctor_set(
			c, DOCTOR_FAIL,
			"this kernel (%s) corrupts data on discards not aligned to the snapshot's "
			"chunk size: %s; create --discard is refused on this host",
			u.release, detail);
		doctor_set_action(c, "leave discard off (the default) and reclaim offline "
				     "(cowpunch reclaim); see docs/kernel-facts.md, the discard "
				     "corruption");
	} else if (res == DOCTOR_DISCARD_UNSUPPORTED) {
		doctor_set(c, DOCTOR_WARNING, "%s; create --discard is refused on this host",
			   detail);
		doctor_set_action(c, "nothing needed: reclaim offline (cowpunch reclaim)");
	} else
		doctor_set(c, DOCTOR_OK, "kernel %s: %s; create --discard is allowed", u.release,
			   detail);
	if (res >= 0) {
		int w = doctor_discard_record(state, u.release, u.version, res, detail);

		if (w < 0) {
			size_t l = strlen(c->reason);

			snprintf(c->reason + l, sizeof(c->reason) - l,
				 " (the result could not be kept in %s: %s)", ddir, strerror(-w));
			c->status = DOCTOR_FAIL;
		}
	}
	if (e < 0) {
		size_t l = strlen(c->reason);

		snprintf(c->reason + l, sizeof(c->reason) - l,
			 "; CLEAN-UP FAILED: %s (devices %s, %s or files in %s/selftest-%ld-* may "
			 "be left)",
			 strerror(-e), t.snap_name, t.origin_name, ddir, pid);
		c->status = DOCTOR_FAIL;
		doctor_set_action(c, "run cowpunch doctor --fix once nothing uses them");
	}
}

/* STATE/.doctor/discard-RELEASE.json; '/' in a release (never seen) becomes '_'. */
static char *dt_record_path(const char *state, const char *release)
{
	char *p;

	if (asprintf(&p, "%s/.doctor/discard-%s.json", state, release) < 0)
		return NULL;
	for (char *s = p + strlen(state) + strlen("/.doctor/"); *s; s++)
		if (*s == '/')
			*s = '_';
	return p;
}

int doctor_discard_record(const char *state, const char *release, const char *version,
			  enum doctor_discard_result result, const char *detail)
{
	_cleanup_free_ char *dir = NULL, *path = NULL, *text = NULL;
	json_object *o = json_object_new_object();
	char now[32];
	int r;

	if (!o)
		return -ENOMEM;
	r = doctor_dir(state, &dir);
	if (r < 0)
		goto put;
	path = dt_record_path(state, release);
	vmstore_format_time(time(NULL), now);
	json_object_object_add(o, "kernel_release", json_object_new_string(release));
	json_object_object_add(o, "kernel_version", json_object_new_string(version));
	json_object_object_add(o, "result", json_object_new_string(dt_result_names[result]));
	json_object_object_add(o, "detail", json_object_new_string(detail));
	json_object_object_add(o, "time", json_object_new_string(now));
	if (!path ||
	    asprintf(&text, "%s\n",
		     json_object_to_json_string_ext(
			     o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0) {
		r = -ENOMEM;
		goto put;
	}
	r = vmstore_write_atomic(path, text, strlen(text));
put:
	json_object_put(o);
	return r;
}

static const char *dt_get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int doctor_discard_verdict(const char *state, const char *release, const char *version,
			   struct host_error *err)
{
	_cleanup_free_ char *path = dt_record_path(state, release), *buf = NULL;
	_cleanup_close_ int fd = -1;
	const char *got_version, *result, *detail;
	json_object *o;
	ssize_t n;
	int r = -EPERM;

	if (!path || !(buf = malloc(DT_RECORD_MAX + 1)))
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		host_seterr(
			err,
			"create --discard: the discard self-test has not run on this kernel "
			"(%s): no %s.  Run 'cowpunch doctor' first: it tests whether this "
			"kernel's discard_zeroes_cow corrupts other chunks on unaligned discards "
			"(Debian's 6.1 and 6.12 do), and only a passing result allows --discard",
			release, path);
		return -EPERM;
	}
	if (fd < 0)
		return -errno;
	n = util_pread_full(fd, buf, DT_RECORD_MAX, 0);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	o = json_tokener_parse(buf);
	result = o ? dt_get_string(o, "result") : NULL;
	got_version = o ? dt_get_string(o, "kernel_version") : NULL;
	detail = o ? dt_get_string(o, "detail") : NULL;
	if (!result || !got_version) {
		host_seterr(err,
			    "create --discard: %s is damaged (want an object with \"result\" and "
			    "\"kernel_version\" strings); run 'cowpunch doctor' again",
			    path);
		r = -EBADMSG;
	} else if (strcmp(got_version, version) != 0)
		host_seterr(err,
			    "create --discard: %s is for another build of kernel %s (%s, running: "
			    "%s); run 'cowpunch doctor' again",
			    path, release, got_version, version);
	else if (strcmp(result, "safe") == 0)
		r = 0;
	else if (strcmp(result, "corrupts") == 0)
		host_seterr(err,
			    "create --discard refused: 'cowpunch doctor' found that this kernel "
			    "(%s) corrupts data on unaligned discards (%s: %s).  Leave discard off "
			    "and reclaim offline",
			    release, path, detail ? detail : "");
	else
		host_seterr(err,
			    "create --discard refused: this kernel (%s) cannot use "
			    "discard_zeroes_cow (%s: %s)",
			    release, path, detail ? detail : result);
	json_object_put(o);
	return r;
}

int doctor_discard_allowed(const char *state, struct host_error *err)
{
	struct utsname u;

	if (uname(&u) < 0)
		return -errno;
	return doctor_discard_verdict(state, u.release, u.version, err);
}
