# carepath: the two commands of the README, and the steps they are made of.
#
#   make demo   set everything up, then carepath demo: the three jobs on the lab, with a summary
#   make test   set everything up, run lint, unit, integration and Molecule tests
#
# Set-up is idempotent and cached: host packages are installed only when missing, the
# virtualenv only when pyproject.toml changed, the lab images only when their recipe changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
# Lab containers' ulimits: no higher than what this shell may grant (see .config/molecule/config.yml).
export CAREPATH_LAB_NOFILE := $(shell n=$$(ulimit -Hn); [ "$$n" = unlimited ] || [ "$$n" -gt 20000 ] && n=20000; echo $$n)
export CAREPATH_LAB_NPROC := $(shell n=$$(ulimit -Hu); [ "$$n" = unlimited ] || [ "$$n" -gt 32768 ] && n=32768; echo $$n)

# Host packages, installed without apt's recommendations (those bring a desktop's worth with
# chromium and qemu); what carepath needs is named:
#   podman runc netavark aardvark-dns   lab containers (rootful podman, its network stack and DNS)
#   iptables                            netavark's firewall backend on Debian 12 (a lab network fails without it)
#   debootstrap debian-archive-keyring gpgv   the lab images, with Debian's release signatures checked
#   openssh-client                      Ansible's transport to the lab hosts
#   qemu-system-x86 qemu-utils e2fsprogs   real-kernel lab guests (qcow2 disks built from the image)
#   chromium fonts-liberation           the auditor's report: headless rendering, PDF and its tests
#   wrk                                 load during blue-green cutovers (tests and benchmarks)
HOST_PACKAGES := podman runc netavark aardvark-dns iptables debootstrap debian-archive-keyring gpgv openssh-client \
	qemu-system-x86 qemu-utils e2fsprogs chromium fonts-liberation wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Parallel test workers; the lab tests stay on one worker, Molecule and lint run beside them.
PYTEST_WORKERS ?= 2

.PHONY: setup host-packages venv images demo test lint unit integration molecule clean

setup: host-packages venv images

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing host packages:" $$missing; \
	  $(SUDO) apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating the virtualenv $(VENV) (pinned dependencies)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

images: host-packages venv
	@echo "==> lab images (built with debootstrap only when missing or out of date)"
	$(SUDO) $(BIN)/carepath lab images

demo: setup
	$(SUDO) $(BIN)/carepath demo

test: setup
	$(SUDO) env PATH="$(PATH)" $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 tests

lint: venv
	$(BIN)/ansible-lint

unit: venv
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests/unit tests/test_lint.py

integration: setup
	$(SUDO) env PATH="$(PATH)" $(BIN)/pytest tests/integration

molecule: setup
	$(SUDO) env PATH="$(PATH)" $(BIN)/molecule test -s $(or $(SCENARIO),$(error set SCENARIO=<role>))

clean:
	-$(BIN)/carepath lab down
	rm -rf $(VENV) .cache .carepath
