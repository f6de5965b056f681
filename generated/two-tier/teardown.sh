#!/usr/bin/env bash
# teardown.sh for the nsgen topology two-tier
#   web1 and web2 on br-front, db on br-back, a router between them, db <-> backup
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# d4c5e9c11dd205ebdb4a869d5567160ceb4e924230ccf6938ca9203c97a7c055.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
#
# It removes what setup.sh created, and nothing else: it undoes, newest first, only
# the steps that setup.sh recorded as begun in /run/nsgen/two-tier/journal, puts back
# saved sysctl values, and then deletes that record. With no record there is nothing
# of this topology here, and it exits 0 without touching anything; so does a second run.
#
# Exit status: 0 removed (or nothing to remove); 1 refused (not root, or the record is
# from a different version of the topology); 4 some undo failed (listed; run again).
set -euo pipefail

readonly NSGEN_TOPOLOGY=two-tier
readonly NSGEN_DIGEST=d4c5e9c11dd205ebdb4a869d5567160ceb4e924230ccf6938ca9203c97a7c055
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/two-tier
readonly NSGEN_STEPS=35

# ---- helpers (the same in every nsgen script) -------------------------------
# Logging goes to stderr so that stdout stays free for the commands' own output.
nsgen_log() { printf '[nsgen] %s\n' "$*" >&2; }

# Existence tests. Undo steps use them so that undoing something that is not
# there (a partial setup, a second teardown) is a no-op instead of an error.
nsgen_has_netns() { [[ -e /run/netns/$1 ]]; }
nsgen_has_link() { ip link show dev "$1" >/dev/null 2>&1; }
nsgen_has_addr() { [[ -n $(ip -o addr show dev "$1" to "$2" 2>/dev/null) ]]; }
nsgen_has_route() { [[ -n $(ip route show exact "$1" 2>/dev/null) ]]; }

# A sysctl of the root namespace may be changed by several topologies at once.
# /run/nsgen/.sysctl/KEY/original keeps the value it had before the first of them,
# each topology that changed it leaves a file named after itself beside it, and the
# last one to undo its change puts the original value back. A lock directory keeps
# two runs from reading and writing that record at the same time.
nsgen_lock_sysctls() {
  local tries
  for ((tries = 0; tries < 500; tries++)); do
    if mkdir /run/nsgen/.sysctl.lock 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  nsgen_log "/run/nsgen/.sysctl.lock has been held for 5 s; if no nsgen run is active, remove it"
  return 1
}
nsgen_unlock_sysctls() { rmdir /run/nsgen/.sysctl.lock; }
nsgen_save_sysctl() {
  local record=/run/nsgen/.sysctl/$1 status=0
  nsgen_lock_sysctls || return 1
  {
    mkdir -p "$record" &&
      { [[ -e $record/original ]] || cat "/proc/sys/${1//.//}" >"$record/original"; } &&
      : >"$record/$NSGEN_TOPOLOGY"
  } || status=$?
  nsgen_unlock_sysctls
  return "$status"
}
nsgen_restore_sysctl() {
  local record=/run/nsgen/.sysctl/$1 status=0 entry last=1
  [[ -e $record/$NSGEN_TOPOLOGY ]] || return 0
  nsgen_lock_sysctls || return 1
  rm -f -- "$record/$NSGEN_TOPOLOGY" || status=$?
  for entry in "$record"/*; do
    [[ $entry == "$record/original" ]] || last=0
  done
  if ((status == 0 && last)); then
    {
      cat "$record/original" >"/proc/sys/${1//.//}" &&
        rm -f -- "$record/original" && rmdir -- "$record"
    } || status=$?
    rmdir -- /run/nsgen/.sysctl 2>/dev/null || true
  fi
  nsgen_unlock_sysctls
  return "$status"
}

# /etc/netns/<namespace>/ is removed again only if this topology created it.
nsgen_make_netns_dir() {
  if [[ ! -d /etc/netns/$1 ]]; then
    mkdir -p "/etc/netns/$1"
    : >"$NSGEN_STATE/netns-dir.$1"
  fi
}
nsgen_remove_netns_dir() {
  if [[ -e $NSGEN_STATE/netns-dir.$1 ]]; then
    rmdir "/etc/netns/$1"
    rm -f "$NSGEN_STATE/netns-dir.$1"
  fi
}

# ---- undo step 35/35: write /etc/netns/db/hosts
nsgen_undo_35() {
  rm -f /etc/netns/db/hosts
  nsgen_remove_netns_dir db
}

# ---- undo step 33/35: set net.ipv4.ip_forward=1
nsgen_undo_33() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}

# ---- undo step 32/35: masquerade 10.0.1.0/24 out of eth0
nsgen_undo_32() {
  if iptables -w -t nat -C POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE 2>/dev/null; then
    iptables -w -t nat -D POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE
  fi
}

# ---- undo step 13/35: create veth pair veth-db <-> veth-db-br
nsgen_undo_13() {
  if nsgen_has_link veth-db-br; then ip link delete veth-db-br; fi
}

# ---- undo step 12/35: create veth pair back <-> router-back
nsgen_undo_12() {
  if nsgen_has_link router-back; then ip link delete router-back; fi
}

# ---- undo step 11/35: create veth pair front <-> router-front
nsgen_undo_11() {
  if nsgen_has_link router-front; then ip link delete router-front; fi
}

# ---- undo step 10/35: create veth pair veth-web2 <-> veth-web2-br
nsgen_undo_10() {
  if nsgen_has_link veth-web2-br; then ip link delete veth-web2-br; fi
}

# ---- undo step 9/35: create veth pair veth-web1 <-> veth-web1-br
nsgen_undo_9() {
  if nsgen_has_link veth-web1-br; then ip link delete veth-web1-br; fi
}

# ---- undo step 8/35: create bridge br-back
nsgen_undo_8() {
  if nsgen_has_link br-back; then ip link delete br-back; fi
}

# ---- undo step 6/35: create bridge br-front
nsgen_undo_6() {
  if nsgen_has_link br-front; then ip link delete br-front; fi
}

# ---- undo step 5/35: create namespace backup
nsgen_undo_5() {
  if nsgen_has_netns backup; then ip netns delete backup; fi
}

# ---- undo step 4/35: create namespace db
nsgen_undo_4() {
  if nsgen_has_netns db; then ip netns delete db; fi
}

# ---- undo step 3/35: create namespace router
nsgen_undo_3() {
  if nsgen_has_netns router; then ip netns delete router; fi
}

# ---- undo step 2/35: create namespace web2
nsgen_undo_2() {
  if nsgen_has_netns web2; then ip netns delete web2; fi
}

# ---- undo step 1/35: create namespace web1
nsgen_undo_1() {
  if nsgen_has_netns web1; then ip netns delete web1; fi
}

# ---- main ---------------------------------------------------------------------
[[ $EUID -eq 0 ]] || { nsgen_log "must run as root (try: sudo $0)"; exit 1; }
if [[ ! -d $NSGEN_STATE ]]; then
  nsgen_log "$NSGEN_TOPOLOGY is not set up here (no $NSGEN_STATE): nothing to do"
  exit 0
fi
if [[ $(cat "$NSGEN_STATE/digest" 2>/dev/null) != "$NSGEN_DIGEST" ]]; then
  nsgen_log "$NSGEN_STATE was made from a different version of $NSGEN_TOPOLOGY; use the teardown.sh rendered with it (or nsgen down $NSGEN_TOPOLOGY)"
  exit 1
fi
declare -A nsgen_begun=()
while read -r word number; do
  if [[ $word == begin ]]; then nsgen_begun[$number]=1; fi
done <"$NSGEN_STATE/journal"

nsgen_leftovers=()
nsgen_undo() {
  [[ -n ${nsgen_begun[$1]:-} ]] || return 0
  nsgen_log "undo $1/$NSGEN_STEPS $2"
  local status
  # (a subshell outside any && or || list, so that set -e applies inside it)
  set +e
  (set -e; "nsgen_undo_$1")
  status=$?
  set -e
  ((status == 0)) || nsgen_leftovers+=("$1/$NSGEN_STEPS $2")
}
nsgen_undo 35 'write /etc/netns/db/hosts'
nsgen_undo 33 'set net.ipv4.ip_forward=1'
nsgen_undo 32 'masquerade 10.0.1.0/24 out of eth0'
nsgen_undo 13 'create veth pair veth-db <-> veth-db-br'
nsgen_undo 12 'create veth pair back <-> router-back'
nsgen_undo 11 'create veth pair front <-> router-front'
nsgen_undo 10 'create veth pair veth-web2 <-> veth-web2-br'
nsgen_undo 9 'create veth pair veth-web1 <-> veth-web1-br'
nsgen_undo 8 'create bridge br-back'
nsgen_undo 6 'create bridge br-front'
nsgen_undo 5 'create namespace backup'
nsgen_undo 4 'create namespace db'
nsgen_undo 3 'create namespace router'
nsgen_undo 2 'create namespace web2'
nsgen_undo 1 'create namespace web1'

if ((${#nsgen_leftovers[@]})); then
  nsgen_log "teardown incomplete; these steps could not be undone:"
  printf '[nsgen]   %s\n' "${nsgen_leftovers[@]}" >&2
  exit 4
fi
rm -rf -- "$NSGEN_STATE"
nsgen_log "$NSGEN_TOPOLOGY is down"
