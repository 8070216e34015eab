/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One reclamation cycle over the VMs of a state directory (host/cycle.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "host/cycle.h"
#include "host/error.h"
#include "host/reclaimcow.h"
#include "host/sparsefile.h"
#include "host/vm.h"
#include "reclaim/sparsify.h"

/* Copies prefix and msg into dst (size n), cut to fit: reasons come from errors of any length. */
static void cycle_copy(char *dst, size_t n, const char *prefix, const char *msg)
{
	size_t p = strlen(prefix), m = strlen(msg);

	if (p > n - 1)
		p = n - 1;
	if (m > n - 1 - p)
		m = n - 1 - p;
	memcpy(dst, prefix, p);
	memcpy(dst + p, msg, m);
	dst[p + m] = '\0';
}

/* ---- the shared token bucket ---- */

struct cycle_throttle {
	pthread_mutex_t lock; /* process-shared: the children take from the same bucket */
	struct ratelimit rl;
};

int cycle_throttle_new(uint64_t rate, struct cycle_throttle **ret)
{
	static const struct ratelimit_clock clock = {.now_ns = ratelimit_monotonic_ns};
	pthread_mutexattr_t attr;
	struct cycle_throttle *t;
	int r;

	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return -errno;
	r = pthread_mutexattr_init(&attr);
	if (!r)
		r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!r)
		r = pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (r) {
		munmap(t, sizeof(*t));
		return -r;
	}
	/* A burst of one second (at least 1 MiB, the default read): no read ever waits twice. */
	ratelimit_init(&t->rl, rate, rate > (1u << 20) ? rate : (1u << 20), &clock);
	*ret = t;
	return 0;
}

void cycle_throttle_free(struct cycle_throttle *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	munmap(t, sizeof(*t));
}

int cycle_throttle_take(struct cycle_throttle *t, uint64_t bytes, const volatile sig_atomic_t *stop)
{
	uint64_t wait;

	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	wait = ratelimit_reserve(&t->rl, bytes);
	pthread_mutex_unlock(&t->lock);
	/* Sleep in slices of at most 100 ms so that a stop is seen within the agent's 2 s. */
	while (wait > 0) {
		uint64_t slice = wait < 100000000ULL ? wait : 100000000ULL;
		struct timespec ts = {.tv_sec = (time_t)(slice / 1000000000ULL),
				      .tv_nsec = (long)(slice % 1000000000ULL)};

		if (stop && *stop)
			return -ECANCELED;
		nanosleep(&ts, NULL);
		wait -= slice;
	}
	return stop && *stop ? -ECANCELED : 0;
}

/* ---- what the parent sees without data I/O ---- */

#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_CLASS_IDLE  3
#define IOPRIO_WHO_PROCESS 1

int cycle_set_idle_ioprio(void)
{
	if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0,
		    IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) < 0)
		return -errno;
	return 0;
}

static double cycle_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Allocated and apparent bytes of the VM's files, for the gauges; missing files count 0. */
static void cycle_sizes(const struct vm *v, struct cycle_vm *out, struct vmstore_filestamp *cow,
			struct vmstore_filestamp *mem)
{
	*cow = (struct vmstore_filestamp){0};
	*mem = (struct vmstore_filestamp){0};
	if (vmstore_filestamp_read(v->cow_path, cow) == 0) {
		out->cow_allocated = cow->blocks * 512;
		out->cow_virtual = cow->size;
	}
	if (v->rec.mem_path[0] && vmstore_filestamp_read(v->rec.mem_path, mem) == 0)
		out->mem_allocated = mem->blocks * 512;
}

/* Nothing to do: the last reclaim finished and neither file changed since. */
static bool cycle_unchanged(const struct vm *v, const struct vmstore_filestamp *cow,
			    const struct vmstore_filestamp *mem)
{
	const struct vmstore_reclaim *l = &v->rec.last_reclaim;

	/*
	 * A run that failed on I/O is tried again; one that found the store invalid
	 * (exit 3) would find the same in the same files.
	 */
	if (!l->present || (l->exit_code != 0 && l->exit_code != 3) || l->interrupted)
		return false;
	if (!cow->present || !vmstore_filestamp_equal(&l->cow_stamp, cow))
		return false;
	if (!v->rec.mem_path[0])
		return true;
	/* A memory file the record names but that is missing now: say so (a failure), not skip. */
	return mem->present && vmstore_filestamp_equal(&l->mem_stamp, mem);
}

/* ---- the child: one VM's reclaim ---- */

struct cycle_child_ctx {
	const struct cycle_opts *opts;
};

static int cycle_throttle_cb(void *opaque, uint64_t bytes)
{
	const struct cycle_opts *o = opaque;

	return cycle_throttle_take(o->throttle, bytes, o->stop);
}

static void cycle_reclaim_opts(const struct cycle_opts *o, struct host_reclaim_request *req)
{
	req->engine = o->engine;
	req->strategy = o->strategy;
	req->stop = o->stop;
	if (o->throttle) {
		req->throttle = cycle_throttle_cb;
		req->throttle_opaque = (void *)o;
	}
}

/* The metrics' label for the strategy a reclaim ran (punch or rewrite, never auto). */
static enum metrics_strategy cycle_strategy(enum reclaim_strategy s)
{
	return s == RECLAIM_STRATEGY_REWRITE ? METRICS_STRATEGY_REWRITE : METRICS_STRATEGY_PUNCH;
}

/* Splits the st_blocks drop between zero and fs-free chunks by their counts (docs/operations.md). */
static void cycle_split(const struct reclaim_report *rep, uint64_t *zero, uint64_t *fs_free)
{
	uint64_t z = rep->zero_chunks * rep->chunk_bytes;

	/* No fs-free chunk: all of it is zeros (an extent block freed too is not "fs-free"). */
	if (!rep->fs_free_chunks)
		z = rep->reclaimed_bytes;
	*zero = rep->reclaimed_bytes < z ? rep->reclaimed_bytes : z;
	*fs_free = rep->reclaimed_bytes - *zero;
}

/* A forced rewrite of the VM's memory file refused (why): -EPERM, nothing written. */
static int memfile_refused(const struct vm *v, const char *why, struct host_error *err)
{
	host_seterr(err,
		    "memory file of VM %s: rewrite refused: %s; nothing written (try --strategy "
		    "punch)",
		    v->id, why);
	return -EPERM;
}

/*
 * Sparsifies the VM's memory file by o's strategy; fills out's mem figures.
 * sparsify_run() never rewrites a file another process has open or mapped
 * (a restored VM maps it privately, and would keep the old file and its
 * blocks): auto punches it, a forced rewrite fails the visit with -EPERM, as
 * for a rewrite's other rules (links, shared extents, free space).  0 or
 * -errno (err says why).
 */
static int cycle_memfile(const struct cycle_opts *o, const struct vm *v, struct cycle_vm *out,
			 struct host_error *err)
{
	_cleanup_close_ int fd = -1;
	struct sparsify_report rep;
	struct reclaim_opts ropts = {
		.engine = o->engine,
		.strategy = o->strategy,
		.path = v->rec.mem_path,
		.stop = o->stop,
	};
	const char *path = v->rec.mem_path;
	int r;

	if (o->throttle) {
		ropts.throttle = cycle_throttle_cb;
		ropts.throttle_opaque = (void *)o;
	}
	r = sparsefile_open_exclusive(path, &fd, err);
	if (r < 0)
		return r;
	r = sparsify_run(fd, &ropts, &rep);
	if (r == -EPERM && ropts.strategy == RECLAIM_STRATEGY_REWRITE)
		return memfile_refused(v, rep.scan.strategy_reason, err);
	if (r < 0) {
		host_seterr(err, "%s: memory file of VM %s: sparsify failed: %s", path, v->id,
			    strerror(-r));
		return r;
	}
	out->reclaimed[METRICS_KIND_MEM_ZERO] = rep.scan.reclaimed_bytes;
	out->scanned_bytes += rep.scan.bytes_read;
	out->mem_reclaimed = true;
	out->mem_strategy = cycle_strategy(rep.scan.strategy);
	return 0;
}

/*
 * The whole reclaim of one VM, in the child, under the VM's lock (inherited).
 * Fills *out and saves the record; never returns an error: out says it.
 */
static void cycle_child(const struct cycle_opts *o, struct vm *v, struct cycle_vm *out)
{
	struct host_reclaim_request req = {.cow_path = v->cow_path, .base_fd = -1};
	struct snapstore_error serr = {0};
	struct vmstore_filestamp cow, mem;
	struct fsaware_result fs = {0};
	struct reclaim_report rep = {0};
	struct host_error err = {""}, ferr = {""};
	struct vmstore_reclaim *l = &v->rec.last_reclaim;
	double t0 = cycle_now();
	int r = -ENOENT, mr = 0;

	cycle_reclaim_opts(o, &req);
	if (!o->no_fs_aware && v->rec.base_path[0]) {
		req.fs_aware = true;
		r = host_reclaim_vm(v, &req, &rep, &fs, &serr, &ferr);
		if (r == HOST_RECLAIM_REFUSED || r == -ESTALE) {
			/* Unsafe to trust the guest's bitmaps, or the base changed: zeros only. */
			out->fs_aware_refused = true;
			cycle_copy(out->reason, sizeof(out->reason),
				   "fs-aware refused: ", r == -ESTALE ? ferr.msg : fs.reason);
			req.fs_aware = false;
			r = host_reclaim_vm(v, &req, &rep, NULL, &serr, &err);
		} else
			err = ferr;
	} else
		r = host_reclaim_vm(v, &req, &rep, NULL, &serr, &err);

	if (r == 0) {
		cycle_split(&rep, &out->reclaimed[METRICS_KIND_ZERO],
			    &out->reclaimed[METRICS_KIND_FS_FREE]);
		out->scanned_bytes = rep.bytes_read;
		out->result = out->fs_aware_refused ? METRICS_RESULT_REFUSED : METRICS_RESULT_OK;
		out->cow_reclaimed = true;
		out->cow_strategy = cycle_strategy(rep.strategy);
	} else if (r == -EBADMSG) {
		out->result = METRICS_RESULT_REFUSED;
		cycle_copy(out->reason, sizeof(out->reason), "", err.msg);
	} else if (r == -EWOULDBLOCK || r == -EBUSY) {
		out->result = METRICS_RESULT_BUSY;
		cycle_copy(out->reason, sizeof(out->reason), "", err.msg);
	} else {
		out->result = METRICS_RESULT_FAILED;
		out->interrupted = r == -ECANCELED;
		cycle_copy(out->reason, sizeof(out->reason), "", err.msg);
	}

	/* The memory file, once the COW is done (not after a refusal to touch the VM at all). */
	if ((r == 0 || r == -EBADMSG) && v->rec.mem_path[0] && !(o->stop && *o->stop)) {
		mr = cycle_memfile(o, v, out, &err);
		if (mr < 0) {
			out->result = METRICS_RESULT_FAILED;
			out->interrupted = mr == -ECANCELED;
			cycle_copy(out->reason, sizeof(out->reason), "", err.msg);
		}
	} else if (o->stop && *o->stop && v->rec.mem_path[0])
		out->interrupted = true;

	out->ran = true;
	out->seconds = cycle_now() - t0;
	cycle_sizes(v, out, &cow, &mem);

	/* A busy COW says nothing about the VM: not recorded (as `reclaim ID`). */
	if (out->result == METRICS_RESULT_BUSY)
		return;
	/* host_reclaim_vm() recorded the COW's part; add the rest and save once more. */
	l->present = true;
	l->time = time(NULL);
	if (out->fs_aware_refused) {
		snprintf(l->fs_aware, sizeof(l->fs_aware), "refused");
		cycle_copy(l->fs_aware_reason, sizeof(l->fs_aware_reason), "",
			   out->reason + strlen("fs-aware refused: "));
	}
	l->mem_reclaimed_bytes = out->reclaimed[METRICS_KIND_MEM_ZERO];
	snprintf(l->mem_strategy, sizeof(l->mem_strategy), "%s",
		 out->mem_reclaimed ? metrics_strategy_name(out->mem_strategy) : "");
	l->bytes_read = out->scanned_bytes;
	l->interrupted = out->interrupted;
	l->seconds = out->seconds;
	if (out->result == METRICS_RESULT_FAILED) {
		if (!l->exit_code)
			l->exit_code = 1;
		/* Cut to the record's field: the log line has it whole. */
		memcpy(l->error, out->reason, sizeof(l->error) - 1);
		l->error[sizeof(l->error) - 1] = '\0';
	}
	l->cow_stamp = cow;
	l->mem_stamp = mem;
	if (vm_save(v, &err) < 0 && out->result != METRICS_RESULT_FAILED) {
		out->result = METRICS_RESULT_FAILED;
		cycle_copy(out->reason, sizeof(out->reason), "", err.msg);
	}
}

/* ---- the parent: visits, children, results ---- */

struct cycle_slot {
	pid_t pid;
	int fd; /* read end of the child's result pipe */
	struct cycle_vm vm;
};

static void cycle_count(const struct cycle_opts *o, struct metrics *m, struct cycle_summary *s,
			const struct cycle_vm *vm)
{
	s->vms++;
	s->results[vm->result]++;
	s->host.vms[vm->attached ? METRICS_VM_ATTACHED : METRICS_VM_DETACHED]++;
	s->host.cow_allocated_bytes += vm->cow_allocated;
	s->host.cow_virtual_bytes += vm->cow_virtual;
	s->host.mem_allocated_bytes += vm->mem_allocated;
	if (m) {
		for (int k = 0; k < METRICS_KIND_N; k++)
			if (vm->reclaimed[k])
				metrics_add_reclaimed(m, vm->id, (enum metrics_kind)k,
						      vm->reclaimed[k]);
		metrics_add_scanned(m, vm->scanned_bytes);
		metrics_count_reclaim(m, vm->result);
		if (vm->cow_reclaimed)
			metrics_count_cow_strategy(m, vm->cow_strategy);
		if (vm->mem_reclaimed)
			metrics_count_mem_strategy(m, vm->mem_strategy);
		if (vm->ran)
			metrics_observe_duration(m, vm->seconds);
		metrics_set_vm(m, vm->id, vm->cow_allocated, vm->mem_allocated);
	}
	if (o->on_vm)
		o->on_vm(o->opaque, vm);
}

/* Reads a child's result and reaps it; a child that died without one failed. */
static void cycle_reap(const struct cycle_opts *o, struct metrics *m, struct cycle_summary *s,
		       struct cycle_slot *slot)
{
	struct cycle_vm got;
	size_t have = 0;
	int status = 0;

	while (have < sizeof(got)) {
		ssize_t n = read(slot->fd, (char *)&got + have, sizeof(got) - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	close(slot->fd);
	while (waitpid(slot->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (have == sizeof(got) && !strcmp(got.id, slot->vm.id))
		slot->vm = got;
	else {
		slot->vm.result = METRICS_RESULT_FAILED;
		slot->vm.ran = true;
		if (WIFSIGNALED(status))
			snprintf(slot->vm.reason, sizeof(slot->vm.reason),
				 "the reclaim process died of signal %d (the store stays valid; "
				 "the record may not say so)",
				 WTERMSIG(status));
		else
			snprintf(slot->vm.reason, sizeof(slot->vm.reason),
				 "the reclaim process exited %d without a result",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	cycle_count(o, m, s, &slot->vm);
	slot->pid = 0;
}

/* Waits for any child's result (or a stop, which it forwards); reaps the ones done. */
static void cycle_wait(const struct cycle_opts *o, struct metrics *m, struct cycle_summary *s,
		       struct cycle_slot *slots, unsigned n, bool *forwarded)
{
	struct pollfd pfd[CYCLE_PARALLEL_MAX];
	unsigned map[CYCLE_PARALLEL_MAX], k = 0;

	for (unsigned i = 0; i < n; i++)
		if (slots[i].pid > 0) {
			pfd[k] = (struct pollfd){.fd = slots[i].fd, .events = POLLIN};
			map[k++] = i;
		}
	if (!k)
		return;
	if (o->stop && *o->stop && !*forwarded) {
		/* Children stop between punch batches and record it; they end within 2 s. */
		for (unsigned i = 0; i < k; i++)
			kill(slots[map[i]].pid, SIGTERM);
		*forwarded = true;
	}
	if (poll(pfd, k, 200) <= 0)
		return;
	for (unsigned i = 0; i < k; i++)
		if (pfd[i].revents)
			cycle_reap(o, m, s, &slots[map[i]]);
}

/* Runs the child for v; 0 with the slot filled, or -errno (nothing started). */
static int cycle_spawn(const struct cycle_opts *o, struct vm *v, struct cycle_slot *slot)
{
	pid_t pid, parent = getpid();
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid == 0) {
		struct cycle_vm out = slot->vm;
		size_t done = 0;

		close(p[0]);
		signal(SIGHUP, SIG_IGN);
		/* An agent killed with -9 must not leave its reclaim running: stop it, cleanly. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			_exit(1);
		cycle_child(o, v, &out);
		while (done < sizeof(out)) {
			ssize_t n = write(p[1], (char *)&out + done, sizeof(out) - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				_exit(1);
			done += (size_t)n;
		}
		_exit(0);
	}
	close(p[1]);
	slot->pid = pid;
	slot->fd = p[0];
	return 0;
}

/*
 * Visits one VM in the parent.  Returns 1 when it needs a child (v open and
 * locked, slot->vm filled so far), 0 when its visit is over (*vm filled).
 */
static int cycle_visit(const struct cycle_opts *o, const char *id, struct vm *v,
		       struct cycle_vm *vm)
{
	struct vmstore_filestamp cow, mem;
	struct host_error err = {""};
	int r;

	*vm = (struct cycle_vm){.result = METRICS_RESULT_FAILED};
	snprintf(vm->id, sizeof(vm->id), "%s", id);
	r = vm_open(o->state, id, false, v, &err);
	if (r < 0) {
		cycle_copy(vm->reason, sizeof(vm->reason), "", err.msg);
		return 0;
	}
	cycle_sizes(v, vm, &cow, &mem);
	r = vmstore_lock_vm(o->state, id);
	if (r < 0) {
		/* Locked: another command works on it.  Never wait. */
		vm->result = r == -EWOULDBLOCK ? METRICS_RESULT_BUSY : METRICS_RESULT_FAILED;
		snprintf(vm->reason, sizeof(vm->reason), "%s/%s/lock: %s", o->state, id,
			 r == -EWOULDBLOCK ? "locked by another cowpunch command" : strerror(-r));
		vm->attached = vm_is_attached(v, NULL) == 1;
		vm_close(v);
		return 0;
	}
	v->lock_fd = r;
	r = vm_is_attached(v, &err);
	if (r != 0) {
		vm->attached = r == 1;
		vm->result = r == 1 ? METRICS_RESULT_ATTACHED : METRICS_RESULT_FAILED;
		if (r < 0)
			cycle_copy(vm->reason, sizeof(vm->reason), "", err.msg);
		vm_close(v);
		return 0;
	}
	if (!cow.present) {
		snprintf(vm->reason, sizeof(vm->reason), "%s: the COW file of VM %s is missing",
			 v->cow_path, id);
		vm_close(v);
		return 0;
	}
	if (cycle_unchanged(v, &cow, &mem)) {
		vm->result = METRICS_RESULT_UNCHANGED;
		vm_close(v);
		return 0;
	}
	return 1;
}

int cycle_run(const struct cycle_opts *o, struct metrics *m, struct cycle_summary *ret)
{
	unsigned n = o->parallel < 1			? 1
		     : o->parallel > CYCLE_PARALLEL_MAX ? CYCLE_PARALLEL_MAX
							: o->parallel;
	struct cycle_summary s = {0};
	struct cycle_slot *slots;
	bool forwarded = false;
	double t0 = cycle_now();
	char **ids = NULL;
	int nids, r = 0;

	nids = vmstore_list(o->state, &ids);
	if (nids < 0)
		return nids;
	slots = calloc(n, sizeof(*slots));
	if (!slots) {
		vmstore_list_free(ids, nids);
		return -ENOMEM;
	}
	if (m)
		metrics_cycle_begin(m);
	for (int i = 0; i < nids; i++) {
		struct cycle_slot *free_slot = NULL;
		struct vm v;

		if (o->stop && *o->stop) {
			s.interrupted = true;
			break;
		}
		for (;;) {
			for (unsigned j = 0; j < n && !free_slot; j++)
				if (!slots[j].pid)
					free_slot = &slots[j];
			if (free_slot)
				break;
			cycle_wait(o, m, &s, slots, n, &forwarded);
		}
		if (!cycle_visit(o, ids[i], &v, &free_slot->vm)) {
			cycle_count(o, m, &s, &free_slot->vm);
			continue;
		}
		r = cycle_spawn(o, &v, free_slot);
		/* The child holds the lock (the same open file description) from here on. */
		vm_close(&v);
		if (r < 0) {
			snprintf(free_slot->vm.reason, sizeof(free_slot->vm.reason),
				 "cannot start the reclaim process: %s", strerror(-r));
			cycle_count(o, m, &s, &free_slot->vm);
			break;
		}
	}
	for (;;) {
		bool busy = false;

		for (unsigned j = 0; j < n; j++)
			busy |= slots[j].pid > 0;
		if (!busy)
			break;
		cycle_wait(o, m, &s, slots, n, &forwarded);
	}
	free(slots);
	vmstore_list_free(ids, nids);
	s.seconds = cycle_now() - t0;
	if (o->stop && *o->stop)
		s.interrupted = true;
	if (m) {
		metrics_set_host(m, &s.host);
		metrics_cycle_end(m, (double)time(NULL), s.seconds);
	}
	if (ret)
		*ret = s;
	return r < 0 ? r : 0;
}
