# Ledgerlink: `make demo` runs the demo exchange, `make test` runs the tests. Everything else is optional.
VENV := .venv
PY := $(VENV)/bin/python
INSTALL_INPUTS := pyproject.toml requirements.txt requirements-dev.txt
STAMP := $(VENV)/.installed-$(shell cat $(INSTALL_INPUTS) | sha1sum | cut -c1-12)

.PHONY: demo test up bench sandbox-up sandbox-down clean install

install: $(STAMP)

# The pinned requirements (runtime and test), then Ledgerlink itself, editable: the `ledgerlink` command,
# and the packages under include/ importable without PYTHONPATH. setuptools leaves ledgerlink.egg-info
# beside the packages, and include/ is on sys.path (env.sh, pytest): Airflow would find the plugin's entry
# point twice there and report the second as an import error, so it goes.
$(STAMP): $(INSTALL_INPUTS)
	test -x $(VENV)/bin/pip || { rm -rf $(VENV); python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -rf include/ledgerlink.egg-info
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
