/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's metrics, and their Prometheus text exposition (format 0.0.4).
 *
 * The metric names and labels are a contract: dashboards and alerts use them
 * (contrib/grafana, contrib/prometheus).  Every series exists from
 * metrics_init() on, at 0, so that dashboards draw and absent()-style alerts
 * work before the first reclaim.  Per-VM series (label vm) are only kept when
 * asked for, because each VM adds a dozen series.
 *
 * Not thread-safe: the agent's main loop owns it, formats it after each cycle
 * and hands the text to the HTTP server (agent/httpd.h) and the textfile.
 */
#ifndef COWPUNCH_HOST_METRICS_H
#define COWPUNCH_HOST_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a reclaim gave back: label kind of cowpunch_reclaimed_bytes_total. */
enum metrics_kind {
	METRICS_KIND_ZERO,     /* "zero": all-zero COW chunks */
	METRICS_KIND_FS_FREE,  /* "fs_free": chunks free in the guest's file system */
	METRICS_KIND_MEM_ZERO, /* "mem_zero": zero pages of a memory file */
	METRICS_KIND_N,
};

/* How one VM's reclaim ended: label result of cowpunch_reclaims_total. */
enum metrics_result {
	METRICS_RESULT_OK,	  /* "ok": reclaimed, bytes given back */
	METRICS_RESULT_UNCHANGED, /* "unchanged": nothing new since the last reclaim, skipped */
	METRICS_RESULT_ATTACHED,  /* "attached": the VM runs, skipped */
	METRICS_RESULT_BUSY,	  /* "busy": locked or open by another command */
	METRICS_RESULT_REFUSED,	  /* "refused": invalid store, base mismatch, unsafe fs-aware */
	METRICS_RESULT_FAILED,	  /* "failed": an I/O or other runtime error */
	METRICS_RESULT_N,
};

/*
 * How a COW reclaim or a memory file's sparsify gave space back: label strategy
 * of cowpunch_cow_reclaims_total and cowpunch_mem_reclaims_total.
 */
enum metrics_strategy {
	METRICS_STRATEGY_PUNCH,	  /* "punch": holes punched in place */
	METRICS_STRATEGY_REWRITE, /* "rewrite": a sparse copy renamed over the COW */
	METRICS_STRATEGY_N,
};

enum metrics_vm_state {
	METRICS_VM_ATTACHED,
	METRICS_VM_DETACHED,
	METRICS_VM_STATE_N,
};

/* Upper bounds of cowpunch_reclaim_duration_seconds, seconds (+Inf implied). */
#define METRICS_DURATION_BUCKETS 14
extern const double metrics_duration_bounds[METRICS_DURATION_BUCKETS];

/* Host totals, as the cycle counted them; gauges. */
struct metrics_host {
	uint64_t vms[METRICS_VM_STATE_N];
	uint64_t cow_allocated_bytes; /* host disk held by the COW files (st_blocks) */
	uint64_t cow_virtual_bytes;   /* their apparent size */
	uint64_t mem_allocated_bytes; /* host disk held by the memory files */
};

struct metrics_vm {
	char *id;
	uint64_t reclaimed_bytes[METRICS_KIND_N];
	uint64_t cow_allocated_bytes;
	uint64_t mem_allocated_bytes;
	bool seen; /* touched in the current cycle */
};

struct metrics {
	char *version;
	/* Counters. */
	uint64_t reclaimed_bytes[METRICS_KIND_N];
	uint64_t scanned_bytes;
	uint64_t reclaims[METRICS_RESULT_N];
	uint64_t cow_reclaims[METRICS_STRATEGY_N];
	uint64_t mem_reclaims[METRICS_STRATEGY_N];
	/* Histogram: per-bucket (not cumulative) counts, the last one for +Inf. */
	uint64_t duration_counts[METRICS_DURATION_BUCKETS + 1];
	double duration_sum;
	/* Gauges. */
	struct metrics_host host;
	double last_cycle_timestamp; /* Unix time the last cycle ended; 0 before the first */
	double last_cycle_duration;  /* seconds */
	double cycle_interval;	     /* the agent's --interval, seconds */
	/* Per-VM series, sorted by id; only when per_vm. */
	bool per_vm;
	struct metrics_vm *vms;
	size_t n_vms;
};

/*
 * Sets up m with every series at 0.  version goes into cowpunch_build_info;
 * per_vm turns on the per-VM series.  0 or -ENOMEM.  Free with metrics_free().
 */
int metrics_init(struct metrics *m, const char *version, bool per_vm, double cycle_interval);
void metrics_free(struct metrics *m);

/*
 * Counts bytes given back by one VM's reclaim.  vm_id may be NULL; with per-VM
 * series on, it also counts for that VM (made on first use).  0 or -ENOMEM
 * (the host total is counted even then).
 */
int metrics_add_reclaimed(struct metrics *m, const char *vm_id, enum metrics_kind kind,
			  uint64_t bytes);

/* Counts data bytes read by a scan. */
void metrics_add_scanned(struct metrics *m, uint64_t bytes);

/* Counts one VM's reclaim outcome. */
void metrics_count_reclaim(struct metrics *m, enum metrics_result result);

/* Counts a COW reclaim that ran to the end, by the strategy it took. */
void metrics_count_cow_strategy(struct metrics *m, enum metrics_strategy strategy);

/* Counts a memory file's sparsify that ran to the end, by the strategy it took. */
void metrics_count_mem_strategy(struct metrics *m, enum metrics_strategy strategy);

/* The label values of result and strategy ("ok", "punch"); "?" for a value out of range. */
const char *metrics_result_name(enum metrics_result result);
const char *metrics_strategy_name(enum metrics_strategy strategy);

/* Records how long one VM's reclaim took, in seconds (negative or NaN counts as 0). */
void metrics_observe_duration(struct metrics *m, double seconds);

/* Sets the host totals of this cycle. */
void metrics_set_host(struct metrics *m, const struct metrics_host *host);

/*
 * Sets one VM's allocated bytes (per-VM series only; otherwise a no-op that
 * returns 0).  0 or -ENOMEM.
 */
int metrics_set_vm(struct metrics *m, const char *vm_id, uint64_t cow_allocated_bytes,
		   uint64_t mem_allocated_bytes);

/*
 * Cycle bounds.  metrics_cycle_begin() marks every per-VM entry unseen;
 * metrics_cycle_end() records the end time (Unix seconds) and duration, and
 * drops the per-VM entries not touched since (VMs destroyed meanwhile), so
 * their series go away.
 */
void metrics_cycle_begin(struct metrics *m);
void metrics_cycle_end(struct metrics *m, double end_unix, double duration);

/*
 * The exposition text, malloc()ed and NUL-terminated, into *ret_text and its
 * length (without the NUL) into *ret_len.  0 or -ENOMEM.
 */
int metrics_format(const struct metrics *m, char **ret_text, size_t *ret_len);

/*
 * Writes text to path atomically for node_exporter's textfile collector: a
 * hidden temp file in the same directory (".NAME.XXXXXX", which the collector
 * ignores: it reads *.prom), mode 0644, fsync, rename over path, fsync the
 * directory.  0 or -errno; the temp file is removed on failure.
 */
int metrics_write_textfile(const char *path, const char *text, size_t len);

#endif
