# The two commands a newcomer needs, plus the pieces they are made of.
#   make run    deps, build, local redis-server (+ simulator without Twilio
#               credentials), commsgate in the foreground; Ctrl-C stops all.
#   make test   deps, ASan+UBSan build, every test through ctest.

BUILD      ?= build
TEST_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test test-build tsan fuzz bench clean

all: build

deps:
	@sh scripts/deps.sh build test

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@sh scripts/run.sh $(BUILD)

test-build: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCOMMSGATE_SANITIZE=ON -DCOMMSGATE_WERROR=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)

test: test-build
	@sh scripts/node-deps.sh
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3

# ThreadSanitizer: every unit test, tsan.loop_path_test and tsan.reflection_test
# (part of make test).
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCOMMSGATE_TSAN=ON -DCOMMSGATE_WERROR=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS) -R '^(unit|tsan)[.]'

# make fuzz: every libFuzzer harness (tests/fuzz/, clang with ASan+UBSan)
# for FUZZ_SECONDS each, from its checked-in seeds; what it finds lands in
# $(FUZZ_BUILD)/tests/fuzz, never in the source. make test runs it for 3 s.
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DCOMMSGATE_FUZZ=ON -DCOMMSGATE_WERROR=ON -DCOMMSGATE_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j $(JOBS) -R '^fuzz[.]'

# make bench: Release build, then bench/run.py prints the table and writes
# build-bench/latest.md; `--out bench/results/latest.md` records it in the
# repository, on purpose (see docs/PERFORMANCE.md).
bench: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
	cmake --build build-bench -j $(JOBS)
	/usr/bin/python3 bench/run.py --bin build-bench/bin

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) build-bench
