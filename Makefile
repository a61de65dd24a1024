# wdpool: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing first (scripts/install-deps.sh).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)

CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Wpedantic -Werror -g
CXXFLAGS_STRICT := -std=c++17 -Wall -Wextra -Wpedantic -Werror -g
SANITIZE   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
BUILD      := target/c
DEBUG_LIB  := target/debug
RELEASE_LIB := target/release
C_TESTS    := $(basename $(notdir $(wildcard tests/c/test_*.c)))

# The shared library's SONAME is libwdpool.so.<ABI version> (build.rs), the
# ABI version being WDPOOL_ABI_VERSION in src/ffi/version.rs. A program
# linked with -lwdpool asks for that name, so every build of the library
# here gets a symlink of that name next to it (soname_link).
ABI_VERSION := $(shell sed -n 's/^pub const WDPOOL_ABI_VERSION: u32 = \([0-9][0-9]*\);$$/\1/p' src/ffi/version.rs)
ifeq ($(ABI_VERSION),)
$(error src/ffi/version.rs has no line "pub const WDPOOL_ABI_VERSION: u32 = <digits>;")
endif
SONAME     := libwdpool.so.$(ABI_VERSION)
VERSION    := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1)
soname_link = ln -sfn libwdpool.so $(1)/$(SONAME)

# What libwdpool.a needs linked after it (printed by rustc; cargo replays
# it when nothing is rebuilt). A shell command: use it as $$($(NATIVE_STATIC_LIBS)).
NATIVE_STATIC_LIBS := $(CARGO) rustc --release --lib --crate-type staticlib -q -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -1

# make install: PREFIX, DESTDIR (staged installs) and the directories below.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# Run after installing the shared library without DESTDIR (a failure, as
# when not root, is ignored); LDCONFIG=true skips it.
LDCONFIG   ?= ldconfig

.PHONY: all deps build release header demo install uninstall test test-rust test-go test-c test-valgrind test-header-cpp test-examples test-real test-install test-ruby test-go-real go-pc bench bench-quick bench-smoke bench-build bench-pc soak soak-build test-soak-short kafka-start kafka-stop clean fuzz test-fuzz fuzz-cmin

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build
	$(call soname_link,$(DEBUG_LIB))

release: deps
	$(CARGO) build --release
	$(call soname_link,$(RELEASE_LIB))

# Regenerates include/wdpool.h from the sources (cbindgen).
header:
	WDPOOL_BLESS=1 $(CARGO) test --test header

# The quick start: a global pool used by several threads, a committed and an
# aborted transaction, stats and events. Against an in-process mock cluster,
# or the cluster in WDPOOL_BROKERS. Links the static library.
demo: release
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_STRICT) -O2 -pthread -I include examples/quickstart.c \
	  $(RELEASE_LIB)/libwdpool.a $$($(NATIVE_STATIC_LIBS)) \
	  -o $(BUILD)/quickstart
	$(BUILD)/quickstart

# Installs the release build under $(DESTDIR)$(PREFIX): lib/libwdpool.so.$(VERSION)
# with the symlinks lib/$(SONAME) (what programs ask for) and lib/libwdpool.so
# (what -lwdpool finds), lib/libwdpool.a, include/wdpool.h, and
# lib/pkgconfig/wdpool.pc from wdpool.pc.in (Libs.private: what the static
# library needs). Checked by make test-install.
PC_LIBDIR     = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
install: release
	@test -n "$(VERSION)" || { echo "make install: no version in Cargo.toml" >&2; exit 1; }
	sed -e 's|@prefix@|$(PREFIX)|' -e 's|@libdir@|$(PC_LIBDIR)|' -e 's|@includedir@|$(PC_INCLUDEDIR)|' \
	  -e 's|@version@|$(VERSION)|' -e "s|@libs_private@|$$($(NATIVE_STATIC_LIBS))|" wdpool.pc.in > $(RELEASE_LIB)/wdpool.pc
	@grep -q '^Libs.private: -' $(RELEASE_LIB)/wdpool.pc || { echo "make install: rustc printed no native-static-libs" >&2; exit 1; }
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 $(RELEASE_LIB)/libwdpool.so $(DESTDIR)$(LIBDIR)/libwdpool.so.$(VERSION)
	ln -sfn libwdpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libwdpool.so
	install -m 0644 $(RELEASE_LIB)/libwdpool.a $(DESTDIR)$(LIBDIR)/libwdpool.a
	install -m 0644 include/wdpool.h $(DESTDIR)$(INCLUDEDIR)/wdpool.h
	install -m 0644 $(RELEASE_LIB)/wdpool.pc $(DESTDIR)$(PKGCONFIGDIR)/wdpool.pc
	$(if $(DESTDIR),,$(LDCONFIG) 2>/dev/null || true)

# Removes what make install installed (same PREFIX, DESTDIR and version);
# leaves the directories.
uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libwdpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libwdpool.so \
	  $(DESTDIR)$(LIBDIR)/libwdpool.a $(DESTDIR)$(INCLUDEDIR)/wdpool.h $(DESTDIR)$(PKGCONFIGDIR)/wdpool.pc

# Everything: Rust unit and mock-cluster tests, the header check, C programs
# under AddressSanitizer + UndefinedBehaviorSanitizer, the header as C++, and
# the tests against a real Kafka broker that this target starts and stops.
# Each suite runs under a bound of 30 minutes (the whole takes about 30 on
# 2 cores): a suite that hangs fails, named, instead of eating CI's 90.
TEST_SUITES := test-rust test-c test-conformance test-go test-valgrind test-header-cpp test-examples \
	test-real test-soak-short test-install test-ruby bench-smoke test-fuzz
test: deps
	@set -e; for t in $(TEST_SUITES); do \
	  echo "make test: $$t"; \
	  timeout --kill-after=30 1800 $(MAKE) $$t || { rc=$$?; \
	    if [ $$rc -eq 124 ]; then echo "make test: $$t did not finish within 30 minutes"; fi; exit $$rc; }; \
	done
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --lib --test header --test 'mock_*'

# The Go binding (bindings/go) against the debug build: go vet, then go test
# with the race detector, then with GOEXPERIMENT=cgocheck2. cgo finds the
# header and library through pkg-config: a wdpool.pc for the build tree is
# written under .cache/go (git-ignored), as are Go's caches.
GO_CACHE := $(CURDIR)/.cache/go
GO_ENV := PKG_CONFIG_PATH=$(GO_CACHE)/pkgconfig GOCACHE=$(GO_CACHE)/build GOMODCACHE=$(GO_CACHE)/mod GOFLAGS=-count=1
go-pc: $(DEBUG_LIB)/libwdpool.so $(DEBUG_LIB)/$(SONAME)
	@mkdir -p $(GO_CACHE)/pkgconfig
	@printf 'Name: wdpool\nDescription: wdpool (build tree)\nVersion: $(VERSION)\nCflags: -I%s/include\nLibs: -L%s/$(DEBUG_LIB) -Wl,-rpath,%s/$(DEBUG_LIB) -lwdpool\n' \
	  '$(CURDIR)' '$(CURDIR)' '$(CURDIR)' > $(GO_CACHE)/pkgconfig/wdpool.pc

test-go: go-pc
	cd bindings/go && $(GO_ENV) go vet ./...
	cd bindings/go && CGO_CFLAGS=-I$(CURDIR)/include CGO_LDFLAGS="-L$(CURDIR)/$(DEBUG_LIB) -Wl,-rpath,$(CURDIR)/$(DEBUG_LIB)" \
	  $(GO_ENV) go build -tags wdpool_nopkgconfig ./...
	cd bindings/go && $(GO_ENV) go test -race -timeout 120s ./...
	cd bindings/go && $(GO_ENV) GOEXPERIMENT=cgocheck2 go test -timeout 120s ./...

# The Go binding's tests that need a real broker (make test-real runs this
# with WDPOOL_KAFKA_BOOTSTRAP set): the load test reads every delivered
# message back, transactions are checked with read_committed.
test-go-real: go-pc
	cd bindings/go && WDPOOL_KAFKA_READ=$(CURDIR)/target/debug/examples/kafka_read \
	  $(GO_ENV) go test -timeout 300s -run 'TestLoad|TestRealBroker|TestPoolSendDeliversEverything' ./...

$(BUILD)/%: tests/c/%.c $(wildcard tests/c/*.h) include/wdpool.h $(DEBUG_LIB)/libwdpool.so $(DEBUG_LIB)/$(SONAME)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_STRICT) $(SANITIZE) -pthread -I include $< -L $(DEBUG_LIB) -lwdpool -Wl,-rpath,$(CURDIR)/$(DEBUG_LIB) -o $@

$(BUILD)/example_%: examples/%.c include/wdpool.h $(DEBUG_LIB)/libwdpool.so $(DEBUG_LIB)/$(SONAME)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_STRICT) $(SANITIZE) -pthread -I include $< -L $(DEBUG_LIB) -lwdpool -Wl,-rpath,$(CURDIR)/$(DEBUG_LIB) -o $@

$(DEBUG_LIB)/libwdpool.so: $(wildcard src/*.rs src/*/*.rs third_party/rdkafka/src/*.rs third_party/rdkafka/src/*/*.rs) Cargo.toml build.rs
	$(CARGO) build
	$(call soname_link,$(DEBUG_LIB))

# Also when the library was built by cargo alone.
$(DEBUG_LIB)/$(SONAME): $(DEBUG_LIB)/libwdpool.so
	$(call soname_link,$(DEBUG_LIB))

# Every C test program runs under a bound of its own, so that a hang fails its
# step with a name (exit 124) instead of eating the whole CI run.
BOUNDED := timeout --kill-after=15 600

SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/c/lsan.supp:print_suppressions=0

test-c: $(addprefix $(BUILD)/,$(C_TESTS))
	@set -e; for t in $(C_TESTS); do \
	  echo "== $$t (ASan+UBSan)"; \
	  $(SANITIZER_ENV) $(BOUNDED) $(BUILD)/$$t; \
	done; \
	for t in test_callback_handles test_threads test_lifecycle; do \
	  echo "== $$t (ASan+UBSan, without membarrier: sequentially consistent hot paths)"; \
	  WDPOOL_NO_MEMBARRIER=1 $(SANITIZER_ENV) $(BOUNDED) $(BUILD)/$$t; \
	done

# The conformance scenarios (tests/conformance/scenarios/*.json, see
# tests/conformance/README.md) through the C runner, under ASan+UBSan. The
# Ruby and Go runners of the same files run in test-ruby and test-go.
.PHONY: test-conformance
CONFORMANCE_SCENARIOS := $(sort $(wildcard tests/conformance/scenarios/*.json))
$(BUILD)/conformance_runner: tests/conformance/runner.c tests/conformance/json.h include/wdpool.h $(DEBUG_LIB)/libwdpool.so $(DEBUG_LIB)/$(SONAME)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_STRICT) $(SANITIZE) -pthread -I include $< -L $(DEBUG_LIB) -lwdpool -Wl,-rpath,$(CURDIR)/$(DEBUG_LIB) -o $@

test-conformance: $(BUILD)/conformance_runner
	$(SANITIZER_ENV) $(BUILD)/conformance_runner $(CONFORMANCE_SCENARIOS)

# The same C programs, built without sanitizers against the release build,
# under valgrind: memory errors and definite leaks fail (tests/c/valgrind.supp
# suppresses nothing today). test_fork checks memory errors only: its child
# abandons the parent's producers on purpose (leaked by design).
# --run-libc-freeres=no: at exit valgrind kills the other threads and then
# runs glibc's __libc_freeres, which can wait for ever on a lock a killed
# thread held (seen once in a few dozen runs); it frees only glibc's own
# caches, so leak checking loses nothing.
# --fair-sched=yes: valgrind runs one thread at a time, and its default lock
# lets a thread that never blocks (a test's racing caller) take it back again
# and again: the main thread of test_callback_handles, back from a 2 ms sleep,
# was starved for the whole 90 minutes of a CI run while the other thread made
# 11 million calls. The ticket lock hands it over in turn.
VALGRIND := valgrind --fair-sched=yes --error-exitcode=42 --quiet --run-libc-freeres=no --suppressions=$(CURDIR)/tests/c/valgrind.supp
test-valgrind: release
	@mkdir -p $(BUILD)/valgrind
	@set -e; for t in $(C_TESTS); do \
	  $(CC) $(CFLAGS_STRICT) -O1 -pthread -I include tests/c/$$t.c -L $(RELEASE_LIB) -lwdpool \
	    -Wl,-rpath,$(CURDIR)/$(RELEASE_LIB) -o $(BUILD)/valgrind/$$t; \
	  echo "== $$t (valgrind, release build)"; \
	  if [ $$t = test_fork ]; then leaks=--leak-check=no; else leaks="--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite"; fi; \
	  $(BOUNDED) $(VALGRIND) $$leaks $(BUILD)/valgrind/$$t; \
	done

# The documentation's examples (examples/seed_examples.c) and the quick start,
# under the sanitizers, against an in-process mock cluster. test-real runs
# them again against the real broker.
test-examples: $(BUILD)/example_seed_examples $(BUILD)/example_quickstart
	$(SANITIZER_ENV) $(BUILD)/example_seed_examples
	$(SANITIZER_ENV) $(BUILD)/example_quickstart

# The header compiles as C++ and may be included twice.
test-header-cpp:
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS_STRICT) -I include -c tests/c/header_twice.cpp -o $(BUILD)/header_twice.o
	$(CC) $(CFLAGS_STRICT) -I include -c tests/c/header_twice.c -o $(BUILD)/header_twice_c.o
	awk '/^## Quick start \(C\)/{q=1} q&&/^```c/{c=1;next} c&&/^```/{exit} c' README.md > $(BUILD)/readme_quickstart.c
	$(CC) $(CFLAGS_STRICT) -I include -c $(BUILD)/readme_quickstart.c -o $(BUILD)/readme_quickstart.o
	@echo "header: compiles as C11 and C++17, included twice; the README's quick start compiles"

# make install into a temporary prefix (removed afterwards), then
# tests/install/abi_check.c built with nothing but pkg-config, linked to the
# installed shared library (SONAME, NEEDED checked with readelf) and to the
# static one, and run; a DESTDIR install and make uninstall.
test-install:
	MAKE="$(MAKE)" TEST_CC="$(CC)" TEST_CFLAGS="$(CFLAGS_STRICT)" tests/install/run.sh

# tests/real_*.rs against real Apache Kafka brokers (scripts/kafka.sh), on
# free loopback ports: one broker ("single") and a three-broker cluster
# ("cluster", replication 3, min.insync.replicas 2) for the failover tests;
# a secured broker ("secure": TLS, SASL/SCRAM-SHA-512, ACLs) for
# tests/real_security.rs and the C, Ruby and Go security tests; a "strict"
# broker (no topic auto-creation, message.max.bytes $(STRICT_MESSAGE_MAX_BYTES))
# for tests/real_faults.rs. "secure" and "strict" start in the background
# while the others start. All are stopped whatever happens; a broker that
# cannot start fails the target. The C load test and the example programs
# run against "single".
STRICT_MESSAGE_MAX_BYTES := 65536
STRICT_PROPS := auto.create.topics.enable=false message.max.bytes=$(STRICT_MESSAGE_MAX_BYTES)
test-real: $(BUILD)/example_seed_examples $(BUILD)/example_quickstart $(BUILD)/real_load $(BUILD)/real_secure
	$(CARGO) build --example kafka_read
	@set -e; trap 'scripts/kafka.sh stop --name single; scripts/kafka.sh stop --name cluster; \
	    scripts/kafka.sh stop --name secure; scripts/kafka.sh stop --name strict' EXIT; \
	  scripts/kafka.sh start --secure --name secure >$(BUILD)/secure.env & secure_pid=$$!; \
	  WDPOOL_KAFKA_PROPS="$(STRICT_PROPS)" scripts/kafka.sh start --name strict >$(BUILD)/strict.env & strict_pid=$$!; \
	  single=$$(scripts/kafka.sh start --name single | sed -n 's/^KAFKA_BOOTSTRAP=//p'); \
	  test -n "$$single" || { echo "make test-real: the Kafka broker did not start" >&2; exit 1; }; \
	  cluster=$$(scripts/kafka.sh start --nodes 3 --name cluster | sed -n 's/^KAFKA_BOOTSTRAP=//p'); \
	  test -n "$$cluster" || { echo "make test-real: the Kafka cluster did not start" >&2; exit 1; }; \
	  wait $$secure_pid || { echo "make test-real: the secured broker did not start" >&2; exit 1; }; \
	  wait $$strict_pid || { echo "make test-real: the strict broker did not start" >&2; exit 1; }; \
	  secure=$$(sed -n 's/^KAFKA_CLIENT_CONFIG_DIR=//p' $(BUILD)/secure.env); \
	  strict=$$(sed -n 's/^KAFKA_BOOTSTRAP=//p' $(BUILD)/strict.env); \
	  test -n "$$secure" -a -n "$$strict" || { echo "make test-real: no secured or strict broker" >&2; exit 1; }; \
	  WDPOOL_KAFKA_BOOTSTRAP=$$single WDPOOL_KAFKA_CLUSTER_BOOTSTRAP=$$cluster \
	    WDPOOL_KAFKA_SECURE_DIR=$$secure WDPOOL_KAFKA_STRICT_BOOTSTRAP=$$strict \
	    WDPOOL_REAL_LOAD=$(CURDIR)/$(BUILD)/real_load WDPOOL_KAFKA_READ=$(CURDIR)/target/debug/examples/kafka_read \
	    $(CARGO) test --test 'real_*'; \
	  WDPOOL_KAFKA_SECURE_DIR=$$secure WDPOOL_KAFKA_READ=$(CURDIR)/target/debug/examples/kafka_read \
	    $(SANITIZER_ENV) $(BUILD)/real_secure; \
	  WDPOOL_BROKERS=$$single $(SANITIZER_ENV) $(BUILD)/example_seed_examples; \
	  WDPOOL_BROKERS=$$single $(SANITIZER_ENV) $(BUILD)/example_quickstart; \
	  (cd bindings/ruby && PKG_CONFIG_LIBDIR=/nonexistent WDPOOL_LIB=$(CURDIR)/$(DEBUG_LIB)/libwdpool.so \
	    WDPOOL_KAFKA_BOOTSTRAP=$$single WDPOOL_KAFKA_SECURE_DIR=$$secure \
	    WDPOOL_KAFKA_READ=$(CURDIR)/target/debug/examples/kafka_read rake test); \
	  $(MAKE) --no-print-directory test-go-real WDPOOL_KAFKA_BOOTSTRAP=$$single WDPOOL_KAFKA_SECURE_DIR=$$secure

# The Ruby binding's minitest suite (bindings/ruby), against the library
# just built (PKG_CONFIG_LIBDIR hides an installed wdpool.pc, so WDPOOL_LIB
# wins) and the in-process mock cluster; again against the real broker in
# WDPOOL_KAFKA_BOOTSTRAP when that is set.
# Each run twice: with `with`'s C quick path (ext/wdpool_fast, built by rake
# compile) and without it (WDPOOL_RUBY_PURE=1, the pure-Ruby path).
RUBY_TEST_ENV := PKG_CONFIG_LIBDIR=/nonexistent WDPOOL_LIB=$(CURDIR)/$(DEBUG_LIB)/libwdpool.so
test-ruby: $(DEBUG_LIB)/libwdpool.so $(DEBUG_LIB)/$(SONAME)
	cd bindings/ruby && rake compile
	cd bindings/ruby && $(RUBY_TEST_ENV) WDPOOL_KAFKA_BOOTSTRAP= WDPOOL_EXPECT_FAST=1 rake test
	cd bindings/ruby && $(RUBY_TEST_ENV) WDPOOL_KAFKA_BOOTSTRAP= WDPOOL_EXPECT_FAST=0 WDPOOL_RUBY_PURE=1 rake test
	@if [ -n "$$WDPOOL_KAFKA_BOOTSTRAP" ]; then \
	  cd bindings/ruby && $(RUBY_TEST_ENV) WDPOOL_EXPECT_FAST=1 rake test; fi

# Benchmarks (bench/README.md): wdpool through its C ABI against the rdkafka
# crate used directly, a plain C pool and the Go peers, on a broker of their
# own. bench: 3 interleaved rounds and the table of BENCHMARKS.md;
# bench-quick: 1 smaller round; bench-smoke (part of make test): tiny
# counts, checks that every variant ran and delivered everything, never a
# speed. Go modules and build cache live in the git-ignored .cache/go.
# BENCH_ARGS goes to bench/driver.py (e.g. BENCH_ARGS="--only tp2,with --rounds 1").
BENCH      := target/bench
GO         ?= go
BENCH_GO_ENV := GOMODCACHE=$(CURDIR)/.cache/go/mod GOCACHE=$(CURDIR)/.cache/go/build GOFLAGS=-modcacherw GOTOOLCHAIN=local
# gobench links wdpool's Go binding against the RELEASE library: cgo finds
# it through this wdpool.pc (the bench-pc target), never an installed one.
BENCH_PC_DIR := $(CURDIR)/.cache/bench/pkgconfig
BENCH_GO_ENV += PKG_CONFIG_PATH=$(BENCH_PC_DIR) PKG_CONFIG_LIBDIR=$(BENCH_PC_DIR)
# The Ruby rows load the release library through WDPOOL_LIB (bench/driver.py
# sets it; PKG_CONFIG_LIBDIR hides an installed wdpool.pc).
BENCH_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Wpedantic -Werror -pthread

bench-pc: release
	@mkdir -p $(BENCH_PC_DIR)
	@printf 'Name: wdpool\nDescription: wdpool (release build tree, for make bench)\nVersion: $(VERSION)\nCflags: -I%s/include\nLibs: -L%s/$(RELEASE_LIB) -Wl,-rpath,%s/$(RELEASE_LIB) -lwdpool\n' \
	  '$(CURDIR)' '$(CURDIR)' '$(CURDIR)' > $(BENCH_PC_DIR)/wdpool.pc

bench-build: release bench-pc
	@mkdir -p $(BENCH)
	$(CC) $(BENCH_CFLAGS) -I include bench/wdpool_bench.c -L $(RELEASE_LIB) -lwdpool \
	  -Wl,-rpath,$(CURDIR)/$(RELEASE_LIB) -o $(BENCH)/wdpool_bench
	$(CC) $(BENCH_CFLAGS) bench/c_pool.c -o $(BENCH)/c_pool
	$(CC) $(BENCH_CFLAGS) -I include bench/report_queue.c -L $(RELEASE_LIB) -lwdpool \
	  -Wl,-rpath,$(CURDIR)/$(RELEASE_LIB) -o $(BENCH)/report_queue
	$(CARGO) build --release --locked --manifest-path bench/raw/Cargo.toml --target-dir target
	cd bench/go && $(BENCH_GO_ENV) $(GO) mod download && $(BENCH_GO_ENV) $(GO) build -o $(CURDIR)/$(BENCH)/gobench .
	cd bindings/ruby && rake compile

bench: bench-build
	bench/run.sh full $(BENCH_ARGS)

bench-quick: bench-build
	bench/run.sh quick $(BENCH_ARGS)

bench-smoke: bench-build
	$(BENCH)/report_queue 1000 1
	bench/run.sh smoke $(BENCH_ARGS)

# The soak test (tests/c/soak.c, driven by tests/c/soak.sh; README "Soak
# test"): 8 threads through a global pool of 4 against a three-broker
# cluster of its own, reloads, broker restarts and forced closes; memory,
# fds and threads must stay flat, every delivered message is read back
# exactly once. Built without sanitizers (they would swamp the memory
# curve) against the release library, as a user links it.
# make soak: 20 minutes (SOAK_SECONDS and the other SOAK_* of soak.c may be
# set in the environment; run it with nice on a shared machine).
# make test-soak-short (part of make test): 2 minutes, a reload every 15 s,
# broker restarts at 40 and 80 s, a forced close at 60 s.
SOAK_BIN := $(BUILD)/release/soak
soak-build: release
	@mkdir -p $(dir $(SOAK_BIN))
	$(CC) $(CFLAGS_STRICT) -O2 -pthread -I include tests/c/soak.c -L $(RELEASE_LIB) -lwdpool \
	  -Wl,-rpath,$(CURDIR)/$(RELEASE_LIB) -o $(SOAK_BIN)
	$(CARGO) build --example kafka_read

soak: soak-build
	SOAK_CLUSTER=soak tests/c/soak.sh $(CURDIR)/$(SOAK_BIN) $(CURDIR)/target/debug/examples/kafka_read

test-soak-short: soak-build
	SOAK_CLUSTER=soak-short SOAK_SECONDS=120 SOAK_RELOAD_S=15 SOAK_RESTART_S=40 SOAK_CLOSE_S=60 SOAK_WARMUP_S=30 \
	  tests/c/soak.sh $(CURDIR)/$(SOAK_BIN) $(CURDIR)/target/debug/examples/kafka_read

kafka-start:
	scripts/kafka.sh start --name single

kafka-stop:
	scripts/kafka.sh stop --name single

clean:
	$(CARGO) clean
	rm -rf $(BUILD) bindings/ruby/tmp bindings/ruby/lib/wdpool/wdpool_fast.so

# Fuzzing (fuzz/, cargo-fuzz + libFuzzer under AddressSanitizer; needs the
# nightly toolchain and cargo-fuzz, which make deps installs): the message,
# config and sequence targets, FUZZ_SECONDS each, one after another; a crash,
# panic, leak or hang fails. make fuzz adds what it finds to fuzz/corpus/
# (commit it; make fuzz-cmin first when it grew); make test-fuzz (part of
# make test) runs 30 s each from the committed corpus and writes nothing
# there. FUZZ_TARGETS picks targets.
FUZZ_SECONDS ?= 900
FUZZ_TARGETS ?= message config sequence
fuzz: deps
	scripts/fuzz.sh --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

test-fuzz:
	scripts/fuzz.sh --seconds 30 --scratch $(FUZZ_TARGETS)

fuzz-cmin:
	scripts/fuzz.sh --cmin $(FUZZ_TARGETS)
