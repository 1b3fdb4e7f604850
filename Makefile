# Foresight developer entry points. Every target installs what it needs first.
#   make install   virtualenv + package + dev and bench extras, Kafka jars (Maven Central)
#   make lint      ruff
#   make test      lint, unit tests, doctests, integration tests on the real local Kafka
#                  (installs the Debian packages of Prometheus, Alertmanager and Kannel when
#                  missing and run as root: make ops-packages)
#   make demo      Kafka + worker + simulator for ~2 minutes with a live summary (DURATION=secs)
#   make bench     the ingestion benchmark against its baselines (EVENTS=, PARTITIONS=)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DURATION ?= 120
EVENTS ?= 200000
PARTITIONS ?= 4

.PHONY: install lint test unit integration demo bench kafka-jars ops-packages clean

# Debian packages the operations tests run for real (Prometheus, Alertmanager, Kannel).
OPS_PACKAGES := prometheus prometheus-alertmanager kannel kannel-extras chromium chromium-driver fonts-wqy-microhei
OPS_BINARIES := /usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-alertmanager /usr/bin/amtool /usr/sbin/bearerbox /usr/lib/kannel/test/fakesmsc /usr/bin/chromium /usr/bin/chromedriver /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

install: $(STAMP) kafka-jars

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/foresight kafka fetch

# Installed when missing and running as root (CI); otherwise says how and goes on (the
# tests that need them then fail and say which binary is missing).
ops-packages:
	@missing=""; for b in $(OPS_BINARIES); do [ -e $$b ] || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages for the operations tests: $(OPS_PACKAGES)"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(OPS_PACKAGES) >/dev/null; \
	else \
	  echo "missing:$$missing -- run: sudo apt-get install $(OPS_PACKAGES)"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration" --doctest-modules agents schemas streams sinks tests

integration: install ops-packages
	$(BIN)/pytest -q -m integration tests

test: install ops-packages lint
	$(BIN)/pytest -q --doctest-modules agents schemas streams sinks tests

demo: install
	$(BIN)/foresight demo --duration $(DURATION)

bench: install
	$(BIN)/foresight bench ingest --events $(EVENTS) --partitions $(PARTITIONS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
