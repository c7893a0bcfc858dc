# Ledgerlink: `make demo` runs the demo exchange, `make test` runs the tests. Everything else is optional.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

.PHONY: demo test up bench sandbox-up sandbox-down clean install

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(VENV)/bin/pip || { rm -rf $(VENV); python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	bash scripts/demo.sh

test: install
	bash scripts/test.sh

up: install
	bash scripts/up.sh

bench: install
	bash scripts/bench.sh

sandbox-up: install
	bash -c 'source scripts/env.sh && python -m sandbox up --dir "$$SANDBOX_DIR"'

sandbox-down:
	bash -c 'source scripts/env.sh && python -m sandbox down --dir "$$SANDBOX_DIR"'

clean: sandbox-down
	rm -rf .airflow .ledgerlink .sandbox bench/work
