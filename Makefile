# The two commands of the README:
#   make book   build the whole executed book (HTML) on the embedded synthetic dataset;
#               takes screenshots too when a Chromium is on the PATH, and needs none
#   make test   run every test: unit tests, every notebook in fast mode, the book, a browser check;
#               installs Chromium with apt-get first when none is found (root or sudo)
#
# Both use the active virtual environment (or conda environment) when there is one,
# and otherwise create ./.venv and install the project into it.
SHELL := /bin/bash
PYTHON ?= python3

ifneq ($(VIRTUAL_ENV),)
  ENV := $(VIRTUAL_ENV)
else ifneq ($(CONDA_PREFIX),)
  ENV := $(CONDA_PREFIX)
else
  ENV := $(CURDIR)/.venv
endif
PY := $(ENV)/bin/python
STAMP := $(ENV)/.cral-book-installed

.PHONY: book test env unit book-check clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(ENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[book,dev,dicom]"
	@touch $(STAMP)

# BOOK_FLAGS: extra flags of `tools/book.py all` (make test passes --no-screenshots: its browser
# check takes them)
book: env
	$(PY) tools/book.py all $(BOOK_FLAGS)

unit: env
	$(PY) -m pytest -m "not book" --durations=10

book-check: env
	bash tools/ensure_chromium.sh
	$(PY) -m pytest -m book

# The browser comes first: a machine that cannot get one fails in seconds, not after the book.
test: env
	@start=$$(date +%s); \
	bash tools/ensure_chromium.sh && \
	$(MAKE) --no-print-directory unit && \
	$(MAKE) --no-print-directory book BOOK_FLAGS=--no-screenshots && \
	$(MAKE) --no-print-directory book-check && \
	echo "make test: all passed in $$(( $$(date +%s) - start )) s"

clean:
	rm -rf _build
