# Everything the project needs is installed by these targets; see README.md.
PY := .venv/bin/python

.PHONY: setup labelstudio data demo screenshot test test-unit test-integration clean

## setup: create/update the project environment in .venv (builds mmcv once) and the demo data
setup:
	bash scripts/setup.sh
	$(PY) -m loop.common.demo_data --if-missing

## labelstudio: install the Label Studio server in its own environment, .venv-labelstudio
labelstudio:
	bash scripts/setup_labelstudio.sh

## data: regenerate the synthetic demo dataset in data/demo
data: setup
	$(PY) -m loop.common.demo_data

## demo: the whole loop on this machine with a simulated annotator; services stay up until Ctrl-C
demo: setup labelstudio
	$(PY) -m loop.run stage=demo

## screenshot: docs/labelstudio-task.png from the running demo, in headless Chromium (apt-get install chromium)
screenshot: setup
	$(PY) -m pip install -q -c constraints.txt "playwright==1.65.2"
	$(PY) scripts/screenshot.py

## test: the import contracts (pyproject.toml), then everything, unit and integration (real Label Studio, MLflow, mmdet)
test: setup labelstudio
	.venv/bin/lint-imports
	$(PY) -m pytest

## test-unit: fast tests only, no services
test-unit: setup
	.venv/bin/lint-imports
	$(PY) -m pytest -m "not integration"

test-integration: setup labelstudio
	$(PY) -m pytest -m integration

clean:
	rm -rf runs .pytest_cache
