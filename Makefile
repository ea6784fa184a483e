# Two entry points, each working on a fresh clone with nothing installed:
#   make demo   set up, then run recommend + bench on an embedded dataset (offline)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup clean

$(BIN)/advisor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

setup: $(BIN)/advisor

demo: $(BIN)/advisor
	$(BIN)/advisor backbones --available
	$(BIN)/advisor demo --out reports

test: $(BIN)/advisor
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) reports/*.html reports/*.json reports/*.jsonl reports/*.lock reports/*.locks reports/demo-data
