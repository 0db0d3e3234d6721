# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

BUNDLED := prescription_review loyalty pos_sync wechat_channel

run: $(STAMP)
	$(BIN)/pharmo2o init
	$(BIN)/pharmo2o plugins enable $(BUNDLED)
	$(BIN)/pharmo2o demo
	$(BIN)/pharmo2o serve --bind 127.0.0.1:8000

test: $(STAMP)
	bash scripts/test.sh

clean:
	rm -rf $(VENV) pharmo2o.db pharmo2o.toml .pytest_cache
