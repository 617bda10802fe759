# The two commands of README.md: `make run` and `make test`.
.PHONY: setup run test lint bench

setup:
	@scripts/setup

# Digitize the bundled sample batch on embedded defaults (local disk, SQLite, embedded broker),
# show where each dossier went, then serve the API with a worker on http://127.0.0.1:8000.
run: setup
	.venv/bin/sohoa ingest examples/sample-batch.pdf
	.venv/bin/sohoa serve

test: setup
	.venv/bin/ruff check .
	OMP_THREAD_LIMIT=1 .venv/bin/python -m pytest -n 2 --dist loadfile -q

bench:
	@WITH_BENCH=1 scripts/setup
	.venv/bin/python bench/ocr_throughput.py --pages 24 --repeat 3
	.venv/bin/python bench/memory.py
	.venv/bin/python bench/barcodes.py
	.venv/bin/python bench/faults.py --fast
