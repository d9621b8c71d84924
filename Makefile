# Two commands for people: `make run` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed before the project so pip does not pull another torch build for it.
# On the development machines this takes the CPU wheel that lies on disk; elsewhere
# it is the normal torch release for the platform.
TORCH ?= torch==2.13.0

.PHONY: install run test lint bench clean system-run system-test
# In order, also under `make -j`: the system check must come before anything is built.
.NOTPARALLEL:

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# On Linux, napari's canvas needs OpenGL, Qt's xcb libraries and (for the tests) Xvfb:
# checked before anything is built, installed when we may (root or passwordless sudo),
# otherwise one message with the exact command. Nothing to do on macOS and Windows.
system-run:
	@bash scripts/system-deps.sh run

system-test:
	@bash scripts/system-deps.sh test

run: system-run install
	$(PY) -m napari_unet._qt.demo

# pytest-xvfb starts a virtual display (Xvfb) for the GUI tests, one per process.
# Most tests run on every core (pytest-xdist, at most 4 processes: each holds torch and
# napari), one torch thread each: threads of two processes fighting for the same cores
# took 2-3 times as long. The timing tests then run alone, with torch's own thread
# count, since they measure stalls and exit times.
test: system-test install lint
	$(VENV)/bin/npe2 validate napari-unet
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n auto --maxprocesses 4 --dist worksteal -m "not timing"
	$(VENV)/bin/pytest -q -m timing

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: install
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
