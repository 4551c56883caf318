# Developer shortcuts. The README has the two commands that matter (install + run, install + test).

PYTHON ?= .venv/bin/python

.PHONY: test slow reliability scale conformance lint

test:  ## the default suite, as CI runs it
	$(PYTHON) -m pytest

slow:  ## only the long fault and soak tests
	$(PYTHON) -m pytest -m slow

reliability:  ## every fault scenario of tests/reliability, with its figures as a table
	$(PYTHON) tests/reliability/run.py

scale:  ## the many-hosts scenarios of tests/scale (network namespaces: root), with their figures as a table
	$(PYTHON) tests/scale/run.py

conformance:  ## Dramatiq's own test_redis.py and test_actors.py against our broker (in the default suite too)
	$(PYTHON) -m pytest tests/conformance

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check aury_tasks tests
	$(PYTHON) -m mypy
	.venv/bin/lint-imports
