# Developer shortcuts. The README has the two commands that matter (install + run, install + test).

PYTHON ?= .venv/bin/python

.PHONY: test slow reliability lint

test:  ## the default suite, as CI runs it
	$(PYTHON) -m pytest

slow:  ## only the long fault and soak tests
	$(PYTHON) -m pytest -m slow

reliability:  ## every fault scenario of tests/reliability, with its figures as a table
	$(PYTHON) tests/reliability/run.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check aury_tasks tests
	$(PYTHON) -m mypy
	.venv/bin/lint-imports
