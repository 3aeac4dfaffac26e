# Two commands set everything up on a fresh machine: `make run` and `make test` (`make docs` builds the manual).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install run test typecheck docs bench dist clean

# One stamp per extra, each re-installed when setup.py changes: `make run` installs only what the
# demo needs (.[demo]: flask, peewee, waitress), `make test` the full development set (.[dev]);
# either order works, and the stamps keep later runs fast.  pip is quiet: no progress, no build
# output (a failing build still shows its log), no notice about newer pip releases.
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check --no-input

$(BIN)/python:
	@echo "creating $(VENV) ($(PYTHON) -m venv)"
	@$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: setup.py | $(BIN)/python
	@echo "installing kitsession-wsgi[$*] into $(VENV)"
	@$(PIP) install -e '.[$*]'
	@touch $@

install: $(VENV)/.installed-dev

# The server reports an address it refuses (status 2) or cannot listen on (status 3: a port in
# use, ...) in one line of its own, and make fails with that status.
run: $(VENV)/.installed-demo
	@HOST=$(HOST) PORT=$(PORT) $(BIN)/python -m examples.flask_app

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: install
	$(BIN)/python -m mypy --strict kitsession_wsgi

# The documentation site (docs/), warnings as errors, offline; then its inventory must list
# every public name (docs/check_inventory.py).  SPHINXOPTS=-n also checks every reference.
docs: install
	$(BIN)/python -m sphinx -b html -W --keep-going -E -q $(SPHINXOPTS) docs docs/_build/html
	$(BIN)/python docs/check_inventory.py docs/_build/html/objects.inv

bench: install
	$(PIP) install -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run.py

# The sdist and the wheel, built as a user's pip would build them, and their metadata checked
# (twine --strict: no warnings); both must carry the LICENSE.
dist: install
	$(PIP) install build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist . > dist-build.log 2>&1 || { cat dist-build.log; exit 1; }
	! grep -i "deprecat" dist-build.log || { echo "the build printed a deprecation warning (see above)"; exit 1; }
	$(BIN)/python -m twine check --strict dist/*
	tar tzf dist/*.tar.gz | grep -q '/LICENSE$$'
	$(BIN)/python -m zipfile -l dist/*.whl | grep -q 'licenses/LICENSE'
	rm -f dist-build.log

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache docs/_build
