# rootseal — the two commands of the README:
#   make run    install what is missing, build (Release), start `rootseald --dev`
#   make test   install what is missing, build, run every test through ctest
#               (Release + an ASan/UBSan build + bounded libFuzzer runs)
#   make lint          clang-tidy-19 (.clang-tidy) over every source of the Release build
#   make format-check  clang-format-19 (.clang-format) on every C++ source (also a ctest test)
SHELL := /bin/bash
.DEFAULT_GOAL := build

JOBS        ?= $(shell nproc)
BUILD_DIR   ?= build/release
ASAN_DIR    ?= build/asan
FUZZ_DIR    ?= build/fuzz
GENERATOR   := -G Ninja
CCACHE      := -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
CTEST_FLAGS ?= --output-on-failure -j$(JOBS) --timeout 600
DEV_ARGS    ?=

export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Paths relative to the checkout, so a fresh clone elsewhere hits the same cache.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= 1

.PHONY: deps build run test test-release test-asan test-fuzz build-asan build-fuzz fuzz-long bench clean help \
        lint format format-check

help:
	@echo "make run | make test | make build | make bench | make lint | make format-check | make clean"

deps:
	@bash scripts/install-deps

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) $(GENERATOR) $(CCACHE) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/daemon/rootseald --dev $(DEV_ARGS)

# -g1: line tables only, enough for the sanitizers' reports (file:line in every
# frame); full debug info made this tree 3.9 GB and its links slow.
$(ASAN_DIR)/build.ninja: | deps
	cmake -S . -B $(ASAN_DIR) $(GENERATOR) $(CCACHE) -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
	  -DROOTSEAL_SANITIZE=ON -DROOTSEAL_BUILD_BENCH=OFF

build-asan: deps $(ASAN_DIR)/build.ninja
	cmake --build $(ASAN_DIR) -j $(JOBS)

$(FUZZ_DIR)/build.ninja: | deps
	cmake -S . -B $(FUZZ_DIR) $(GENERATOR) $(CCACHE) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 \
	  -DROOTSEAL_BUILD_FUZZ=ON -DROOTSEAL_BUILD_TESTS=OFF -DROOTSEAL_BUILD_BENCH=OFF

# Only the fuzz targets (and the module sources they instrument) and the
# template differential test are built here.
build-fuzz: deps $(FUZZ_DIR)/build.ninja
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target rootseal_fuzzers

test-release: build
	cd $(BUILD_DIR) && ctest $(CTEST_FLAGS)

# LeakSanitizer is on; tests/lsan.supp lists leaks inside third-party modules only.
test-asan: build-asan
	cd $(ASAN_DIR) && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest $(CTEST_FLAGS) -LE no-asan

test-fuzz: build-fuzz
	cd $(FUZZ_DIR) && ctest $(CTEST_FLAGS) -L fuzz

test: test-release test-asan test-fuzz

# The long campaign: every fuzz target for FUZZ_LONG_SECONDS, at nice 10, on
# corpora kept outside the checkout (FUZZ_CORPUS_ROOT) that grow run after
# run; FUZZ_TARGETS (a regex) picks some. See docs/development.md.
FUZZ_LONG_SECONDS ?= 3600
FUZZ_LONG_RUNS    ?= 0
FUZZ_CORPUS_ROOT  ?= $(HOME)/.cache/rootseal-fuzz
FUZZ_TARGETS      ?= .
fuzz-long: build-fuzz
	RUNS=$(FUZZ_LONG_RUNS) bash tests/fuzz/run-long.sh $(FUZZ_DIR) $(FUZZ_LONG_SECONDS) $(FUZZ_CORPUS_ROOT) '$(FUZZ_TARGETS)'

bench: build
	bash bench/aead-vs-openssl.sh $(BUILD_DIR)
	$(BUILD_DIR)/bench/rootseal_bench_pkcs11
	bash bench/startup.sh $(BUILD_DIR)
	bash bench/keyring_key.sh $(BUILD_DIR)
	bash bench/load.sh $(BUILD_DIR)
	ROOTSEALD=$(BUILD_DIR)/daemon/rootseald /usr/bin/python3 bench/push_1000.py
# issue 21's test at its scale: 1,000 ExternalSecrets in 50 namespaces and 200
# PushSecrets over three hosts, SIGKILL of one (exit 1 if not as the issue asks)
	ROOTSEALD=$(BUILD_DIR)/daemon/rootseald ROOTSEAL_CLI=$(BUILD_DIR)/cli/rootseal /usr/bin/python3 bench/sync/bench_sync_ha.py \
		--hosts 3 --es 1000 --namespaces 50 --keys 100 --pushsecrets 200

# clang-tidy-19 (.clang-tidy) over every source of the tree: the Release
# build's compile_commands.json plus the fuzz targets from the fuzz build's,
# batched per CMake target (scripts/lint says why and how). Findings are
# printed, then a count per check; the exit status is 1 when there are any.
# Not in `make test` until the tree has no findings (docs/development.md).
# LINT_FILES narrows it down (a regex on paths, e.g. LINT_FILES=/hsm/);
# LINT_ARGS=--single lints one TU per source.
LINT_JOBS  ?= $(JOBS)
LINT_FILES ?= .
LINT_ARGS  ?=
lint: build $(FUZZ_DIR)/build.ninja
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target rootseal_kmsplugin_proto
	nice -n 10 python3 scripts/lint -p $(BUILD_DIR) -p $(FUZZ_DIR) -j $(LINT_JOBS) --files '$(LINT_FILES)' $(LINT_ARGS)

# clang-format on the whole tree: `make test` runs the same check as the
# ctest test style_format (scripts/format-check).
format-check: deps
	@bash scripts/format-check

format: deps
	git ls-files -- '*.cpp' '*.hpp' | xargs clang-format-19 -i

clean:
	rm -rf build

# Debian package `rootseal` (debian/, built in a copy under $(DEB_DIR); lintian
# must report no error): see docs/packaging.md. test-deb installs, upgrades,
# removes and purges it in a throwaway overlay root, never on this host.
# `make test` runs both as the ctest test packaging_deb (into
# $(BUILD_DIR)/deb); these targets are for running them alone.
DEB_DIR ?= build/deb
.PHONY: deb test-deb
deb: deps
	JOBS=$(JOBS) bash packaging/build-deb.sh $(DEB_DIR)

test-deb: deb
	bash tests/packaging/test-deb.sh $(DEB_DIR)
