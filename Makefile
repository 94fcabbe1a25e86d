# Every target installs what it needs first, on a fresh machine with only Python and pip.
# torch is installed (pinned, CPU build where that is what the index offers) only when it is
# missing, so an existing CUDA torch is never replaced.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
DATA ?= data/synthetic

.PHONY: install demo test lint bench clean-data

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -q -e ".[dev]"

demo: install
	$(PYTHON) tools/demo.py --data $(DATA)

test: install
	$(PYTHON) -m pytest tests

lint: install
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) tools/benchmark.py --out bench/benchmark.json
