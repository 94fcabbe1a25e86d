# Every target installs what it needs first, on a fresh machine with only Python and pip.
# torch is installed (pinned, CPU build where that is what the index offers) only when it is
# missing, so an existing CUDA torch is never replaced.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
DATA ?= data/synthetic

.PHONY: install demo test lint bench clean-data

# Constraints pin torch to what is installed, so no extra (mmdet3d) can replace it. numpy is left
# to the package's own bound (<2): a preinstalled numpy 2 is replaced, not pinned.
CONSTRAINTS ?= build/pip-constraints.txt

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	@mkdir -p $(dir $(CONSTRAINTS)) && $(PYTHON) -c "import importlib.metadata as m, importlib.util as u; \
	print('\n'.join(f'{p}=={m.version(p)}' for p in ('torch',) if u.find_spec(p)))" > $(CONSTRAINTS)
	$(PYTHON) -m pip install -q -e ".[dev,mmdet3d]" -c $(CONSTRAINTS)

demo: install
	$(PYTHON) tools/demo.py --data $(DATA)

test: install
	$(PYTHON) -m pytest tests

lint: install
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) tools/benchmark.py --out bench/benchmark.json
