# Every target sets up what it needs: `make test` and `make demo` work on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
# Debian packages the tests and the demo use (the scripts themselves need only bash, iproute2, and
# iptables or nftables: the firewall backend).
# openssh-server: the multi-host tests start their own sshd inside the sandbox's fake hosts.
APT_PACKAGES = iproute2 iptables nftables iputils-ping util-linux procps dnsmasq-base socat graphviz systemd \
               containernetworking-plugins python3-venv openssh-server openssh-client curl

.PHONY: install bytecode system-deps test lint generate demo bench clean

$(BIN)/nsgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/nsgen  ## the Python package and its test tools, in .venv

# nsgen's modules compiled ahead (only what changed is compiled again). Where Python writes no
# .pyc files (PYTHONDONTWRITEBYTECODE=1, common on CI machines) every nsgen command the tests
# and the benchmark start would otherwise compile all of nsgen's source first: 0.1 s a command.
bytecode: install
	$(BIN)/python -m compileall -q nsgen bench

# (policy-rc.d, while installing, keeps a package from starting its service: the tests want
# no sshd on the machine's own network, only their own, inside the sandbox.)
system-deps:  ## the Debian packages above (skipped when all are present)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
	    $(SUDO) chmod 755 /usr/sbin/policy-rc.d; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  status=$$?; if [ -n "$$guard" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	fi

test: system-deps bytecode  ## unit, property and (as root) sandboxed integration tests
	$(SUDO) env PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check nsgen tests
	$(BIN)/ruff format --check nsgen tests
	$(BIN)/mypy

generate: install  ## re-render generated/ from examples/, and tests/errors/*.txt (review the diff, then commit)
	$(BIN)/python -m nsgen.generate

demo: system-deps bytecode  ## the seed topology, built, checked and removed inside a sandbox
	$(SUDO) $(BIN)/nsgen lab examples/seed.yaml --check -- bash examples/seed-demo.sh

bench: system-deps bytecode  ## setup/teardown times of nsgen and its peers, N = 10..1000; both firewall backends
	bash bench/install.sh
	$(SUDO) $(BIN)/python -m bench.run --out bench/results
	$(SUDO) $(BIN)/python -m bench.firewall --out bench/results
	$(BIN)/python -m bench.render --out bench/results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache nsgen/__pycache__ nsgen/*/__pycache__ bench/__pycache__
