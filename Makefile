# cowpunch: one Makefile for the whole tree.  `make help` lists the targets.
VERSION := 0.1.0
BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
SAN     ?=
# Every warning is an error in CI (CI=true) and in `make check`.
WERROR  ?= $(if $(CI),-Werror,)

PKGS    := devmapper liburing json-c ext2fs com_err libcrypto
# Recursively expanded: pkg-config runs at recipe time, after scripts/deps.sh.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS       = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -laio

WARN    := -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes -Wvla -Wformat-security \
	   -Wno-unused-parameter
CFLAGS_ALL = -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DCOWPUNCH_VERSION='"$(VERSION)"' \
	     -I. $(PKG_CFLAGS) $(WARN) $(WERROR) $(OPT) $(SAN) -g -MMD -MP $(CFLAGS)
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

LIB_SRCS  := $(wildcard common/*.c reclaim/*.c dmops/*.c) $(filter-out agent/main.c,$(wildcard agent/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TESTH_SRCS := $(wildcard tests/unit/helpers/*.c)
TESTH_OBJS := $(TESTH_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/*/test-*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/tools/%)

.DEFAULT_GOAL := all
.PHONY: all deps help test unit clitest check vmtest demo bench fuzz fuzz-replay format \
	format-check clean

help:
	@echo "make            build build/cowpunch"
	@echo "make test       install missing packages, build, run unit, CLI, sanitizer and VM tests"
	@echo "make demo       build and run the newcomer's demo in the QEMU test bed"
	@echo "make unit       cmocka unit tests"
	@echo "make clitest    CLI tests against real files (tests/cli)"
	@echo "make check      ASan+UBSan build running the unit tests and the fuzz corpus"
	@echo "make vmtest     device-mapper scenarios in QEMU on Debian's 6.1 and 6.12 kernels"
	@echo "make bench      benchmarks (bench/); results go to docs/benchmarks.md by hand"
	@echo "make fuzz       libFuzzer builds of tests/fuzz (clang)"
	@echo "make format-check  clang-format check"

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

$(BUILD)/cowpunch: $(BUILD)/agent/main.o $(BUILD)/libcowpunch.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# A test may add link flags (e.g. -Wl,--wrap=ioctl) in tests/unit/DIR/test-NAME.ldflags.
$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libcowpunch.a $(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) $(BUILD)/libcowpunch.a $(LIBS) \
		-lcmocka $$(cat tests/unit/$*.ldflags 2>/dev/null)

# Fuzz targets built as plain programs that replay files (see tests/fuzz/README.md).
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(BUILD)/libcowpunch.a $(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) $(BUILD)/libcowpunch.a $(LIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c $(BUILD)/libcowpunch.a $(TESTH_OBJS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(TESTH_OBJS) $(BUILD)/libcowpunch.a $(LIBS)

# The probe tells the runner which engines this machine offers (CI=true: a skipped one fails).
unit: $(TEST_BINS) $(BUILD)/tests/tools/engineprobe
	@ENGINE_PROBE=$(BUILD)/tests/tools/engineprobe tests/run-unit.sh $(TEST_BINS)

clitest: all
	@tests/cli/run.sh $(BUILD)

fuzz-replay: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); \
		if [ -d tests/fuzz/corpus/$$n ]; then \
			echo "fuzz-replay: $$n over tests/fuzz/corpus/$$n"; \
			$$f tests/fuzz/corpus/$$n/*; \
		fi; \
	done

# Sanitizers: a separate build tree so the normal build stays untouched.
check:
	@$(MAKE) --no-print-directory DEPS=test deps
	@$(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" WERROR=-Werror \
		unit fuzz-replay

fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT=-O1 \
		CFLAGS="-DCOWPUNCH_LIBFUZZER" SAN="-fsanitize=fuzzer,address,undefined" $(FUZZ_BINS:$(BUILD)/%=build-fuzz/%)

vmtest: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@tests/vm/run.sh

demo: all
	@$(MAKE) --no-print-directory DEPS=vm deps
	@tests/vm/demo.sh

bench: all
	@$(MAKE) --no-print-directory DEPS=bench deps
	@bench/run.sh

# The README's test command.  Installs what is missing, then runs everything.
test:
	@scripts/deps.sh all
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory clitest
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory vmtest

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format-check: $(words $(FORMAT_SRCS)) files clean"

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
