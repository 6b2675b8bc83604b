# The two commands of the README:
#   make demo   - set up .venv if missing, install llmrec, run `llmrec demo` (synthetic data)
#   make test   - set up .venv if missing, install llmrec with test extras, run the test suite
#                 (including tests/test_docs.py: every bash/python block of README.md and docs/)
#   make docs   - regenerate docs/cli.md's command reference from --help
#   make notebook - execute notebooks/quickstart.ipynb and save its outputs
# Both work on a fresh machine with only Python 3.10+ and pip.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmrec-installed

.PHONY: demo test bench setup clean docs notebook

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

# docs/cli.md's command reference from the real --help texts (tests/test_docs.py checks it)
docs: $(STAMP)
	$(BIN)/python tools/cli_docs.py --write

# run the quickstart notebook and save it with its outputs
notebook: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tools/run_notebook.py

# a quick offline benchmark (synthetic records, 3 seeds, results cached in bench_out/cache);
# the real-data figures of the README: benchmarks/bench_realdata.py (see benchmarks/RESULTS.md)
bench: $(STAMP)
	$(BIN)/llmrec bench --data synthetic --protocol cold-prompt \
		--routers best-single,knn,linear,als,oracle,random --seeds 3 --out bench_out

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache .coverage htmlcov
