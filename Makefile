# The README's two commands.
.PHONY: doctor test bench lint

doctor:
	./scripts/install-deps
	-halfopen doctor

test:
	./scripts/install-deps --test
	python3 -m pytest -q -ra

bench:
	./scripts/install-deps --test
	python3 bench/run.py

# ruff, mypy and the import layers (docs/design.md); all three must be clean
lint:
	ruff check src tests bench
	mypy
	python3 -m pytest -q -p no:cacheprovider tests/unit/test_layers.py
