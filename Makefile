# The two commands of the README:
#   make demo   - set up .venv if missing, install llmrec, run `llmrec demo` (synthetic data)
#   make test   - set up .venv if missing, install llmrec with test extras, run the test suite
# Both work on a fresh machine with only Python 3.10+ and pip.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmrec-installed

.PHONY: demo test bench setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/llmrec demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest --cov=llmrec --cov-report=term $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .coverage htmlcov
