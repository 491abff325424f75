# Two entry points that work on a fresh machine with only Python 3.11+:
#   make demo   set up .venv, build units/join/score/tiles on the embedded sample, serve the map
#   make test   set up .venv and run the test suite, one test of each slow family (≤ 8 min)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup demo test test-slow test-all lint typecheck docs bench clean

# Editable install in setuptools' strict mode: a tree of links under build/ maps the folder
# server/ to the package trafficunit_server (package_dir), and mypy and pytest see both
# packages through it. Edits show at once; a new or removed file needs a new link tree, so the
# install re-runs when a package folder changes (its mtime moves when a file is added).
# --compile-bytecode: .pyc files at install, as pip writes them; without them (uv's default) every
# process (each Dask worker, CLI and test subprocess) compiles the stack from source whenever
# PYTHONDONTWRITEBYTECODE is set: `import geopandas, distributed` 4.8 CPU-s instead of 1.4
PKG_DIRS := $(shell find trafficunit server -name '*.py' -printf '%h\n' 2>/dev/null | sort -u)

$(STAMP): pyproject.toml setup.py $(PKG_DIRS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e ".[dev]" \
		--config-settings editable_mode=strict --compile-bytecode
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/trafficunit demo $(DEMO_ARGS)

# `make test` runs every fast test and one test of each slow family (tests/conftest.py,
# --slow); `make test-slow` the slow tests it leaves out (.ci/run runs both); `make test-all`
# everything in one run. loadgroup: the notebook tests stay on one worker, which starts all
# their notebooks at once (tests/test_notebooks.py), so none is executed twice
PYTEST = $(BIN)/python -m pytest -n 2 --dist loadgroup

test: $(STAMP)
	$(PYTEST) --slow=sample $(PYTEST_ARGS)

test-slow: $(STAMP)
	@# exit 5 is "no tests collected": every slow family has one test, all in the sample
	$(PYTEST) --slow=rest $(PYTEST_ARGS) || test $$? -eq 5

test-all: $(STAMP)
	$(PYTEST) --slow=all $(PYTEST_ARGS)

SRC = $(wildcard trafficunit server tests benchmarks)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

DOWNSTREAM = $(CURDIR)/tests/typing

typecheck: $(STAMP)
	$(BIN)/mypy -p trafficunit -p trafficunit_server
	@# a downstream script, checked from outside the tree as an installed package's user would
	@cd $$(mktemp -d) && $(abspath $(BIN))/mypy --no-incremental --config-file $(DOWNSTREAM)/mypy.ini \
		$(DOWNSTREAM)/downstream.py > mypy-downstream.txt; status=$$?; cat mypy-downstream.txt; \
		test $$status -eq 0 && ! grep -q 'Revealed type is "Any"' mypy-downstream.txt \
		|| { echo "downstream mypy: the public API is not typed"; exit 1; }

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_units.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache site
