# Two commands do all set-up on a fresh machine: `make app` and `make test`.
.PHONY: app test setup lint bench

setup:
	@bash scripts/setup.sh

app: setup
	.venv/bin/python app.py

test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	for b in benchmarks/bench_*.py; do .venv/bin/python $$b || exit 1; done
