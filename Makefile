# Set-up and the two commands a new user runs. Everything installs into a local virtual
# environment (.venv) and is idempotent: a second run only re-installs when pyproject.toml changed.
#
#   make demo    install, then decompose and predict for a shipped example
#   make test    install, then run the test suite (what CI runs)
#   make test-all  also the full-dataset runs marked heavy (several minutes more)
#
# CPU torch is pinned by default; GPU users override it, e.g.
#   make install TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.crystensor-installed

.PHONY: install demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,mp]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/crystensor decompose examples/tensors/ZnO-mp-2133-elastic.json \
		--structure examples/structures/ZnO-mp-2133.POSCAR
	$(BIN)/crystensor predict examples/structures/ZnO-mp-2133.POSCAR --target dielectric-electronic

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

lint: install
	$(BIN)/ruff check crystensor tests benchmarks
	$(BIN)/ruff format --check crystensor tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
