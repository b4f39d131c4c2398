# The README's commands. Each installs what is missing first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.framequeue-installed

.PHONY: install test browser deploy-tools demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel, not gigabytes of CUDA.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

BROWSER := tests/api/browser

test: install browser deploy-tools
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest

# The dashboard's browser test: Debian's chromium (installed when we are root and it is missing)
# driven by playwright-core, which never downloads a browser of its own.
browser: $(BROWSER)/node_modules/.package-lock.json
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and we are not root: the browser test will skip"

# tests/deploy checks compose files with docker-compose and the alert rules with promtool (Debian's
# prometheus package carries it), installed like chromium; without them those two checks skip.
deploy-tools:
	@command -v promtool >/dev/null && command -v docker-compose >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		prometheus docker-compose >/dev/null; } || \
		echo "promtool or docker-compose is not installed and we are not root: those deploy checks will skip"

$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package-lock.json
	cd $(BROWSER) && npm ci --no-audit --no-fund --silent

demo: install
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/demo.py

bench: install
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
