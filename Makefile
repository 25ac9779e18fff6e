# qubemail: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export NO_COLOR := 1
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help controller setup demo demo-down test lint unit molecule bench docs clean

help:
	@echo "make controller only the venv (.venv) with the pinned Ansible, to manage a real host (README)"
	@echo "make setup      what demo and test need: Docker, base image, Chromium, venv with the test tools"
	@echo "make demo       bring up a demo appliance on this machine (DEMO_ARGS='-e k=v' passes through)"
	@echo "make demo-down  remove the demo appliance"
	@echo "make test       every test: yamllint, ansible-lint, pytest units, molecule scenarios"
	@echo "make bench      benchmarks against a converged appliance (see docs/PERFORMANCE.md)"
	@echo "make docs       write each role's defaults/main.yml and README table from meta/argument_specs.yml"

controller:
	@bash scripts/controller-setup.sh

setup:
	@bash scripts/host-setup.sh

demo: setup
	@bash scripts/demo.sh up $(DEMO_ARGS)

demo-down:
	@bash scripts/demo.sh down

test: setup lint unit molecule

lint:
	yamllint --strict .
	ansible-lint --offline
	python3 scripts/role-docs.py --check

docs:
	python3 scripts/role-docs.py

unit:
	python -m pytest -q tests/unit

# The scenarios share nothing (own containers, networks and addresses), so
# they run side by side: MOLECULE_JOBS at once (3: a converge leaves this
# machine's CPUs half idle, and much of a verify step waits for mail),
# longest first; each one's output is shown whole
# when it ends (scripts/molecule-scenario.sh). `make molecule-lists` runs one.
SCENARIOS ?= lists upgrade default debian12 ssh
MOLECULE_JOBS ?= 3
molecule:
	@$(MAKE) --no-print-directory -k -j$(MOLECULE_JOBS) $(addprefix molecule-,$(SCENARIOS))

molecule-%:
	@bash scripts/molecule-scenario.sh $*

bench: setup
	@python3 bench/pop_before_smtp_hostile.py
	@bash bench/run.sh
	@bash bench/run.sh lists
	@bash bench/run.sh webmail
	@bash bench/run.sh rspamd

clean: demo-down
	rm -rf .cache .pytest_cache
