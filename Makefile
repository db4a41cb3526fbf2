# The two commands (README): `make run` runs the bot, `make test` runs every test. Both set up
# everything they need on a fresh machine (a virtualenv with the pinned dependencies).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
# Two workers (this is a 2-core machine); each gets its own SQLite files and PostgreSQL database.
PYTEST_ARGS ?= -n 2
# The bot and the agent SDK (sdk/, with its MCP extra: its tests run here too).
STAMP = $(VENV)/.installed-$(shell cat pyproject.toml sdk/pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint bench

$(STAMP): pyproject.toml sdk/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e './sdk[mcp]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	@if [ -z "$$AOP_REGISTRY" ] && [ ! -f aops.yml ]; then echo "no ./aops.yml: using the example registry aops.example.yml"; fi
	AOP_REGISTRY=$${AOP_REGISTRY:-$$( [ -f aops.yml ] && echo aops.yml || echo aops.example.yml )} \
	  sh -c '$(BIN)/aopbot migrate && exec $(BIN)/aopbot serve'

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench
