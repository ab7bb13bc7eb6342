# Two commands set the project up on a fresh machine (Python 3.11, no GPU needed):
#   make demo   - AU detection with the default model on a real face image (default: scikit-image astronaut)
#   make test   - install everything and run the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
IMAGE ?=
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all install install-dev models lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e . scikit-image

install-dev: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[train,dev]"

models: $(BIN)/python
	$(BIN)/rtatl-fetch-models

demo: install models
	$(BIN)/python examples/demo.py $(IMAGE) --out out/demo

test: install-dev models
	$(BIN)/python -m pytest -q

test-all: install-dev models
	$(BIN)/python -m pytest -q -m ""

lint: install-dev
	$(BIN)/ruff check rtatl_sdk training export tests examples bench

clean:
	rm -rf $(VENV) out .pytest_cache
