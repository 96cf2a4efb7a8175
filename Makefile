# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.needle-installed
# Offline by default: the model hub is not needed for anything make runs.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo demo-causal test lint venv bench clean

venv: $(STAMP)

# constraints.txt pins the tested set (torch==2.13.0 and the rest); pyproject.toml only gives lower bounds.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/needle demo --out demo-output

# The same pipeline on the toy causal model trained here first (logit effects, attribution, ablation).
demo-causal: $(STAMP)
	$(VENV)/bin/needle demo --causal --out demo-causal-output

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/extract.py

clean:
	rm -rf $(VENV) demo-output demo-causal-output .pytest_cache
