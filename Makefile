# The README's two commands. Each installs what it needs, configures, builds into build/, then runs.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: deps configure build test demo bench clean test-sanitize fuzz

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)
	@grep -E "^-- selfsup" $(BUILD).configure.log || true

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	@$(BUILD)/selfsup demo

bench: build
	@$(BUILD)/bench_cpu_dense

# ASan + UBSan build of every CPU test (and the CUDA emulator's) in its own directory (docs/hardening.md).
# C++ at -O1 -g with asserts on; CUDA compiles with Release's flags, as in build/ (ccache can share those objects).
SAN_BUILD ?= build-asan
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# SAN_TESTS="fuzz io data" builds and runs only those test areas (here: the readers of outside bytes).
SAN_TESTS ?=
SAN_CMAKE_FLAGS ?=

test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSELFSUP_SANITIZE=ON \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CUDA_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG" $(SAN_CMAKE_FLAGS) \
	  > $(SAN_BUILD).configure.log 2>&1 || (cat $(SAN_BUILD).configure.log; exit 1)
	@cmake --build $(SAN_BUILD) -j $(JOBS) $(if $(SAN_TESTS),--target $(addprefix test_,$(SAN_TESTS)))
	@echo "test-sanitize: the learning runs (ctest label 'learning', short trainings whose probe must beat a" \
	  "random encoder) run in make test only; their code paths run here in the resume tests"
	@cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) -L cpu -LE learning \
	  $(if $(SAN_TESTS),-R '^($(subst $(eval) ,|,$(strip $(SAN_TESTS))))$$')

# libFuzzer targets (tests/fuzz, docs/hardening.md), clang + ASan + UBSan, CPU only, in their own directory;
# each runs FUZZ_SECONDS, one after the other. FUZZ_TARGETS picks a subset.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= idx cifar stl10 image safetensors config args

fuzz: deps
	@command -v clang++-14 >/dev/null && ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || \
	  (echo "make fuzz needs clang 14 with libFuzzer and OpenMP:" \
	        "apt-get install clang-14 libclang-rt-14-dev libomp-14-dev"; exit 1)
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
	  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14 -DSELFSUP_CUDA=OFF -DSELFSUP_FUZZ=ON \
	  > $(FUZZ_BUILD).configure.log 2>&1 || (cat $(FUZZ_BUILD).configure.log; exit 1)
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD) $(BUILD).configure.log $(SAN_BUILD) $(SAN_BUILD).configure.log $(FUZZ_BUILD) $(FUZZ_BUILD).configure.log
