# Everything the project needs is installed here: `make demo` and `make test` work on a fresh clone.
# TORCH_REQ defaults to the CPU build on this project's machines; on a GPU box use e.g.
#   make test TORCH_REQ=torch
PYTHON ?= python3
VENV ?= .venv
TORCH_REQ ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO_SRC := demo/clip-vit-tiny-patch14-336
DEMO_OUT := demo-out/clip-vit-tiny-patch14-490

# `make variants`: the InternLM-XComposer variants that need a converted tower, from VARIANTS_SRC into
# VARIANTS_OUT/<preset>. xcr itself decides what is current (same source commit or files, same options):
# a second `make variants` rewrites nothing; a source that moved on is refused (exit 2, saying so) until
# `make variants XCR_FLAGS=--force`.
# internlm-xcomposer2-4khd-7b is not among them: it runs the tower at 336 px as it is.
VARIANTS_SRC ?= openai/clip-vit-large-patch14-336
VARIANTS_OUT ?= out
VARIANTS ?= internlm-xcomposer2-7b internlm-xcomposer2-vl-7b internlm-xcomposer2d5-7b
XCR_FLAGS ?=

.PHONY: install dev demo test lint typecheck fuzz bench demo-checkpoint cli-doc plot-demo clean variants real-libs $(VARIANTS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install "$(TORCH_REQ)"
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.runtime  ## the xcr command in .venv
dev: $(VENV)/.dev          ## plus the test tools

demo: $(VENV)/.dev         ## resize the tiny shipped checkpoint 336 -> 490 px, no network, and load the result
	$(BIN)/xcr resize --model $(DEMO_SRC) --res 490 --out $(DEMO_OUT) --force
	@echo "--- $(DEMO_OUT):"
	@ls -l $(DEMO_OUT)
	@echo "--- loaded with transformers:"
	$(BIN)/python -m tests.check_demo $(DEMO_SRC) $(DEMO_OUT)

variants: $(VARIANTS)  ## the XComposer variants' towers in $(VARIANTS_OUT)/ (make -j works)

$(VARIANTS): $(VENV)/.runtime
	$(BIN)/xcr resize --model $(VARIANTS_SRC) --preset $@ --out $(VARIANTS_OUT)/$@ $(XCR_FLAGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check xcomposer_resize tests benchmarks
	$(BIN)/ruff format --check xcomposer_resize tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

test: lint typecheck  ## lint, type-check and run the test suite
	$(BIN)/python -m pytest -q

# `make real-libs`: a private python with timm and open_clip in $(REAL_LIBS) (not xcr's dependencies); then
#   XCR_REAL_LIBS_PYTHON=$(REAL_LIBS)/bin/python make test
# also runs tests/test_real_libraries.py, which loads xcr's timm and open_clip outputs with those libraries.
REAL_LIBS ?= .real-libs

real-libs:                 ## a python with timm and open_clip for tests/test_real_libraries.py
	TORCH_REQ="$(TORCH_REQ)" PYTHON="$(PYTHON)" bash tests/real_libs_venv.sh $(REAL_LIBS)

fuzz: $(VENV)/.dev         ## many more property-based examples than CI runs
	XCR_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests/test_fuzz.py tests/test_torch_zip.py -k "fuzz or damaged or arbitrary"

bench: $(VENV)/.dev        ## benchmarks; writes docs/performance.md
	$(BIN)/python benchmarks/bench.py --write docs/performance.md

plot-demo: $(VENV)/.dev    ## redraw docs/position-embeddings.png (the README's picture) from the tiny demo
	$(BIN)/xcr resize --model $(DEMO_SRC) --res 490 --out $(DEMO_OUT) --force --quiet --plot docs/position-embeddings.png

cli-doc: $(VENV)/.dev      ## regenerate docs/cli.md from the commands' help
	$(BIN)/python -m tests.make_cli_doc docs/cli.md

demo-checkpoint: $(VENV)/.dev  ## regenerate the shipped tiny checkpoint
	$(BIN)/python -m tests.make_demo $(DEMO_SRC)

clean:
	rm -rf $(VENV) $(REAL_LIBS) demo-out .pytest_cache .mypy_cache .ruff_cache
