#!/usr/bin/env bash
# preflight.sh for the nsgen topology k8s-fleet-alpha
#   a k8s-style cluster on three machines (flannel vxlan), two pods per node, a ClusterIP and a NodePort service
#   The share of host alpha in k8s-fleet, spread over alpha, beta, gamma.
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# 93d619b607b2ed1bb04f1d65a6e30e19230d26a3e1c1a8ade616856c3abf31a6.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
# Firewall backend: iptables (every rule carries the comment nsgen:k8s-fleet-alpha).
#
# It runs setup.sh's own preflight and nothing else: it changes nothing, and exits 1 listing
# every reason the host is not ready (0 if it is). site.yml runs it on every host before
# setup.sh runs on any, so one host that is not ready stops the fleet before any change.
# (The shared prelude below also names the digest and the step count, which only setup.sh
# uses.)
# shellcheck disable=SC2034
set -euo pipefail
readonly NSGEN_TOPOLOGY=k8s-fleet-alpha
readonly NSGEN_DIGEST=93d619b607b2ed1bb04f1d65a6e30e19230d26a3e1c1a8ade616856c3abf31a6
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/k8s-fleet-alpha
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
    if nsgen_has_netns web-a; then nsgen_problem 'namespace web-a already exists'; fi
    if nsgen_has_netns client-a; then nsgen_problem 'namespace client-a already exists'; fi
    if nsgen_listed_link cni0; then nsgen_problem 'link cni0 already exists in the root namespace'; fi
    if nsgen_has_route 4 10.244.0.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.0.0/24 (ip -4 route show exact 10.244.0.0/24)'; fi
    if [[ -n $(ip -o addr show to 10.244.0.1 2>/dev/null) ]]; then nsgen_problem 'address 10.244.0.1 is already assigned in the root namespace (ip addr show to 10.244.0.1)'; fi
    if nsgen_listed_link vethe26375a; then nsgen_problem 'link vethe26375a already exists in the root namespace'; fi
    if nsgen_listed_link veth2377776; then nsgen_problem 'link veth2377776 already exists in the root namespace'; fi
    if nsgen_listed_link flannel.1; then nsgen_problem 'link flannel.1 already exists in the root namespace'; fi
    if nsgen_has_route 4 10.244.0.0/32; then nsgen_problem 'the root namespace already has a route to 10.244.0.0/32 (ip -4 route show exact 10.244.0.0/32)'; fi
    if [[ -n $(ip -o addr show to 10.244.0.0 2>/dev/null) ]]; then nsgen_problem 'address 10.244.0.0 is already assigned in the root namespace (ip addr show to 10.244.0.0)'; fi
    if nsgen_has_route 4 10.244.1.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.1.0/24 (ip -4 route show exact 10.244.1.0/24)'; fi
    if nsgen_has_route 4 10.244.2.0/24; then nsgen_problem 'the root namespace already has a route to 10.244.2.0/24 (ip -4 route show exact 10.244.2.0/24)'; fi
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
    if iptables -w -t nat -C PREROUTING -m comment --comment nsgen:k8s-fleet-alpha -j KUBE-SERVICES 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat PREROUTING'; fi
    if iptables -w -t nat -C OUTPUT -m comment --comment nsgen:k8s-fleet-alpha -j KUBE-SERVICES 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat OUTPUT'; fi
    if iptables -w -t nat -C POSTROUTING -m comment --comment nsgen:k8s-fleet-alpha -j KUBE-POSTROUTING 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat POSTROUTING'; fi
    if iptables -w -t nat -C POSTROUTING -s 10.244.0.0/16 '!' -d 10.244.0.0/16 -m comment --comment nsgen:k8s-fleet-alpha -j MASQUERADE 2>/dev/null; then nsgen_problem 'an iptables rule tagged like this one is already in nat POSTROUTING'; fi
    if iptables -w -t nat -C POSTROUTING -s 10.244.0.0/16 -o eth0 -m comment --comment nsgen:k8s-fleet-alpha -j MASQUERADE 2>/dev/null; then nsgen_problem 'a masquerade rule tagged nsgen:k8s-fleet-alpha for 10.244.0.0/16 out of eth0 is already present'; fi
    if [[ -e /etc/netns/web-a/resolv.conf ]]; then nsgen_problem '/etc/netns/web-a/resolv.conf already exists'; fi
    if [[ -e /etc/netns/web-a/hosts ]]; then nsgen_problem '/etc/netns/web-a/hosts already exists'; fi
    if [[ -e /etc/netns/client-a/resolv.conf ]]; then nsgen_problem '/etc/netns/client-a/resolv.conf already exists'; fi
    if [[ -e /etc/netns/client-a/hosts ]]; then nsgen_problem '/etc/netns/client-a/hosts already exists'; fi
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
