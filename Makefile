# cowpunch: one Makefile for the whole tree.  `make help` lists the targets.
VERSION := 0.1.0
BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
SAN     ?=
# How many compilers `make test`, `make check` and `make fuzz` run at once (tests run one at a time).
JOBS    ?= $(shell nproc 2>/dev/null || echo 1)
# Every warning is an error in CI (CI=true) and in `make check`.
WERROR  ?= $(if $(CI),-Werror,)

PKGS    := devmapper liburing json-c ext2fs com_err libcrypto libmicrohttpd
# Recursively expanded: pkg-config runs at recipe time, after scripts/deps.sh.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS       = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -laio

WARN    := -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes -Wvla -Wformat-security \
	   -Wno-unused-parameter
# CPPFLAGS and LDFLAGS: dpkg-buildflags' hardening (_FORTIFY_SOURCE, relro) in a package build.
CFLAGS_ALL = -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DCOWPUNCH_VERSION='"$(VERSION)"' \
	     -I. $(PKG_CFLAGS) $(WARN) $(WERROR) $(OPT) $(SAN) -g -MMD -MP $(CPPFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

# The library: everything but the CLI (agent/ is the only code that prints and exits).
LIB_SRCS  := $(wildcard common/*.c reclaim/*.c dmops/*.c host/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
AGENT_SRCS := $(filter-out agent/main.c,$(wildcard agent/*.c))
AGENT_OBJS := $(AGENT_SRCS:%.c=$(BUILD)/%.o)
TESTH_SRCS := $(wildcard tests/unit/helpers/*.c)
TESTH_OBJS := $(TESTH_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/*/test-*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/tools/%)

# Man pages: scdoc sources in man/, rendered into $(BUILD)/man/.
MAN_SRCS  := $(wildcard man/*.8.scd)
MAN_PAGES := $(MAN_SRCS:man/%.scd=$(BUILD)/man/%)
# The pages' date: SOURCE_DATE_EPOCH (dpkg-buildpackage sets it), else the last commit's.
MAN_EPOCH := $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))

# make install: FHS paths under PREFIX, staged under DESTDIR.  cowpunch needs root
# (loop and device-mapper devices), hence sbin.
PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR    ?= $(DATADIR)/bash-completion/completions
PKGDATADIR     ?= $(DATADIR)/cowpunch
# What install takes from contrib/: whatever of it exists (CONTRIB points the tests elsewhere).
CONTRIB        ?= contrib
UNITS      = $(wildcard $(CONTRIB)/systemd/*.service $(CONTRIB)/systemd/*.timer)
PROMETHEUS = $(wildcard $(CONTRIB)/prometheus/*)
GRAFANA    = $(wildcard $(CONTRIB)/grafana/*)
COMPLETION = $(wildcard $(CONTRIB)/bash-completion/cowpunch)
# Every file install writes, for uninstall.
INSTALLED  = $(SBINDIR)/cowpunch $(MAN_PAGES:$(BUILD)/man/%=$(MANDIR)/man8/%) \
	     $(addprefix $(SYSTEMDUNITDIR)/,$(notdir $(UNITS))) \
	     $(addprefix $(PKGDATADIR)/prometheus/,$(notdir $(PROMETHEUS))) \
	     $(addprefix $(PKGDATADIR)/grafana/,$(notdir $(GRAFANA))) \
	     $(if $(COMPLETION),$(BASHCOMPDIR)/cowpunch)

.DEFAULT_GOAL := all
.PHONY: all check-bins deps help test unit clitest promtest check lint valgrind vmtest powercut demo bench bench-cow \
	bench-cow-quick fuzz fuzz-run fuzz-replay format \
	format-check clean man install uninstall deb pkgtest

help:
	@echo "make            build build/cowpunch"
	@echo "make test       install missing packages, build, run unit, CLI, sanitizer, fuzz, lint,"
	@echo "                valgrind and VM tests"
	@echo "make demo       build and run the newcomer's demo in the QEMU test bed"
	@echo "make unit       cmocka unit tests"
	@echo "make clitest    CLI tests against real files (tests/cli)"
	@echo "make promtest   metrics, dashboard, rules and units against a real Prometheus (tests/prom)"
	@echo "make check      ASan+UBSan build running the unit tests and the fuzz corpus"
	@echo "make lint       cppcheck over every C file (tests/lint/cppcheck.supp: false positives)"
	@echo "make valgrind   the CLI tests with every cowpunch under valgrind memcheck"
	@echo "make vmtest     device-mapper scenarios in QEMU on Debian's 6.1 and 6.12 kernels"
	@echo "make powercut   QEMU killed while guests write through overlays, on both kernels"
	@echo "make bench      benchmarks (bench/); results go to docs/benchmarks.md by hand"
	@echo "make bench-cow  fio over the copy-on-write path in the QEMU test bed (~30 min under TCG;"
	@echo "                BENCH_COW_OUT=DIR, default build/bench-cow): CSV, plots, report.md"
	@echo "make bench-cow-quick  the same, a subset under 10 minutes (build/bench-cow-quick)"
	@echo "make fuzz       libFuzzer builds of tests/fuzz (clang)"
	@echo "make fuzz-run   each libFuzzer target for FUZZ_SECONDS (30) on a scratch corpus,"
	@echo "                FUZZ_JOBS (the CPUs) at once"
	@echo "make format-check  clang-format check"
	@echo "make man        render the man pages (man/*.scd) into build/man/"
	@echo "make install    install under PREFIX (/usr/local) and DESTDIR; make uninstall undoes it"
	@echo "make deb        build the Debian package into build/deb/"
	@echo "make pkgtest    man pages, bash completion, install/uninstall and .deb tests (tests/pkg)"

deps:
	@scripts/deps.sh $(or $(DEPS),build)

all: $(BUILD)/cowpunch $(TOOL_BINS)

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libcowpunch.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libtesthelpers.a: $(TESTH_OBJS)
	@rm -f $@
	ar rcs $@ $^ $(if $^,,)

# The CLI's objects (but main), for the binary and the tests of agent/ code.
$(BUILD)/libcowpunch-agent.a: $(AGENT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/cowpunch: $(BUILD)/agent/main.o $(BUILD)/libcowpunch-agent.a $(BUILD)/libcowpunch.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# A test may add link flags (e.g. -Wl,--wrap=ioctl) in tests/unit/DIR/test-NAME.ldflags.
# Only tests/unit/agent/ links the CLI's code.
$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libcowpunch.a $(BUILD)/libcowpunch-agent.a \
		$(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) \
		$(if $(filter agent/%,$*),$(BUILD)/libcowpunch-agent.a) $(BUILD)/libcowpunch.a \
		$(LIBS) -lcmocka $$(cat tests/unit/$*.ldflags 2>/dev/null)

# Fuzz targets built as plain programs that replay files (see tests/fuzz/README.md).
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(BUILD)/libcowpunch.a $(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) $(BUILD)/libcowpunch.a $(LIBS)

# metricsd serves with agent/httpd.
$(BUILD)/tests/tools/%: tests/tools/%.c $(BUILD)/libcowpunch.a $(BUILD)/libcowpunch-agent.a \
		$(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) $(BUILD)/libcowpunch-agent.a \
		$(BUILD)/libcowpunch.a $(LIBS)

man: $(MAN_PAGES)

# scdoc puts its .nh (no hyphenation) before .TH, which turns hyphenation back on: repeat it
# after .TH; and .cflags 0 - keeps groff from breaking a line after a hyphen.  So option
# names, paths and page names (cowpunch-attach(8)) are never split.
$(BUILD)/man/%.8: man/%.8.scd Makefile
	@mkdir -p $(dir $@)
	@command -v scdoc >/dev/null || { echo "man: scdoc is missing (scripts/deps.sh pkg)" >&2; exit 1; }
	sed 's/@VERSION@/$(VERSION)/g' $< > $@.scd
	$(if $(MAN_EPOCH),SOURCE_DATE_EPOCH=$(MAN_EPOCH)) scdoc < $@.scd > $@.tmp
	sed -i -e '/^\.TH /a .cflags 0 -' -e '/^\.TH /a .nh' $@.tmp
	@rm -f $@.scd
	@mv $@.tmp $@

# The units' Exec lines name /usr/sbin/cowpunch (the package's path): rewritten to SBINDIR.
install: $(BUILD)/cowpunch $(MAN_PAGES)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BUILD)/cowpunch $(DESTDIR)$(SBINDIR)/cowpunch
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man8/
	$(if $(UNITS),install -d $(DESTDIR)$(SYSTEMDUNITDIR))
	$(if $(UNITS),for u in $(UNITS); do \
		sed -E 's|^(Exec[A-Za-z]*=[-@+!:]*)/usr/s?bin/cowpunch\>|\1$(SBINDIR)/cowpunch|' "$$u" \
			> $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; done)
	$(if $(PROMETHEUS),install -d $(DESTDIR)$(PKGDATADIR)/prometheus)
	$(if $(PROMETHEUS),install -m 0644 $(PROMETHEUS) $(DESTDIR)$(PKGDATADIR)/prometheus/)
	$(if $(GRAFANA),install -d $(DESTDIR)$(PKGDATADIR)/grafana)
	$(if $(GRAFANA),install -m 0644 $(GRAFANA) $(DESTDIR)$(PKGDATADIR)/grafana/)
	$(if $(COMPLETION),install -d $(DESTDIR)$(BASHCOMPDIR))
	$(if $(COMPLETION),install -m 0644 $(COMPLETION) $(DESTDIR)$(BASHCOMPDIR)/cowpunch)

# Removes exactly the files install writes, and the folders that are only cowpunch's.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir $(DESTDIR)$(PKGDATADIR)/prometheus $(DESTDIR)$(PKGDATADIR)/grafana \
		$(DESTDIR)$(PKGDATADIR) 2>/dev/null || true

# The Debian package, built from a copy of the tree in build/deb/src (dpkg-buildpackage
# writes into the parent folder): build/deb/cowpunch_VERSION_ARCH.deb.
deb:
	@$(MAKE) --no-print-directory DEPS=pkg deps
	@scripts/deb.sh $(BUILD)/deb $(VERSION)

pkgtest: all $(MAN_PAGES)
	@$(MAKE) --no-print-directory DEPS=pkg deps
	@tests/cli/run.sh $(BUILD) tests/pkg

# The probe tells the runner which engines this machine offers (CI=true: a skipped one fails).
unit: $(TEST_BINS) $(BUILD)/tests/tools/engineprobe
	@ENGINE_PROBE=$(BUILD)/tests/tools/engineprobe tests/run-unit.sh $(TEST_BINS)

clitest: all
	@tests/cli/run.sh $(BUILD)

# A real Prometheus on loopback; every wait in it is bounded, timeout is the backstop.
promtest: all
	@$(MAKE) --no-print-directory DEPS=test deps
	@export BUILD_DIR=$(abspath $(BUILD)); \
		timeout 120 tests/prom/test-systemd-units.sh && \
		timeout 120 tests/prom/test-prometheus.sh && \
		timeout 120 tests/prom/test-agent.sh && echo "promtest: passed"

fuzz-replay: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); \
		if [ -d tests/fuzz/corpus/$$n ]; then \
			echo "fuzz-replay: $$n over tests/fuzz/corpus/$$n"; \
			$$f tests/fuzz/corpus/$$n/*; \
		fi; \
	done

# Sanitizers: a separate build tree so the normal build stays untouched.
# What unit and fuzz-replay run, built JOBS at a time before they run one by one.
SAN_MAKE = $(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer" \
	SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" WERROR=-Werror
check-bins: $(TEST_BINS) $(BUILD)/tests/tools/engineprobe $(FUZZ_BINS)

check:
	@$(MAKE) --no-print-directory DEPS=test deps
	@$(SAN_MAKE) -j$(JOBS) check-bins
	@$(SAN_MAKE) unit fuzz-replay

fuzz:
	@$(MAKE) --no-print-directory DEPS=fuzz deps
	@$(MAKE) --no-print-directory -j$(JOBS) BUILD=build-fuzz CC=clang OPT=-O1 \
		CFLAGS="-DCOWPUNCH_LIBFUZZER" SAN="-fsanitize=fuzzer,address,undefined" $(FUZZ_BINS:$(BUILD)/%=build-fuzz/%)

# Each libFuzzer target for FUZZ_SECONDS on a scratch copy of its corpus (build-fuzz/run/NAME/:
# new inputs, crashes, the log); FUZZ_TARGETS picks some (fuzz-snapstore ...).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
fuzz-run: fuzz
	@tests/fuzz/run.sh $(FUZZ_SECONDS) build-fuzz build-fuzz/run $(FUZZ_TARGETS)

# Static analysis: cppcheck on every C file, its findings fatal.  Checks: warning, portability,
# performance (and errors).  Not style: its scope and unused-member advice is not a bug.
# Not --library=posix: it advises the deprecated readdir_r and cannot see _cleanup_close_.
# False positives go to tests/lint/cppcheck.supp, each with its reason.
LINT_DIRS := common reclaim dmops host agent tests bench
lint:
	@$(MAKE) --no-print-directory DEPS=check deps
	@cppcheck -q -j2 --std=c11 -I. -D_GNU_SOURCE \
		--enable=warning,portability,performance --inline-suppr \
		--suppressions-list=tests/lint/cppcheck.supp --error-exitcode=1 \
		--template='{file}:{line}: {severity}: {id}: {message}' $(LINT_DIRS) \
		&& echo "lint: cppcheck clean on $$(find $(LINT_DIRS) -name '*.[ch]' | wc -l) files"

# valgrind memcheck over the CLI tests (tests/cli/run.sh, VALGRIND=1): any error fails.
valgrind: all
	@$(MAKE) --no-print-directory DEPS=check deps
	@VALGRIND=1 CLI_JOBS=$${CLI_JOBS:-2} tests/cli/run.sh $(BUILD)

vmtest: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@tests/vm/run.sh

# Power cuts: QEMU killed while a guest writes through overlays, then a fresh VM checks them.
powercut: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@tests/vm/powercut.sh

demo: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@tests/vm/demo.sh

bench: all
	@$(MAKE) --no-print-directory DEPS=bench deps
	@bench/run.sh

# bench/cow-path/run.sh --native runs it on this host's kernel instead (root, device-mapper).
bench-cow: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@$(MAKE) --no-print-directory DEPS=bench deps
	@bench/cow-path/run.sh $(if $(BENCH_COW_OUT),--out $(BENCH_COW_OUT))

bench-cow-quick: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@$(MAKE) --no-print-directory DEPS=bench deps
	@bench/cow-path/run.sh --quick $(if $(BENCH_COW_OUT),--out $(BENCH_COW_OUT))

# The README's test command.  Installs what is missing, then runs everything.
test:
	@scripts/deps.sh all
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory -j$(JOBS) all check-bins
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory clitest
	@$(MAKE) --no-print-directory promtest
	@$(MAKE) --no-print-directory pkgtest
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=30
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory vmtest
	@$(MAKE) --no-print-directory powercut

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format-check: $(words $(FORMAT_SRCS)) files clean"

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
