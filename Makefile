# Newcomer entry points: `make bench` and `make test` each set everything up from scratch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-installed

PYTEST_ARGS ?=

.PHONY: all venv build inplace wheel install test test-inplace test-wheel test-asan bench bench-quick clean

all: test

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=70.1" wheel "Cython>=3.0.8" "numpy>=1.25" \
		"pytest>=7" "hypothesis>=6.80" "hdrhistogram>=0.10" "build>=1.0" \
		"itchfeed>=1.6" "simplefix>=1.0.17" "mypy>=1.8"
	-$(PY) -m pip install --quiet "faster-fifo>=1.4"
	touch $(STAMP)

venv: $(STAMP)

# In-tree build, for the fast edit/test loop (tests then import from src/).
inplace: $(STAMP)
	LOWLAT_REQUIRE_EXTENSIONS=1 $(PY) setup.py --quiet build_ext --inplace

# The platform wheel, built the way a release is (a failed compile is fatal).
wheel: $(STAMP)
	rm -rf dist
	LOWLAT_REQUIRE_EXTENSIONS=1 $(PY) -m pip wheel --quiet --no-build-isolation --no-deps -w dist .

install: wheel
	$(PY) -m pip install --quiet --force-reinstall --no-deps dist/lowlat-*.whl

test-inplace: inplace
	LOWLAT_REQUIRE_EXTENSIONS=1 PYTHONPATH=src $(PY) -m pytest $(PYTEST_ARGS)

# The same suite against the wheel installed in the venv, run from outside the source tree.
test-wheel: install
	cd tests && LOWLAT_REQUIRE_EXTENSIONS=1 LOWLAT_TEST_INSTALLED=1 ../$(PY) -m pytest -p no:cacheprovider --rootdir=. $(PYTEST_ARGS) .

test: test-inplace test-wheel

# The compiled half of the suite under AddressSanitizer + UndefinedBehaviorSanitizer. The extension
# is built with the sanitizers in a scratch copy of the tree ($(ASAN_DIR)), so the in-tree build and
# the wheel keep their normal binaries; libasan is preloaded because python itself is not
# instrumented. Tests of the pure backend are deselected; not part of `make test` (slower).
ASAN_DIR     ?= build/asan
ASAN_CFLAGS  ?= -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1
ASAN_LDFLAGS ?= -fsanitize=address,undefined
ASAN_ENV      = LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$(abspath $(ASAN_DIR))/report \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(abspath $(ASAN_DIR))/report \
	LOWLAT_REQUIRE_EXTENSIONS=1 PYTHONPATH=src
ASAN_PYTEST_ARGS ?= -k "not python and not chromium"  # a browser under LD_PRELOAD=libasan hangs

test-asan: $(STAMP)
	rm -rf $(ASAN_DIR)
	mkdir -p $(ASAN_DIR)
	cp -r setup.py pyproject.toml README.md MANIFEST.in src tests bench $(ASAN_DIR)/
	find $(ASAN_DIR)/src \( -name '*.so' -o -name '*.c' -o -name '*.html' -o -name __pycache__ \) -prune -exec rm -rf {} +
	cd $(ASAN_DIR) && LOWLAT_REQUIRE_EXTENSIONS=1 LOWLAT_EXTRA_CFLAGS="$(ASAN_CFLAGS)" \
		LOWLAT_EXTRA_LDFLAGS="$(ASAN_LDFLAGS)" $(abspath $(PY)) setup.py --quiet build_ext --inplace --force
	# The sanitizers write to $(ASAN_DIR)/report.* (pytest captures stderr): shown, and fatal, if any.
	cd $(ASAN_DIR) && $(ASAN_ENV) $(abspath $(PY)) -m pytest -q -p no:cacheprovider $(ASAN_PYTEST_ARGS) $(PYTEST_ARGS) tests; \
		status=$$?; if ls report.* >/dev/null 2>&1; then cat report.*; exit 1; fi; exit $$status

bench: install
	$(VENV)/bin/lowlat bench $(BENCH_ARGS)

bench-quick: install
	$(VENV)/bin/lowlat bench --quick $(BENCH_ARGS)

clean:
	rm -rf build dist src/*.egg-info src/lowlat/*.c src/lowlat/*.so src/lowlat/*.html .pytest_cache
