# The README's commands. Each installs what is missing first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.framequeue-installed

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel, not gigabytes of CUDA.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest

demo: install
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/demo.py

bench: install
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
