# Developer entry points. Every target works from a fresh clone on a fresh Debian machine: the
# ones that build first run scripts/setup.sh, which installs only the missing Debian packages.
#
#   make run      build (release) and run the all-in-one daemon on 127.0.0.1:8776, state in ./var
#                 (RUN_ARGS="--config etc/two-backends.toml": two file back-ends)
#   make test     build (release) and run every test (unit, contract, e2e) with ctest
#   make build    configure (CMake preset) and build
#   make asan     configure, build and test the asan preset (ASan + UBSan)
#   make tsan     configure, build and test the tsan preset (ThreadSanitizer)
#   make tidy     clang-tidy on src, bin and bench
#   make format / format-check   clang-format the C++ sources / check them (CI)
#   make tempest  run Tempest's tempest.api.volume suite against clinkerd behind a throwaway
#                 Keystone (test/tempest/run_tempest.py; also part of make test); results in
#                 build/release/tempest/results.tsv. TEMPEST_ARGS="--filter REGEX" runs a part.
#   make bench    run bench_create_latency against a throwaway daemon
#   make cluster  build (release) and run a local cluster in the foreground: PostgreSQL, RabbitMQ,
#                 etcd, the API + scheduler on 127.0.0.1:8776 and 3 volume nodes (Ctrl-C stops)
#   make bench-takeover    time a volume node's takeover after a SIGKILL mid-job (servers)
#   make bench-locks  bench_locks (etcd lock latency, throughput, SIGKILL takeover) on a
#                     throwaway etcd
#   make bench-throughput  bench_create_latency on the embedded default (1, 8, 32, 128 clients)
#                          and on a 1- and 3-node cluster on PostgreSQL + RabbitMQ: cycles/s,
#                          create p50/p99, clinkerd CPU ms and write transactions per cycle
#                          (BENCH_ARGS='--only embedded' for the embedded one alone)
#   make bench-data   bench_data (clone, snapshot, backup, restore and incremental backup of a
#                     volume next to cp) in a temp dir under ./var/bench
#   make fuzz-ci  build the libFuzzer targets (fuzz/, clang 14, ASan + UBSan) and run each for
#                 FUZZ_CI_SECONDS (30) from its committed corpus; fails on any finding (CI stage)
#   make fuzz     the same, each target for FUZZ_SECONDS (600); docs/FUZZING.md says what is fuzzed
#   make clean    remove the preset build directories
#
# Knobs: PRESET (release|debug|asan|tsan), BUILD_DIR, ASAN_BUILD_DIR, JOBS, TEST_TIMEOUT,
# CTEST_ARGS, SANITIZER_CTEST_ARGS, LISTEN, PORT, STATE_DIR, RUN_ARGS, BENCH_ARGS, TEMPEST_ARGS,
# FUZZ_BUILD_DIR, FUZZ_CXX, FUZZ_SECONDS, FUZZ_CI_SECONDS, FUZZ_TARGETS.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

PRESET ?= release
BUILD_DIR ?= build/$(PRESET)
ASAN_BUILD_DIR ?= build/asan
TSAN_BUILD_DIR ?= build/tsan
# The reference machine has 2 cores; raise it on bigger ones (make JOBS=8 test).
JOBS ?= 2
# Default per-test timeout in seconds; tests that set their own TIMEOUT (e2e) keep it.
TEST_TIMEOUT ?= 120
CTEST_ARGS ?=
# The sanitizer runs leave out the end-to-end tests labelled release_only (process kills, network
# cuts, long CLI sessions: what they test is between processes, and the release run has them).
# SANITIZER_CTEST_ARGS= runs everything.
SANITIZER_CTEST_ARGS ?= -LE release_only
LISTEN ?= 127.0.0.1
PORT ?= 8776
STATE_DIR ?= ./var
RUN_ARGS ?=
BENCH_ARGS ?=
TEMPEST_ARGS ?=
FUZZ_BUILD_DIR ?= build/fuzz
FUZZ_CXX ?= clang++-14
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 30
FUZZ_TARGETS ?= http_request request_body list_query policy_file

CXX_DIRS := src bin test bench fuzz
FREE_PORT_PY := import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); \
  print(s.getsockname()[1])
CXX_FILES = $(shell find $(CXX_DIRS) -type f \( -name '*.h' -o -name '*.cc' \) | sort)

.PHONY: setup configure build run test tempest asan tsan tidy format format-check bench clean cluster \
  bench-takeover bench-throughput bench-locks bench-data fuzz fuzz-ci fuzz-build

setup:
	@bash scripts/setup.sh

# Re-run the configure step when the presets change; CMake re-runs itself for CMakeLists changes.
$(BUILD_DIR)/build.ninja: CMakePresets.json
	cmake --preset $(PRESET) -B $(BUILD_DIR)

configure: setup
	@$(MAKE) --no-print-directory $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# run and bench build only the binaries they start.
run: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd
	mkdir -p $(STATE_DIR)
	exec $(BUILD_DIR)/clinkerd --listen $(LISTEN) --port $(PORT) --state-dir $(STATE_DIR) $(RUN_ARGS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure --no-tests=error -j $(JOBS) \
	  --timeout $(TEST_TIMEOUT) $(CTEST_ARGS)

tempest: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd
	/usr/bin/python3 test/tempest/run_tempest.py --clinkerd $(BUILD_DIR)/clinkerd \
	  --results $(BUILD_DIR)/tempest/results.tsv $(TEMPEST_ARGS)

asan: setup
	@$(MAKE) --no-print-directory PRESET=asan BUILD_DIR=$(ASAN_BUILD_DIR) \
	  $(ASAN_BUILD_DIR)/build.ninja
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/test/sanitizers/lsan.supp \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD_DIR) --output-on-failure --no-tests=error -j $(JOBS) \
	  --timeout $(TEST_TIMEOUT) $(SANITIZER_CTEST_ARGS) $(CTEST_ARGS)

# The concurrency code (ports' adapters, services, the daemon) under ThreadSanitizer: every test,
# the end-to-end ones included, since they run the daemon built with the same flags.
tsan: setup
	@$(MAKE) --no-print-directory PRESET=tsan BUILD_DIR=$(TSAN_BUILD_DIR) \
	  $(TSAN_BUILD_DIR)/build.ninja
	cmake --build $(TSAN_BUILD_DIR) -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(TSAN_BUILD_DIR) --output-on-failure --no-tests=error -j $(JOBS) \
	  --timeout $(TEST_TIMEOUT) $(SANITIZER_CTEST_ARGS) $(CTEST_ARGS)

# clang-tidy (.clang-tidy, warnings are errors) on every source file of src, bin and bench; the
# headers they include are checked through them. Uses the release build's compile commands.
TIDY_FILES = $(shell find src bin bench -type f -name '*.cc' | sort)
tidy: configure
	printf '%s\n' $(TIDY_FILES) | xargs -P $(JOBS) -n 1 clang-tidy -p $(BUILD_DIR) --quiet

format: setup
	clang-format -i $(CXX_FILES)

format-check: setup
	clang-format --dry-run -Werror $(CXX_FILES)

# Starts a daemon on a free loopback port with a temporary state dir, runs the benchmark against
# it, and stops that daemon by its PID (SIGTERM, SIGKILL after 10 s) and removes the directory
# however the benchmark ends.
bench: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd bench_create_latency
	@dir="$$(mktemp -d)"; \
	port="$$(python3 -c '$(FREE_PORT_PY)')"; \
	$(BUILD_DIR)/clinkerd --listen 127.0.0.1 --port "$$port" --state-dir "$$dir/state" \
	  --log-level warn 2>"$$dir/clinkerd.log" & pid=$$!; \
	stop() { kill "$$pid" 2>/dev/null || return 0; \
	  for _ in $$(seq 100); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
	  kill -9 "$$pid" 2>/dev/null || true; wait "$$pid" 2>/dev/null || true; }; \
	trap 'stop; rm -rf "$$dir"' EXIT; \
	ready=0; \
	for _ in $$(seq 200); do \
	  kill -0 "$$pid" 2>/dev/null || break; \
	  if (exec 3<>"/dev/tcp/127.0.0.1/$$port" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && \
	      head -n 1 <&3 | grep -q ' 300') 2>/dev/null; then ready=1; break; fi; \
	  sleep 0.1; \
	done; \
	if [[ "$$ready" != 1 ]]; then echo "clinkerd did not become ready:" >&2; \
	  tail -n 20 "$$dir/clinkerd.log" >&2; exit 1; fi; \
	echo "bench: clinkerd pid $$pid on 127.0.0.1:$$port"; \
	$(BUILD_DIR)/bench_create_latency --host 127.0.0.1 --port "$$port" --pid "$$pid" $(BENCH_ARGS)

# A local cluster for trying it out (scripts/cluster.sh): runs until Ctrl-C; KEEP=1 keeps its
# temp dir (logs, data).
cluster: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd
	exec env CLINKERD=$(BUILD_DIR)/clinkerd LISTEN=$(LISTEN) PORT=$(PORT) bash scripts/cluster.sh

# Benchmarks on servers (they start and stop PostgreSQL, RabbitMQ and etcd themselves).
bench-takeover: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd
	/usr/bin/python3 bench/takeover.py --clinkerd $(BUILD_DIR)/clinkerd $(BENCH_ARGS)

bench-throughput: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target clinkerd bench_create_latency
	/usr/bin/python3 bench/throughput.py --clinkerd $(BUILD_DIR)/clinkerd \
	  --bench $(BUILD_DIR)/bench_create_latency $(BENCH_ARGS)

bench-locks: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target bench_locks
	@dir="$$(mktemp -d)"; \
	trap 'scripts/test_server_etcd.sh stop "$$dir"; rm -rf "$$dir"' EXIT; \
	scripts/test_server_etcd.sh start "$$dir"; \
	. "$$dir/env"; \
	$(BUILD_DIR)/bench_locks --etcd "$$CLINKER_TEST_ETCD_HOST:$$CLINKER_TEST_ETCD_PORT" $(BENCH_ARGS)

# Copies of one volume on the disk under ./var/bench (BENCH_ARGS='--dir DIR' for another one);
# needs no server.
bench-data: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target bench_data
	$(BUILD_DIR)/bench_data $(BENCH_ARGS)

# The fuzz targets: a CMake project of their own (fuzz/CMakeLists.txt) built with clang, since
# libFuzzer is clang's; it compiles only the sources the targets reach. Each target runs from its
# committed corpus (fuzz/corpus/<target>), JOBS at a time (fuzz/run.sh).
fuzz-build: setup
	cmake -S fuzz -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_CXX_COMPILER=$(FUZZ_CXX)
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS)

fuzz-ci: fuzz-build
	bash fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_CI_SECONDS) $(JOBS) $(FUZZ_TARGETS)

fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS) $(JOBS) $(FUZZ_TARGETS)

clean:
	rm -rf build/release build/debug build/asan build/tsan build/fuzz
