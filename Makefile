# The README's two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are pinned first so pip takes the locally cached wheels where they exist.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# The optional extras the tests exercise (sim: robosuite/mujoco/robomimic, bags: data import-bag, ray: sweep --backend ray,
# lerobot: import/export-lerobot, viewer: data view).
EXTRAS ?= dev,ros,sim,lerobot,viewer,bags,ray
# The lerobot extra's own packages, installed without their declared dependencies (see pyproject.toml's
# `lerobot` extra: their pins would replace numpy and fsspec); the extra lists what they really need.
LEROBOT_NODEPS ?= lerobot==0.3.2 datasets==3.6.0
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: venv sysdeps test lint demo clean

$(STAMP): pyproject.toml
	@bash .ci/sysdeps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@if [[ ",$(EXTRAS)," == *",lerobot,"* ]]; then $(PY) -m pip install -q --no-deps $(LEROBOT_NODEPS); fi
	@touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@bash .ci/sysdeps.sh

lint: $(STAMP)
	$(PY) -m ruff check .

# The real-time ROS 2 tests (node, recorder) run in a process of their own: in one process with the
# training and sim tests their executor threads were starved and messages went stale (seen on 2 cores).
REALTIME_TESTS := tests/ros tests/record

test: $(STAMP) lint
	$(PY) -m pytest -q $(foreach d,$(REALTIME_TESTS),--ignore=$(d))
	$(PY) -m pytest -q $(REALTIME_TESTS)

demo: $(STAMP)
	$(VENV)/bin/robot-offrl demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
