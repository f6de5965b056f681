#!/usr/bin/env bash
# The tutorial's "let's give it a spin", run inside `nsgen lab examples/seed.yaml`.
# 192.0.2.10 is the lab's simulated internet host (a documentation address).
set -euo pipefail
spin() {
  echo "+ $*"
  "$@"
}
spin ip netns exec red ping -c 2 -W 1 192.168.15.1    # red -> blue
spin ip netns exec blue ping -c 2 -W 1 192.168.15.2   # blue -> red
spin ping -c 2 -W 1 192.168.15.2                      # host -> red over br0
spin ip netns exec blue ping -c 2 -W 1 192.0.2.10     # blue -> "internet", masqueraded
spin ip netns exec blue cat /etc/resolv.conf          # blue's DNS settings
spin ip netns exec blue ip route                      # blue's routes
echo "all of the tutorial's checks passed"
