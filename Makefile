# The README's two commands.
.PHONY: doctor test bench

doctor:
	./scripts/install-deps
	-halfopen doctor

test:
	./scripts/install-deps --test
	python3 -m pytest -q -ra

bench:
	./scripts/install-deps --test
	python3 bench/run.py
