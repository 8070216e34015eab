/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/vmstore.h"
#include "common/cleanup.h"
#include "common/util.h"

#define VMSTORE_SAMPLES	     16
#define VMSTORE_SAMPLE_BYTES 4096
#define VMSTORE_HOST_LOCK    "/run/cowpunch.lock"
#define VMSTORE_RECORD_MAX   (1 << 20)

static void cleanup_json_putp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(cleanup_json_putp)

const char *vmstore_state_dir(const char *opt)
{
	const char *env = getenv("COWPUNCH_STATE_DIR");

	if (opt && *opt)
		return opt;
	if (env && *env)
		return env;
	return VMSTORE_DEFAULT_DIR;
}

static bool vmstore_id_char(char c, bool first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return !first && (c == '_' || c == '.' || c == '-');
}

bool vmstore_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > VMSTORE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!vmstore_id_char(id[i], i == 0))
			return false;
	return true;
}

char *vmstore_path(const char *state, const char *id, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s%s%s", state, id, name ? "/" : "", name ? name : "") < 0)
		return NULL;
	return p;
}

static const char *const vmstore_dio_names[] = {
	[LOOPDEV_DIO_OFF] = "off",
	[LOOPDEV_DIO_AUTO] = "auto",
	[LOOPDEV_DIO_ON] = "on",
};

const char *vmstore_dio_name(enum loopdev_dio dio)
{
	if ((size_t)dio >= ARRAY_SIZE(vmstore_dio_names))
		return "?";
	return vmstore_dio_names[dio];
}

int vmstore_dio_parse(const char *s, enum loopdev_dio *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(vmstore_dio_names); i++)
		if (s && strcmp(s, vmstore_dio_names[i]) == 0) {
			*ret = (enum loopdev_dio)i;
			return 0;
		}
	return -EINVAL;
}

void vmstore_format_time(time_t t, char buf[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int vmstore_parse_time(const char *s, time_t *ret)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -EBADMSG;
	*ret = timegm(&tm);
	return 0;
}

int vmstore_identity_read(const char *path, struct vmstore_identity *ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return vmstore_identity_read_fd(fd, ret);
}

int vmstore_identity_read_fd(int fd, struct vmstore_identity *ret)
{
	_cleanup_free_ unsigned char *buf = NULL;
	struct vmstore_identity id = {0};
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint8_t le[8];
	struct stat st;
	EVP_MD_CTX *ctx;
	int r = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	id.size = (uint64_t)st.st_size;
	id.dev = (uint64_t)st.st_dev;
	id.ino = (uint64_t)st.st_ino;
	id.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	buf = malloc(VMSTORE_SAMPLE_BYTES);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(id.size >> (8 * i));
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) || !EVP_DigestUpdate(ctx, le, sizeof(le))) {
		r = -EIO;
		goto free_ctx;
	}
	/* Evenly spread samples, first and last block included. */
	for (uint64_t i = 0; i < VMSTORE_SAMPLES && id.size; i++) {
		uint64_t last = id.size > VMSTORE_SAMPLE_BYTES ? id.size - VMSTORE_SAMPLE_BYTES : 0;
		uint64_t off = last / (VMSTORE_SAMPLES - 1) * i;
		ssize_t n;

		if (i == VMSTORE_SAMPLES - 1)
			off = last;
		n = util_pread_full(fd, buf, VMSTORE_SAMPLE_BYTES, off);
		if (n < 0) {
			r = (int)n;
			goto free_ctx;
		}
		if (!EVP_DigestUpdate(ctx, buf, (size_t)n)) {
			r = -EIO;
			goto free_ctx;
		}
	}
	if (!EVP_DigestFinal_ex(ctx, md, &mdlen)) {
		r = -EIO;
		goto free_ctx;
	}
	for (unsigned i = 0; i < mdlen && i < VMSTORE_FINGERPRINT_LEN / 2; i++)
		sprintf(id.fingerprint + 2 * i, "%02x", md[i]);
	*ret = id;
free_ctx:
	EVP_MD_CTX_free(ctx);
	return r;
}

int vmstore_filestamp_read(const char *path, struct vmstore_filestamp *ret)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*ret = (struct vmstore_filestamp){
		.present = true,
		.dev = (uint64_t)st.st_dev,
		.ino = (uint64_t)st.st_ino,
		.size = (uint64_t)st.st_size,
		.blocks = (uint64_t)st.st_blocks,
		.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
		.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec,
	};
	return 0;
}

bool vmstore_filestamp_equal(const struct vmstore_filestamp *a, const struct vmstore_filestamp *b)
{
	return a->present && b->present && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->blocks == b->blocks && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns;
}

const char *vmstore_identity_mismatch(const struct vmstore_identity *rec,
				      const struct vmstore_identity *now)
{
	if (rec->size != now->size)
		return "size";
	if (rec->mtime_ns != now->mtime_ns)
		return "mtime";
	if (strcmp(rec->fingerprint, now->fingerprint) != 0)
		return "fingerprint";
	return NULL;
}

/* Parsing: each getter fails with a reason naming the field. */
struct vmstore_parser {
	char *err;
	size_t errlen;
};

static int vmstore_fail(struct vmstore_parser *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err && p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err, p->errlen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static int vmstore_get(struct vmstore_parser *p, json_object *o, const char *key, json_type type,
		       bool nullable, json_object **ret)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		return vmstore_fail(p, "field \"%s\" is missing", key);
	if (!v && nullable) {
		*ret = NULL;
		return 0;
	}
	if (!json_object_is_type(v, type))
		return vmstore_fail(p, "field \"%s\" has the wrong type (want %s)", key,
				    json_type_to_name(type));
	*ret = v;
	return 0;
}

static int vmstore_get_u64(struct vmstore_parser *p, json_object *o, const char *key, uint64_t *ret)
{
	json_object *v;
	int64_t x;
	int r = vmstore_get(p, o, key, json_type_int, false, &v);

	if (r < 0)
		return r;
	errno = 0;
	x = json_object_get_int64(v);
	if (x < 0 || errno == ERANGE)
		return vmstore_fail(p, "field \"%s\" is out of range", key);
	*ret = (uint64_t)x;
	return 0;
}

static int vmstore_get_string(struct vmstore_parser *p, json_object *o, const char *key, char *buf,
			      size_t len)
{
	json_object *v;
	int r = vmstore_get(p, o, key, json_type_string, false, &v);

	if (r < 0)
		return r;
	if ((size_t)json_object_get_string_len(v) >= len)
		return vmstore_fail(p, "field \"%s\" is too long", key);
	memcpy(buf, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	return 0;
}

static int vmstore_get_time(struct vmstore_parser *p, json_object *o, const char *key, time_t *ret)
{
	json_object *v;
	int r = vmstore_get(p, o, key, json_type_string, true, &v);

	if (r < 0)
		return r;
	if (!v) {
		*ret = 0;
		return 0;
	}
	if (vmstore_parse_time(json_object_get_string(v), ret) < 0)
		return vmstore_fail(p, "field \"%s\" is not a UTC time like 2026-01-31T12:00:00Z",
				    key);
	return 0;
}

/* Fields added after version 1: absent or null read as 0 / "". */
static int vmstore_opt(struct vmstore_parser *p, json_object *o, const char *key, json_type type,
		       json_object **ret)
{
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, ret))
		return 0;
	return vmstore_get(p, o, key, type, true, ret);
}

static int vmstore_opt_i64(struct vmstore_parser *p, json_object *o, const char *key, int64_t *ret)
{
	json_object *v;
	int r = vmstore_opt(p, o, key, json_type_int, &v);

	if (r < 0)
		return r;
	errno = 0;
	*ret = v ? json_object_get_int64(v) : 0;
	if (errno == ERANGE)
		return vmstore_fail(p, "field \"%s\" is out of range", key);
	return 0;
}

static int vmstore_opt_u64(struct vmstore_parser *p, json_object *o, const char *key, uint64_t *ret)
{
	int64_t x;
	int r = vmstore_opt_i64(p, o, key, &x);

	if (r < 0)
		return r;
	if (x < 0)
		return vmstore_fail(p, "field \"%s\" is out of range", key);
	*ret = (uint64_t)x;
	return 0;
}

static int vmstore_opt_string(struct vmstore_parser *p, json_object *o, const char *key, char *buf,
			      size_t len)
{
	json_object *v;
	int r = vmstore_opt(p, o, key, json_type_string, &v);

	buf[0] = 0;
	if (r < 0 || !v)
		return r;
	if ((size_t)json_object_get_string_len(v) >= len)
		return vmstore_fail(p, "field \"%s\" is too long", key);
	memcpy(buf, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	return 0;
}

static int vmstore_parse_stamp(struct vmstore_parser *p, json_object *o, const char *key,
			       struct vmstore_filestamp *ret)
{
	struct vmstore_filestamp st = {.present = true};
	json_object *s;
	int e;

	*ret = (struct vmstore_filestamp){0};
	if ((e = vmstore_opt(p, o, key, json_type_object, &s)) < 0 || !s)
		return e;
	if ((e = vmstore_get_u64(p, s, "dev", &st.dev)) < 0 ||
	    (e = vmstore_get_u64(p, s, "ino", &st.ino)) < 0 ||
	    (e = vmstore_get_u64(p, s, "size", &st.size)) < 0 ||
	    (e = vmstore_get_u64(p, s, "blocks", &st.blocks)) < 0 ||
	    (e = vmstore_opt_i64(p, s, "mtime_ns", &st.mtime_ns)) < 0 ||
	    (e = vmstore_opt_i64(p, s, "ctime_ns", &st.ctime_ns)) < 0)
		return e;
	*ret = st;
	return 0;
}

static int vmstore_parse_base(struct vmstore_parser *p, json_object *o, struct vmstore_record *r)
{
	json_object *b;
	uint64_t mtime;
	int e;

	if ((e = vmstore_get(p, o, "base", json_type_object, false, &b)) < 0 ||
	    (e = vmstore_get_string(p, b, "path", r->base_path, sizeof(r->base_path))) < 0 ||
	    (e = vmstore_get_u64(p, b, "size", &r->base.size)) < 0 ||
	    (e = vmstore_get_u64(p, b, "dev", &r->base.dev)) < 0 ||
	    (e = vmstore_get_u64(p, b, "ino", &r->base.ino)) < 0 ||
	    (e = vmstore_get_u64(p, b, "mtime_ns", &mtime)) < 0 ||
	    (e = vmstore_get_string(p, b, "sha256_sampled", r->base.fingerprint,
				    sizeof(r->base.fingerprint))) < 0)
		return e;
	r->base.mtime_ns = (int64_t)mtime;
	if (strlen(r->base.fingerprint) != VMSTORE_FINGERPRINT_LEN ||
	    strspn(r->base.fingerprint, "0123456789abcdef") != VMSTORE_FINGERPRINT_LEN)
		return vmstore_fail(p, "field \"sha256_sampled\" is not 64 hex digits");
	if (r->base_path[0] != '/')
		return vmstore_fail(p, "field \"path\" is not an absolute path");
	return 0;
}

static int vmstore_parse_reclaim(struct vmstore_parser *p, json_object *o,
				 struct vmstore_reclaim *rc)
{
	json_object *l, *v;
	int e;

	memset(rc, 0, sizeof(*rc));
	if ((e = vmstore_get(p, o, "last_reclaim", json_type_object, true, &l)) < 0)
		return e;
	if (!l)
		return 0;
	if ((e = vmstore_get_time(p, l, "time", &rc->time)) < 0 ||
	    (e = vmstore_get_u64(p, l, "reclaimed_bytes", &rc->reclaimed_bytes)) < 0 ||
	    (e = vmstore_get_u64(p, l, "allocated_before", &rc->allocated_before)) < 0 ||
	    (e = vmstore_get_u64(p, l, "allocated_after", &rc->allocated_after)) < 0 ||
	    (e = vmstore_get(p, l, "exit_code", json_type_int, false, &v)) < 0)
		return e;
	rc->exit_code = json_object_get_int(v);
	if (json_object_object_get_ex(l, "seconds", &v) && v)
		rc->seconds = json_object_get_double(v);
	if ((e = vmstore_opt_u64(p, l, "zero_bytes", &rc->zero_bytes)) < 0 ||
	    (e = vmstore_opt_u64(p, l, "fs_free_bytes", &rc->fs_free_bytes)) < 0 ||
	    (e = vmstore_opt_u64(p, l, "mem_reclaimed_bytes", &rc->mem_reclaimed_bytes)) < 0 ||
	    (e = vmstore_opt_u64(p, l, "bytes_read", &rc->bytes_read)) < 0 ||
	    (e = vmstore_opt_string(p, l, "fs_aware", rc->fs_aware, sizeof(rc->fs_aware))) < 0 ||
	    (e = vmstore_opt_string(p, l, "fs_aware_reason", rc->fs_aware_reason,
				    sizeof(rc->fs_aware_reason))) < 0 ||
	    (e = vmstore_opt_string(p, l, "strategy", rc->strategy, sizeof(rc->strategy))) < 0 ||
	    (e = vmstore_opt_string(p, l, "strategy_reason", rc->strategy_reason,
				    sizeof(rc->strategy_reason))) < 0 ||
	    (e = vmstore_opt_string(p, l, "mem_strategy", rc->mem_strategy,
				    sizeof(rc->mem_strategy))) < 0 ||
	    (e = vmstore_opt_string(p, l, "error", rc->error, sizeof(rc->error))) < 0 ||
	    (e = vmstore_parse_stamp(p, l, "cow_stamp", &rc->cow_stamp)) < 0 ||
	    (e = vmstore_parse_stamp(p, l, "mem_stamp", &rc->mem_stamp)) < 0 ||
	    (e = vmstore_opt(p, l, "interrupted", json_type_boolean, &v)) < 0)
		return e;
	rc->interrupted = v && json_object_get_boolean(v);
	rc->present = true;
	return 0;
}

int vmstore_record_parse(const char *buf, size_t len, struct vmstore_record *ret, char *err,
			 size_t errlen)
{
	struct vmstore_parser p = {err, errlen};
	_cleanup_json_ json_object *o = NULL;
	struct json_tokener *tok;
	struct vmstore_record r;
	json_object *opts, *v;
	uint64_t version;
	int e;

	if (len > VMSTORE_RECORD_MAX || len > INT_MAX)
		return vmstore_fail(&p, "record larger than %d bytes", VMSTORE_RECORD_MAX);
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, buf, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		bool trailing = o && json_tokener_get_error(tok) == json_tokener_success;
		size_t at = json_tokener_get_parse_end(tok);

		json_tokener_free(tok);
		if (trailing) {
			/* Whitespace after the object is fine; anything else is damage. */
			for (size_t i = at; i < len; i++)
				if (!strchr(" \t\r\n", buf[i]))
					return vmstore_fail(&p, "trailing data at byte %zu", i);
		} else
			return vmstore_fail(
				&p, "not valid JSON (truncated or damaged near byte %zu)", at);
	} else
		json_tokener_free(tok);
	if (!json_object_is_type(o, json_type_object))
		return vmstore_fail(&p, "not a JSON object");

	memset(&r, 0, sizeof(r));
	if ((e = vmstore_get_u64(&p, o, "version", &version)) < 0)
		return e;
	if (version != VMSTORE_VERSION)
		return vmstore_fail(&p, "version %llu is not supported (want %d)",
				    (unsigned long long)version, VMSTORE_VERSION);
	if ((e = vmstore_get_string(&p, o, "id", r.id, sizeof(r.id))) < 0)
		return e;
	if (!vmstore_id_valid(r.id))
		return vmstore_fail(&p, "field \"id\" is not a valid VM ID");
	if ((e = vmstore_parse_base(&p, o, &r)) < 0 ||
	    (e = vmstore_get_u64(&p, o, "virtual_size", &r.virt_bytes)) < 0 ||
	    (e = vmstore_get_u64(&p, o, "chunk_size", &r.chunk_bytes)) < 0 ||
	    (e = vmstore_get_u64(&p, o, "cow_size", &r.cow_bytes)) < 0 ||
	    (e = vmstore_get(&p, o, "options", json_type_object, false, &opts)) < 0 ||
	    (e = vmstore_get(&p, opts, "discard", json_type_boolean, false, &v)) < 0)
		return e;
	r.discard = json_object_get_boolean(v);
	/* Both direct I/O fields came after version 1: absent means auto, not known. */
	r.cow_dio = LOOPDEV_DIO_AUTO;
	if (json_object_object_get_ex(opts, "cow_direct_io", &v) &&
	    (!json_object_is_type(v, json_type_string) ||
	     vmstore_dio_parse(json_object_get_string(v), &r.cow_dio) < 0))
		return vmstore_fail(&p,
				    "field \"cow_direct_io\" is not \"auto\", \"on\" or \"off\"");
	r.cow_dio_active = -1;
	if (json_object_object_get_ex(o, "cow_direct_io_active", &v) && v) {
		if (!json_object_is_type(v, json_type_boolean))
			return vmstore_fail(&p, "field \"cow_direct_io_active\" is not a boolean");
		r.cow_dio_active = json_object_get_boolean(v);
	}
	if (r.virt_bytes == 0 || r.virt_bytes % 512 || r.virt_bytes < r.base.size)
		return vmstore_fail(&p, "field \"virtual_size\" is out of range");
	if (r.chunk_bytes < 4096 || r.chunk_bytes > (1ULL << 30) ||
	    (r.chunk_bytes & (r.chunk_bytes - 1)))
		return vmstore_fail(&p,
				    "field \"chunk_size\" is not a power of two in 4 KiB..1 GiB");
	if ((e = vmstore_get_time(&p, o, "created", &r.created)) < 0 ||
	    (e = vmstore_get_time(&p, o, "attached", &r.attached)) < 0 ||
	    (e = vmstore_get_time(&p, o, "detached", &r.detached)) < 0 ||
	    (e = vmstore_parse_reclaim(&p, o, &r.last_reclaim)) < 0 ||
	    (e = vmstore_opt_string(&p, o, "mem_file", r.mem_path, sizeof(r.mem_path))) < 0)
		return e;
	if (r.mem_path[0] && r.mem_path[0] != '/')
		return vmstore_fail(&p, "field \"mem_file\" is not an absolute path");
	*ret = r;
	return 0;
}

static json_object *vmstore_time_json(time_t t)
{
	char buf[32];

	if (!t)
		return NULL;
	vmstore_format_time(t, buf);
	return json_object_new_string(buf);
}

static json_object *vmstore_stamp_json(const struct vmstore_filestamp *st)
{
	json_object *o;

	if (!st->present || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "dev", json_object_new_int64((int64_t)st->dev));
	json_object_object_add(o, "ino", json_object_new_int64((int64_t)st->ino));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)st->size));
	json_object_object_add(o, "blocks", json_object_new_int64((int64_t)st->blocks));
	json_object_object_add(o, "mtime_ns", json_object_new_int64(st->mtime_ns));
	json_object_object_add(o, "ctime_ns", json_object_new_int64(st->ctime_ns));
	return o;
}

int vmstore_record_format(const struct vmstore_record *r, char **ret)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	json_object *b = json_object_new_object(), *opts = json_object_new_object(), *l = NULL;
	const char *s;
	char *out;

	if (!o || !b || !opts) {
		json_object_put(b);
		json_object_put(opts);
		return -ENOMEM;
	}
	json_object_object_add(o, "version", json_object_new_int(VMSTORE_VERSION));
	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(b, "path", json_object_new_string(r->base_path));
	json_object_object_add(b, "size", json_object_new_int64((int64_t)r->base.size));
	json_object_object_add(b, "dev", json_object_new_int64((int64_t)r->base.dev));
	json_object_object_add(b, "ino", json_object_new_int64((int64_t)r->base.ino));
	json_object_object_add(b, "mtime_ns", json_object_new_int64(r->base.mtime_ns));
	json_object_object_add(b, "sha256_sampled", json_object_new_string(r->base.fingerprint));
	json_object_object_add(o, "base", b);
	json_object_object_add(o, "virtual_size", json_object_new_int64((int64_t)r->virt_bytes));
	json_object_object_add(o, "chunk_size", json_object_new_int64((int64_t)r->chunk_bytes));
	json_object_object_add(o, "cow_size", json_object_new_int64((int64_t)r->cow_bytes));
	json_object_object_add(opts, "discard", json_object_new_boolean(r->discard));
	json_object_object_add(opts, "cow_direct_io",
			       json_object_new_string(vmstore_dio_name(r->cow_dio)));
	json_object_object_add(o, "options", opts);
	json_object_object_add(o, "cow_direct_io_active",
			       r->cow_dio_active < 0 ? NULL
						     : json_object_new_boolean(r->cow_dio_active));
	json_object_object_add(o, "created", vmstore_time_json(r->created));
	json_object_object_add(o, "attached", vmstore_time_json(r->attached));
	json_object_object_add(o, "detached", vmstore_time_json(r->detached));
	if (r->last_reclaim.present) {
		const struct vmstore_reclaim *rc = &r->last_reclaim;

		l = json_object_new_object();
		if (!l)
			return -ENOMEM;
		json_object_object_add(l, "time", vmstore_time_json(rc->time));
		json_object_object_add(l, "exit_code", json_object_new_int(rc->exit_code));
		json_object_object_add(l, "reclaimed_bytes",
				       json_object_new_int64((int64_t)rc->reclaimed_bytes));
		json_object_object_add(l, "allocated_before",
				       json_object_new_int64((int64_t)rc->allocated_before));
		json_object_object_add(l, "allocated_after",
				       json_object_new_int64((int64_t)rc->allocated_after));
		json_object_object_add(l, "seconds", json_object_new_double(rc->seconds));
		json_object_object_add(l, "zero_bytes",
				       json_object_new_int64((int64_t)rc->zero_bytes));
		json_object_object_add(l, "fs_free_bytes",
				       json_object_new_int64((int64_t)rc->fs_free_bytes));
		json_object_object_add(l, "mem_reclaimed_bytes",
				       json_object_new_int64((int64_t)rc->mem_reclaimed_bytes));
		json_object_object_add(l, "bytes_read",
				       json_object_new_int64((int64_t)rc->bytes_read));
		json_object_object_add(l, "fs_aware", json_object_new_string(rc->fs_aware));
		json_object_object_add(l, "fs_aware_reason",
				       json_object_new_string(rc->fs_aware_reason));
		json_object_object_add(l, "strategy", json_object_new_string(rc->strategy));
		json_object_object_add(l, "strategy_reason",
				       json_object_new_string(rc->strategy_reason));
		json_object_object_add(l, "mem_strategy", json_object_new_string(rc->mem_strategy));
		json_object_object_add(l, "interrupted", json_object_new_boolean(rc->interrupted));
		json_object_object_add(l, "error", json_object_new_string(rc->error));
		json_object_object_add(l, "cow_stamp", vmstore_stamp_json(&rc->cow_stamp));
		json_object_object_add(l, "mem_stamp", vmstore_stamp_json(&rc->mem_stamp));
	}
	json_object_object_add(o, "mem_file",
			       r->mem_path[0] ? json_object_new_string(r->mem_path) : NULL);
	json_object_object_add(o, "last_reclaim", l);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						      JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s || asprintf(&out, "%s\n", s) < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}

int vmstore_write_atomic(const char *path, const void *buf, size_t len)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	ssize_t n;
	int r;

	if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	n = util_pwrite_full(fd, buf, len, 0);
	if (n < 0) {
		r = (int)n;
		goto unlink_tmp;
	}
	if (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto unlink_tmp;
	}
	return util_fsync_dir_of(path);

unlink_tmp:
	unlink(tmp);
	return r;
}

static int vmstore_read_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size > VMSTORE_RECORD_MAX)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	n = util_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	*ret_len = (size_t)n;
	*ret = TAKE_PTR(buf);
	return 0;
}

int vmstore_record_load(const char *state, const char *id, struct vmstore_record *ret, char *err,
			size_t errlen)
{
	_cleanup_free_ char *path = vmstore_path(state, id, "vm.json");
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	if (!path)
		return -ENOMEM;
	r = vmstore_read_file(path, &buf, &len);
	if (r < 0)
		return r;
	return vmstore_record_parse(buf, len, ret, err, errlen);
}

int vmstore_record_save(const char *state, const struct vmstore_record *rec)
{
	_cleanup_free_ char *dir = vmstore_path(state, rec->id, NULL);
	_cleanup_free_ char *path = vmstore_path(state, rec->id, "vm.json");
	_cleanup_free_ char *json = NULL;
	int r;

	if (!dir || !path)
		return -ENOMEM;
	r = vmstore_mkdir(dir);
	if (r < 0)
		return r;
	r = vmstore_record_format(rec, &json);
	if (r < 0)
		return r;
	return vmstore_write_atomic(path, json, strlen(json));
}

int vmstore_mkdir(const char *path)
{
	if (mkdir(path, 0700) < 0)
		return errno == EEXIST ? 0 : -errno;
	return util_fsync_dir_of(path);
}

int vmstore_marker_write(const char *state, const struct vmstore_record *rec)
{
	_cleanup_free_ char *path = vmstore_path(state, rec->id, VMSTORE_MARKER);
	_cleanup_free_ char *json = NULL;
	int r;

	if (!path)
		return -ENOMEM;
	r = vmstore_record_format(rec, &json);
	if (r < 0)
		return r;
	/* Atomic and durable, directory entry included, before the COW file exists. */
	return vmstore_write_atomic(path, json, strlen(json));
}

/* Renames STATE/ID/from to STATE/ID/to and makes the rename durable. */
static int vmstore_rename_durable(const char *state, const char *id, const char *from,
				  const char *to)
{
	_cleanup_free_ char *a = vmstore_path(state, id, from);
	_cleanup_free_ char *b = vmstore_path(state, id, to);

	if (!a || !b)
		return -ENOMEM;
	if (rename(a, b) < 0)
		return -errno;
	return util_fsync_dir_of(b);
}

int vmstore_marker_commit(const char *state, const char *id)
{
	return vmstore_rename_durable(state, id, VMSTORE_MARKER, "vm.json");
}

int vmstore_marker_revert(const char *state, const char *id)
{
	return vmstore_rename_durable(state, id, "vm.json", VMSTORE_MARKER);
}

int vmstore_marker_remove(const char *state, const char *id)
{
	_cleanup_free_ char *path = vmstore_path(state, id, VMSTORE_MARKER);

	if (!path)
		return -ENOMEM;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int vmstore_marker_exists(const char *state, const char *id)
{
	_cleanup_free_ char *path = vmstore_path(state, id, VMSTORE_MARKER);
	struct stat st;

	if (!path)
		return -ENOMEM;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 1;
}

/* True for NAME.tmp.DIGITS, the temp file vmstore_write_atomic() makes for NAME. */
static bool vmstore_is_temp_of(const char *entry, const char *name)
{
	size_t n = strlen(name);
	const char *p;

	if (strncmp(entry, name, n) != 0 || strncmp(entry + n, ".tmp.", 5) != 0)
		return false;
	p = entry + n + 5;
	return *p && strspn(p, "0123456789") == strlen(p);
}

int vmstore_remove_stale_temps(const char *state, const char *id)
{
	_cleanup_free_ char *dir = vmstore_path(state, id, NULL);
	struct dirent *de;
	int n = 0, r = 0;
	DIR *d;

	if (!dir)
		return -ENOMEM;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!vmstore_is_temp_of(de->d_name, "vm.json") &&
		    !vmstore_is_temp_of(de->d_name, VMSTORE_MARKER))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			r = -errno;
			break;
		}
		n++;
	}
	closedir(d);
	return r < 0 ? r : n;
}

static int vmstore_flock(const char *path, bool wait)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0)
		return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	return TAKE_FD(fd);
}

int vmstore_lock_vm(const char *state, const char *id)
{
	_cleanup_free_ char *path = vmstore_path(state, id, "lock");

	if (!path)
		return -ENOMEM;
	return vmstore_flock(path, false);
}

int vmstore_lock_host(const char *state)
{
	_cleanup_free_ char *fallback = NULL;
	int r = vmstore_flock(VMSTORE_HOST_LOCK, true);

	if (r != -ENOENT && r != -EROFS && r != -EACCES)
		return r;
	/* No writable /run (a bare initramfs): one state dir then stands for the host. */
	if (asprintf(&fallback, "%s/.loop.lock", state) < 0)
		return -ENOMEM;
	return vmstore_flock(fallback, true);
}

static int vmstore_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void vmstore_list_free(char **ids, int n)
{
	for (int i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int vmstore_list(const char *state, char ***ret_ids)
{
	DIR *d = opendir(state);
	char **ids = NULL;
	struct dirent *de;
	int n = 0, cap = 0;

	if (!d)
		return errno == ENOENT ? (*ret_ids = NULL, 0) : -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *rec = NULL;

		if (!vmstore_id_valid(de->d_name))
			continue;
		rec = vmstore_path(state, de->d_name, "vm.json");
		if (!rec)
			goto oom;
		if (access(rec, F_OK) < 0)
			continue;
		if (n == cap) {
			char **grown = realloc(ids, sizeof(*ids) * (size_t)(cap ? cap * 2 : 16));

			if (!grown)
				goto oom;
			ids = grown;
			cap = cap ? cap * 2 : 16;
		}
		ids[n] = strdup(de->d_name);
		if (!ids[n])
			goto oom;
		n++;
	}
	closedir(d);
	if (n)
		qsort(ids, (size_t)n, sizeof(*ids), vmstore_cmp);
	*ret_ids = ids;
	return n;
oom:
	closedir(d);
	vmstore_list_free(ids, n);
	return -ENOMEM;
}
