/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One reclamation cycle over every VM of a state directory: what `cowpunch
 * agent` runs each interval, and `cowpunch agent --once` runs once.
 *
 * Each VM is visited in the calling process with no data I/O: its record is
 * read, its files are stat()ed, and it is skipped when it is attached, locked by
 * another command, or unchanged since its last recorded reclaim (same inode,
 * size, st_blocks, mtime and ctime of the COW and of the memory file).  A VM
 * that needs work is reclaimed in a child process (at most `parallel` at once)
 * that holds the VM's lock: fs-aware where the record's base allows it (a
 * refusal is recorded with its reason, then zero-only reclaim runs), zero-only
 * otherwise, then the memory file is sparsified.  The child records the result
 * in the VM's record and sends it to the parent, which counts it in the
 * metrics.  A child that crashes (a bug tripped by a hostile guest's data, say)
 * costs that VM's reclaim, not the agent.
 */
#ifndef COWPUNCH_HOST_CYCLE_H
#define COWPUNCH_HOST_CYCLE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ratelimit.h"
#include "host/metrics.h"
#include "host/vmstore.h"
#include "reclaim/reclaim.h"

/* A token bucket shared by the agent and its children (the read rate is host-wide). */
struct cycle_throttle;

/*
 * Makes a shared bucket of rate bytes/s (0: unlimited) in memory the children
 * inherit.  Returns 0 and writes *ret, or -errno.  Free with cycle_throttle_free().
 */
int cycle_throttle_new(uint64_t rate, struct cycle_throttle **ret);
void cycle_throttle_free(struct cycle_throttle *t);
/*
 * Takes bytes from the bucket, sleeping as long as the rate says, in slices
 * short enough to notice *stop (may be NULL).  0, or -ECANCELED when stopped.
 */
int cycle_throttle_take(struct cycle_throttle *t, uint64_t bytes,
			const volatile sig_atomic_t *stop);

struct cycle_vm;

/* The most children at once (--parallel). */
#define CYCLE_PARALLEL_MAX 64

struct cycle_opts {
	const char *state;
	unsigned parallel; /* children at once, 1 to CYCLE_PARALLEL_MAX */
	enum reclaim_engine_kind engine;
	enum reclaim_strategy strategy;	   /* the COW's and the memory file's */
	bool no_fs_aware;		   /* zero-only reclaim even where fs-aware could run */
	struct cycle_throttle *throttle;   /* may be NULL */
	const volatile sig_atomic_t *stop; /* set by SIGTERM/SIGINT; may be NULL */
	/* Optional, called in the calling process as each VM's visit ends. */
	void (*on_vm)(void *opaque, const struct cycle_vm *vm);
	void *opaque;
};

/* How one VM's visit ended. */
struct cycle_vm {
	char id[VMSTORE_ID_MAX + 1];
	enum metrics_result result;
	bool ran; /* a reclaim ran (in a child): seconds is its duration */
	bool attached;
	bool interrupted;      /* stopped by a signal part-way; the store is valid */
	bool fs_aware_refused; /* fs-aware refused (reason says why), zero-only ran */
	bool cow_reclaimed;    /* the COW's reclaim ran to the end, with cow_strategy */
	enum metrics_strategy cow_strategy;
	bool mem_reclaimed; /* the memory file's sparsify ran to the end, with mem_strategy */
	enum metrics_strategy mem_strategy;
	uint64_t reclaimed[METRICS_KIND_N];
	uint64_t scanned_bytes;
	double seconds;
	uint64_t cow_allocated, cow_virtual,
		mem_allocated; /* after the visit, from st_blocks/st_size */
	char reason[512];      /* failed, busy, refused: why */
};

struct cycle_summary {
	unsigned vms;			    /* VMs visited */
	unsigned results[METRICS_RESULT_N]; /* how their visits ended */
	struct metrics_host host;	    /* totals after the cycle */
	double seconds;
	bool interrupted; /* *stop was set: VMs after it were not visited */
};

/*
 * Runs one cycle over every VM in opts->state, counting into m (may be NULL).
 * A VM whose visit fails is counted and the cycle goes on.  Returns 0 and
 * fills *ret (may be NULL) when the cycle ran to its end or was stopped;
 * -errno when the state directory cannot be listed or no child can be made.
 */
int cycle_run(const struct cycle_opts *opts, struct metrics *m, struct cycle_summary *ret);

/* Puts this process (and the children it makes) in the idle I/O class.  0 or -errno. */
int cycle_set_idle_ioprio(void);

#endif
