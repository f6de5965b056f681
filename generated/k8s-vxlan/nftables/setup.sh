#!/usr/bin/env bash
# setup.sh for the nsgen topology k8s-vxlan
#   two k8s-style nodes (flannel vxlan), four pods, a ClusterIP and a NodePort service
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# b6fa63d3ab41a6af2e88363fdf7193cf7b3b9f15561f5f9bc8353e01600b62e7.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and nftables (nft), and root.
# Firewall backend: nftables (its own table inet nsgen_k8s-vxlan in each namespace with rules).
#
# It builds the network in 15 numbered steps, logging each one to stderr as
# "[nsgen] N/15 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
set -euo pipefail

readonly NSGEN_TOPOLOGY=k8s-vxlan
readonly NSGEN_DIGEST=b6fa63d3ab41a6af2e88363fdf7193cf7b3b9f15561f5f9bc8353e01600b62e7
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/k8s-vxlan
readonly NSGEN_STEPS=15

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
  command -v nft >/dev/null || nsgen_problem 'nft is not installed (the firewall backend is nftables: install the nftables package, or render with --firewall iptables)'
  if ((${#nsgen_problems[@]} == 0)); then
    nsgen_links_before=$(nsgen_root_links)
    if [[ -e $NSGEN_STATE ]]; then
      nsgen_problem "$NSGEN_TOPOLOGY is already set up, or being set up ($NSGEN_STATE exists); run teardown.sh first"
    fi
    if nsgen_has_netns node1; then nsgen_problem 'namespace node1 already exists'; fi
    if nsgen_has_netns web-a; then nsgen_problem 'namespace web-a already exists'; fi
    if nsgen_has_netns client-a; then nsgen_problem 'namespace client-a already exists'; fi
    if nsgen_has_netns node2; then nsgen_problem 'namespace node2 already exists'; fi
    if nsgen_has_netns web-b; then nsgen_problem 'namespace web-b already exists'; fi
    if nsgen_has_netns client-b; then nsgen_problem 'namespace client-b already exists'; fi
    if nsgen_listed_link k8s-nodes; then nsgen_problem 'link k8s-nodes already exists in the root namespace'; fi
    if nsgen_has_route 4 10.10.0.0/24; then nsgen_problem 'the root namespace already has a route to 10.10.0.0/24 (ip -4 route show exact 10.10.0.0/24)'; fi
    if [[ -n $(ip -o addr show to 10.10.0.254 2>/dev/null) ]]; then nsgen_problem 'address 10.10.0.254 is already assigned in the root namespace (ip addr show to 10.10.0.254)'; fi
    if nsgen_listed_link veth0e2b28f; then nsgen_problem 'link veth0e2b28f already exists in the root namespace'; fi
    if nsgen_listed_link vetha07da7a; then nsgen_problem 'link vetha07da7a already exists in the root namespace'; fi
    # The host's firewall: a forward hook that drops what this topology routes (a Docker host).
    nsgen_routed='k8s-nodes, eth0' nsgen_first=k8s-nodes
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
    if nft list table inet nsgen_k8s-vxlan >/dev/null 2>&1; then nsgen_problem 'nftables table inet nsgen_k8s-vxlan already exists in the root namespace'; fi
    if [[ -e /etc/netns/web-a/resolv.conf ]]; then nsgen_problem '/etc/netns/web-a/resolv.conf already exists'; fi
    if [[ -e /etc/netns/web-a/hosts ]]; then nsgen_problem '/etc/netns/web-a/hosts already exists'; fi
    if [[ -e /etc/netns/client-a/resolv.conf ]]; then nsgen_problem '/etc/netns/client-a/resolv.conf already exists'; fi
    if [[ -e /etc/netns/client-a/hosts ]]; then nsgen_problem '/etc/netns/client-a/hosts already exists'; fi
    if [[ -e /etc/netns/web-b/resolv.conf ]]; then nsgen_problem '/etc/netns/web-b/resolv.conf already exists'; fi
    if [[ -e /etc/netns/web-b/hosts ]]; then nsgen_problem '/etc/netns/web-b/hosts already exists'; fi
    if [[ -e /etc/netns/client-b/resolv.conf ]]; then nsgen_problem '/etc/netns/client-b/resolv.conf already exists'; fi
    if [[ -e /etc/netns/client-b/hosts ]]; then nsgen_problem '/etc/netns/client-b/hosts already exists'; fi
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

# ---- step 1/15: create 1 bridge in the root namespace ----------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch. Its address makes the root
# namespace a member of that network, and its gateway.
nsgen_undo_1() {
  nsgen_delete_links k8s-nodes
}
nsgen_begin 1 'create 1 bridge in the root namespace'
ip -b - <<'EOF'
link add k8s-nodes type bridge
link set k8s-nodes addrgenmode none
link set k8s-nodes up
addr add 10.10.0.254/24 dev k8s-nodes
EOF
nsgen_end 1

# ---- step 2/15: create 6 namespace(s): node1, web-a, client-a, node2, web-b, client-b
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. One `ip -b`
# creates them all.
nsgen_undo_2() {
  nsgen_delete_netns node1 web-a client-a node2 web-b client-b -- veth0e2b28f vetha07da7a
}
nsgen_begin 2 'create 6 namespace(s): node1, web-a, client-a, node2, web-b, client-b'
ip -b - <<'EOF'
netns add node1
netns add web-a
netns add client-a
netns add node2
netns add web-b
netns add client-b
EOF
nsgen_end 2

# ---- step 3/15: create veth pairs (6 veths) --------------------------------
# veth pairs are virtual cables: each is created with both ends already in their
# namespaces, and the ends that stay in the root namespace are attached to their
# bridge and brought up, all in one `ip -b`.
# Undo: nothing of its own; it goes away with the 6 namespaces its pairs reach into.
nsgen_begin 3 'create veth pairs (6 veths)'
ip -b - <<'EOF'
link add eth0 netns node1 type veth peer name veth0e2b28f
link add eth0 netns web-a index 10001 type veth peer name veth641dd18 netns node1
link add eth0 netns client-a index 10002 type veth peer name vethb4f2d9d netns node1
link add eth0 netns node2 type veth peer name vetha07da7a
link add eth0 netns web-b index 10003 type veth peer name veth0df4397 netns node2
link add eth0 netns client-b index 10004 type veth peer name veth07834ea netns node2
link set veth0e2b28f addrgenmode none
link set veth0e2b28f master k8s-nodes
link set veth0e2b28f up
link set vetha07da7a addrgenmode none
link set vetha07da7a master k8s-nodes
link set vetha07da7a up
EOF
nsgen_end 3

# ---- step 4/15: configure namespace node1 ----------------------------------
# Everything inside node1, with one entry into the namespace: lo up; bridges;
# addresses; veth ends; VXLAN; routes; neighbours; FDB entries; nftables;
# sysctls.
# Undo: nothing of its own; it goes away with the namespace node1.
nsgen_titles[4]='configure namespace node1'
nsgen_do_4() {
nsgen_enter node1 ip -b - <<'EOF'
link set lo up
link add cni0 type bridge
link set cni0 addrgenmode none
link set cni0 mtu 1450
link set cni0 up
addr add 10.244.0.1/24 dev cni0
link set eth0 addrgenmode none
addr add 10.10.0.1/24 dev eth0
link set eth0 up
link set veth641dd18 addrgenmode none
link set veth641dd18 mtu 1450
link set veth641dd18 master cni0
link set veth641dd18 type bridge_slave hairpin on
link set veth641dd18 up
link set vethb4f2d9d addrgenmode none
link set vethb4f2d9d mtu 1450
link set vethb4f2d9d master cni0
link set vethb4f2d9d type bridge_slave hairpin on
link set vethb4f2d9d up
link add flannel.1 type vxlan id 1 local 10.10.0.1 dev eth0 dstport 8472 nolearning
link set flannel.1 addrgenmode none
link set flannel.1 address 0a:58:0a:f4:00:00
link set flannel.1 mtu 1450
addr add 10.244.0.0/32 dev flannel.1
link set flannel.1 up
route add default via 10.10.0.254
route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
neigh add 10.244.1.0 lladdr 0a:58:0a:f4:01:00 dev flannel.1 nud permanent
EOF
nsgen_enter node1 bridge -b - <<'EOF'
fdb append 0a:58:0a:f4:01:00 dev flannel.1 dst 10.10.0.2
EOF
nsgen_enter node1 nft -f - <<'EOF'
create table inet nsgen_k8s-vxlan { comment "nsgen:k8s-vxlan" ; }
add chain inet nsgen_k8s-vxlan nat-PREROUTING { type nat hook prerouting priority dstnat ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-OUTPUT { type nat hook output priority -100 ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-POSTROUTING { type nat hook postrouting priority srcnat ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-KUBE-SERVICES
add chain inet nsgen_k8s-vxlan nat-KUBE-NODEPORTS
add chain inet nsgen_k8s-vxlan nat-KUBE-MARK-MASQ
add chain inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING
add chain inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2
add chain inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2
add chain inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP
add rule inet nsgen_k8s-vxlan nat-PREROUTING counter jump nat-KUBE-SERVICES comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-OUTPUT counter jump nat-KUBE-SERVICES comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-POSTROUTING counter jump nat-KUBE-POSTROUTING comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-POSTROUTING ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 counter masquerade comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-MARK-MASQ counter meta mark set meta mark or 0x4000 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING meta mark & 0x4000 != 0x4000 counter return comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING counter meta mark set meta mark xor 0x4000 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING counter masquerade comment "nsgen:k8s-vxlan"
add map inet nsgen_k8s-vxlan nat-service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add element inet nsgen_k8s-vxlan nat-service-ips { 10.96.0.10 . tcp . 80 : jump nat-KUBE-SVC-WEB }
add element inet nsgen_k8s-vxlan nat-service-ips { 10.96.0.1 . tcp . 80 : jump nat-KUBE-SVC-WEB-NP }
add rule inet nsgen_k8s-vxlan nat-KUBE-SERVICES counter ip daddr . meta l4proto . th dport vmap @nat-service-ips comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SERVICES fib daddr type local counter jump nat-KUBE-NODEPORTS comment "nsgen:k8s-vxlan"
add map inet nsgen_k8s-vxlan nat-service-nodeports { type inet_proto . inet_service : verdict ; }
add element inet nsgen_k8s-vxlan nat-service-nodeports { tcp . 30080 : jump nat-KUBE-EXT-WEB-NP }
add rule inet nsgen_k8s-vxlan nat-KUBE-NODEPORTS counter meta l4proto . th dport vmap @nat-service-nodeports comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP counter jump nat-KUBE-SVC-WEB-NP comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 tcp dport 80 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB counter numgen random mod 2 vmap { 0 : jump nat-KUBE-SEP-WEB-1, 1 : jump nat-KUBE-SEP-WEB-2 } comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1 ip saddr 10.244.0.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1 meta l4proto tcp counter dnat ip to 10.244.0.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2 ip saddr 10.244.1.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2 meta l4proto tcp counter dnat ip to 10.244.1.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP ip saddr != 10.244.0.0/16 ip daddr 10.96.0.1 tcp dport 80 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP counter numgen random mod 2 vmap { 0 : jump nat-KUBE-SEP-WEB-NP-1, 1 : jump nat-KUBE-SEP-WEB-NP-2 } comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1 ip saddr 10.244.0.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1 meta l4proto tcp counter dnat ip to 10.244.0.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2 ip saddr 10.244.1.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2 meta l4proto tcp counter dnat ip to 10.244.1.2:8080 comment "nsgen:k8s-vxlan"
EOF
nsgen_enter node1 bash -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
}

# ---- step 5/15: configure namespace web-a ----------------------------------
# Everything inside web-a, with one entry into the namespace: lo up; veth ends;
# routes.
# Undo: nothing of its own; it goes away with the namespace web-a.
nsgen_titles[5]='configure namespace web-a'
nsgen_do_5() {
nsgen_enter web-a ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.0.2/24 dev eth0
link set eth0 up
route add default via 10.244.0.1
EOF
}

# ---- step 6/15: configure namespace client-a -------------------------------
# Everything inside client-a, with one entry into the namespace: lo up; veth
# ends; routes.
# Undo: nothing of its own; it goes away with the namespace client-a.
nsgen_titles[6]='configure namespace client-a'
nsgen_do_6() {
nsgen_enter client-a ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.0.3/24 dev eth0
link set eth0 up
route add default via 10.244.0.1
EOF
}

# ---- step 7/15: configure namespace node2 ----------------------------------
# Everything inside node2, with one entry into the namespace: lo up; bridges;
# addresses; veth ends; VXLAN; routes; neighbours; FDB entries; nftables;
# sysctls.
# Undo: nothing of its own; it goes away with the namespace node2.
nsgen_titles[7]='configure namespace node2'
nsgen_do_7() {
nsgen_enter node2 ip -b - <<'EOF'
link set lo up
link add cni0 type bridge
link set cni0 addrgenmode none
link set cni0 mtu 1450
link set cni0 up
addr add 10.244.1.1/24 dev cni0
link set eth0 addrgenmode none
addr add 10.10.0.2/24 dev eth0
link set eth0 up
link set veth0df4397 addrgenmode none
link set veth0df4397 mtu 1450
link set veth0df4397 master cni0
link set veth0df4397 type bridge_slave hairpin on
link set veth0df4397 up
link set veth07834ea addrgenmode none
link set veth07834ea mtu 1450
link set veth07834ea master cni0
link set veth07834ea type bridge_slave hairpin on
link set veth07834ea up
link add flannel.1 type vxlan id 1 local 10.10.0.2 dev eth0 dstport 8472 nolearning
link set flannel.1 addrgenmode none
link set flannel.1 address 0a:58:0a:f4:01:00
link set flannel.1 mtu 1450
addr add 10.244.1.0/32 dev flannel.1
link set flannel.1 up
route add default via 10.10.0.254
route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink
neigh add 10.244.0.0 lladdr 0a:58:0a:f4:00:00 dev flannel.1 nud permanent
EOF
nsgen_enter node2 bridge -b - <<'EOF'
fdb append 0a:58:0a:f4:00:00 dev flannel.1 dst 10.10.0.1
EOF
nsgen_enter node2 nft -f - <<'EOF'
create table inet nsgen_k8s-vxlan { comment "nsgen:k8s-vxlan" ; }
add chain inet nsgen_k8s-vxlan nat-PREROUTING { type nat hook prerouting priority dstnat ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-OUTPUT { type nat hook output priority -100 ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-POSTROUTING { type nat hook postrouting priority srcnat ; policy accept ; }
add chain inet nsgen_k8s-vxlan nat-KUBE-SERVICES
add chain inet nsgen_k8s-vxlan nat-KUBE-NODEPORTS
add chain inet nsgen_k8s-vxlan nat-KUBE-MARK-MASQ
add chain inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING
add chain inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2
add chain inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1
add chain inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2
add chain inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP
add rule inet nsgen_k8s-vxlan nat-PREROUTING counter jump nat-KUBE-SERVICES comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-OUTPUT counter jump nat-KUBE-SERVICES comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-POSTROUTING counter jump nat-KUBE-POSTROUTING comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-POSTROUTING ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 counter masquerade comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-MARK-MASQ counter meta mark set meta mark or 0x4000 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING meta mark & 0x4000 != 0x4000 counter return comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING counter meta mark set meta mark xor 0x4000 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-POSTROUTING counter masquerade comment "nsgen:k8s-vxlan"
add map inet nsgen_k8s-vxlan nat-service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add element inet nsgen_k8s-vxlan nat-service-ips { 10.96.0.10 . tcp . 80 : jump nat-KUBE-SVC-WEB }
add element inet nsgen_k8s-vxlan nat-service-ips { 10.96.0.1 . tcp . 80 : jump nat-KUBE-SVC-WEB-NP }
add rule inet nsgen_k8s-vxlan nat-KUBE-SERVICES counter ip daddr . meta l4proto . th dport vmap @nat-service-ips comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SERVICES fib daddr type local counter jump nat-KUBE-NODEPORTS comment "nsgen:k8s-vxlan"
add map inet nsgen_k8s-vxlan nat-service-nodeports { type inet_proto . inet_service : verdict ; }
add element inet nsgen_k8s-vxlan nat-service-nodeports { tcp . 30080 : jump nat-KUBE-EXT-WEB-NP }
add rule inet nsgen_k8s-vxlan nat-KUBE-NODEPORTS counter meta l4proto . th dport vmap @nat-service-nodeports comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-EXT-WEB-NP counter jump nat-KUBE-SVC-WEB-NP comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 tcp dport 80 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB counter numgen random mod 2 vmap { 0 : jump nat-KUBE-SEP-WEB-1, 1 : jump nat-KUBE-SEP-WEB-2 } comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1 ip saddr 10.244.0.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-1 meta l4proto tcp counter dnat ip to 10.244.0.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2 ip saddr 10.244.1.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-2 meta l4proto tcp counter dnat ip to 10.244.1.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP ip saddr != 10.244.0.0/16 ip daddr 10.96.0.1 tcp dport 80 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SVC-WEB-NP counter numgen random mod 2 vmap { 0 : jump nat-KUBE-SEP-WEB-NP-1, 1 : jump nat-KUBE-SEP-WEB-NP-2 } comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1 ip saddr 10.244.0.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-1 meta l4proto tcp counter dnat ip to 10.244.0.2:8080 comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2 ip saddr 10.244.1.2 counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-KUBE-SEP-WEB-NP-2 meta l4proto tcp counter dnat ip to 10.244.1.2:8080 comment "nsgen:k8s-vxlan"
EOF
nsgen_enter node2 bash -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
}

# ---- step 8/15: configure namespace web-b ----------------------------------
# Everything inside web-b, with one entry into the namespace: lo up; veth ends;
# routes.
# Undo: nothing of its own; it goes away with the namespace web-b.
nsgen_titles[8]='configure namespace web-b'
nsgen_do_8() {
nsgen_enter web-b ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.1.2/24 dev eth0
link set eth0 up
route add default via 10.244.1.1
EOF
}

# ---- step 9/15: configure namespace client-b -------------------------------
# Everything inside client-b, with one entry into the namespace: lo up; veth
# ends; routes.
# Undo: nothing of its own; it goes away with the namespace client-b.
nsgen_titles[9]='configure namespace client-b'
nsgen_do_9() {
nsgen_enter client-b ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 mtu 1450
addr add 10.244.1.3/24 dev eth0
link set eth0 up
route add default via 10.244.1.1
EOF
}

# ---- steps 4-9 run side by side ------------------------------------------
# Each works inside its own namespace only, so they can share the machine's cores.
nsgen_lanes 4 9

# ---- step 10/15: install nftables table inet nsgen_k8s-vxlan in the root namespace (3 change(s))
# The topology's own table with its chains and rules, in one `nft -f -`: one
# transaction, so the table is installed whole or not at all, and no other table
# is touched. Every rule has a counter and the comment nsgen:k8s-vxlan; teardown
# deletes exactly this table.
nsgen_undo_10() {
  if nft list table inet nsgen_k8s-vxlan >/dev/null 2>&1; then
    nft delete table inet nsgen_k8s-vxlan
  fi
}
nsgen_begin 10 'install nftables table inet nsgen_k8s-vxlan in the root namespace (3 change(s))'
nft -f - <<'EOF'
create table inet nsgen_k8s-vxlan { comment "nsgen:k8s-vxlan" ; }
add chain inet nsgen_k8s-vxlan nat-POSTROUTING { type nat hook postrouting priority srcnat ; policy accept ; }
add rule inet nsgen_k8s-vxlan nat-POSTROUTING oifname "eth0" ip saddr 10.10.0.0/24 counter masquerade comment "nsgen:k8s-vxlan"
add rule inet nsgen_k8s-vxlan nat-POSTROUTING oifname "eth0" ip saddr 10.244.0.0/16 counter masquerade comment "nsgen:k8s-vxlan"
EOF
nsgen_end 10

# ---- step 11/15: set net.ipv4.ip_forward=1 ---------------------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do. The previous value is saved
# and teardown puts it back.
nsgen_undo_11() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}
nsgen_begin 11 'set net.ipv4.ip_forward=1'
nsgen_save_sysctl net.ipv4.ip_forward
echo 1 > /proc/sys/net/ipv4/ip_forward
nsgen_end 11

# ---- step 12/15: write /etc/netns/web-a/resolv.conf, /etc/netns/web-a/hosts
# 'ip netns exec web-a' shows files in /etc/netns/web-a/ in place of the host's
# /etc files, so programs in the namespace resolve names with these.
nsgen_undo_12() {
  rm -f /etc/netns/web-a/resolv.conf /etc/netns/web-a/hosts
  nsgen_remove_netns_dir web-a
}
nsgen_begin 12 'write /etc/netns/web-a/resolv.conf, /etc/netns/web-a/hosts'
nsgen_make_netns_dir web-a
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/web-a/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.0.2 web-a' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/web-a/hosts
nsgen_end 12

# ---- step 13/15: write /etc/netns/client-a/resolv.conf, /etc/netns/client-a/hosts
# 'ip netns exec client-a' shows files in /etc/netns/client-a/ in place of the
# host's /etc files, so programs in the namespace resolve names with these.
nsgen_undo_13() {
  rm -f /etc/netns/client-a/resolv.conf /etc/netns/client-a/hosts
  nsgen_remove_netns_dir client-a
}
nsgen_begin 13 'write /etc/netns/client-a/resolv.conf, /etc/netns/client-a/hosts'
nsgen_make_netns_dir client-a
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/client-a/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.0.3 client-a' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/client-a/hosts
nsgen_end 13

# ---- step 14/15: write /etc/netns/web-b/resolv.conf, /etc/netns/web-b/hosts
# 'ip netns exec web-b' shows files in /etc/netns/web-b/ in place of the host's
# /etc files, so programs in the namespace resolve names with these.
nsgen_undo_14() {
  rm -f /etc/netns/web-b/resolv.conf /etc/netns/web-b/hosts
  nsgen_remove_netns_dir web-b
}
nsgen_begin 14 'write /etc/netns/web-b/resolv.conf, /etc/netns/web-b/hosts'
nsgen_make_netns_dir web-b
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/web-b/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.1.2 web-b' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/web-b/hosts
nsgen_end 14

# ---- step 15/15: write /etc/netns/client-b/resolv.conf, /etc/netns/client-b/hosts
# 'ip netns exec client-b' shows files in /etc/netns/client-b/ in place of the
# host's /etc files, so programs in the namespace resolve names with these.
nsgen_undo_15() {
  rm -f /etc/netns/client-b/resolv.conf /etc/netns/client-b/hosts
  nsgen_remove_netns_dir client-b
}
nsgen_begin 15 'write /etc/netns/client-b/resolv.conf, /etc/netns/client-b/hosts'
nsgen_make_netns_dir client-b
printf '%s\n' 'nameserver 127.0.0.1' 'search default.svc.cluster.local svc.cluster.local cluster.local' > /etc/netns/client-b/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.244.1.3 client-b' '10.96.0.10 web' '10.96.0.10 web.default' '10.96.0.10 web.default.svc' '10.96.0.10 web.default.svc.cluster.local' '10.96.0.1 web-np' '10.96.0.1 web-np.default' '10.96.0.1 web-np.default.svc' '10.96.0.1 web-np.default.svc.cluster.local' > /etc/netns/client-b/hosts
nsgen_end 15

rm -f -- "$NSGEN_STATE"/errors*
printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
