# Two commands set everything up on a fresh machine: `make run` and `make test` (`make docs` builds the manual).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install run test typecheck docs bench dist clean

# Re-install when the package metadata changes; the stamp keeps `make test` fast afterwards.
$(VENV)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	HOST=$(HOST) PORT=$(PORT) $(BIN)/python -m examples.flask_app

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: install
	$(BIN)/python -m mypy --strict kitsession_wsgi

# The documentation site (docs/), warnings as errors, offline; then its inventory must list
# every public name (docs/check_inventory.py).  SPHINXOPTS=-n also checks every reference.
docs: install
	$(BIN)/python -m sphinx -b html -W --keep-going -E -q $(SPHINXOPTS) docs docs/_build/html
	$(BIN)/python docs/check_inventory.py docs/_build/html/objects.inv

bench: install
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run.py

# The sdist and the wheel, built as a user's pip would build them, and their metadata checked
# (twine --strict: no warnings); both must carry the LICENSE.
dist: install
	$(BIN)/python -m pip install --quiet build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist . > dist-build.log 2>&1 || { cat dist-build.log; exit 1; }
	! grep -i "deprecat" dist-build.log || { echo "the build printed a deprecation warning (see above)"; exit 1; }
	$(BIN)/python -m twine check --strict dist/*
	tar tzf dist/*.tar.gz | grep -q '/LICENSE$$'
	$(BIN)/python -m zipfile -l dist/*.whl | grep -q 'licenses/LICENSE'
	rm -f dist-build.log

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache docs/_build
