#!/usr/bin/env bash
# check.sh for the nsgen topology two-tier
#   web1 and web2 on br-front, db on br-back, a router between them, db <-> backup
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# 68f205c54a7ec253fd486d07714db05b70aa377d5bf1abb1011978f8b6f2a696.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and nftables (nft), and root.
# Firewall backend: nftables (its own table inet nsgen_two-tier in each namespace with rules).
#
# It runs the topology's 8 declared checks against the live network, each bounded by
# its own timeout, and prints one line per check and a closing "N passed, N failed" line.
#
# First it makes sure the topology is up: its record in /run/nsgen/two-tier/ must exist,
# hold the sha256 above and a journal saying that setup finished. If not, it says why and
# exits 3 without probing anything; NSGEN_CHECK_ANYWAY=1 probes whatever is there.
#
# A failure names what the probe saw: network unreachable (no route; at once), host
# unreachable, rejected (an ICMP error from a firewall), no reply or no answer within the
# timeout, refused, reset, name not found. A check from "upstream" runs in nsgen lab's
# simulated upstream (namespace nsgen-upstream) and fails at once where there is none.
#
# Exit status: 0 every check passed; 1 a check failed; 3 not up, nothing probed.
# Needs root (it enters the namespaces), ping and timeout; a tcp check that starts its own
# listeners needs socat or python3 (and ss), a dns check getent. With NSGEN_CHECK_FORMAT=tsv
# it prints one record per check instead, as `nsgen check` reads them: nsgen-check, number,
# PASS/FAIL, result (reach, blocked, reset or error), ms, reason and the endpoint that
# answered, separated by tabs (no field ever holds a tab or a line break).
set -uo pipefail

readonly NSGEN_TOPOLOGY=two-tier
readonly NSGEN_DIGEST=68f205c54a7ec253fd486d07714db05b70aa377d5bf1abb1011978f8b6f2a696
readonly NSGEN_STATE=/run/nsgen/two-tier
readonly NSGEN_UPSTREAM=nsgen-upstream
nsgen_passed=0
nsgen_failed=0
nsgen_listeners=()

# Stop the listeners a check started (by their PIDs).
nsgen_stop_listeners() {
  local pid
  for pid in "${nsgen_listeners[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  nsgen_listeners=()
}
trap nsgen_stop_listeners EXIT

# Why the topology is not up; nothing (and status 1) when it is.
nsgen_why_not_up() {
  local digest="" line
  if [[ ! -d $NSGEN_STATE ]]; then
    echo "no record in $NSGEN_STATE/"
    return 0
  fi
  { read -r digest <"$NSGEN_STATE/digest"; } 2>/dev/null
  if [[ $digest != "$NSGEN_DIGEST" ]]; then
    echo "its record in $NSGEN_STATE/ is of another version of the topology (sha256 differs)"
    return 0
  fi
  if [[ -f $NSGEN_STATE/journal ]]; then
    while read -r line; do
      [[ $line != complete ]] || return 1
    done <"$NSGEN_STATE/journal"
  fi
  echo "its setup did not finish (the journal in $NSGEN_STATE/ does not say complete)"
}

if [[ ${NSGEN_CHECK_ANYWAY:-} != 1 ]] && nsgen_why=$(nsgen_why_not_up); then
  echo "[nsgen] $NSGEN_TOPOLOGY is not up: $nsgen_why; no check was run (setup.sh builds it; NSGEN_CHECK_ANYWAY=1 probes whatever is there)" >&2
  exit 3
fi

# Run a command in a namespace; "host" is the root namespace.
nsgen_in() {
  local netns=$1
  shift
  if [[ $netns == host ]]; then "$@"; else ip netns exec "$netns" "$@"; fi
}
nsgen_now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
nsgen_ms_of_us() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
nsgen_elapsed_ms() { nsgen_ms_of_us $(($(nsgen_now_us) - $1)); }
# A record's free-text field: no control characters (tabs, line breaks), 200 at most.
nsgen_field() {
  local text=${1//[[:cntrl:]]/ }
  printf '%s' "${text:0:200}"
}

# Can a probe run in this namespace? If not, nsgen_reason says why.
nsgen_source() { # netns
  [[ $1 == host || -e /run/netns/$1 ]] && return 0
  nsgen_got=error
  if [[ $1 == "$NSGEN_UPSTREAM" ]]; then
    nsgen_reason="needs nsgen lab's simulated upstream (there is no namespace $1 here)"
  else
    nsgen_reason="namespace $1 does not exist"
  fi
  return 1
}

# The address to probe, into nsgen_to: as given, or for dev:NAME the first IPv4 address
# of NAME in the root namespace now (the host's uplink address, as the upstream sees it).
nsgen_target() { # address-or-dev:NAME
  local _ family="" cidr=""
  nsgen_to=$1
  [[ $1 == dev:* ]] || return 0
  read -r _ _ family cidr _ < <(ip -o -4 addr show dev "${1#dev:}" 2>/dev/null)
  if [[ $family == inet && -n $cidr ]]; then
    nsgen_to=${cidr%/*}
    return 0
  fi
  nsgen_got=error nsgen_reason="${1#dev:} has no IPv4 address in the root namespace"
  return 1
}

# Probes: each sets nsgen_got (reach, blocked, reset or error) and nsgen_reason, and
# nsgen_ms (the round trip, the time to connect, or how long it took to fail).
nsgen_icmp_re='From ([0-9A-Fa-f.:]+) icmp_seq=[0-9]+ ([^'$'\n'']+)'
nsgen_probe_ping() { # netns address timeout whole-seconds
  local out status start rtt text
  nsgen_source "$1" && nsgen_target "$2" || return
  start=$(nsgen_now_us)
  out=$(nsgen_in "$1" timeout "$3" ping -n -c 1 -W "$4" "$nsgen_to" 2>&1)
  status=$?
  if ((status == 0)); then
    rtt=${out##*= } # "rtt min/avg/max/mdev = 0.061/0.061/0.061/0.000 ms"
    nsgen_ms=${rtt%%/*} nsgen_got=reach nsgen_reason=reply
    return
  fi
  nsgen_ms=$(nsgen_elapsed_ms "$start") nsgen_got=blocked
  if [[ $out =~ $nsgen_icmp_re ]]; then
    text=${BASH_REMATCH[2]}
    case $text in
      *"Net Unreachable"* | *"No route"*) text="network unreachable" ;;
      *"Host Unreachable"* | *"Address unreachable"*) text="host unreachable" ;;
      *[Pp]rohibited* | *"Packet filtered"*) text="rejected: ${text,,}" ;;
    esac
    nsgen_reason="$text (ICMP from ${BASH_REMATCH[1]})"
  elif [[ $out == *"Network is unreachable"* ]]; then
    nsgen_reason="network unreachable (no route)"
  elif ((status == 1 || status == 124)); then
    nsgen_reason="no reply within $3 s"
  else
    nsgen_got=error nsgen_reason="ping failed: ${out##*$'\n'}"
  fi
}

# The tcp client, run by a bash inside the namespace: bash itself connects (/dev/tcp),
# prints "connected MICROSECONDS", then reads one line for at most WAIT s (a listener of
# the check's says its namespace's name); a read error shows a reset.
# shellcheck disable=SC2016 # $0, $1 and $2 are the inner bash's, on purpose
nsgen_tcp_client='start=${EPOCHREALTIME/[.,]/}
exec 3<>"/dev/tcp/$0/$1" || exit 10
echo "connected $((${EPOCHREALTIME/[.,]/} - start))"
IFS= read -r -t "$2" line <&3
status=$?
if ((status == 0)); then printf "said %s\n" "$line"; elif ((status <= 128)); then exit 11; fi'
nsgen_connected_re='connected ([0-9]+)'
nsgen_said_re='said ([^'$'\n'']*)'
nsgen_probe_tcp() { # netns address port timeout wait [1: the check's listeners answer]
  local out status start
  nsgen_source "$1" && nsgen_target "$2" || return
  start=$(nsgen_now_us)
  out=$(nsgen_in "$1" timeout "$4" bash -c "$nsgen_tcp_client" "$nsgen_to" "$3" "$5" 2>&1)
  status=$?
  if [[ $out =~ $nsgen_connected_re ]]; then
    nsgen_ms=$(nsgen_ms_of_us "${BASH_REMATCH[1]}")
    if [[ ${6:-} == 1 && $out =~ $nsgen_said_re ]]; then
      nsgen_endpoint=${BASH_REMATCH[1]//[^A-Za-z0-9_.-]/}
      nsgen_endpoint=${nsgen_endpoint:0:64}
    fi
    if [[ $out == *"reset by peer"* ]]; then
      nsgen_got=reset nsgen_reason="reset by the peer"
    elif [[ -n $nsgen_endpoint ]]; then
      nsgen_got=reach nsgen_reason="connected; $nsgen_endpoint answered"
    elif ((status == 11)); then
      nsgen_got=reach nsgen_reason="connected; the peer closed it at once"
    else
      nsgen_got=reach nsgen_reason=connected
    fi
    return
  fi
  nsgen_ms=$(nsgen_elapsed_ms "$start") nsgen_got=blocked
  case $out in
    *"Connection refused"*) nsgen_reason=refused ;;
    *"Network is unreachable"*) nsgen_reason="network unreachable (no route)" ;;
    *"No route to host"*) nsgen_reason="host unreachable (no route to host)" ;;
    *"reset by peer"*) nsgen_got=reset nsgen_reason="reset by the peer" ;;
    *"timed out"*) nsgen_reason="no answer (connection timed out)" ;;
    *)
      if ((status == 124)); then
        nsgen_reason="no answer within $4 s"
      else
        nsgen_got=error nsgen_reason="could not connect: ${out##*$'\n'}"
      fi
      ;;
  esac
}

# A listener in a namespace that answers each connection with the namespace's name.
nsgen_listen() { # netns port family(4|6)
  local inside=() address
  [[ $1 == host ]] || inside=(ip netns exec "$1")
  if command -v socat >/dev/null; then
    if (($3 == 6)); then address="TCP6-LISTEN:$2,ipv6only=0"; else address="TCP4-LISTEN:$2"; fi
    NSGEN_ENDPOINT=$1 "${inside[@]}" socat "$address,reuseaddr,fork" EXEC:'printenv NSGEN_ENDPOINT' </dev/null >/dev/null 2>&1 &
  elif command -v python3 >/dev/null; then
    "${inside[@]}" python3 -c 'import socket, sys
port, family, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if family == "6":
    server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
else:
    server = socket.create_server(("", port))
while True:
    client = server.accept()[0]
    client.sendall(name.encode() + b"\n")
    client.close()' "$2" "$3" "$1" </dev/null >/dev/null 2>&1 &
  else
    return 1
  fi
  nsgen_listeners+=($!)
}
nsgen_probe_tcp_listening() { # netns address port timeout [listen-netns listen-port family]...
  local netns=$1 address=$2 port=$3 timeout=$4 tries i ready=0
  shift 4
  local spec=("$@")
  nsgen_source "$netns" || return
  for ((i = 0; i < ${#spec[@]}; i += 3)); do
    nsgen_source "${spec[i]}" || return
    if ! nsgen_listen "${spec[i]}" "${spec[i + 1]}" "${spec[i + 2]}"; then
      nsgen_got=error nsgen_reason="cannot start a listener: install socat or python3"
      nsgen_stop_listeners
      return
    fi
  done
  for ((tries = 0; tries < 100 && !ready; tries++)); do # at most about 2 s
    ready=1
    for ((i = 0; i < ${#spec[@]}; i += 3)); do
      [[ -n $(nsgen_in "${spec[i]}" ss -Hltn "sport = :${spec[i + 1]}" 2>/dev/null) ]] || ready=0
    done
    ((ready)) || sleep 0.02
  done
  if ((ready)); then
    nsgen_probe_tcp "$netns" "$address" "$port" "$timeout" "$timeout" 1
  else
    nsgen_got=error nsgen_reason="the listeners did not start within 2 s"
  fi
  nsgen_stop_listeners
}

nsgen_probe_dns() { # netns name timeout [family: 4 asks for A records, 6 for AAAA]
  local out status start database=hosts
  case ${4:-} in 4) database=ahostsv4 ;; 6) database=ahostsv6 ;; esac
  nsgen_source "$1" || return
  start=$(nsgen_now_us)
  out=$(nsgen_in "$1" timeout "$3" getent "$database" "$2" 2>/dev/null)
  status=$?
  nsgen_ms=$(nsgen_elapsed_ms "$start")
  # without an AAAA record, getent ahostsv6 answers with the IPv4 address, mapped
  if ((status == 0)) && [[ $out == "::ffff:"* ]]; then
    nsgen_got=blocked nsgen_reason="has no AAAA record (${out%%[[:space:]]*})"
    return
  fi
  case $status in
    0) nsgen_got=reach nsgen_reason="resolves to ${out%%[[:space:]]*}" ;;
    2) nsgen_got=blocked nsgen_reason="name not found" ;;
    124) nsgen_got=blocked nsgen_reason="no answer within $3 s" ;;
    *) nsgen_got=error nsgen_reason="getent failed with exit status $status" ;;
  esac
}

# One check: run its probe, compare what it found with what is expected, print the verdict.
nsgen_check() { # number label expect probe...
  local number=$1 label=$2 expect=$3 verdict
  shift 3
  nsgen_got=error nsgen_reason="" nsgen_ms="" nsgen_endpoint=""
  "$@"
  [[ $nsgen_ms =~ ^[0-9]+(\.[0-9]+)?$ ]] || nsgen_ms=""
  nsgen_reason=$(nsgen_field "$nsgen_reason")
  nsgen_endpoint=$(nsgen_field "$nsgen_endpoint")
  if [[ $nsgen_got == "$expect" ]]; then
    verdict=PASS
    nsgen_passed=$((nsgen_passed + 1))
  else
    verdict=FAIL
    nsgen_failed=$((nsgen_failed + 1))
  fi
  if [[ ${NSGEN_CHECK_FORMAT:-} == tsv ]]; then
    printf 'nsgen-check\t%s\t%s\t%s\t%s\t%s\t%s\n' "$number" "$verdict" "$nsgen_got" "$nsgen_ms" "$nsgen_reason" "$nsgen_endpoint"
  elif [[ $verdict == PASS && $expect == reach ]]; then
    echo "PASS $label${nsgen_ms:+ $nsgen_ms ms}${nsgen_endpoint:+ (answered by $nsgen_endpoint)}"
  elif [[ $verdict == PASS ]]; then
    echo "PASS $label blocked as expected ($nsgen_reason${nsgen_ms:+, $nsgen_ms ms})"
  else
    echo "FAIL $label: expected $expect, got $nsgen_reason${nsgen_ms:+, $nsgen_ms ms}"
  fi
}

echo "[nsgen] checking $NSGEN_TOPOLOGY: 8 check(s)" >&2

# ---- check 1/8: web1 -> 10.0.1.12 (web2) ping, expect reach
nsgen_check 1 'web1 -> 10.0.1.12 (web2) ping' reach nsgen_probe_ping web1 10.0.1.12 2 2

# ---- check 2/8: web1 -> 10.0.2.21 (db) ping, expect reach
nsgen_check 2 'web1 -> 10.0.2.21 (db) ping' reach nsgen_probe_ping web1 10.0.2.21 2 2

# ---- check 3/8: web2 -> 10.0.2.21:5432 (db) tcp, expect reach
# listeners: db port 5432
nsgen_check 3 'web2 -> 10.0.2.21:5432 (db) tcp' reach nsgen_probe_tcp_listening web2 10.0.2.21 5432 2 db 5432 4

# ---- check 4/8: db -> 10.0.3.2 (backup) ping, expect reach
nsgen_check 4 'db -> 10.0.3.2 (backup) ping' reach nsgen_probe_ping db 10.0.3.2 2 2

# ---- check 5/8: backup -> 10.0.1.11 (web1) ping, expect blocked
nsgen_check 5 'backup -> 10.0.1.11 (web1) ping' blocked nsgen_probe_ping backup 10.0.1.11 2 2

# ---- check 6/8: web1 -> 192.0.2.10 ping, expect reach
nsgen_check 6 'web1 -> 192.0.2.10 ping' reach nsgen_probe_ping web1 192.0.2.10 2 2

# ---- check 7/8: db -> 192.0.2.10 ping, expect blocked
nsgen_check 7 'db -> 192.0.2.10 ping' blocked nsgen_probe_ping db 192.0.2.10 2 2

# ---- check 8/8: db resolves web1, expect reach
nsgen_check 8 'db resolves web1' reach nsgen_probe_dns db web1 2

[[ ${NSGEN_CHECK_FORMAT:-} == tsv ]] || echo "$nsgen_passed passed, $nsgen_failed failed"
((nsgen_failed == 0))
