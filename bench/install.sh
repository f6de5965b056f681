#!/usr/bin/env bash
# Installs what `python -m bench.run` needs beyond nsgen itself, idempotently:
#   - the CNI reference plugins (Debian: containernetworking-plugins -> /usr/lib/cni/)
#   - iputils-ping, iproute2, iptables (the verification ping, method (d)'s netns handling)
#   - pyroute2 and matplotlib, into the project's virtualenv (default: .venv next to bench/)
# Run as root (or with sudo available). Nothing here touches network state.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
venv=${VENV:-$root/.venv}
sudo=""
if [[ $EUID -ne 0 ]]; then sudo=sudo; fi

apt_packages=(containernetworking-plugins iproute2 iptables iputils-ping)
missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  echo "bench/install.sh: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for plugin in bridge host-local; do
  if [[ ! -x /usr/lib/cni/$plugin ]]; then
    echo "bench/install.sh: /usr/lib/cni/$plugin is missing after installing" \
      "containernetworking-plugins" >&2
    exit 1
  fi
done

if [[ ! -x $venv/bin/python ]]; then
  echo "bench/install.sh: no virtualenv at $venv (run 'make install' first, or set VENV)" >&2
  exit 1
fi
if ! "$venv/bin/python" -c 'import pyroute2, matplotlib' 2>/dev/null; then
  echo "bench/install.sh: installing pyroute2 and matplotlib into $venv"
  "$venv/bin/pip" install --quiet 'pyroute2>=0.7' 'matplotlib>=3.7'
fi
echo "bench/install.sh: ready ($("$venv/bin/python" -c 'import pyroute2, matplotlib;
print("pyroute2", pyroute2.__version__, "matplotlib", matplotlib.__version__)'))"
