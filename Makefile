# The two commands a newcomer needs, plus the pieces they are made of.
#   make run    deps, build, local redis-server (+ simulator without Twilio
#               credentials), commsgate in the foreground; Ctrl-C stops all.
#   make test   deps, ASan+UBSan build, every test through ctest.

BUILD      ?= build
TEST_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test test-build tsan bench clean

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

# ThreadSanitizer: every unit test and tsan.loop_path_test (part of make test).
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCOMMSGATE_TSAN=ON -DCOMMSGATE_WERROR=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS) -R '^(unit|tsan)[.]'

# make bench: Release build, then bench/run.py prints the table and writes
# bench/results/latest.md (see docs/PERFORMANCE.md).
bench: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
	cmake --build build-bench -j $(JOBS)
	/usr/bin/python3 bench/run.py --bin build-bench/bin

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(TSAN_BUILD) build-bench
