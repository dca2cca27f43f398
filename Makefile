# `make demo` and `make test` each build their own virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,geo,metrics]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out demo_out

test: $(STAMP)
	$(PY) -m ruff check img2img tools tests
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check img2img tools tests

clean:
	rm -rf $(VENV) demo_out
