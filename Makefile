# Routine tasks. SEQ2SEQ_DATA points at the corpora (see README).
SEQ2SEQ_DATA ?= ../shared/data
export SEQ2SEQ_DATA

.PHONY: install test lint docs train sp500
install:            ## CPU torch first (a bare `pip install torch` may pull a CUDA build), then the package
	python -c "import torch" 2>/dev/null || python -m pip install "torch==2.13.0"
	python -m pip install -e ".[dev]"
test:               ## the CI command
	bash .ci/run
lint:
	python -m ruff check seq2seq tests scripts
	python scripts/recipe_docs.py --check
	python scripts/cli_docs.py --check
docs:               ## regenerate the generated reference pages
	python scripts/recipe_docs.py > docs/recipes.md
	python scripts/cli_docs.py > docs/cli.md
train:              ## the main job
	python -m seq2seq.train recipes/en-fr.yaml
sp500:              ## the S&P 500 lab: train, then forecast and plot on the test span
	python -m seq2seq.train recipes/sp500.yaml
	python -m seq2seq.forecast runs/sp500
