#!/usr/bin/env bash
# check.sh for the nsgen topology k8s-dual
#   two dual-stack k8s-style nodes (host-gw), four pods, dual-stack ClusterIP and NodePort services
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# 268ba76af1369386d1a6b5198877c6073fe8acdb6fda161f2cdea54819f39dca.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
#
# It runs the topology's 12 declared checks against the live network, each bounded by
# its own timeout, prints one line per check and a closing "N passed, N failed" line,
# and exits 1 if any check failed. Needs root (it enters the namespaces), ping and
# timeout; a tcp check that starts its own listener needs socat or python3, a dns check
# getent. An IPv6 target is probed over IPv6. With NSGEN_CHECK_FORMAT=tsv it prints
# tab-separated fields instead (number, PASS/FAIL, expect, ms, check, detail), as
# `nsgen check` reads them.
set -uo pipefail

readonly NSGEN_TOPOLOGY=k8s-dual
nsgen_passed=0
nsgen_failed=0
nsgen_listener=""
trap '[[ -z $nsgen_listener ]] || kill "$nsgen_listener" 2>/dev/null' EXIT

# Run a command in a namespace; "host" is the root namespace.
nsgen_in() {
  local netns=$1
  shift
  if [[ $netns == host ]]; then "$@"; else ip netns exec "$netns" "$@"; fi
}
nsgen_now_us() { echo "${EPOCHREALTIME/./}"; }
nsgen_elapsed_ms() {
  local us=$(($(nsgen_now_us) - $1))
  printf '%d.%d' $((us / 1000)) $((us % 1000 / 100))
}

# Probes: each succeeds only if the target answered, and leaves what it saw in
# nsgen_detail (and a time in nsgen_ms).
nsgen_probe_ping() { # netns address timeout whole-seconds
  local out
  if out=$(nsgen_in "$1" timeout "$3" ping -c 1 -W "$4" -q "$2" 2>&1); then
    out=${out##*= }
    nsgen_ms=${out%%/*}
    nsgen_detail="reply"
    return 0
  fi
  nsgen_detail="no reply within $3 s"
  return 1
}
nsgen_probe_tcp() { # netns address port timeout
  local start status
  start=$(nsgen_now_us)
  # bash itself opens the connection (/dev/tcp); timeout bounds a SYN nobody answers.
  # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash, on purpose
  nsgen_in "$1" timeout "$4" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
  status=$?
  if ((status == 0)); then
    nsgen_ms=$(nsgen_elapsed_ms "$start")
    nsgen_detail="connected"
    return 0
  fi
  if ((status == 124)); then nsgen_detail="no answer within $4 s"; else nsgen_detail="refused"; fi
  return 1
}
nsgen_probe_tcp_listening() { # listen-netns port netns address timeout
  local tries status inside=() listen=TCP4-LISTEN family=AF_INET
  # Started directly (not through a function), so that $! is the listener itself.
  [[ $1 == host ]] || inside=(ip netns exec "$1")
  if [[ $4 == *:* ]]; then listen=TCP6-LISTEN family=AF_INET6; fi  # an IPv6 target
  if command -v socat >/dev/null; then
    "${inside[@]}" socat "$listen:$2,reuseaddr,fork" SYSTEM:'echo nsgen' </dev/null >/dev/null 2>&1 &
  elif command -v python3 >/dev/null; then
    "${inside[@]}" python3 -c 'import socket,sys
s = socket.create_server(("", int(sys.argv[1])), family=getattr(socket, sys.argv[2]))
while True: s.accept()[0].close()' "$2" "$family" </dev/null >/dev/null 2>&1 &
  else
    nsgen_detail="cannot start a listener: install socat or python3"
    return 2
  fi
  nsgen_listener=$!
  for ((tries = 0; tries < 100; tries++)); do
    if [[ -n $(nsgen_in "$1" ss -Hltn "sport = :$2" 2>/dev/null) ]]; then break; fi
    sleep 0.02
  done
  nsgen_probe_tcp "$3" "$4" "$2" "$5"
  status=$?
  kill "$nsgen_listener" 2>/dev/null
  wait "$nsgen_listener" 2>/dev/null
  nsgen_listener=""
  return "$status"
}
nsgen_probe_dns() { # netns name timeout [family: 4 asks for A records, 6 for AAAA]
  local start out database=hosts
  case ${4:-} in 4) database=ahostsv4 ;; 6) database=ahostsv6 ;; esac
  start=$(nsgen_now_us)
  if out=$(nsgen_in "$1" timeout "$3" getent "$database" "$2"); then
    nsgen_ms=$(nsgen_elapsed_ms "$start")
    nsgen_detail="resolves to ${out%% *}"
    # without an AAAA record, getent ahostsv6 answers with the IPv4 address, mapped
    if [[ $out == "::ffff:"* ]]; then nsgen_detail="has no AAAA record (${out%% *})"; return 1; fi
    return 0
  fi
  nsgen_detail="does not resolve within $3 s"
  return 1
}

# One check: run its probe, compare with what is expected, print the verdict.
nsgen_check() { # number label expect probe...
  local number=$1 label=$2 expect=$3 got verdict status
  shift 3
  nsgen_detail="" nsgen_ms=""
  "$@"
  status=$?
  if ((status == 0)); then got=reach; else got=blocked; fi
  if ((status <= 1)) && [[ $got == "$expect" ]]; then
    verdict=PASS
    nsgen_passed=$((nsgen_passed + 1))
  else
    verdict=FAIL
    nsgen_failed=$((nsgen_failed + 1))
  fi
  if [[ ${NSGEN_CHECK_FORMAT:-} == tsv ]]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$number" "$verdict" "$expect" "$nsgen_ms" "$label" "$nsgen_detail"
  elif [[ $verdict == PASS && $expect == reach ]]; then
    echo "PASS $label${nsgen_ms:+ $nsgen_ms ms}"
  elif [[ $verdict == PASS ]]; then
    echo "PASS $label blocked as expected ($nsgen_detail)"
  else
    echo "FAIL $label: expected $expect, got $nsgen_detail"
  fi
}

echo "[nsgen] checking $NSGEN_TOPOLOGY: 12 check(s)" >&2

# ---- check 1/12: client-a -> 10.244.0.2 (web-a) ping, expect reach
nsgen_check 1 'client-a -> 10.244.0.2 (web-a) ping' reach nsgen_probe_ping client-a 10.244.0.2 2 2

# ---- check 2/12: client-a -> fd00:10:244::2 (web-a) ping, expect reach
nsgen_check 2 'client-a -> fd00:10:244::2 (web-a) ping' reach nsgen_probe_ping client-a fd00:10:244::2 2 2

# ---- check 3/12: client-a -> 10.244.1.2 (web-b) ping, expect reach
nsgen_check 3 'client-a -> 10.244.1.2 (web-b) ping' reach nsgen_probe_ping client-a 10.244.1.2 2 2

# ---- check 4/12: client-a -> fd00:10:244:1::2 (web-b) ping, expect reach
nsgen_check 4 'client-a -> fd00:10:244:1::2 (web-b) ping' reach nsgen_probe_ping client-a fd00:10:244:1::2 2 2

# ---- check 5/12: client-b -> 10.10.0.1 (node1) ping, expect reach
nsgen_check 5 'client-b -> 10.10.0.1 (node1) ping' reach nsgen_probe_ping client-b 10.10.0.1 2 2

# ---- check 6/12: client-b -> fd00:10:10::1 (node1) ping, expect reach
nsgen_check 6 'client-b -> fd00:10:10::1 (node1) ping' reach nsgen_probe_ping client-b fd00:10:10::1 2 2

# ---- check 7/12: client-b -> 10.244.0.2:8080 (web-a) tcp, expect reach
nsgen_check 7 'client-b -> 10.244.0.2:8080 (web-a) tcp' reach nsgen_probe_tcp_listening web-a 8080 client-b 10.244.0.2 2

# ---- check 8/12: client-b -> [fd00:10:244::2]:8080 (web-a) tcp, expect reach
nsgen_check 8 'client-b -> [fd00:10:244::2]:8080 (web-a) tcp' reach nsgen_probe_tcp_listening web-a 8080 client-b fd00:10:244::2 2

# ---- check 9/12: host -> 10.10.0.2 (node2) ping, expect reach
nsgen_check 9 'host -> 10.10.0.2 (node2) ping' reach nsgen_probe_ping host 10.10.0.2 2 2

# ---- check 10/12: host -> fd00:10:10::2 (node2) ping, expect reach
nsgen_check 10 'host -> fd00:10:10::2 (node2) ping' reach nsgen_probe_ping host fd00:10:10::2 2 2

# ---- check 11/12: client-a resolves web (A), expect reach
nsgen_check 11 'client-a resolves web (A)' reach nsgen_probe_dns client-a web 2 4
# ---- check 12/12: client-a resolves web (AAAA), expect reach
nsgen_check 12 'client-a resolves web (AAAA)' reach nsgen_probe_dns client-a web 2 6
echo "$nsgen_passed passed, $nsgen_failed failed"
((nsgen_failed == 0))
