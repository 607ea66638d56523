# One virtual environment, made from nothing by the first target that needs it.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test lint bench mutation clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local]'
	touch $@

run: install
	$(BIN)/scheduled-images up

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m tests.bench

mutation: install
	$(BIN)/python tests/mutation/run.py

clean:
	rm -rf $(VENV) .state .pytest_cache .ruff_cache .hypothesis mutants .mutation
