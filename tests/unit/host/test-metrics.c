/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/metrics.h"

/* The series every agent exposes, in order, before anything happened. */
#define HOST_SERIES_HEAD                                                                           \
	"# HELP cowpunch_build_info The running cowpunch agent's version; always 1.\n"             \
	"# TYPE cowpunch_build_info gauge\n"                                                       \
	"cowpunch_build_info{version=\"1.2.3\"} 1\n"                                               \
	"# HELP cowpunch_reclaimed_bytes_total Bytes of host disk given back, by what was found: " \
	"zero COW chunks, chunks free in the guest's file system, zero memory pages.\n"            \
	"# TYPE cowpunch_reclaimed_bytes_total counter\n"

static const char initial_text[] = HOST_SERIES_HEAD
	"cowpunch_reclaimed_bytes_total{kind=\"zero\"} 0\n"
	"cowpunch_reclaimed_bytes_total{kind=\"fs_free\"} 0\n"
	"cowpunch_reclaimed_bytes_total{kind=\"mem_zero\"} 0\n"
	"# HELP cowpunch_scanned_bytes_total Data bytes read by reclaim scans.\n"
	"# TYPE cowpunch_scanned_bytes_total counter\n"
	"cowpunch_scanned_bytes_total 0\n"
	"# HELP cowpunch_reclaims_total Reclaims of one VM, by outcome.\n"
	"# TYPE cowpunch_reclaims_total counter\n"
	"cowpunch_reclaims_total{result=\"ok\"} 0\n"
	"cowpunch_reclaims_total{result=\"unchanged\"} 0\n"
	"cowpunch_reclaims_total{result=\"attached\"} 0\n"
	"cowpunch_reclaims_total{result=\"busy\"} 0\n"
	"cowpunch_reclaims_total{result=\"refused\"} 0\n"
	"cowpunch_reclaims_total{result=\"failed\"} 0\n"
	"# HELP cowpunch_cow_reclaims_total COW reclaims that ran to the end, by strategy: holes "
	"punched in place, or a sparse copy renamed over the COW.\n"
	"# TYPE cowpunch_cow_reclaims_total counter\n"
	"cowpunch_cow_reclaims_total{strategy=\"punch\"} 0\n"
	"cowpunch_cow_reclaims_total{strategy=\"rewrite\"} 0\n"
	"# HELP cowpunch_mem_reclaims_total Memory-file reclaims that ran to the end, by strategy: "
	"zero blocks punched in place, or a sparse copy renamed over the file.\n"
	"# TYPE cowpunch_mem_reclaims_total counter\n"
	"cowpunch_mem_reclaims_total{strategy=\"punch\"} 0\n"
	"cowpunch_mem_reclaims_total{strategy=\"rewrite\"} 0\n"
	"# HELP cowpunch_reclaim_duration_seconds Time taken by one VM's reclaim.\n"
	"# TYPE cowpunch_reclaim_duration_seconds histogram\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.01\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.05\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.1\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.25\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.5\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"1\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"2.5\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"5\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"10\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"30\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"60\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"120\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"300\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"600\"} 0\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"+Inf\"} 0\n"
	"cowpunch_reclaim_duration_seconds_sum 0\n"
	"cowpunch_reclaim_duration_seconds_count 0\n"
	"# HELP cowpunch_vms VMs in the state directory, by state.\n"
	"# TYPE cowpunch_vms gauge\n"
	"cowpunch_vms{state=\"attached\"} 0\n"
	"cowpunch_vms{state=\"detached\"} 0\n"
	"# HELP cowpunch_cow_allocated_bytes Host disk held by all VMs' COW files.\n"
	"# TYPE cowpunch_cow_allocated_bytes gauge\n"
	"cowpunch_cow_allocated_bytes 0\n"
	"# HELP cowpunch_cow_virtual_bytes Apparent size of all VMs' COW files.\n"
	"# TYPE cowpunch_cow_virtual_bytes gauge\n"
	"cowpunch_cow_virtual_bytes 0\n"
	"# HELP cowpunch_mem_allocated_bytes Host disk held by all VMs' memory files.\n"
	"# TYPE cowpunch_mem_allocated_bytes gauge\n"
	"cowpunch_mem_allocated_bytes 0\n"
	"# HELP cowpunch_last_cycle_timestamp_seconds Unix time the last reclamation cycle ended; 0 before the first.\n"
	"# TYPE cowpunch_last_cycle_timestamp_seconds gauge\n"
	"cowpunch_last_cycle_timestamp_seconds 0\n"
	"# HELP cowpunch_last_cycle_duration_seconds How long the last reclamation cycle took.\n"
	"# TYPE cowpunch_last_cycle_duration_seconds gauge\n"
	"cowpunch_last_cycle_duration_seconds 0\n"
	"# HELP cowpunch_cycle_interval_seconds The agent's interval between cycles (--interval).\n"
	"# TYPE cowpunch_cycle_interval_seconds gauge\n"
	"cowpunch_cycle_interval_seconds 600\n";

static const char small_text[] = HOST_SERIES_HEAD
	"cowpunch_reclaimed_bytes_total{kind=\"zero\"} 4096\n"
	"cowpunch_reclaimed_bytes_total{kind=\"fs_free\"} 12288\n"
	"cowpunch_reclaimed_bytes_total{kind=\"mem_zero\"} 0\n"
	"# HELP cowpunch_scanned_bytes_total Data bytes read by reclaim scans.\n"
	"# TYPE cowpunch_scanned_bytes_total counter\n"
	"cowpunch_scanned_bytes_total 1048576\n"
	"# HELP cowpunch_reclaims_total Reclaims of one VM, by outcome.\n"
	"# TYPE cowpunch_reclaims_total counter\n"
	"cowpunch_reclaims_total{result=\"ok\"} 2\n"
	"cowpunch_reclaims_total{result=\"unchanged\"} 0\n"
	"cowpunch_reclaims_total{result=\"attached\"} 1\n"
	"cowpunch_reclaims_total{result=\"busy\"} 0\n"
	"cowpunch_reclaims_total{result=\"refused\"} 0\n"
	"cowpunch_reclaims_total{result=\"failed\"} 1\n"
	"# HELP cowpunch_cow_reclaims_total COW reclaims that ran to the end, by strategy: holes "
	"punched in place, or a sparse copy renamed over the COW.\n"
	"# TYPE cowpunch_cow_reclaims_total counter\n"
	"cowpunch_cow_reclaims_total{strategy=\"punch\"} 1\n"
	"cowpunch_cow_reclaims_total{strategy=\"rewrite\"} 1\n"
	"# HELP cowpunch_mem_reclaims_total Memory-file reclaims that ran to the end, by strategy: "
	"zero blocks punched in place, or a sparse copy renamed over the file.\n"
	"# TYPE cowpunch_mem_reclaims_total counter\n"
	"cowpunch_mem_reclaims_total{strategy=\"punch\"} 0\n"
	"cowpunch_mem_reclaims_total{strategy=\"rewrite\"} 2\n"
	"# HELP cowpunch_reclaim_duration_seconds Time taken by one VM's reclaim.\n"
	"# TYPE cowpunch_reclaim_duration_seconds histogram\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.01\"} 2\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.05\"} 2\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.1\"} 2\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.25\"} 2\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"0.5\"} 2\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"1\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"2.5\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"5\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"10\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"30\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"60\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"120\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"300\"} 3\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"600\"} 4\n"
	"cowpunch_reclaim_duration_seconds_bucket{le=\"+Inf\"} 5\n"
	"cowpunch_reclaim_duration_seconds_sum 1600.72\n"
	"cowpunch_reclaim_duration_seconds_count 5\n"
	"# HELP cowpunch_vms VMs in the state directory, by state.\n"
	"# TYPE cowpunch_vms gauge\n"
	"cowpunch_vms{state=\"attached\"} 1\n"
	"cowpunch_vms{state=\"detached\"} 2\n"
	"# HELP cowpunch_cow_allocated_bytes Host disk held by all VMs' COW files.\n"
	"# TYPE cowpunch_cow_allocated_bytes gauge\n"
	"cowpunch_cow_allocated_bytes 8589934592\n"
	"# HELP cowpunch_cow_virtual_bytes Apparent size of all VMs' COW files.\n"
	"# TYPE cowpunch_cow_virtual_bytes gauge\n"
	"cowpunch_cow_virtual_bytes 32212254720\n"
	"# HELP cowpunch_mem_allocated_bytes Host disk held by all VMs' memory files.\n"
	"# TYPE cowpunch_mem_allocated_bytes gauge\n"
	"cowpunch_mem_allocated_bytes 536870912\n"
	"# HELP cowpunch_last_cycle_timestamp_seconds Unix time the last reclamation cycle ended; 0 before the first.\n"
	"# TYPE cowpunch_last_cycle_timestamp_seconds gauge\n"
	"cowpunch_last_cycle_timestamp_seconds 1764240069.25\n"
	"# HELP cowpunch_last_cycle_duration_seconds How long the last reclamation cycle took.\n"
	"# TYPE cowpunch_last_cycle_duration_seconds gauge\n"
	"cowpunch_last_cycle_duration_seconds 12.5\n"
	"# HELP cowpunch_cycle_interval_seconds The agent's interval between cycles (--interval).\n"
	"# TYPE cowpunch_cycle_interval_seconds gauge\n"
	"cowpunch_cycle_interval_seconds 600\n"
	"# HELP cowpunch_vm_reclaimed_bytes_total Bytes of host disk given back, per VM and kind.\n"
	"# TYPE cowpunch_vm_reclaimed_bytes_total counter\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"a\\\"q\\\\\\n\",kind=\"zero\"} 0\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"a\\\"q\\\\\\n\",kind=\"fs_free\"} 8192\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"a\\\"q\\\\\\n\",kind=\"mem_zero\"} 0\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"vm-1.b_2\",kind=\"zero\"} 4096\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"vm-1.b_2\",kind=\"fs_free\"} 4096\n"
	"cowpunch_vm_reclaimed_bytes_total{vm=\"vm-1.b_2\",kind=\"mem_zero\"} 0\n"
	"# HELP cowpunch_vm_cow_allocated_bytes Host disk held by the VM's COW file.\n"
	"# TYPE cowpunch_vm_cow_allocated_bytes gauge\n"
	"cowpunch_vm_cow_allocated_bytes{vm=\"a\\\"q\\\\\\n\"} 0\n"
	"cowpunch_vm_cow_allocated_bytes{vm=\"vm-1.b_2\"} 8589934592\n"
	"# HELP cowpunch_vm_mem_allocated_bytes Host disk held by the VM's memory file.\n"
	"# TYPE cowpunch_vm_mem_allocated_bytes gauge\n"
	"cowpunch_vm_mem_allocated_bytes{vm=\"a\\\"q\\\\\\n\"} 0\n"
	"cowpunch_vm_mem_allocated_bytes{vm=\"vm-1.b_2\"} 536870912\n";

static char *format(const struct metrics *m)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_format(m, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	return text;
}

/* Every series of the contract is there, at 0, before anything happened. */
static void test_initial(void **state)
{
	struct metrics m;
	char *text;

	assert_int_equal(metrics_init(&m, "1.2.3", false, 600), 0);
	text = format(&m);
	assert_string_equal(text, initial_text);
	free(text);
	/* Per-VM series on, no VM yet: the families are announced, without samples. */
	metrics_free(&m);
	assert_int_equal(metrics_init(&m, "1.2.3", true, 600), 0);
	text = format(&m);
	assert_int_equal(strncmp(text, initial_text, strlen(initial_text)), 0);
	assert_string_equal(
		text + strlen(initial_text),
		"# HELP cowpunch_vm_reclaimed_bytes_total Bytes of host disk given back, per VM and kind.\n"
		"# TYPE cowpunch_vm_reclaimed_bytes_total counter\n"
		"# HELP cowpunch_vm_cow_allocated_bytes Host disk held by the VM's COW file.\n"
		"# TYPE cowpunch_vm_cow_allocated_bytes gauge\n"
		"# HELP cowpunch_vm_mem_allocated_bytes Host disk held by the VM's memory file.\n"
		"# TYPE cowpunch_vm_mem_allocated_bytes gauge\n");
	free(text);
	metrics_free(&m);
}

/* The names the agent's log uses are the label values of the exposition (initial_text). */
static void test_label_names(void **state)
{
	char want[96];

	for (int r = 0; r < METRICS_RESULT_N; r++) {
		snprintf(want, sizeof(want), "cowpunch_reclaims_total{result=\"%s\"} 0\n",
			 metrics_result_name(r));
		assert_non_null(strstr(initial_text, want));
	}
	for (int r = 0; r < METRICS_STRATEGY_N; r++) {
		snprintf(want, sizeof(want), "cowpunch_cow_reclaims_total{strategy=\"%s\"} 0\n",
			 metrics_strategy_name(r));
		assert_non_null(strstr(initial_text, want));
		snprintf(want, sizeof(want), "cowpunch_mem_reclaims_total{strategy=\"%s\"} 0\n",
			 metrics_strategy_name(r));
		assert_non_null(strstr(initial_text, want));
	}
	assert_string_equal(metrics_result_name(METRICS_RESULT_FAILED), "failed");
	assert_string_equal(metrics_strategy_name(METRICS_STRATEGY_REWRITE), "rewrite");
	assert_string_equal(metrics_result_name(METRICS_RESULT_N), "?");
	assert_string_equal(metrics_strategy_name(METRICS_STRATEGY_N), "?");
}

static void fill_small(struct metrics *m)
{
	struct metrics_host host = {
		.vms = {1, 2},
		.cow_allocated_bytes = 8ULL << 30,
		.cow_virtual_bytes = 30ULL << 30,
		.mem_allocated_bytes = 512ULL << 20,
	};

	assert_int_equal(metrics_init(m, "1.2.3", true, 600), 0);
	metrics_cycle_begin(m);
	assert_int_equal(metrics_add_reclaimed(m, "vm-1.b_2", METRICS_KIND_ZERO, 4096), 0);
	assert_int_equal(metrics_add_reclaimed(m, "vm-1.b_2", METRICS_KIND_FS_FREE, 4096), 0);
	/* A label value with every character the format escapes. */
	assert_int_equal(metrics_add_reclaimed(m, "a\"q\\\n", METRICS_KIND_FS_FREE, 8192), 0);
	metrics_add_scanned(m, 1 << 20);
	metrics_count_reclaim(m, METRICS_RESULT_OK);
	metrics_count_reclaim(m, METRICS_RESULT_OK);
	metrics_count_reclaim(m, METRICS_RESULT_ATTACHED);
	metrics_count_reclaim(m, METRICS_RESULT_FAILED);
	metrics_count_cow_strategy(m, METRICS_STRATEGY_PUNCH);
	metrics_count_cow_strategy(m, METRICS_STRATEGY_REWRITE);
	metrics_count_mem_strategy(m, METRICS_STRATEGY_REWRITE);
	metrics_count_mem_strategy(m, METRICS_STRATEGY_REWRITE);
	/* Bucket bounds are inclusive (le); NaN and negative times count as 0. */
	metrics_observe_duration(m, 0.01);
	metrics_observe_duration(m, NAN);
	metrics_observe_duration(m, 0.7);
	metrics_observe_duration(m, 600);
	metrics_observe_duration(m, 1000.01);
	metrics_set_host(m, &host);
	assert_int_equal(metrics_set_vm(m, "vm-1.b_2", 8ULL << 30, 512ULL << 20), 0);
	metrics_cycle_end(m, 1764240069.25, 12.5);
}

static void test_small_state(void **state)
{
	struct metrics m;
	char *text;

	fill_small(&m);
	text = format(&m);
	assert_string_equal(text, small_text);
	free(text);
	metrics_free(&m);
}

/* A VM no longer seen in a cycle loses its series; the host totals keep counting. */
static void test_cycle_drops_gone_vms(void **state)
{
	struct metrics m;
	char *text;

	fill_small(&m);
	metrics_cycle_begin(&m);
	assert_int_equal(metrics_set_vm(&m, "vm-1.b_2", 1, 2), 0);
	assert_int_equal(metrics_add_reclaimed(&m, "c", METRICS_KIND_MEM_ZERO, 7), 0);
	metrics_cycle_end(&m, 1764240669.5, 0.125);
	assert_int_equal(m.n_vms, 2);
	text = format(&m);
	assert_null(strstr(text, "vm=\"a\\\""));
	assert_non_null(strstr(text, "\ncowpunch_reclaimed_bytes_total{kind=\"fs_free\"} 12288\n"));
	assert_non_null(strstr(text, "\ncowpunch_reclaimed_bytes_total{kind=\"mem_zero\"} 7\n"));
	assert_non_null(strstr(
		text, "\ncowpunch_vm_reclaimed_bytes_total{vm=\"c\",kind=\"mem_zero\"} 7\n"));
	assert_non_null(strstr(text, "\ncowpunch_vm_cow_allocated_bytes{vm=\"vm-1.b_2\"} 1\n"));
	assert_non_null(strstr(text, "\ncowpunch_vm_cow_allocated_bytes{vm=\"c\"} 0\n"));
	assert_non_null(strstr(text, "\ncowpunch_last_cycle_timestamp_seconds 1764240669.5\n"));
	assert_non_null(strstr(text, "\ncowpunch_last_cycle_duration_seconds 0.125\n"));
	free(text);
	metrics_free(&m);
}

/* Without per-VM series, VM IDs neither make entries nor appear. */
static void test_no_per_vm(void **state)
{
	struct metrics m;
	char *text;

	assert_int_equal(metrics_init(&m, "1.2.3", false, 60), 0);
	assert_int_equal(metrics_add_reclaimed(&m, "x", METRICS_KIND_ZERO, 5), 0);
	assert_int_equal(metrics_set_vm(&m, "x", 1, 1), 0);
	assert_int_equal(m.n_vms, 0);
	text = format(&m);
	assert_null(strstr(text, "vm="));
	assert_null(strstr(text, "cowpunch_vm_"));
	assert_non_null(strstr(text, "\ncowpunch_reclaimed_bytes_total{kind=\"zero\"} 5\n"));
	free(text);
	metrics_free(&m);
}

/* Values that are not small integers read back exactly. */
static void test_values(void **state)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{0.1, "0.1"},
		{1.0 / 3, "0.33333333333333331"},
		{9007199254740993.0, "9007199254740992"},
		{18446744073709551615.0, "1.8446744073709552e+19"},
		{1764240069.123456, "1764240069.123456"},
		{INFINITY, "+Inf"},
		{-INFINITY, "-Inf"},
		{NAN, "NaN"},
	};
	struct metrics m;

	assert_int_equal(metrics_init(&m, "v", false, 60), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[128], *text;

		m.last_cycle_duration = cases[i].v;
		text = format(&m);
		snprintf(want, sizeof(want), "\ncowpunch_last_cycle_duration_seconds %s\n",
			 cases[i].text);
		if (!strstr(text, want))
			fail_msg("%.17g: expected '%s' in the text", cases[i].v, cases[i].text);
		free(text);
	}
	metrics_free(&m);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_textfile(void **state)
{
	char dir[] = "/tmp/cowpunch-metrics-XXXXXX", path[256], buf[64], cwd[4096];
	struct stat st;
	int fd;
	ssize_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cowpunch.prom", dir);
	assert_int_equal(metrics_write_textfile(path, "first\n", 6), 0);
	assert_int_equal(metrics_write_textfile(path, "second\n", 7), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "second\n", 7);
	/* Readable by node_exporter's user, and no temp file left behind. */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(count_entries(dir), 1);
	/* A relative name with no directory part lands in the current directory. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(metrics_write_textfile("rel.prom", "x", 1), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(count_entries(dir), 2);

	/* Failures: -errno, and nothing left behind. */
	snprintf(path, sizeof(path), "%s/missing/cowpunch.prom", dir);
	assert_int_equal(metrics_write_textfile(path, "x", 1), -ENOENT);
	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(metrics_write_textfile(path, "x", 1), -EISDIR);
	assert_int_equal(count_entries(dir), 3);
	snprintf(path, sizeof(path), "%s/", dir);
	assert_int_equal(metrics_write_textfile(path, "x", 1), -EISDIR);

	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/cowpunch.prom", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/rel.prom", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initial),	    cmocka_unit_test(test_label_names),
		cmocka_unit_test(test_small_state), cmocka_unit_test(test_cycle_drops_gone_vms),
		cmocka_unit_test(test_no_per_vm),   cmocka_unit_test(test_values),
		cmocka_unit_test(test_textfile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
