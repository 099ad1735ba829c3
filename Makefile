# OPDesk developer commands. `make` alone lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := src/opdesk/static/vendor

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The Indic fonts: for each script and each weight the pages use (400 text and buttons,
# 600 table headers, 700 headings and bold), only the face of that script's own letters
# (the fontsource block "noto-sans-<script>-<script>-<weight>-normal"), WOFF2 only, and
# without the rupee signs in its unicode-range: Latin text and "₹ 500" stay in the
# system font and never download an Indic face. (No page links the Latin subsets.)
FONT_SCRIPTS := devanagari tamil
FONT_WEIGHTS := 400 600 700

$(VENDOR)/.installed: package.json package-lock.json Makefile
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/htmx $(VENDOR)/pico $(VENDOR)/swagger-ui
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx/
	cp node_modules/@picocss/pico/css/pico.jade.min.css $(VENDOR)/pico/
	cp node_modules/swagger-ui-dist/swagger-ui.css node_modules/swagger-ui-dist/swagger-ui-bundle.js $(VENDOR)/swagger-ui/
	for script in $(FONT_SCRIPTS); do \
	  src=node_modules/@fontsource/noto-sans-$$script; dst=$(VENDOR)/fonts/$$script; \
	  mkdir -p $$dst/files || exit 1; \
	  for weight in $(FONT_WEIGHTS); do \
	    face=noto-sans-$$script-$$script-$$weight-normal; \
	    sed -n "/\/\* $$face \*\//,/^}/p" $$src/$$weight.css \
	      | sed -e "s/, url([^)]*\.woff) format('woff')//" -e 's/,U+20A8//; s/,U+20B9//' \
	      > $$dst/$$weight.css && grep -q unicode-range $$dst/$$weight.css \
	      && cp $$src/files/$$face.woff2 $$dst/files/ || exit 1; \
	  done; \
	done
	# documents/pdf.py draws the Latin of consent PDFs with this package's Latin subsets.
	cp node_modules/@fontsource/noto-sans-devanagari/files/noto-sans-devanagari-{latin,latin-ext}-400-normal.woff2 \
	  $(VENDOR)/fonts/devanagari/files/
	touch $@

.PHONY: setup
setup: $(BIN)/.installed $(VENDOR)/.installed ## Create the virtualenv, install Python and npm dependencies

.PHONY: run
run: setup ## Run OPDesk with the demo clinic on http://127.0.0.1:8000 (embedded PostgreSQL)
	$(BIN)/opdesk demo
	$(BIN)/opdesk serve

.PHONY: test
test: setup ## Run the whole test suite (embedded PostgreSQL unless OPDESK_DATABASE_URL is set)
	$(BIN)/pytest -n 2 --dist loadgroup

.PHONY: lint
lint: setup ## ruff check, ruff format --check, mypy, import layers (lint-imports)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: bench
bench: setup ## Run the benchmarks and print their figures
	$(BIN)/python -m bench

.PHONY: mutate
mutate: setup ## Mutation testing of the invariant modules (slow, not in CI); ONLY='idempotency ...'
	$(BIN)/python tools/mutate.py $(ONLY)

.PHONY: screenshots
screenshots: setup ## Screenshots of the pages at 1280 and 390 px into screenshots/
	$(BIN)/pytest tests/browser -q

.PHONY: clean
clean: ## Remove the virtualenv, npm packages, vendored assets and local data
	rm -rf $(VENV) node_modules $(VENDOR) var
