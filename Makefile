# Two entry points (README): `make demo` runs the offline demo end to end (into runs/demo/, as `dvc repro`),
# `make test` runs the tests.
# Both create .venv and install fcnlib + the workflow tools on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: demo test test-fast lint bench clean-demo

$(VENV)/.base:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch where this machine has it (small, no CUDA download); any torch ≥2.2 works.
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.2"
	touch $@

$(VENV)/.demo: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e ".[workflow]"
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e ".[workflow,cluster,dvc,tensorboard,dev]"
	# optional: ONNX export + onnxruntime (no wheel on some platforms; the ONNX test then skips, saying why)
	$(PY) -m pip install -q -e ".[export]" || echo "note: fcnlib[export] (onnx, onnxruntime) not installable here"
	touch $@

# the folder `dvc repro` builds the demo in (dvc.yaml), so the two share one layout and one set of results.
# A Snakemake killed outright leaves its lock; cleared here only when no other run is active in that folder.
demo: $(VENV)/.demo
	@if $(PY) -m fcnlib.pipeline.runlock runs/demo; then $(VENV)/bin/snakemake --unlock --configfile config/demo.yaml --directory runs/demo; fi
	$(VENV)/bin/snakemake all --cores $(CORES) --configfile config/demo.yaml --directory runs/demo --rerun-incomplete

test: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check .
	$(VENV)/bin/snakemake --lint --configfile config/demo.yaml
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

# The fast tier while editing: ruff + the unit tests (no end-to-end DAG, DVC, SLURM or fault injection).
test-fast: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -m "not slow"

bench: $(VENV)/.test
	$(PY) bench/run.py

clean-demo:
	rm -rf runs/demo
