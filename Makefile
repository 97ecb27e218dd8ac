# Two commands: `make demo` and `make test`. Both create .venv when it is missing and install
# everything (pinned in requirements-dev.txt); re-running skips the install when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fashion-installed
PYTEST_ARGS ?=

.PHONY: demo test bench lint install clean docs

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	FASHION_HOME=$${FASHION_HOME:-$(CURDIR)/.fashion-home} $(VENV)/bin/fashion demo --out fashion-demo

test: $(STAMP)
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks

clean:
	rm -rf $(VENV) build *.egg-info

docs: $(STAMP)
	FASHION_DISABLE_PLUGIN_AUTOLOAD=1 $(VENV)/bin/fashion --reference > docs/cli.md
