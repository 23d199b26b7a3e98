# `make test` and `make demo` install whatever is missing (idempotent), then run.
# PYTHON defaults to a project virtualenv in .venv; point it at another interpreter to use an
# existing environment (an importable detectron2 there is left alone):  make test PYTHON=python
PYTHON ?= .venv/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo demo-checkpoint clean

install:
	@if [ "$(PYTHON)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PYTHON) tools/install_detectron2.py
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

test: install
	$(PYTHON) -m pytest -q $(PYTEST_ARGS) tests

demo: install
	$(PYTHON) tools/run_demo.py --output output/demo

# Rebuild checkpoints/handobj_tiny_fast_synthetic.pth, the weights make demo's teacher starts
# from (CPU, about an hour; tools/make_demo_checkpoint.py).
demo-checkpoint: install
	$(PYTHON) tools/make_demo_checkpoint.py --output output/demo_checkpoint \
		--checkpoint checkpoints/handobj_tiny_fast_synthetic.pth

clean:
	rm -rf output
