# Every target sets up .venv first, so each works on a fresh clone with nothing installed.
# TORCH: the PyTorch requirement. The default pins the CPU build this kit is tested with; on a
# GPU machine use e.g. `make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" setup`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test report notebooks checkpoints bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The tests: unit tests, then every notebook executed by nbval in fast mode.
test: $(STAMP)
	HVAE_LITE_FAST=1 MPLBACKEND=Agg $(PY) -m pytest -q tests

# The main job: train (or load) the default model on the embedded digits and write a report.
report: $(STAMP)
	MPLBACKEND=Agg $(PY) -m hvae_lite report

clean:
	rm -rf $(VENV) reports runs .pytest_cache
