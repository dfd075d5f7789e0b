# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test test-slow test-all lint demo clean bench data-deps photo-deps report-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS) 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, torchvision"
	$(PIP) install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import manifpt, faiss, sklearn"
	touch $(STAMP)

install: $(STAMP)

# The optional extras (Ray) that the tests exercise; `make demo` does not need them.
EXTRAS := $(VENV)/.installed-extras
$(EXTRAS): $(STAMP)
	$(PIP) install -q -e ".[dev,ray]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import ray, ray.data"
	touch $(EXTRAS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# `make test` (CI) leaves out the tests marked slow (whole experiment runs, ~4 min); `make test-slow` runs them.
test: $(EXTRAS) lint report-deps
	$(VENV)/bin/pytest -q -m "not slow"

test-slow: $(EXTRAS) report-deps
	$(VENV)/bin/pytest -q -m slow

test-all: $(EXTRAS) lint report-deps
	$(VENV)/bin/pytest -q

# The demo's real data: Debian's Fashion-MNIST (offline package registry); needs root or sudo.
DEB_DATA := dataset-fashion-mnist
data-deps:
	@dpkg -s $(DEB_DATA) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get install -y -q $(DEB_DATA) || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(DEB_DATA); }; }

# The photographs of the photo-crop sets and benchmarks (besides those scikit-image and scikit-learn ship).
PHOTO_DATA := opencv-doc mate-backgrounds
photo-deps:
	@dpkg -s $(PHOTO_DATA) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get install -y -q $(PHOTO_DATA) || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(PHOTO_DATA); }; }

# Headless Chromium and its driver (Debian's), with which tests/test_report_render.py renders the HTML reports;
# Selenium is pointed at them, so it never downloads a browser. Needs root or sudo.
REPORT_DEPS := chromium chromium-driver
report-deps:
	@dpkg -s $(REPORT_DEPS) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get install -y -q $(REPORT_DEPS) || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(REPORT_DEPS); }; }

demo: $(STAMP) data-deps
	$(VENV)/bin/manifpt demo --out runs/demo --data runs/data

bench: $(EXTRAS) data-deps photo-deps
	$(PY) benchmarks/projection.py --out runs/bench/projection.json
	$(PY) benchmarks/estimators.py --out runs/bench/estimators.json
	$(PY) benchmarks/scale.py --out runs/bench/scale.json --plot docs/scale-growth.png $(if $(wildcard runs/zoo64/gen/models.yaml),--zoo runs/zoo64/gen)
	$(PY) benchmarks/refine_floor.py --out runs/bench/refine_floor.json
	$(PY) benchmarks/sketch_sweep.py --out runs/bench/sketch_sweep.json
	$(PY) benchmarks/throughput.py --out runs/bench/throughput.json
	$(PY) benchmarks/ray_scale.py --out runs/bench/ray_scale.json
	$(PY) benchmarks/predict_stream.py --out runs/bench/predict_stream.json

clean:
	rm -rf $(VENV) runs build src/*.egg-info
