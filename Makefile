# Two commands: `make demo` and `make test`. Both create .venv if missing and install into it;
# re-running them reinstalls nothing that is already there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The versions this project is tested with; local wheels on the dev machines. Jetson users
# install NVIDIA's torch build instead and skip this pin.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
DEMO_CONFIG := configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py
DEMO_DIR := work_dirs/demo

.PHONY: install demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_DIR)/last_checkpoint --trivial-baseline \
		--out $(DEMO_DIR)/metrics.json --show-dir $(DEMO_DIR)/pictures
	@echo "Pictures of predictions: $(DEMO_DIR)/pictures/"

lint: install
	$(VENV)/bin/ruff check vision_mtl tools tests configs deploy
	$(VENV)/bin/ruff format --check vision_mtl tools tests configs deploy

test: lint
	# yapf (imported by mmengine) pickles its grammar into ~/.cache/YAPF on first import; do it
	# once here, so two test workers never read each other's half-written cache.
	$(PY) -c "import yapf"
	$(VENV)/bin/pytest -n 2 -q tests

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
