# The README's two commands (doctor, test), and the rest.
PREFIX ?= /opt/halfopen
BINDIR ?= /usr/local/bin
MANDIR ?= /usr/local/share/man
PYTHON ?= python3

.PHONY: doctor install test pyz man bench lint

# Install halfopen into its own venv (PREFIX), link the command (BINDIR) and halfopen(8)
# (MANDIR), and run the doctor on this host.
# The doctor's verdicts 0-2 (ok, warning, critical) are not make failures.
doctor: install
	@$(PREFIX)/bin/halfopen doctor; rc=$$?; [ $$rc -le 2 ]

install:
	./scripts/install-deps
	PREFIX=$(PREFIX) BINDIR=$(BINDIR) MANDIR=$(MANDIR) PYTHON=$(PYTHON) ./scripts/install

# Everything the tests need, then the whole suite on the built wheel, per Python.
test:
	./scripts/test

# dist/halfopen.pyz: one file, any python3 from 3.9 to 3.13.
pyz:
	PYTHON=$(PYTHON) ./scripts/build-pyz

# docs/halfopen.8 from the commands' help.
man:
	PYTHONPATH=src $(PYTHON) -m halfopen --man > docs/halfopen.8

bench:
	./scripts/install-deps --test
	$(PYTHON) -m venv build/venv-bench
	build/venv-bench/bin/python -m pip -q install . psutil
	build/venv-bench/bin/python bench/run.py

# ruff, mypy and the import layers (docs/design.md); all three must be clean.
# They run from a venv of their own (build/venv-lint), made on first use.
LINT_VENV = build/venv-lint
lint: $(LINT_VENV)/.ok
	$(LINT_VENV)/bin/ruff check src tests bench
	$(LINT_VENV)/bin/mypy
	# the layers of this checkout, not of the copy installed in the lint venv
	PYTHONPATH=src $(LINT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

$(LINT_VENV)/.ok: pyproject.toml
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip -q --disable-pip-version-check install '.[lint,test]'
	touch $@
