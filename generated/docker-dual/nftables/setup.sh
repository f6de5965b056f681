#!/usr/bin/env bash
# setup.sh for the nsgen topology docker-dual
#   docker-bridge in both families (NAT and NAT66, published port on both, internal backend)
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# d7918a4631aa7e7f7f745264dbecb9c9898127301fb1bf11e6627a013150b855.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and nftables (nft), and root.
# Firewall backend: nftables (its own table inet nsgen_docker-dual in each namespace with rules).
#
# It builds the network in 13 numbered steps, logging each one to stderr as
# "[nsgen] N/13 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
set -euo pipefail

readonly NSGEN_TOPOLOGY=docker-dual
readonly NSGEN_DIGEST=d7918a4631aa7e7f7f745264dbecb9c9898127301fb1bf11e6627a013150b855
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/docker-dual
readonly NSGEN_STEPS=13

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
  command -v nft >/dev/null || nsgen_problem 'nft is not installed (the firewall backend is nftables: install the nftables package, or render with --firewall iptables)'
  if ((${#nsgen_problems[@]} == 0)); then
    nsgen_links_before=$(nsgen_root_links)
    if [[ -e $NSGEN_STATE ]]; then
      nsgen_problem "$NSGEN_TOPOLOGY is already set up, or being set up ($NSGEN_STATE exists); run teardown.sh first"
    fi
    if nsgen_has_netns web; then nsgen_problem 'namespace web already exists'; fi
    if nsgen_has_netns client; then nsgen_problem 'namespace client already exists'; fi
    if nsgen_has_netns db; then nsgen_problem 'namespace db already exists'; fi
    if nsgen_listed_link br-frontend; then nsgen_problem 'link br-frontend already exists in the root namespace'; fi
    if nsgen_listed_link br-backend; then nsgen_problem 'link br-backend already exists in the root namespace'; fi
    if nsgen_has_route 4 172.18.0.0/24; then nsgen_problem 'the root namespace already has a route to 172.18.0.0/24 (ip -4 route show exact 172.18.0.0/24)'; fi
    if [[ -n $(ip -o addr show to 172.18.0.1 2>/dev/null) ]]; then nsgen_problem 'address 172.18.0.1 is already assigned in the root namespace (ip addr show to 172.18.0.1)'; fi
    if nsgen_has_route 6 fd65:c96d:ce98::/64; then nsgen_problem 'the root namespace already has a route to fd65:c96d:ce98::/64 (ip -6 route show exact fd65:c96d:ce98::/64)'; fi
    if [[ -n $(ip -o addr show to fd65:c96d:ce98::1 2>/dev/null) ]]; then nsgen_problem 'address fd65:c96d:ce98::1 is already assigned in the root namespace (ip addr show to fd65:c96d:ce98::1)'; fi
    if nsgen_has_route 4 172.19.0.0/24; then nsgen_problem 'the root namespace already has a route to 172.19.0.0/24 (ip -4 route show exact 172.19.0.0/24)'; fi
    if [[ -n $(ip -o addr show to 172.19.0.1 2>/dev/null) ]]; then nsgen_problem 'address 172.19.0.1 is already assigned in the root namespace (ip addr show to 172.19.0.1)'; fi
    if nsgen_has_route 6 fd00:19::/64; then nsgen_problem 'the root namespace already has a route to fd00:19::/64 (ip -6 route show exact fd00:19::/64)'; fi
    if [[ -n $(ip -o addr show to fd00:19::1 2>/dev/null) ]]; then nsgen_problem 'address fd00:19::1 is already assigned in the root namespace (ip addr show to fd00:19::1)'; fi
    if nsgen_listed_link veth54df897; then nsgen_problem 'link veth54df897 already exists in the root namespace'; fi
    if nsgen_listed_link vethc489a94; then nsgen_problem 'link vethc489a94 already exists in the root namespace'; fi
    if nsgen_listed_link veth1787973; then nsgen_problem 'link veth1787973 already exists in the root namespace'; fi
    if nsgen_listed_link veth67ab42d; then nsgen_problem 'link veth67ab42d already exists in the root namespace'; fi
    # The host's firewall: a forward hook that drops what this topology routes (a Docker host).
    nsgen_routed='br-frontend, br-backend, eth0' nsgen_first=br-frontend
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
    if nft list table inet nsgen_docker-dual >/dev/null 2>&1; then nsgen_problem 'nftables table inet nsgen_docker-dual already exists in the root namespace'; fi
    if [[ -e /etc/netns/web/resolv.conf ]]; then nsgen_problem '/etc/netns/web/resolv.conf already exists'; fi
    if [[ -e /etc/netns/web/hosts ]]; then nsgen_problem '/etc/netns/web/hosts already exists'; fi
    if [[ -e /etc/netns/client/resolv.conf ]]; then nsgen_problem '/etc/netns/client/resolv.conf already exists'; fi
    if [[ -e /etc/netns/client/hosts ]]; then nsgen_problem '/etc/netns/client/hosts already exists'; fi
    if [[ -e /etc/netns/db/resolv.conf ]]; then nsgen_problem '/etc/netns/db/resolv.conf already exists'; fi
    if [[ -e /etc/netns/db/hosts ]]; then nsgen_problem '/etc/netns/db/hosts already exists'; fi
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

# ---- step 1/13: create 2 bridges in the root namespace ---------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch. Its address makes the root
# namespace a member of that network, and its gateway.
nsgen_undo_1() {
  nsgen_delete_links br-frontend br-backend
}
nsgen_begin 1 'create 2 bridges in the root namespace'
ip -b - <<'EOF'
link add br-frontend type bridge
link set br-frontend addrgenmode none
addr add fe80::6549:d6e9:2b53:6212/64 dev br-frontend nodad
link set br-frontend up
link add br-backend type bridge
link set br-backend addrgenmode none
addr add fe80::a2db:f817:8df7:1e6b/64 dev br-backend nodad
link set br-backend up
addr add 172.18.0.1/24 dev br-frontend
addr add fd65:c96d:ce98::1/64 dev br-frontend nodad
addr add 172.19.0.1/24 dev br-backend
addr add fd00:19::1/64 dev br-backend nodad
EOF
nsgen_end 1

# ---- step 2/13: create 3 namespace(s): web, client, db ---------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. One `ip -b`
# creates them all.
nsgen_undo_2() {
  nsgen_delete_netns web client db -- veth54df897 vethc489a94 veth1787973 veth67ab42d
}
nsgen_begin 2 'create 3 namespace(s): web, client, db'
ip -b - <<'EOF'
netns add web
netns add client
netns add db
EOF
nsgen_end 2

# ---- step 3/13: create veth pairs (4 veths) --------------------------------
# veth pairs are virtual cables: each is created with both ends already in their
# namespaces, and the ends that stay in the root namespace are attached to their
# bridge and brought up, all in one `ip -b`.
# Undo: nothing of its own; it goes away with the namespaces web, client and db.
nsgen_begin 3 'create veth pairs (4 veths)'
ip -b - <<'EOF'
link add eth0 netns web type veth peer name veth54df897
link add eth1 netns web type veth peer name vethc489a94
link add eth0 netns client type veth peer name veth1787973
link add eth0 netns db type veth peer name veth67ab42d
link set veth54df897 addrgenmode none
link set veth54df897 master br-frontend
link set veth54df897 type bridge_slave hairpin on
link set veth54df897 up
link set vethc489a94 addrgenmode none
link set vethc489a94 master br-backend
link set vethc489a94 type bridge_slave hairpin on
link set vethc489a94 up
link set veth1787973 addrgenmode none
link set veth1787973 master br-frontend
link set veth1787973 type bridge_slave hairpin on
link set veth1787973 up
link set veth67ab42d addrgenmode none
link set veth67ab42d master br-backend
link set veth67ab42d type bridge_slave hairpin on
link set veth67ab42d up
EOF
nsgen_end 3

# ---- step 4/13: configure namespace web ------------------------------------
# Everything inside web, with one entry into the namespace: lo up; veth ends;
# routes.
# Undo: nothing of its own; it goes away with the namespace web.
nsgen_titles[4]='configure namespace web'
nsgen_do_4() {
nsgen_enter web ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
addr add 172.18.0.2/24 dev eth0
addr add fd65:c96d:ce98::2/64 dev eth0 nodad
addr add fe80::c314:4268:9273:504a/64 dev eth0 nodad
link set eth0 up
link set eth1 addrgenmode none
addr add 172.19.0.2/24 dev eth1
addr add fd00:19::2/64 dev eth1 nodad
addr add fe80::64bb:104e:e365:9355/64 dev eth1 nodad
link set eth1 up
route add default via 172.18.0.1
route add default via fd65:c96d:ce98::1
EOF
}

# ---- step 5/13: configure namespace client ---------------------------------
# Everything inside client, with one entry into the namespace: lo up; veth ends;
# routes.
# Undo: nothing of its own; it goes away with the namespace client.
nsgen_titles[5]='configure namespace client'
nsgen_do_5() {
nsgen_enter client ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
addr add 172.18.0.3/24 dev eth0
addr add fd65:c96d:ce98::3/64 dev eth0 nodad
addr add fe80::9bd1:f3d1:5515:1b63/64 dev eth0 nodad
link set eth0 up
route add default via 172.18.0.1
route add default via fd65:c96d:ce98::1
EOF
}

# ---- step 6/13: configure namespace db -------------------------------------
# Everything inside db, with one entry into the namespace: lo up; veth ends.
# Undo: nothing of its own; it goes away with the namespace db.
nsgen_titles[6]='configure namespace db'
nsgen_do_6() {
nsgen_enter db ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
addr add 172.19.0.10/24 dev eth0
addr add fd00:19::10/64 dev eth0 nodad
addr add fe80::9f18:f2b4:6cb7:907a/64 dev eth0 nodad
link set eth0 up
EOF
}

# ---- steps 4-6 run side by side ------------------------------------------
# Each works inside its own namespace only, so they can share the machine's cores.
nsgen_lanes 4 6

# ---- step 7/13: install nftables table inet nsgen_docker-dual in the root namespace (24 change(s))
# The topology's own table with its chains and rules, in one `nft -f -`: one
# transaction, so the table is installed whole or not at all, and no other table
# is touched. Every rule has a counter and the comment nsgen:docker-dual;
# teardown deletes exactly this table.
nsgen_undo_7() {
  if nft list table inet nsgen_docker-dual >/dev/null 2>&1; then
    nft delete table inet nsgen_docker-dual
  fi
}
nsgen_begin 7 'install nftables table inet nsgen_docker-dual in the root namespace (24 change(s))'
nft -f - <<'EOF'
create table inet nsgen_docker-dual { comment "nsgen:docker-dual" ; }
add chain inet nsgen_docker-dual nat-PREROUTING { type nat hook prerouting priority dstnat ; policy accept ; }
add chain inet nsgen_docker-dual nat-OUTPUT { type nat hook output priority -100 ; policy accept ; }
add chain inet nsgen_docker-dual nat-POSTROUTING { type nat hook postrouting priority srcnat ; policy accept ; }
add chain inet nsgen_docker-dual filter-FORWARD { type filter hook forward priority filter ; policy accept ; }
add chain inet nsgen_docker-dual filter-NSGEN-docker-dual-FWD
add chain inet nsgen_docker-dual filter-forward-in__br-frontend
add chain inet nsgen_docker-dual filter-forward-in__br-backend
add chain inet nsgen_docker-dual filter-forward-out__br-frontend
add chain inet nsgen_docker-dual filter-forward-out__br-backend
add chain inet nsgen_docker-dual nat-NSGEN-docker-dual-DNAT
insert rule inet nsgen_docker-dual filter-FORWARD counter jump filter-NSGEN-docker-dual-FWD comment "nsgen:docker-dual"
add map inet nsgen_docker-dual filter-forward-in-jumps { type ifname : verdict ; }
add element inet nsgen_docker-dual filter-forward-in-jumps { "br-frontend" : jump filter-forward-in__br-frontend }
add element inet nsgen_docker-dual filter-forward-in-jumps { "br-backend" : jump filter-forward-in__br-backend }
add rule inet nsgen_docker-dual filter-NSGEN-docker-dual-FWD counter oifname vmap @filter-forward-in-jumps comment "nsgen:docker-dual"
add map inet nsgen_docker-dual filter-forward-out-jumps { type ifname : verdict ; }
add element inet nsgen_docker-dual filter-forward-out-jumps { "br-frontend" : jump filter-forward-out__br-frontend }
add element inet nsgen_docker-dual filter-forward-out-jumps { "br-backend" : jump filter-forward-out__br-backend }
add rule inet nsgen_docker-dual filter-NSGEN-docker-dual-FWD counter iifname vmap @filter-forward-out-jumps comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual filter-forward-in__br-frontend iifname "br-backend" counter drop comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual filter-forward-in__br-backend iifname "br-frontend" counter drop comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual filter-forward-in__br-backend iifname != "br-backend" counter drop comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual filter-forward-out__br-backend oifname != "br-backend" counter drop comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-POSTROUTING oifname != "br-frontend" ip saddr 172.18.0.0/24 counter masquerade comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-POSTROUTING oifname != "br-frontend" ip6 saddr fd65:c96d:ce98::/64 counter masquerade comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-PREROUTING fib daddr type local counter jump nat-NSGEN-docker-dual-DNAT comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-OUTPUT meta nfproto ipv4 fib daddr type local counter jump nat-NSGEN-docker-dual-DNAT comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-OUTPUT ip6 daddr != ::1 fib daddr type local counter jump nat-NSGEN-docker-dual-DNAT comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-NSGEN-docker-dual-DNAT meta nfproto ipv4 tcp dport 8080 counter dnat ip to 172.18.0.2:80 comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-NSGEN-docker-dual-DNAT meta nfproto ipv6 tcp dport 8080 counter dnat ip6 to [fd65:c96d:ce98::2]:80 comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-POSTROUTING ip saddr 172.18.0.0/24 ip daddr 172.18.0.2 tcp dport 80 ct status dnat counter masquerade comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-POSTROUTING ip6 saddr fd65:c96d:ce98::/64 ip6 daddr fd65:c96d:ce98::2 tcp dport 80 ct status dnat counter masquerade comment "nsgen:docker-dual"
add rule inet nsgen_docker-dual nat-POSTROUTING ip saddr 127.0.0.0/8 ip daddr 172.18.0.2 tcp dport 80 counter masquerade comment "nsgen:docker-dual"
EOF
nsgen_end 7

# ---- step 8/13: set net.ipv4.ip_forward=1 ----------------------------------
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

# ---- step 9/13: set net.ipv6.conf.all.forwarding=1 -------------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do. The kernel also writes
# net.ipv6.conf.default.forwarding and the value of every link; the previous
# values of both keys are saved and teardown puts them back.
nsgen_undo_9() {
  nsgen_restore_sysctl net.ipv6.conf.all.forwarding
  nsgen_restore_sysctl net.ipv6.conf.default.forwarding
}
nsgen_begin 9 'set net.ipv6.conf.all.forwarding=1'
nsgen_save_sysctl net.ipv6.conf.all.forwarding
nsgen_save_sysctl net.ipv6.conf.default.forwarding
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
nsgen_end 9

# ---- step 10/13: set net.ipv4.conf.br-frontend.route_localnet=1 ------------
# The kernel routes packets with a loopback source (127.0.0.1) out of br-
# frontend only with route_localnet: the host's own connection to 127.0.0.1 on a
# published port is sent on to the container that way. The previous value is
# saved and teardown puts it back.
nsgen_undo_10() {
  nsgen_restore_sysctl net.ipv4.conf.br-frontend.route_localnet
}
nsgen_begin 10 'set net.ipv4.conf.br-frontend.route_localnet=1'
nsgen_save_sysctl net.ipv4.conf.br-frontend.route_localnet
echo 1 > /proc/sys/net/ipv4/conf/br-frontend/route_localnet
nsgen_end 10

# ---- step 11/13: write /etc/netns/web/resolv.conf, /etc/netns/web/hosts ----
# 'ip netns exec web' shows files in /etc/netns/web/ in place of the host's /etc
# files, so programs in the namespace resolve names with these.
nsgen_undo_11() {
  rm -f /etc/netns/web/resolv.conf /etc/netns/web/hosts
  nsgen_remove_netns_dir web
}
nsgen_begin 11 'write /etc/netns/web/resolv.conf, /etc/netns/web/hosts'
nsgen_make_netns_dir web
printf '%s\n' 'nameserver 127.0.0.11' > /etc/netns/web/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '172.18.0.2 web' 'fd65:c96d:ce98::2 web' '172.18.0.3 client' 'fd65:c96d:ce98::3 client' '172.19.0.10 db' 'fd00:19::10 db' > /etc/netns/web/hosts
nsgen_end 11

# ---- step 12/13: write /etc/netns/client/resolv.conf, /etc/netns/client/hosts
# 'ip netns exec client' shows files in /etc/netns/client/ in place of the
# host's /etc files, so programs in the namespace resolve names with these.
nsgen_undo_12() {
  rm -f /etc/netns/client/resolv.conf /etc/netns/client/hosts
  nsgen_remove_netns_dir client
}
nsgen_begin 12 'write /etc/netns/client/resolv.conf, /etc/netns/client/hosts'
nsgen_make_netns_dir client
printf '%s\n' 'nameserver 127.0.0.11' > /etc/netns/client/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '172.18.0.3 client' 'fd65:c96d:ce98::3 client' '172.18.0.2 web' 'fd65:c96d:ce98::2 web' > /etc/netns/client/hosts
nsgen_end 12

# ---- step 13/13: write /etc/netns/db/resolv.conf, /etc/netns/db/hosts ------
# 'ip netns exec db' shows files in /etc/netns/db/ in place of the host's /etc
# files, so programs in the namespace resolve names with these.
nsgen_undo_13() {
  rm -f /etc/netns/db/resolv.conf /etc/netns/db/hosts
  nsgen_remove_netns_dir db
}
nsgen_begin 13 'write /etc/netns/db/resolv.conf, /etc/netns/db/hosts'
nsgen_make_netns_dir db
printf '%s\n' 'nameserver 127.0.0.11' > /etc/netns/db/resolv.conf
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '172.19.0.10 db' 'fd00:19::10 db' '172.19.0.2 web' 'fd00:19::2 web' > /etc/netns/db/hosts
nsgen_end 13

rm -f -- "$NSGEN_STATE"/errors*
printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
