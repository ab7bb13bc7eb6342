# Two commands set the project up on a fresh machine (Python 3.11, no GPU needed):
#   make demo   - AU detection with the default model on a real face image (default: scikit-image astronaut)
#   make test   - install everything and run the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
IMAGE ?=
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all install install-dev models lint clean golden

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

# the stored rtatl-detect outputs that tests/test_sdk_structure.py compares against: rewrite them
# (and say why in the commit) only when the default model or the row schema changes on purpose
GOLDEN_INPUTS := media/single_face.jpg media/multi_face.jpg media/single_face.mp4 media/noface_face.mov \
	media/free-mountain-vector-01.jpg
golden: install models
	rm -f tests/data/detect_media.csv tests/data/detect_media_options.csv tests/data/.detect_media*.settings.json
	$(BIN)/rtatl-detect $(GOLDEN_INPUTS) --out tests/data/detect_media.csv --quiet
	$(BIN)/rtatl-detect media/single_face.mp4 --smooth 0.5 --calibrate --detect-every 1 \
		--out tests/data/detect_media_options.csv --quiet
	rm -f tests/data/.detect_media*.settings.json

lint: install-dev
	$(BIN)/ruff check rtatl_sdk training export tests examples bench

clean:
	rm -rf $(VENV) out .pytest_cache
