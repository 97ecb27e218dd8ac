# Two commands: `make demo` and `make test`. Both create .venv when it is missing and install
# everything (pinned in requirements-dev.txt); re-running skips the install when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fashion-installed
FILES := $(VENV)/.fashion-files
PYTEST_ARGS ?=

# The package is installed editable in setuptools' strict mode: build/__editable__.*/fashion is a
# tree of links laid out as a wheel installs it (one package from sdk/ plugins/ heads/ registry/),
# which is also what import-linter reads. Edits show at once; a new or removed file needs new
# links, so every target relinks when the list of files under those folders changed (after
# adding a module, run `make install` before calling pytest directly).
EDITABLE := $(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=strict -e .
SOURCES := find sdk plugins heads registry -type f -not -path '*/__pycache__/*' | LC_ALL=C sort

.PHONY: demo test bench bench-full lint lint-imports install links clean docs browser

install: links

# A new venv takes about 7.2 GB (torch's CUDA build alone 5.5 GB): with less free, say so before
# pip fails half-way with "No space left on device".
NEED_GB := 7.5
DISK_CHECK := import shutil, sys; free = shutil.disk_usage(".").free / 1e9; sys.exit(0 if free >= $(NEED_GB) else \
	f"make: {free:.1f} GB free on this disk; a new .venv needs about $(NEED_GB) GB (torch with its CUDA libraries is 5.5 GB). Free some space (old clones, /tmp/pytest-of-*), then rerun.")

$(STAMP): pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -c '$(DISK_CHECK)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements-dev.txt
	$(EDITABLE)
	@$(SOURCES) > $(FILES)
	@touch $@

links: $(STAMP)
	@$(SOURCES) > $(FILES).now
	@cmp -s $(FILES).now $(FILES) || { echo "files added or removed: relinking the editable install"; $(EDITABLE) && cp $(FILES).now $(FILES); }
	@rm -f $(FILES).now

# The demo publishes to the default home ($FASHION_HOME, else ~/.cache/fashion), the one
# Predictor.from_pretrained and `fashion models` read, so its closing snippet works as printed.
demo: links
	$(VENV)/bin/fashion demo --out fashion-demo

# Headless Chromium for the page test (tests/serve/test_page.py): installed with apt when missing,
# where apt-get exists and we are root; otherwise the test is skipped and this says why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "browser: no apt-get here; the page test will be skipped"; \
	elif [ "$$(id -u)" != 0 ]; then echo "browser: not root, cannot apt-get install chromium; the page test will be skipped"; \
	else (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "browser: apt-get install chromium chromium-driver failed; the page test will be skipped"; fi

test: links browser
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

# `make bench`: the quick profile, every row in about 18 minutes on 2 cores (measured on AVX2 and VNNI CPUs) (results in
# benchmarks/results/quick/); `make bench-full`: the published sizes (benchmarks/results/, the
# numbers `make docs` renders into docs/performance.md). BENCH_ARGS: e.g. `--only trust`.
bench: links
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

bench-full: links
	$(PY) -m benchmarks.run --full $(BENCH_ARGS)

lint: lint-imports
	$(VENV)/bin/ruff check sdk plugins heads registry tests docs/plugins benchmarks

# The layer contracts of pyproject.toml ([tool.importlinter]; docs/architecture.md), over the
# installed link tree; `module_cycles` is a contract type of tests/import_graph.py.
lint-imports: links
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info

docs: links
	FASHION_DISABLE_PLUGIN_AUTOLOAD=1 $(VENV)/bin/fashion --reference > docs/cli.md
	$(PY) -m fashion.cli.reference > docs/config.md
	$(PY) -m fashion.cli.reference --plugins docs/plugins.md
	$(PY) -m benchmarks.report --out docs/performance.md
