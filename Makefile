# Two commands do all the set-up on a fresh machine:
#   make run    environment + install + the main job on the bundled default
#   make test   environment + install + the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := qemu-user-static gcc-aarch64-linux-gnu clang lld wasi-libc libclang-rt-14-dev-wasm32 llvm llvm-19 nodejs
PYTEST_WORKERS ?= 2

.PHONY: setup sysdeps run test test-phone bench clean

# Each area adds its own set-up in mk/<area>.mk: extra environments it appends to
# TEST_DEPS (built before the suite), system packages to APT_PACKAGES.
TEST_DEPS := .venv-scalesim/.installed
-include mk/*.mk

setup: sysdeps $(STAMP)

# System packages the toolchain tests need; installed when running as root,
# otherwise reported (the tests that need them then skip, saying why; never in CI).
sysdeps:
	@missing=""; for package in $(APT_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -z "$$missing" ]; then echo "system packages: present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "warning: missing system packages:$$missing (install them with apt as root; their tests will skip)"; fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/hwsim simulate --arch targets/accelerators/sat.yaml --out reports/default

# the whole suite, then the CPU model checked on whatever CPU runs it (issue 15: it must
# complete on any host, choosing flavours by the detected features; its error statistics
# are printed to the log)
test: setup $(TEST_DEPS)
	$(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS) -m "not phone"
	$(BIN)/python bench/cpu_model.py --quick --no-arm --out build/cpu_model-ci.json

# The adb runner on a real phone (USB debugging on, `adb devices` lists it).
test-phone: setup
	$(BIN)/python -m pytest -q -m phone

# SCALE-Sim 3.0.0 in its own environment: the equivalence tests and bench/sim_speed.py
# run it as a subprocess. It needs numpy<2 (numpy 2.x raises a TypeError in
# memory/double_buffered_scratchpad_mem.py service_memory_requests).
.venv-scalesim/.installed:
	test -x .venv-scalesim/bin/python || $(PYTHON) -m venv .venv-scalesim
	.venv-scalesim/bin/python -m pip install -q 'scalesim==3.0.0' 'numpy<2'
	touch .venv-scalesim/.installed

bench: setup
	$(BIN)/python bench/kernels.py
	$(BIN)/python bench/sim_speed.py --quick
	$(BIN)/python bench/sat_repro.py
	$(BIN)/python bench/cpu_model.py
	$(BIN)/python bench/cpu_model_whole.py

clean:
	rm -rf $(VENV) .venv-scalesim build .pytest_cache .hypothesis
