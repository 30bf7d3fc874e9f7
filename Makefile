# Newcomer entry points: `make bench` and `make test` each set everything up from scratch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-installed

PYTEST_ARGS ?=

.PHONY: all venv build inplace wheel install test test-inplace test-wheel bench bench-quick clean

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

bench: install
	$(VENV)/bin/lowlat bench $(BENCH_ARGS)

bench-quick: install
	$(VENV)/bin/lowlat bench --quick $(BENCH_ARGS)

clean:
	rm -rf build dist src/*.egg-info src/lowlat/*.c src/lowlat/*.so src/lowlat/*.html .pytest_cache
