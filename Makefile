# xtgrad: `make test` and `make train` work on a fresh Debian 12 box.
BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= 2

# What the build needs from Debian. ccache only speeds up rebuilds.
PACKAGES := cmake make g++ libxtensor-dev libxtensor-blas-dev libopenblas-dev doctest-dev nlohmann-json3-dev libcli11-dev libstb-dev ccache
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps mpi-deps configure build test train bench clean asan tsan fuzz fuzz-deps lint format

all: build

# $(call install_missing,PACKAGES): installs only the packages that are missing; does
# nothing when all are present.
define install_missing
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make $@: installing$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(PACKAGES))

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

# make test also tests xtgrad::distributed (distributed/, on 2 and 3 MPI ranks): it installs
# OpenMPI before configuring. make train and the rest do not need MPI.
MPI_PACKAGES := libopenmpi-dev openmpi-bin
mpi-deps:
	$(call install_missing,$(MPI_PACKAGES))
ifneq ($(filter test,$(MAKECMDGOALS)),)
configure: mpi-deps
endif

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# The toy task with its defaults (docs/align-task.md); the run lands in runs/align and
# replaces the one a previous `make train` left there (xtgrad-align itself refuses to
# replace a run unless told --overwrite).
train: build
	$(BUILD_DIR)/bin/xtgrad-align train --overwrite $(TRAIN_FLAGS)

bench: build
	$(BUILD_DIR)/bin/xtgrad-bench

# The size gate (no library function over 60 lines, no library file over 400:
# tools/check_size.py) and the formatter (.clang-format): fails on a file clang-format
# would change. `make format` applies it.
CXX_FILES := git ls-files '*.cpp' '*.hpp' '*.h'
lint:
	$(call install_missing,python3 clang-format git)
	python3 tools/check_size.py
	$(CXX_FILES) | xargs clang-format --dry-run --Werror
	@echo "lint: sizes and formatting ok"

format:
	$(call install_missing,clang-format git)
	$(CXX_FILES) | xargs clang-format -i

# AddressSanitizer + UndefinedBehaviorSanitizer: the library, tests and examples built in
# $(ASAN_DIR) with -DXTGRAD_SANITIZE=ON at -O1 -g, then the whole ctest suite with leak
# detection, except the two install tests (they rebuild a consumer project against an
# install; `make test` runs them, and they add nothing the sanitizers would see) and the
# caption training test (36 s in Release, many minutes under ASan; its code paths run in the
# caption CLI tests). No bench. Any report stops the process that made it (abort), so the
# test fails. The build runs the test programs too (doctest's test discovery). The
# libraries and examples compile as unity builds (XTGRAD_UNITY_BUILD), the test programs' own
# files at -O0 (tests/CMakeLists.txt): from clean, without ccache, the whole target took
# 787 s instead of 980 on the AMD EPYC Zen 4 VM.
ASAN_DIR ?= build-asan
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DXTGRAD_SANITIZE=ON \
	  -DXTGRAD_BUILD_BENCH=OFF -DXTGRAD_UNITY_BUILD=ON
	$(ASAN_ENV) cmake --build $(ASAN_DIR) -j$(JOBS)
	cd $(ASAN_DIR) && $(ASAN_ENV) ctest --output-on-failure -j$(JOBS) -E '^(install_|caption training:|vqa training:)'

# ThreadSanitizer on the tests that start threads (xtgrad-thread-tests: test_parallel's runs
# of the thread pool, split products, attention and row-wise ops on two threads and from
# two callers at once, and test_engine's per-thread grad and anomaly modes). The other test
# files run on one thread, so building them under TSan would only cost time. Any data race
# fails the run.
TSAN_DIR ?= build-tsan
tsan: deps
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g" \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DXTGRAD_BUILD_EXAMPLES=OFF -DXTGRAD_BUILD_BENCH=OFF \
	  -DXTGRAD_BUILD_THREAD_TESTS=ON
	TSAN_OPTIONS=halt_on_error=1 cmake --build $(TSAN_DIR) -j$(JOBS) --target xtgrad-thread-tests
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(TSAN_DIR)/bin/xtgrad-thread-tests

# libFuzzer on the safetensors reader (fuzz/): a small clang build of the reader and the
# harness only, run for FUZZ_SECONDS from the seeds in fuzz/corpus; new inputs go to
# $(FUZZ_DIR)/corpus (kept between runs), a crash, leak, timeout or out-of-memory input to
# $(FUZZ_DIR)/artifacts/, and make fails. Inputs are at most 64 KiB; one allocation over
# 16 MB or 512 MB resident is a finding: no size read from a file may drive an allocation
# before it is checked against the file's size. (No detect_stack_use_after_return: it
# makes fuzzing 10x slower, about 600 instead of 6,000 inputs a second. A 64 MB quarantine
# instead of 256 keeps a use-after-free within one input caught and the resident size far
# below the 512 MB limit.)
FUZZ_DIR      ?= build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_FIXTURES := tests/fixtures/safetensors
FUZZ_CXX      ?= clang++-14
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev
FUZZ_FLAGS    := -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=512 -malloc_limit_mb=16 \
                 -timeout=10 -detect_leaks=1 -print_final_stats=1 -dict=fuzz/safetensors.dict \
                 -artifact_prefix=$(FUZZ_DIR)/artifacts/
FUZZ_ENV      := ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:quarantine_size_mb=64 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

fuzz-deps: deps
	$(call install_missing,$(FUZZ_PACKAGES))

fuzz: fuzz-deps
	cmake -S fuzz -B $(FUZZ_DIR) -DCMAKE_CXX_COMPILER=$(FUZZ_CXX)
	cmake --build $(FUZZ_DIR) -j$(JOBS)
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	@echo "make fuzz: $$(ls fuzz/corpus $(FUZZ_FIXTURES) | grep -c safetensors) seeds, $$(ls $(FUZZ_DIR)/corpus | wc -l) inputs in $(FUZZ_DIR)/corpus; fuzzing for $(FUZZ_SECONDS) s"
	$(FUZZ_ENV) $(FUZZ_DIR)/fuzz_safetensors $(FUZZ_FLAGS) $(FUZZ_DIR)/corpus fuzz/corpus $(FUZZ_FIXTURES)
	@echo "make fuzz: no finding; $$(ls $(FUZZ_DIR)/corpus | wc -l) inputs in $(FUZZ_DIR)/corpus"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
