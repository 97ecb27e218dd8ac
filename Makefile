# Two commands: `make demo` and `make test`. Both create .venv when it is missing and install
# everything (pinned in requirements-dev.txt); re-running skips the install when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fashion-installed
PYTEST_ARGS ?=

.PHONY: demo test bench lint lint-imports install clean docs browser

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# The demo publishes to the default home ($FASHION_HOME, else ~/.cache/fashion), the one
# Predictor.from_pretrained and `fashion models` read, so its closing snippet works as printed.
demo: $(STAMP)
	$(VENV)/bin/fashion demo --out fashion-demo

# Headless Chromium for the page test (tests/serve/test_page.py): installed with apt when missing,
# where apt-get exists and we are root; otherwise the test is skipped and this says why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "browser: no apt-get here; the page test will be skipped"; \
	elif [ "$$(id -u)" != 0 ]; then echo "browser: not root, cannot apt-get install chromium; the page test will be skipped"; \
	else (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "browser: apt-get install chromium chromium-driver failed; the page test will be skipped"; fi

test: $(STAMP) browser
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks
	$(PY) -m tests.import_graph
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run

lint: $(STAMP) lint-imports
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks

# The layer contracts of pyproject.toml ([tool.importlinter]; docs/architecture.md), run by
# import-linter over a copy of the sources laid out as installed (tests/import_graph.py).
lint-imports: $(STAMP)
	$(PY) -m tests.import_graph

clean:
	rm -rf $(VENV) build *.egg-info

docs: $(STAMP)
	FASHION_DISABLE_PLUGIN_AUTOLOAD=1 $(VENV)/bin/fashion --reference > docs/cli.md
	$(PY) -m fashion.cli.reference > docs/config.md
	$(PY) -m fashion.cli.reference --plugins docs/plugins.md
