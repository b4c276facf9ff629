# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv if missing, installs roadstream, runs `roadstream run`
#   make test   the same set-up, then lint, type-check and the whole test suite
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: run test lint docs clean-venv

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/roadstream run $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

docs: $(STAMP)
	$(VENV)/bin/roadstream docs

clean-venv:
	rm -rf $(VENV)
