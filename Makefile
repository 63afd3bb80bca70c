# The two commands of the README:
#   make demo   set up .venv, then generate the shapes data, train and test
#   make test   set up .venv, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export VOVDET_VENV := $(abspath $(VENV))

.PHONY: setup demo test
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/run_demo.py

test: setup
	$(PY) -m pytest tests
