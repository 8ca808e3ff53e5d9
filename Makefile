# srcaffe: `make demo` runs the tutorial end to end, `make test` runs the test suite.
# Both (re)create .venv and install everything pinned in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The folder holding T91/ Set5/ Set14/ General100/ BSD100/ (override: make prep SR_DATA=/data/sr)
SR_DATA ?= $(abspath ../shared/data)
export SR_DATA

PREP_CONFIG ?= configs/prep_x3.yaml
PYTEST_ARGS ?=

.PHONY: install demo prep test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

prep: install
	$(BIN)/python -m prep --config $(PREP_CONFIG)

demo: prep

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results/data results/runs
