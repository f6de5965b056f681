#!/usr/bin/env bash
# setup.sh for the nsgen topology two-switches
#   a bridge of the host and a bridge in a namespace joined by a veth; a PC on each
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# ed01c4e7bf3f0660791cf137dc1576a360f96e7953e85eacf801c2837383605b.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2, and root.
# Firewall backend: iptables (every rule carries the comment nsgen:two-switches).
#
# It builds the network in 7 numbered steps, logging each one to stderr as
# "[nsgen] N/7 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
set -euo pipefail

readonly NSGEN_TOPOLOGY=two-switches
readonly NSGEN_DIGEST=ed01c4e7bf3f0660791cf137dc1576a360f96e7953e85eacf801c2837383605b
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/two-switches
readonly NSGEN_STEPS=7

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
  if ((${#nsgen_problems[@]} == 0)); then
    nsgen_links_before=$(nsgen_root_links)
    if [[ -e $NSGEN_STATE ]]; then
      nsgen_problem "$NSGEN_TOPOLOGY is already set up, or being set up ($NSGEN_STATE exists); run teardown.sh first"
    fi
    if nsgen_has_netns sw2; then nsgen_problem 'namespace sw2 already exists'; fi
    if nsgen_has_netns pc1; then nsgen_problem 'namespace pc1 already exists'; fi
    if nsgen_has_netns pc2; then nsgen_problem 'namespace pc2 already exists'; fi
    if nsgen_listed_link sw1; then nsgen_problem 'link sw1 already exists in the root namespace'; fi
    if nsgen_listed_link trunk; then nsgen_problem 'link trunk already exists in the root namespace'; fi
    if nsgen_listed_link pc1-port; then nsgen_problem 'link pc1-port already exists in the root namespace'; fi
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

# ---- step 1/7: create 1 bridge in the root namespace ----------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch. Its address makes the root
# namespace a member of that network, and its gateway.
nsgen_undo_1() {
  nsgen_delete_links sw1
}
nsgen_begin 1 'create 1 bridge in the root namespace'
ip -b - <<'EOF'
link add sw1 type bridge
link set sw1 addrgenmode none
link set sw1 up
EOF
nsgen_end 1

# ---- step 2/7: create 3 namespace(s): sw2, pc1, pc2 -----------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. One `ip -b`
# creates them all.
nsgen_undo_2() {
  nsgen_delete_netns sw2 pc1 pc2 -- trunk pc1-port
}
nsgen_begin 2 'create 3 namespace(s): sw2, pc1, pc2'
ip -b - <<'EOF'
netns add sw2
netns add pc1
netns add pc2
EOF
nsgen_end 2

# ---- step 3/7: create veth pairs (3 veths) --------------------------------
# veth pairs are virtual cables: each is created with both ends already in their
# namespaces, and the ends that stay in the root namespace are attached to their
# bridge and brought up, all in one `ip -b`.
# Undo: nothing of its own; it goes away with the namespaces sw2, pc1 and pc2.
nsgen_begin 3 'create veth pairs (3 veths)'
ip -b - <<'EOF'
link add trunk type veth peer name trunk netns sw2
link add eth0 netns pc1 type veth peer name pc1-port
link add eth0 netns pc2 index 10001 type veth peer name pc2-port netns sw2
link set trunk addrgenmode none
link set trunk mtu 9000
link set trunk master sw1
link set trunk up
link set pc1-port addrgenmode none
link set pc1-port master sw1
link set pc1-port up
EOF
nsgen_end 3

# ---- step 4/7: configure namespace sw2 ------------------------------------
# Everything inside sw2, with one entry into the namespace: lo up; bridges; veth
# ends.
# Undo: nothing of its own; it goes away with the namespace sw2.
nsgen_titles[4]='configure namespace sw2'
nsgen_do_4() {
nsgen_enter sw2 ip -b - <<'EOF'
link set lo up
link add br0 type bridge
link set br0 addrgenmode none
link set br0 up
link set trunk addrgenmode none
link set trunk mtu 9000
link set trunk master br0
link set trunk up
link set pc2-port addrgenmode none
link set pc2-port master br0
link set pc2-port up
EOF
}

# ---- step 5/7: configure namespace pc1 ------------------------------------
# Everything inside pc1, with one entry into the namespace: lo up; veth ends.
# Undo: nothing of its own; it goes away with the namespace pc1.
nsgen_titles[5]='configure namespace pc1'
nsgen_do_5() {
nsgen_enter pc1 ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 address 02:00:00:00:01:01
addr add 198.51.100.1/24 dev eth0
link set eth0 up
EOF
}

# ---- step 6/7: configure namespace pc2 ------------------------------------
# Everything inside pc2, with one entry into the namespace: lo up; veth ends.
# Undo: nothing of its own; it goes away with the namespace pc2.
nsgen_titles[6]='configure namespace pc2'
nsgen_do_6() {
nsgen_enter pc2 ip -b - <<'EOF'
link set lo up
link set eth0 addrgenmode none
link set eth0 address 02:00:00:00:02:01
addr add 198.51.100.2/24 dev eth0
link set eth0 up
EOF
}

# ---- steps 4-6 run side by side ------------------------------------------
# Each works inside its own namespace only, so they can share the machine's cores.
nsgen_lanes 4 6

# ---- step 7/7: run 2 commands of the topology in pc2 ----------------------
# The topology's own commands (exec:), run inside pc2 in order, after everything
# else is set up. nsgen does not undo them: what they change in pc2's network
# goes away with the namespace; anything else they do (a file written, a process
# left running) is the topology author's to undo.
# Undo: nothing of its own; it goes away with the namespace pc2.
nsgen_begin 7 'run 2 commands of the topology in pc2'
ip netns exec pc2 ip route add blackhole 203.0.113.0/24 </dev/null
ip netns exec pc2 sh -c 'ip route show type blackhole | grep -q 203.0.113.0/24' </dev/null
nsgen_end 7

rm -f -- "$NSGEN_STATE"/errors*
printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
