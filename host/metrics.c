/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "host/metrics.h"

/*
 * Per-VM reclaim times run from a small VM with nothing new (tens of ms) to a
 * large COW read at a throttled rate (minutes): roughly x2.5 steps up to 10 min.
 */
const double metrics_duration_bounds[METRICS_DURATION_BUCKETS] = {
	0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
};

static const char *const kind_names[METRICS_KIND_N] = {"zero", "fs_free", "mem_zero"};
static const char *const result_names[METRICS_RESULT_N] = {
	"ok", "unchanged", "attached", "busy", "refused", "failed",
};
static const char *const state_names[METRICS_VM_STATE_N] = {"attached", "detached"};
static const char *const strategy_names[METRICS_STRATEGY_N] = {"punch", "rewrite"};

const char *metrics_result_name(enum metrics_result result)
{
	return (unsigned)result < METRICS_RESULT_N ? result_names[result] : "?";
}

const char *metrics_strategy_name(enum metrics_strategy strategy)
{
	return (unsigned)strategy < METRICS_STRATEGY_N ? strategy_names[strategy] : "?";
}

int metrics_init(struct metrics *m, const char *version, bool per_vm, double cycle_interval)
{
	*m = (struct metrics){.per_vm = per_vm, .cycle_interval = cycle_interval};
	m->version = strdup(version);
	return m->version ? 0 : -ENOMEM;
}

void metrics_free(struct metrics *m)
{
	for (size_t i = 0; i < m->n_vms; i++)
		free(m->vms[i].id);
	free(m->vms);
	free(m->version);
	*m = (struct metrics){0};
}

/* The entry of vm_id, made (unseen, at 0) when missing.  NULL on -ENOMEM. */
static struct metrics_vm *metrics_vm_get(struct metrics *m, const char *vm_id)
{
	size_t lo = 0, hi = m->n_vms;
	struct metrics_vm *grown;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->vms[mid].id, vm_id);

		if (c == 0)
			return &m->vms[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	grown = reallocarray(m->vms, m->n_vms + 1, sizeof(*m->vms));
	if (!grown)
		return NULL;
	m->vms = grown;
	memmove(&m->vms[lo + 1], &m->vms[lo], (m->n_vms - lo) * sizeof(*m->vms));
	m->vms[lo] = (struct metrics_vm){.id = strdup(vm_id)};
	if (!m->vms[lo].id) {
		memmove(&m->vms[lo], &m->vms[lo + 1], (m->n_vms - lo) * sizeof(*m->vms));
		return NULL;
	}
	m->n_vms++;
	return &m->vms[lo];
}

int metrics_add_reclaimed(struct metrics *m, const char *vm_id, enum metrics_kind kind,
			  uint64_t bytes)
{
	struct metrics_vm *vm;

	m->reclaimed_bytes[kind] += bytes;
	if (!m->per_vm || !vm_id)
		return 0;
	vm = metrics_vm_get(m, vm_id);
	if (!vm)
		return -ENOMEM;
	vm->reclaimed_bytes[kind] += bytes;
	vm->seen = true;
	return 0;
}

void metrics_add_scanned(struct metrics *m, uint64_t bytes)
{
	m->scanned_bytes += bytes;
}

void metrics_count_reclaim(struct metrics *m, enum metrics_result result)
{
	m->reclaims[result]++;
}

void metrics_count_cow_strategy(struct metrics *m, enum metrics_strategy strategy)
{
	m->cow_reclaims[strategy]++;
}

void metrics_count_mem_strategy(struct metrics *m, enum metrics_strategy strategy)
{
	m->mem_reclaims[strategy]++;
}

void metrics_observe_duration(struct metrics *m, double seconds)
{
	size_t i = 0;

	if (!(seconds > 0)) /* also NaN */
		seconds = 0;
	while (i < METRICS_DURATION_BUCKETS && seconds > metrics_duration_bounds[i])
		i++;
	m->duration_counts[i]++;
	m->duration_sum += seconds;
}

void metrics_set_host(struct metrics *m, const struct metrics_host *host)
{
	m->host = *host;
}

int metrics_set_vm(struct metrics *m, const char *vm_id, uint64_t cow_allocated_bytes,
		   uint64_t mem_allocated_bytes)
{
	struct metrics_vm *vm;

	if (!m->per_vm)
		return 0;
	vm = metrics_vm_get(m, vm_id);
	if (!vm)
		return -ENOMEM;
	vm->cow_allocated_bytes = cow_allocated_bytes;
	vm->mem_allocated_bytes = mem_allocated_bytes;
	vm->seen = true;
	return 0;
}

void metrics_cycle_begin(struct metrics *m)
{
	for (size_t i = 0; i < m->n_vms; i++)
		m->vms[i].seen = false;
}

void metrics_cycle_end(struct metrics *m, double end_unix, double duration)
{
	size_t kept = 0;

	m->last_cycle_timestamp = end_unix;
	m->last_cycle_duration = duration;
	for (size_t i = 0; i < m->n_vms; i++) {
		if (m->vms[i].seen)
			m->vms[kept++] = m->vms[i];
		else
			free(m->vms[i].id);
	}
	m->n_vms = kept;
}

/*
 * A sample value as Prometheus reads it: integers in full, other values in the
 * shortest form that reads back to the same double, NaN and +Inf/-Inf by name.
 */
static void put_value(FILE *f, double v)
{
	char buf[40];

	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* 2^53: exact integers */
		fprintf(f, "%.0f", v);
		return;
	}
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, f);
}

/* A label value between double quotes: backslash, double quote and newline escaped. */
static void put_label_value(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void put_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} v, or name v when label is NULL. */
static void put_sample(FILE *f, const char *name, const char *label, const char *value, double v)
{
	fputs(name, f);
	if (label) {
		fprintf(f, "{%s=", label);
		put_label_value(f, value);
		fputc('}', f);
	}
	fputc(' ', f);
	put_value(f, v);
	fputc('\n', f);
}

/* A family of one unlabelled sample. */
static void put_single(FILE *f, const char *name, const char *type, const char *help, double v)
{
	put_family(f, name, type, help);
	put_sample(f, name, NULL, NULL, v);
}

static void put_labelled(FILE *f, const char *name, const char *label, const char *const *values,
			 const uint64_t *counts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put_sample(f, name, label, values[i], (double)counts[i]);
}

static void put_histogram(FILE *f, const struct metrics *m)
{
	const char *name = "cowpunch_reclaim_duration_seconds";
	uint64_t cumulative = 0;

	put_family(f, name, "histogram", "Time taken by one VM's reclaim.");
	for (size_t i = 0; i <= METRICS_DURATION_BUCKETS; i++) {
		cumulative += m->duration_counts[i];
		fprintf(f, "%s_bucket{le=\"", name);
		put_value(f, i < METRICS_DURATION_BUCKETS ? metrics_duration_bounds[i] : INFINITY);
		fputs("\"} ", f);
		put_value(f, (double)cumulative);
		fputc('\n', f);
	}
	fprintf(f, "%s_sum ", name);
	put_value(f, m->duration_sum);
	fprintf(f, "\n%s_count ", name);
	put_value(f, (double)cumulative);
	fputc('\n', f);
}

/* A per-VM gauge family: the uint64_t at offset in each struct metrics_vm. */
static void put_vm_gauge(FILE *f, const struct metrics *m, const char *name, const char *help,
			 size_t offset)
{
	put_family(f, name, "gauge", help);
	for (size_t i = 0; i < m->n_vms; i++)
		put_sample(f, name, "vm", m->vms[i].id,
			   (double)*(const uint64_t *)((const char *)&m->vms[i] + offset));
}

static void put_per_vm(FILE *f, const struct metrics *m)
{
	put_family(f, "cowpunch_vm_reclaimed_bytes_total", "counter",
		   "Bytes of host disk given back, per VM and kind.");
	for (size_t i = 0; i < m->n_vms; i++) {
		for (size_t k = 0; k < METRICS_KIND_N; k++) {
			fputs("cowpunch_vm_reclaimed_bytes_total{vm=", f);
			put_label_value(f, m->vms[i].id);
			fprintf(f, ",kind=\"%s\"} ", kind_names[k]);
			put_value(f, (double)m->vms[i].reclaimed_bytes[k]);
			fputc('\n', f);
		}
	}
	put_vm_gauge(f, m, "cowpunch_vm_cow_allocated_bytes",
		     "Host disk held by the VM's COW file.",
		     offsetof(struct metrics_vm, cow_allocated_bytes));
	put_vm_gauge(f, m, "cowpunch_vm_mem_allocated_bytes",
		     "Host disk held by the VM's memory file.",
		     offsetof(struct metrics_vm, mem_allocated_bytes));
}

int metrics_format(const struct metrics *m, char **ret_text, size_t *ret_len)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int bad;

	if (!f)
		return -ENOMEM;
	put_family(f, "cowpunch_build_info", "gauge",
		   "The running cowpunch agent's version; always 1.");
	put_sample(f, "cowpunch_build_info", "version", m->version, 1);
	put_family(
		f, "cowpunch_reclaimed_bytes_total", "counter",
		"Bytes of host disk given back, by what was found: zero COW chunks, chunks free in the guest's file system, zero memory pages.");
	put_labelled(f, "cowpunch_reclaimed_bytes_total", "kind", kind_names, m->reclaimed_bytes,
		     METRICS_KIND_N);
	put_single(f, "cowpunch_scanned_bytes_total", "counter",
		   "Data bytes read by reclaim scans.", (double)m->scanned_bytes);
	put_family(f, "cowpunch_reclaims_total", "counter", "Reclaims of one VM, by outcome.");
	put_labelled(f, "cowpunch_reclaims_total", "result", result_names, m->reclaims,
		     METRICS_RESULT_N);
	put_family(f, "cowpunch_cow_reclaims_total", "counter",
		   "COW reclaims that ran to the end, by strategy: holes punched in place, or a "
		   "sparse copy renamed over the COW.");
	put_labelled(f, "cowpunch_cow_reclaims_total", "strategy", strategy_names, m->cow_reclaims,
		     METRICS_STRATEGY_N);
	put_family(f, "cowpunch_mem_reclaims_total", "counter",
		   "Memory-file reclaims that ran to the end, by strategy: zero blocks punched in "
		   "place, or a sparse copy renamed over the file.");
	put_labelled(f, "cowpunch_mem_reclaims_total", "strategy", strategy_names, m->mem_reclaims,
		     METRICS_STRATEGY_N);
	put_histogram(f, m);
	put_family(f, "cowpunch_vms", "gauge", "VMs in the state directory, by state.");
	put_labelled(f, "cowpunch_vms", "state", state_names, m->host.vms, METRICS_VM_STATE_N);
	put_single(f, "cowpunch_cow_allocated_bytes", "gauge",
		   "Host disk held by all VMs' COW files.", (double)m->host.cow_allocated_bytes);
	put_single(f, "cowpunch_cow_virtual_bytes", "gauge", "Apparent size of all VMs' COW files.",
		   (double)m->host.cow_virtual_bytes);
	put_single(f, "cowpunch_mem_allocated_bytes", "gauge",
		   "Host disk held by all VMs' memory files.", (double)m->host.mem_allocated_bytes);
	put_single(f, "cowpunch_last_cycle_timestamp_seconds", "gauge",
		   "Unix time the last reclamation cycle ended; 0 before the first.",
		   m->last_cycle_timestamp);
	put_single(f, "cowpunch_last_cycle_duration_seconds", "gauge",
		   "How long the last reclamation cycle took.", m->last_cycle_duration);
	put_single(f, "cowpunch_cycle_interval_seconds", "gauge",
		   "The agent's interval between cycles (--interval).", m->cycle_interval);
	if (m->per_vm)
		put_per_vm(f, m);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(text);
		return -ENOMEM;
	}
	*ret_text = text;
	*ret_len = len;
	return 0;
}

int metrics_write_textfile(const char *path, const char *text, size_t len)
{
	_cleanup_free_ char *dir = strdup(path), *tmp = NULL;
	_cleanup_close_ int fd = -1;
	const char *base;
	char *slash;
	ssize_t n;
	int r;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		base = slash + 1;
	} else {
		base = dir;
	}
	if (!*base)
		return -EISDIR;
	if (asprintf(&tmp, "%s/.%s.XXXXXX", slash ? (*dir ? dir : "/") : ".", base) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* mkostemp makes 0600; node_exporter usually runs as another user. */
	if (fchmod(fd, 0644) < 0) {
		r = -errno;
		goto unlink_tmp;
	}
	n = util_pwrite_full(fd, text, len, 0);
	if (n < 0) {
		r = (int)n;
		goto unlink_tmp;
	}
	if (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto unlink_tmp;
	}
	/* The directory holding the new name, so the rename survives a crash. */
	return util_fsync_dir_of(path);

unlink_tmp:
	unlink(tmp);
	return r;
}
