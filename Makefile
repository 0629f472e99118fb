# The two commands README.md opens with: `make demo` and `make test`. Both set everything up first.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench-quick bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/qdrant-distill demo

test: setup
	bash scripts/test-tools.sh
	.venv/bin/python -m pytest -q

# benchmarks: quick (a few minutes, subsets; also run by the test suite) and full (about 2.5 hours on 2 CPU cores)
bench-quick: setup
	.venv/bin/python benchmarks/quality.py --quick
	.venv/bin/python benchmarks/speed.py --quick
	.venv/bin/python benchmarks/backends.py --quick

bench: setup
	.venv/bin/python benchmarks/quality.py
	.venv/bin/python benchmarks/speed.py
	.venv/bin/python benchmarks/backends.py
