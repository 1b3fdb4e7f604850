# Foresight developer entry points. Every target installs what it needs first.
#   make install   virtualenv + package + dev and bench extras, Kafka jars (Maven Central)
#   make lint      ruff
#   make test      lint, unit tests, doctests, integration tests on the real local Kafka
#   make demo      Kafka + worker + simulator for ~2 minutes with a live summary (DURATION=secs)
#   make bench     the ingestion benchmark against its baselines (EVENTS=, PARTITIONS=)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DURATION ?= 120
EVENTS ?= 200000
PARTITIONS ?= 4

.PHONY: install lint test unit integration demo bench kafka-jars clean

install: $(STAMP) kafka-jars

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/foresight kafka fetch

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration" --doctest-modules agents schemas streams tests

integration: install
	$(BIN)/pytest -q -m integration tests

test: install lint
	$(BIN)/pytest -q --doctest-modules agents schemas streams tests

demo: install
	$(BIN)/foresight demo --duration $(DURATION)

bench: install
	$(BIN)/foresight bench ingest --events $(EVENTS) --partitions $(PARTITIONS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
