# Two entry points for a fresh Debian 12 machine: `make demo` and `make check`.
# Both install the Debian packages that are missing, configure with Meson and build.
BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all build asan check check-unit check-asan demo fuzz bench clean deps

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

# Every test: unit, hostile-input and guest integration, then all of them again
# under ASan+UBSan.
check:
	@scripts/deps.sh test
	$(MAKE) build asan
	meson test -C $(BUILD) --print-errorlogs --num-processes 1
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 1 --timeout-multiplier 2

check-unit: build
	meson test -C $(BUILD) --print-errorlogs --suite unit

demo:
	@scripts/deps.sh demo
	$(MAKE) build
	test/guest/demo.sh $(BUILD)

bench: build
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
