# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: serve test lint format fixtures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,onnx]'
	rm -f $(VENV)/.installed-* && touch $@

serve: $(STAMP)
	$(BIN)/convserve db upgrade
	$(BIN)/convserve db seed
	exec $(BIN)/gunicorn -c deploy/gunicorn.conf.py service.wsgi:app

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerates the PyTorch reference fixtures (not needed for tests) with the bench venv's
# torch==2.13.0 (README, Performance); FIXTURES_PYTHON=... names another interpreter that has it.
FIXTURES_PYTHON ?= .venv-bench/bin/python
fixtures:
	@command -v $(FIXTURES_PYTHON) >/dev/null || { echo "make fixtures needs torch==2.13.0 in .venv-bench; create it with: python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 -e '.[bench]'" >&2; exit 1; }
	$(FIXTURES_PYTHON) tests/fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
