# Every target sets up .venv first, so each works on a fresh clone with nothing installed.
# TORCH: the PyTorch requirement. The default pins the CPU build this kit is tested with; on a
# GPU machine use e.g. `make TORCH="torch --index-url https://download.pytorch.org/whl/cu126" setup`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test report notebooks app checkpoints bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Notebook runs: the kernel imports this checkout's package; widgets also draw static figures.
NB_ENV := PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} HVAE_LITE_HEADLESS=1 MPLBACKEND=Agg
# The notebooks `make notebooks` executes in place: the sequence, the report and the exercise
# solutions (their expected outputs); student exercise notebooks stay without outputs.
NOTEBOOKS ?= $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard notebooks/exercises/solutions/*.ipynb))

# The tests, in one pytest run: the unit tests, then every notebook under notebooks/ (except the
# students' copies of the exercises) executed by nbval in fast mode. nbval-lax compares only the
# outputs of cells marked "# NBVAL_CHECK_OUTPUT"; every cell must run without an error.
test: $(STAMP)
	HVAE_LITE_FAST=1 $(NB_ENV) $(PY) -m pytest -q tests notebooks --nbval-lax \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --ignore=notebooks/exercises/student --durations=15

# The main job: train (or load) the default model on the embedded digits and write a report.
report: $(STAMP)
	$(NB_ENV) $(PY) -m hvae_lite report

# The classroom app: the three explorers as a web page without code (Voila), on the shipped
# checkpoints. Students on the same network: `make app APP_IP=0.0.0.0`, then http://<this machine>:8866/
# The first start imputes every digit under every occlusion (a few minutes, once; cached in runs/app/);
# idle kernels of vanished pages are culled and each kernel runs one thread (hvae_lite/app.py).
APP_IP ?= 127.0.0.1
APP_PORT ?= 8866
app: $(STAMP)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m hvae_lite.app --ip=$(APP_IP) --port=$(APP_PORT)

# Re-execute every notebook in full mode, in place, so the committed outputs come from this code.
notebooks: $(STAMP)
	@set -e; for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		$(NB_ENV) $(PY) -m papermill --no-progress-bar --cwd $$(dirname $$nb) $$nb $$nb; \
	done

# Regenerate the student exercise notebooks from the solution notebooks (answers cleared, no outputs).
.PHONY: exercises
exercises: $(STAMP)
	$(PY) -m hvae_lite.exercises generate

# Retrain the shipped checkpoints with the CLI, one after another (about 3 h on one core; the base
# model first, its fine-tunes after), then write the weights-only copies and manifests in
# data/checkpoints/ (see benchmarks/README.md for two at once), and the digit judge.
checkpoints: $(STAMP)
	PYTHONPATH=$(CURDIR) nice -n 5 $(PY) benchmarks/train_checkpoints.py --retrain
	PYTHONPATH=$(CURDIR) nice -n 5 $(PY) benchmarks/train_checkpoints.py --judge

# Rerun the benchmarks (quality: hours on 2 cores, cached under runs/bench/; speed: minutes).
bench: $(STAMP)
	PYTHONPATH=$(CURDIR) nice -n 5 $(PY) benchmarks/ablations.py --runs matryoshka no-td-path no-merge --seeds 0 1 2
	PYTHONPATH=$(CURDIR) nice -n 5 $(PY) benchmarks/ablations.py --runs ar-head ar-control --seeds 0 --assemble
	PYTHONPATH=$(CURDIR) nice -n 5 $(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) reports runs .pytest_cache
