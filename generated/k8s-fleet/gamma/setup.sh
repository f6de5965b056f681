#!/usr/bin/env bash
# setup.sh for the nsgen topology k8s-fleet-gamma
#   a k8s-style cluster on three machines (flannel vxlan), two pods per node, a ClusterIP and a NodePort service
#   The share of host gamma in k8s-fleet, spread over alpha, beta, gamma.
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# a76e10e91d392c54c59715b35b0d13e1c9fc68fda9e0aa3c3a094d287c0957db.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
# Firewall backend: iptables (every rule carries the comment nsgen:k8s-fleet-gamma).
#
# It builds the network in 10 numbered steps, logging each one to stderr as
# "[nsgen] N/10 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
set -euo pipefail

readonly NSGEN_TOPOLOGY=k8s-fleet-gamma
readonly NSGEN_DIGEST=a76e10e91d392c54c59715b35b0d13e1c9fc68fda9e0aa3c3a094d287c0957db
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/k8s-fleet-gamma
readonly NSGEN_STEPS=10

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

# ---- journal and rollback ----------------------------------------------------
nsgen_current=0      # the step being run
nsgen_signal=""      # exit status to report if a signal arrived
declare -a nsgen_titles=()

# While a step runs, its error output is kept in a file (one per lane) and shown when the
# step ends: if it fails, the summary quotes the line that says what went wrong.
exec {nsgen_stderr}>&2
nsgen_errors=$NSGEN_STATE/errors

nsgen_begin() {
  nsgen_current=$1
  nsgen_titles[$1]=$2
  printf 'begin %s\n' "$1" >>"$NSGEN_STATE/journal"
  nsgen_log "$1/$NSGEN_STEPS $2"
  exec 2>"$nsgen_errors"
}
nsgen_end() {
  nsgen_show_errors
  printf 'done %s\n' "$1" >>"$NSGEN_STATE/journal"
}
# Back to the real stderr, showing what the step wrote there.
nsgen_show_errors() {
  exec 2>&"$nsgen_stderr"
  if [[ -s $nsgen_errors ]]; then
    cat -- "$nsgen_errors" >&2
    : >"$nsgen_errors"
  fi
}
# The line of an error output (on stdin) that says what went wrong: the last that is not a
# hint to read the help, with where in its input a batch program failed (nsgen up picks the
# same line: nsgen/executor.py, failure_reason).
nsgen_reason() {
  local line reason="" at=""
  while IFS= read -r line; do
    case $line in
      "Error occurred at line: "*) at=" (input line ${line##*: })" ;;
      "Command failed "*:*) at=" (input line ${line##*:})" ;;
      "Try \`"*"' for more information"*) ;;
      *[![:space:]]*) reason=$line ;;
    esac
  done
  printf '%s%s' "${reason:-(no error output)}" "$at"
}
nsgen_failed() { # step status: say which step failed, and why
  local reason="(no error output)"
  if [[ -s $nsgen_errors ]]; then reason=$(nsgen_reason <"$nsgen_errors"); fi
  nsgen_show_errors
  nsgen_log "step $1/$NSGEN_STEPS (${nsgen_titles[$1]:-before the first step}) failed with exit status $2: $reason"
}

# Runs steps FIRST..LAST (nsgen_do_N) in NSGEN_LANES lanes at once (default: one per
# CPU). Only steps confined to one namespace run this way; they need no undo, so on a
# failure the rollback starts from LAST.
nsgen_lane_pids=()
nsgen_lane_failed=0
nsgen_lanes() {
  local first=$1 last=$2 lanes=${NSGEN_LANES:-$(nproc 2>/dev/null || echo 2)} lane pid failed=0
  local i
  nsgen_current=$last
  for ((lane = 0; lane < lanes && first + lane <= last; lane++)); do
    (
      # set -e ends the lane at a failing command; the ERR trap (kept in functions by
      # set -E) says which step it was
      set -E
      trap 'nsgen_failed "$i" "$?"' ERR
      nsgen_errors=$NSGEN_STATE/errors.$lane
      for ((i = first + lane; i <= last; i += lanes)); do
        nsgen_begin "$i" "${nsgen_titles[$i]}"
        "nsgen_do_$i"
        nsgen_end "$i"
      done
    ) &
    nsgen_lane_pids+=($!)
  done
  for pid in "${nsgen_lane_pids[@]}"; do
    wait "$pid" || failed=1
  done
  nsgen_lane_pids=()
  if ((failed)); then nsgen_lane_failed=1; fi
  return "$failed"
}

# Runs on every exit once the state directory is claimed. On failure it undoes
# steps nsgen_current..1 (the failed step's partial effects included).
nsgen_finish() {
  local status=$1 code=3 i rc leftovers=()
  trap - EXIT INT TERM
  ((status != 0)) || return 0
  set +e
  if ((${#nsgen_lane_pids[@]})); then  # stop lanes still running, then undo
    kill "${nsgen_lane_pids[@]}" 2>/dev/null
    wait "${nsgen_lane_pids[@]}" 2>/dev/null
  fi
  if [[ -n $nsgen_signal ]]; then
    code=$nsgen_signal
    nsgen_show_errors
    nsgen_log "interrupted during step $nsgen_current/$NSGEN_STEPS: rolling back"
  elif ((nsgen_lane_failed)); then
    nsgen_log "rolling back"  # the failed step said so itself
  else
    nsgen_failed "$nsgen_current" "$status"
    nsgen_log "rolling back"
  fi
  for ((i = nsgen_current; i >= 1; i--)); do
    declare -F "nsgen_undo_$i" >/dev/null || continue
    nsgen_log "undo $i/$NSGEN_STEPS ${nsgen_titles[$i]}"
    # (a subshell outside any && or || list, so that set -e applies inside it)
    (set -e; "nsgen_undo_$i")
    rc=$?
    ((rc == 0)) || leftovers+=("$i/$NSGEN_STEPS ${nsgen_titles[$i]}")
  done
  if ((${#leftovers[@]})); then
    nsgen_log "rollback incomplete; these steps could not be undone:"
    printf '[nsgen]   %s\n' "${leftovers[@]}" >&2
    nsgen_log "the record stays in $NSGEN_STATE; fix the cause and run teardown.sh"
    exit 4
  fi
  rm -rf -- "$NSGEN_STATE"
  nsgen_log "rolled back: everything this run created is gone"
  exit "$code"
}

# ---- preflight: refuse, changing nothing, unless the host is ready -----------
nsgen_problems=()
nsgen_problem() { nsgen_problems+=("$1"); }
# A warning does not refuse, unless NSGEN_STRICT=1 (nsgen up --strict) says it must.
nsgen_warnings=()
nsgen_warn() {
  if [[ ${NSGEN_STRICT:-} == 1 ]]; then nsgen_problem "$1 (NSGEN_STRICT=1 refuses)"; else nsgen_warnings+=("$1"); fi
}
# The root namespace's links, listed once: a check per name needs no process of its own.
nsgen_listed_link() { [[ $nsgen_links_before == *" $1 "* ]]; }
# The chains of a firewall table, listed once per table (PROGRAM-save -t TABLE) for the same
# reason: a cluster's 3,000 chains asked about one by one (`iptables -L CHAIN`) took 17 s.
declare -A nsgen_chains_listed=()
nsgen_listed_chain() { # PROGRAM TABLE CHAIN
  local line
  if [[ -z ${nsgen_chains_listed["$1 $2"]:-} ]]; then
    nsgen_chains_listed["$1 $2"]=listed
    while IFS= read -r line; do
      if [[ $line == :* ]]; then nsgen_chains_listed["$1 $2 ${line%% *}"]=1; fi
    done < <("$1-save" -t "$2" 2>/dev/null)
  fi
  [[ -n ${nsgen_chains_listed["$1 $2 :$3"]:-} ]]
}
nsgen_preflight() {
  [[ $EUID -eq 0 ]] || nsgen_problem "must run as root (try: sudo $0)"
  command -v ip >/dev/null || nsgen_problem 'ip is not installed'
  command -v bridge >/dev/null || nsgen_problem 'bridge is not installed'
  command -v iptables >/dev/null || nsgen_problem 'iptables is not installed'
  if ((${#nsgen_problems[@]} == 0)); then
    nsgen_links_before=$(nsgen_root_links)
    if [[ -e $NSGEN_STATE ]]; then
      nsgen_problem "$NSGEN_TOPOLOGY is already set up, or being set up ($NSGEN_STATE exists); run teardown.sh first"
    fi
    if nsgen_has_netns web-c; then nsgen_problem 'namespace web-c already exists'; fi
    if nsgen_has_netns client-c; then nsgen_problem 'namespace client-c already exists'; fi
    if nsgen_listed_link cni0; then nsgen_problem 'link cni0 already exists in the root namespace'; fi
    if nsgen_has_route 4 10.244.2.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.2.0/24 (ip -4 route show exact 10.244.2.0/24)'; fi
    if [[ -n $(ip -o addr show to 10.244.2.1 2>/dev/null) ]]; then nsgen_problem 'address 10.244.2.1 is already assigned in the root namespace (ip addr show to 10.244.2.1)'; fi
    if nsgen_listed_link vetha30a1cc; then nsgen_problem 'link vetha30a1cc already exists in the root namespace'; fi
    if nsgen_listed_link vetha41c55f; then nsgen_problem 'link vetha41c55f already exists in the root namespace'; fi
    if nsgen_listed_link flannel.1; then nsgen_problem 'link flannel.1 already exists in the root namespace'; fi
    if nsgen_has_route 4 10.244.2.0/32; then nsgen_problem 'the root namespace already has a route to 10.244.2.0/32 (ip -4 route show exact 10.244.2.0/32)'; fi
    if [[ -n $(ip -o addr show to 10.244.2.0 2>/dev/null) ]]; then nsgen_problem 'address 10.244.2.0 is already assigned in the root namespace (ip addr show to 10.244.2.0)'; fi
    if nsgen_has_route 4 10.244.0.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.0.0/24 (ip -4 route show exact 10.244.0.0/24)'; fi
    if nsgen_has_route 4 10.244.1.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.1.0/24 (ip -4 route show exact 10.244.1.0/24)'; fi
    # The host's firewall: a forward hook that drops what this topology routes (a Docker host).
    nsgen_routed='cni0, eth0' nsgen_first=cni0
    if command -v nft >/dev/null; then
      nsgen_table="" nsgen_chain=""
      while read -r nsgen_word nsgen_rest; do
        case $nsgen_word in
          table) nsgen_table=${nsgen_rest% \{} ;;
          chain) nsgen_chain=${nsgen_rest% \{} ;;
          type)
            if [[ " $nsgen_rest " == *" hook forward "*" policy drop; "* ]]; then
              nsgen_warn "table $nsgen_table, chain $nsgen_chain (hook forward) has policy drop: what this topology routes ($nsgen_routed) is dropped there unless that chain accepts it (e.g. iptables -I FORWARD -i $nsgen_first -j ACCEPT and -o $nsgen_first, in DOCKER-USER on a Docker host; or nft insert rule $nsgen_table $nsgen_chain iifname $nsgen_first accept, and oifname)"
            fi
            ;;
        esac
      done < <(nft list chains 2>/dev/null)
    fi
    # iptables-legacy's tables are listed here only where its module holds one (no process else)
    if read -r _ 2>/dev/null </proc/net/ip_tables_names && { iptables-legacy -w -S FORWARD 2>/dev/null || { iptables -V | grep -q legacy && iptables -w -S FORWARD; }; } | grep -qx -- '-P FORWARD DROP'; then
      nsgen_warn "iptables-legacy's FORWARD chain has policy DROP: what this topology routes ($nsgen_routed) is dropped there unless it is accepted (e.g. iptables -I FORWARD -i $nsgen_first -j ACCEPT and -o $nsgen_first, in DOCKER-USER on a Docker host)"
    fi
    if nsgen_listed_chain iptables nat KUBE-SERVICES; then nsgen_problem 'iptables chain KUBE-SERVICES already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-NODEPORTS; then nsgen_problem 'iptables chain KUBE-NODEPORTS already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-MARK-MASQ; then nsgen_problem 'iptables chain KUBE-MARK-MASQ already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-POSTROUTING; then nsgen_problem 'iptables chain KUBE-POSTROUTING already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SVC-WEB; then nsgen_problem 'iptables chain KUBE-SVC-WEB already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-1; then nsgen_problem 'iptables chain KUBE-SEP-WEB-1 already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-2; then nsgen_problem 'iptables chain KUBE-SEP-WEB-2 already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-3; then nsgen_problem 'iptables chain KUBE-SEP-WEB-3 already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SVC-WEB-NP; then nsgen_problem 'iptables chain KUBE-SVC-WEB-NP already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-NP-1; then nsgen_problem 'iptables chain KUBE-SEP-WEB-NP-1 already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-NP-2; then nsgen_problem 'iptables chain KUBE-SEP-WEB-NP-2 already exists in table nat'; fi
    if nsgen_listed_chain iptables nat KUBE-SEP-WEB-NP-3; then nsgen_problem 'iptables chain KUBE-SEP-WEB-NP-3 already exists in table nat'; fi
    if iptables -w -t nat -C PREROUTING -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SERVICES 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat PREROUTING'; fi
    if iptables -w -t nat -C OUTPUT -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SERVICES 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat OUTPUT'; fi
    if iptables -w -t nat -C POSTROUTING -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-POSTROUTING 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat POSTROUTING'; fi
    if iptables -w -t nat -C POSTROUTING -s 10.244.0.0/16 '!' -d 10.244.0.0/16 -m comment --comment nsgen:k8s-fleet-gamma -j MASQUERADE 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat POSTROUTING'; fi
    if iptables -w -t nat -C POSTROUTING -s 10.244.0.0/16 -o eth0 -m comment --comment nsgen:k8s-fleet-gamma -j MASQUERADE 2>/dev/null; then nsgen_problem 'a masquerade rule tagged nsgen:k8s-fleet-gamma for 10.244.0.0/16 out of eth0 is already present'; fi
    if [[ -e /etc/netns/web-c/resolv.conf ]]; then nsgen_problem '/etc/netns/web-c/resolv.conf already exists'; fi
    if [[ -e /etc/netns/web-c/hosts ]]; then nsgen_problem '/etc/netns/web-c/hosts already exists'; fi
    if [[ -e /etc/netns/client-c/resolv.conf ]]; then nsgen_problem '/etc/netns/client-c/resolv.conf already exists'; fi
    if [[ -e /etc/netns/client-c/hosts ]]; then nsgen_problem '/etc/netns/client-c/hosts already exists'; fi
    if ! nsgen_listed_link eth0; then nsgen_problem 'external interface eth0 does not exist (the topology uses it; nsgen never creates it)'; fi
  fi
  if ((${#nsgen_problems[@]})); then
    nsgen_log "preflight refused, nothing was changed:"
    printf '[nsgen]   %s\n' "${nsgen_problems[@]}" >&2
    exit 1
  fi
  if ((${#nsgen_warnings[@]})); then
    printf '[nsgen] warning: %s\n' "${nsgen_warnings[@]}" >&2
  fi
}

nsgen_preflight
mkdir -p /run/nsgen
mkdir -- "$NSGEN_STATE"  # fails if another run claimed it in the meantime
trap 'nsgen_finish $?' EXIT
trap 'nsgen_signal=130; exit 130' INT
trap 'nsgen_signal=143; exit 143' TERM
printf '%s\n' "$NSGEN_DIGEST" >"$NSGEN_STATE/digest"

# ---- step 1/10: create 1 bridge in the root namespace ----------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch. Its address makes the root
# namespace a member of that network, and its gateway.
nsgen_undo_1() {
  nsgen_delete_links cni0
}
nsgen_begin 1 'create 1 bridge in the root namespace'
ip -b - <<'EOF'
link add cni0 type bridge
link set cni0 addrgenmode none
link set cni0 mtu 1450
link set cni0 up
addr add 10.244.2.1/24 dev cni0
EOF
nsgen_end 1

# ---- step 2/10: create 2 namespace(s): web-c, client-c ---------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. One `ip -b`
# creates them all.
nsgen_undo_2() {
  nsgen_delete_netns web-c client-c -- vetha30a1cc vetha41c55f
}
nsgen_begin 2 'create 2 namespace(s): web-c, client-c'
ip -b - <<'EOF'
netns add web-c
netns add client-c
EOF
nsgen_end 2

# ---- step 3/10: create veth pairs (2 veths) and VXLAN ----------------------
# veth pairs are virtual cables: each is created with both ends already in their
# namespaces, and the ends that stay in the root namespace are attached to their
# bridge and brought up, all in one `ip -b`. The same step also sets up the root
# namespace's VXLAN.
nsgen_undo_3() {
  nsgen_delete_links flannel.1
}
nsgen_begin 3 'create veth pairs (2 veths) and VXLAN'
ip -b - <<'EOF'
link add eth0 netns web-c type veth peer name vetha30a1cc
link add eth0 netns client-c type veth peer name vetha41c55f
link set vetha30a1cc addrgenmode none
link set vetha30a1cc mtu 1450
link set vetha30a1cc master cni0
link set vetha30a1cc type bridge_slave hairpin on
link set vetha30a1cc up
link set vetha41c55f addrgenmode none
link set vetha41c55f mtu 1450
link set vetha41c55f master cni0
link set vetha41c55f type bridge_slave hairpin on
link set vetha41c55f up
link add flannel.1 type vxlan id 1 local 192.0.2.3 dev eth0 dstport 8472 nolearning
link set flannel.1 addrgenmode none
link set flannel.1 address 0a:58:0a:f4:02:00
link set flannel.1 mtu 1450
addr add 10.244.2.0/32 dev flannel.1
link set flannel.1 up
EOF
nsgen_end 3

# ---- step 4/10: configure namespace web-c ----------------------------------
# Everything inside web-c, with one entry into the namespace: lo up; veth ends;
# routes.
# Undo: nothing of its own; it goes away with the namespace web-c.
nsgen_titles[4]='configure namespace web-c'
nsgen_do_4() {
nsgen_enter web-c ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.2.2/24 dev eth0
link set eth0 up
route add default via 10.244.2.1
EOF
}

# ---- step 5/10: configure namespace client-c -------------------------------
# Everything inside client-c, with one entry into the namespace: lo up; veth
# ends; routes.
# Undo: nothing of its own; it goes away with the namespace client-c.
nsgen_titles[5]='configure namespace client-c'
nsgen_do_5() {
nsgen_enter client-c ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.2.3/24 dev eth0
link set eth0 up
route add default via 10.244.2.1
EOF
}

# ---- steps 4-5 run side by side ------------------------------------------
# Each works inside its own namespace only, so they can share the machine's cores.
nsgen_lanes 4 5

# ---- step 6/10: add routes (2 routes) in the root namespace ----------------
# The root namespace's routes, neighbours and forwarding entries, in one `ip
# -b`.
nsgen_undo_6() {
  if nsgen_has_route 4 10.244.0.0/24 via 10.244.0.0 dev flannel.1; then ip -4 route del 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink; fi
  if nsgen_has_route 4 10.244.1.0/24 via 10.244.1.0 dev flannel.1; then ip -4 route del 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink; fi
}
nsgen_begin 6 'add routes (2 routes) in the root namespace'
ip -b - <<'EOF'
route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink
route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
neigh add 10.244.0.0 lladdr 0a:58:0a:f4:00:00 dev flannel.1 nud permanent
neigh add 10.244.1.0 lladdr 0a:58:0a:f4:01:00 dev flannel.1 nud permanent
EOF
bridge -b - <<'EOF'
fdb append 0a:58:0a:f4:00:00 dev flannel.1 dst 192.0.2.1
fdb append 0a:58:0a:f4:01:00 dev flannel.1 dst 192.0.2.2
EOF
nsgen_end 6

# ---- step 7/10: install 46 iptables change(s) in the root namespace --------
# Own chains and rules, in one `iptables-restore --noflush` (nothing else is
# flushed). Every rule carries the comment nsgen:k8s-fleet-gamma, and teardown
# removes exactly the rules with that comment and the chains created here.
nsgen_undo_7() {
  nsgen_remove_iptables nsgen:k8s-fleet-gamma nat/KUBE-SERVICES nat/KUBE-NODEPORTS nat/KUBE-MARK-MASQ nat/KUBE-POSTROUTING nat/KUBE-SVC-WEB nat/KUBE-SEP-WEB-1 nat/KUBE-SEP-WEB-2 nat/KUBE-SEP-WEB-3 nat/KUBE-SVC-WEB-NP nat/KUBE-SEP-WEB-NP-1 nat/KUBE-SEP-WEB-NP-2 nat/KUBE-SEP-WEB-NP-3
}
nsgen_begin 7 'install 46 iptables change(s) in the root namespace'
iptables-restore --noflush -w <<'EOF'
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-WEB-1 - [0:0]
:KUBE-SEP-WEB-2 - [0:0]
:KUBE-SEP-WEB-3 - [0:0]
:KUBE-SVC-WEB-NP - [0:0]
:KUBE-SEP-WEB-NP-1 - [0:0]
:KUBE-SEP-WEB-NP-2 - [0:0]
:KUBE-SEP-WEB-NP-3 - [0:0]
-A PREROUTING -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SERVICES
-A OUTPUT -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SERVICES
-A POSTROUTING -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-POSTROUTING
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment nsgen:k8s-fleet-gamma -j MASQUERADE
-A KUBE-MARK-MASQ -m comment --comment nsgen:k8s-fleet-gamma -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -m comment --comment nsgen:k8s-fleet-gamma -j RETURN
-A KUBE-POSTROUTING -m comment --comment nsgen:k8s-fleet-gamma -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment nsgen:k8s-fleet-gamma -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SVC-WEB
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp --dport 80 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SVC-WEB-NP
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp --dport 30080 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp --dport 30080 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SVC-WEB-NP
-A KUBE-SVC-WEB ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp --dport 80 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.33333333333 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-1
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.50000000000 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-2
-A KUBE-SVC-WEB -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-3
-A KUBE-SEP-WEB-1 -s 10.244.0.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-1 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.0.2:8080
-A KUBE-SEP-WEB-2 -s 10.244.1.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-2 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.1.2:8080
-A KUBE-SEP-WEB-3 -s 10.244.2.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-3 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.2.2:8080
-A KUBE-SVC-WEB-NP ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp --dport 80 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB-NP -m statistic --mode random --probability 0.33333333333 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-NP-1
-A KUBE-SVC-WEB-NP -m statistic --mode random --probability 0.50000000000 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-NP-2
-A KUBE-SVC-WEB-NP -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-SEP-WEB-NP-3
-A KUBE-SEP-WEB-NP-1 -s 10.244.0.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-NP-1 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.0.2:8080
-A KUBE-SEP-WEB-NP-2 -s 10.244.1.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-NP-2 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.1.2:8080
-A KUBE-SEP-WEB-NP-3 -s 10.244.2.2/32 -m comment --comment nsgen:k8s-fleet-gamma -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB-NP-3 -p tcp -m comment --comment nsgen:k8s-fleet-gamma -j DNAT --to-destination 10.244.2.2:8080
-A POSTROUTING -s 10.244.0.0/16 -o eth0 -m comment --comment nsgen:k8s-fleet-gamma -j MASQUERADE
COMMIT
EOF
nsgen_end 7

# ---- step 8/10: set net.ipv4.ip_forward=1 ----------------------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do. The previous value is saved
# and teardown puts it back.
nsgen_undo_8() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}
nsgen_begin 8 'set net.ipv4.ip_forward=1'
nsgen_save_sysctl net.ipv4.ip_forward
echo 1 > /proc/sys/net/ipv4/ip_forward
nsgen_end 8

# ---- step 9/10: write /etc/netns/web-c/resolv.conf, /etc/netns/web-c/hosts -
# 'ip netns exec web-c' shows files in /etc/netns/web-c/ in place of the host's
# /etc files, so programs in the namespace resolve names with these.
nsgen_undo_9() {
  rm -f /etc/netns/web-c/resolv.conf /etc/netns/web-c/hosts
  nsgen_remove_netns_dir web-c
}
nsgen_begin 9 'write /etc/netns/web-c/resolv.conf, /etc/netns/web-c/hosts'
nsgen_make_netns_dir web-c
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/web-c/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.2.2 web-c' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/web-c/hosts
nsgen_end 9

# ---- step 10/10: write /etc/netns/client-c/resolv.conf, /etc/netns/client-c/hosts
# 'ip netns exec client-c' shows files in /etc/netns/client-c/ in place of the
# host's /etc files, so programs in the namespace resolve names with these.
nsgen_undo_10() {
  rm -f /etc/netns/client-c/resolv.conf /etc/netns/client-c/hosts
  nsgen_remove_netns_dir client-c
}
nsgen_begin 10 'write /etc/netns/client-c/resolv.conf, /etc/netns/client-c/hosts'
nsgen_make_netns_dir client-c
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/client-c/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.2.3 client-c' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/client-c/hosts
nsgen_end 10

rm -f -- "$NSGEN_STATE"/errors*
printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
