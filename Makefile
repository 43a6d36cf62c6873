# Two entry points for a fresh Debian 12 machine: `make demo` and `make check`.
# Both install the Debian packages that are missing, configure with Meson and build.
BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all build asan check check-unit check-asan demo fuzz bench bench-quick clean deps

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Every test: unit, hostile-input, libsiov, scale and guest integration, then all
# of them again under ASan+UBSan, then a short run of each libFuzzer target.
check:
	@scripts/deps.sh test
	$(MAKE) build asan
	meson test -C $(BUILD) --print-errorlogs --num-processes 1
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 1 --timeout-multiplier 2
	$(MAKE) check-fuzz

check-unit: build
	meson test -C $(BUILD) --print-errorlogs --suite unit

demo:
	@scripts/deps.sh demo
	$(MAKE) build
	test/guest/demo.sh $(BUILD)

# Benchmarks (bench/README.md): every section, or BENCH_SECTIONS="null file ...";
# one results file set under bench/results/.  bench-quick: about a minute.
bench: build
	bench/run.sh $(BUILD)

# Debian packages siovd, siovctl, libsiov0, libsiov-dev into build-deb/ (debhelper).
deb:
	@scripts/deps.sh build
	scripts/make-deb.sh build-deb

bench-quick: build
	QUICK=1 bench/run.sh $(BUILD)

# libFuzzer targets (test/fuzz): clang, ASan+UBSan, coverage in every library.
# check-fuzz: about 25 s per target, one per core at once (suite 'fuzz');
# fuzz: FUZZ_SECONDS each, one after the other.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_TARGETS  = fuzz_vhost_msg fuzz_chain fuzz_packed fuzz_blk fuzz_rpc fuzz_net_frame fuzz_nbd fuzz_mirror_bitmap fuzz_state
FUZZ_DIR      = $(FUZZ_BUILD)/test/fuzz

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dbuildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link

.PHONY: check-fuzz fuzz-build
fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) $(addprefix test/fuzz/,$(FUZZ_TARGETS))

check-fuzz: fuzz-build
	meson test -C $(FUZZ_BUILD) --no-rebuild --print-errorlogs --suite fuzz

fuzz: fuzz-build
	set -e; for t in $(FUZZ_TARGETS); do \
		test/fuzz/run.sh $(FUZZ_DIR)/$$t $(FUZZ_SECONDS) $(FUZZ_DIR)/$$t.work \
			test/fuzz/corpus/$$t test/fuzz/regress/$$t; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
