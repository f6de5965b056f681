#!/usr/bin/env bash
# teardown.sh for the nsgen topology wan-link
#   an office on br-office and a branch behind an 8 Mbit/s link; the uplink at 20 Mbit/s
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# 83fae6b95218a9ddf32d0113a1cc6c2c09baba9883add742fe05cc96cd756165.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and nftables (nft), and root.
# Firewall backend: nftables (its own table inet nsgen_wan-link in each namespace with rules).
#
# It removes what setup.sh created, and nothing else: it undoes, newest first, only
# the steps that setup.sh recorded as begun in /run/nsgen/wan-link/journal, puts back
# saved sysctl values, and then deletes that record. With no record there is nothing
# of this topology here, and it exits 0 without touching anything; so does a second run.
#
# Every undo removes exactly what its step added and counts what is already gone as done,
# so a record left by a failed run (exit 4) can always be finished: fix what stopped an
# undo and run this again. `teardown.sh --forget` clears the record even if some undo
# fails, and lists what it leaves behind.
#
# Exit status: 0 removed (or nothing to remove; or forgotten with --forget); 1 refused (not
# root, or the record is from a different version of the topology); 4 some undo failed
# (listed; run again).
set -euo pipefail
nsgen_forget=0
case ${1:-} in
  --forget) nsgen_forget=1 ;;
  "") ;;
  *) printf '[nsgen] usage: %s [--forget]\n' "$0" >&2; exit 2 ;;
esac

readonly NSGEN_TOPOLOGY=wan-link
readonly NSGEN_DIGEST=83fae6b95218a9ddf32d0113a1cc6c2c09baba9883add742fe05cc96cd756165
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/wan-link
readonly NSGEN_STEPS=8

# ---- helpers (the same in every nsgen script) -------------------------------
# Logging goes to stderr so that stdout stays free for the commands' own output.
nsgen_log() { printf '[nsgen] %s\n' "$*" >&2; }

# Existence tests. Undo steps use them so that undoing something that is not
# there (a partial setup, a second teardown) is a no-op instead of an error.
# Each tests for exactly one object, so that an undo never removes someone else's.
nsgen_has_netns() { [[ -e /run/netns/$1 ]]; }
nsgen_has_link() { ip link show dev "$1" >/dev/null 2>&1; }
# DEV ADDRESS/PREFIX: that address, with that prefix length, on that link
nsgen_has_addr() {
  local listed
  listed=$(ip -o addr show dev "$1" 2>/dev/null) || return 1
  [[ "$listed " == *" inet $2 "* || "$listed " == *" inet6 $2 "* ]]
}
# FAMILY DESTINATION [via GATEWAY] [dev DEVICE]: a route of the main table to exactly that
# destination (default included), through exactly that gateway and device when given
nsgen_has_route() {
  local family=$1
  shift
  [[ -n $(ip "-$family" route show exact "$@" 2>/dev/null) ]]
}

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
  if ((status != 0)); then # (a sysctl the kernel lacks) leave no record of a value never read
    [[ -s $record/original ]] || rm -f -- "$record/original"
    rmdir -- "$record" /run/nsgen/.sysctl 2>/dev/null || true
  fi
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

# ---- helpers of the batched style -----------------------------------------------
# Enter a namespace for one command: nsenter (util-linux) is cheaper than `ip -n`,
# which copies the whole mount table on every call; `ip netns exec` is the fallback.
nsgen_enter() {
  local netns=$1
  shift
  if command -v nsenter >/dev/null; then
    nsenter --net="/run/netns/$netns" "$@"
  else
    ip netns exec "$netns" "$@"
  fi
}

# The names of the root namespace's links, space-separated and padded: " lo eth0 ... ".
nsgen_root_links() {
  local present=" " name _
  while read -r _ name _; do
    name=${name%:}
    present+="${name%@*} "
  done < <(ip -o link show)
  printf '%s' "$present"
}

# Delete the named namespaces that exist, in one `ip -b`; after `--`, the root-namespace
# ends of their veth pairs. The kernel removes a deleted namespace's links a moment later,
# all in one batch: wait (up to 30 s) until those ends are gone.
nsgen_delete_netns() {
  local netns batch="" ends=() present end tries
  while (($#)) && [[ $1 != -- ]]; do
    if nsgen_has_netns "$1"; then batch+="netns delete $1"$'\n'; fi
    shift
  done
  if (($#)); then shift; ends=("$@"); fi
  if [[ -n $batch ]]; then ip -b - <<<"$batch"; fi
  ((${#ends[@]})) || return 0
  for ((tries = 0; tries < 600; tries++)); do
    present=$(nsgen_root_links)
    for end in "${ends[@]}"; do
      [[ $present == *" $end "* ]] && break
      end=""
    done
    [[ -n $end ]] || return 0
    sleep 0.05
  done
  nsgen_log "the kernel has not removed $end 30 s after its namespace was deleted"
  return 1
}

# Delete the root namespace's links named that exist, in one `ip -b`.
nsgen_delete_links() {
  local present name batch=""
  present=$(nsgen_root_links)
  for name in "$@"; do
    if [[ $present == *" $name "* ]]; then batch+="link delete $name"$'\n'; fi
  done
  if [[ -n $batch ]]; then ip -b - <<<"$batch"; fi
}

# Remove, in one iptables-restore (-6: ip6tables-restore), every rule carrying the
# comment TAG, and then the own chains named as TABLE/CHAIN that exist; nothing else is
# touched.
nsgen_remove_iptables() { # [-6] TAG [TABLE/CHAIN...]
  local program=iptables tag saved table="" chains="" line spec input="" body=""
  if [[ $1 == -6 ]]; then program=ip6tables; shift; fi
  tag=$1
  shift
  saved=$("$program-save") || return 1
  while IFS= read -r line; do
    case $line in
      '*'*) table=${line#\*} chains=" " body="" ;;
      :*) chains+="${line%% *} " ;;
      "-A "*)
        # iptables-save puts the comment in double quotes when it holds a ':'
        if [[ "$line " == *" --comment $tag "* || "$line " == *" --comment \"$tag\" "* ]]; then
          body+="-D ${line#-A }"$'\n'
        fi
        ;;
      COMMIT)
        for spec in "$@"; do
          if [[ ${spec%%/*} == "$table" && $chains == *" :${spec#*/} "* ]]; then
            body+="-X ${spec#*/}"$'\n'
          fi
        done
        if [[ -n $body ]]; then input+="*$table"$'\n'"$body"$'COMMIT\n'; fi
        ;;
    esac
  done <<<"$saved"
  if [[ -n $input ]]; then "$program-restore" --noflush -w <<<"$input"; fi
}

# ---- undo step 8/8: set net.ipv4.ip_forward=1
nsgen_undo_8() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}

# ---- undo step 7/8: install nftables table inet nsgen_wan-link in the root namespace (3 change(s))
nsgen_undo_7() {
  if nft list table inet nsgen_wan-link >/dev/null 2>&1; then
    nft delete table inet nsgen_wan-link
  fi
}

# ---- undo step 6/8: add routes (1 route) in the root namespace
nsgen_undo_6() {
  if nsgen_has_route 4 10.30.0.0/30 via 10.20.0.1; then ip -4 route del 10.30.0.0/30 via 10.20.0.1; fi
}

# ---- undo step 3/8: create veth pairs (2 veths) and traffic shaping
nsgen_undo_3() {
  if [[ $(tc qdisc show dev eth0 root 2>/dev/null) == 'qdisc tbf 1: root'* ]]; then tc qdisc del dev eth0 root; fi
}

# ---- undo step 2/8: create 2 namespace(s): office, branch
nsgen_undo_2() {
  nsgen_delete_netns office branch -- veth-office-br
}

# ---- undo step 1/8: create 1 bridge in the root namespace
nsgen_undo_1() {
  nsgen_delete_links br-office
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
nsgen_undo 8 'set net.ipv4.ip_forward=1'
nsgen_undo 7 'install nftables table inet nsgen_wan-link in the root namespace (3 change(s))'
nsgen_undo 6 'add routes (1 route) in the root namespace'
nsgen_undo 3 'create veth pairs (2 veths) and traffic shaping'
nsgen_undo 2 'create 2 namespace(s): office, branch'
nsgen_undo 1 'create 1 bridge in the root namespace'

if ((${#nsgen_leftovers[@]})); then
  if ((nsgen_forget)); then
    nsgen_log "forgetting $NSGEN_TOPOLOGY; what these steps made is left behind:"
    printf '[nsgen]   %s\n' "${nsgen_leftovers[@]}" >&2
    rm -rf -- "$NSGEN_STATE"
    exit 0
  fi
  nsgen_log "teardown incomplete; these steps could not be undone:"
  printf '[nsgen]   %s\n' "${nsgen_leftovers[@]}" >&2
  nsgen_log "fix what stopped them and run this again (or: $0 --forget)"
  exit 4
fi
rm -rf -- "$NSGEN_STATE"
nsgen_log "$NSGEN_TOPOLOGY is down"
