# The two commands (see README.md):
#   make demo   installs what is missing, builds, runs the local demo
#   make test   installs what is missing, builds, runs the whole suite,
#               then again under ASan+UBSan
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 30

.PHONY: all deps build build-asan demo test test-plain test-asan test-fuzz bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEALPOST_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# fast_unwind_on_malloc=0: Debian's libcrypto has no frame pointers, so the fast
# unwinder stops there and lsan.supp's libp11 entry (PKCS11_login keeps a
# CRYPTO_strdup'd PIN copy) cannot match.
test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

# libFuzzer targets (clang-16 build in build-fuzz), a short run each.
test-fuzz: deps
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

test: test-plain test-asan test-fuzz

bench: build
	bash bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
