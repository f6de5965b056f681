#!/usr/bin/env bash
# setup.sh for the nsgen topology two-tier
#   web1 and web2 on br-front, db on br-back, a router between them, db <-> backup
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# d4c5e9c11dd205ebdb4a869d5567160ceb4e924230ccf6938ca9203c97a7c055.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
#
# It builds the network in 35 numbered steps, logging each one to stderr as
# "[nsgen] N/35 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
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

# ---- journal and rollback ----------------------------------------------------
nsgen_current=0      # the step being run
nsgen_signal=""      # exit status to report if a signal arrived
declare -a nsgen_titles=()

nsgen_begin() {
  nsgen_current=$1
  nsgen_titles[$1]=$2
  printf 'begin %s\n' "$1" >>"$NSGEN_STATE/journal"
  nsgen_log "$1/$NSGEN_STEPS $2"
}
nsgen_end() { printf 'done %s\n' "$1" >>"$NSGEN_STATE/journal"; }

# Runs on every exit once the state directory is claimed. On failure it undoes
# steps nsgen_current..1 (the failed step's partial effects included).
nsgen_finish() {
  local status=$1 code=3 i rc leftovers=()
  trap - EXIT INT TERM
  ((status != 0)) || return 0
  set +e
  if [[ -n $nsgen_signal ]]; then
    code=$nsgen_signal
    nsgen_log "interrupted during step $nsgen_current/$NSGEN_STEPS: rolling back"
  else
    nsgen_log "step $nsgen_current/$NSGEN_STEPS (${nsgen_titles[$nsgen_current]:-before the first step}) failed with exit status $status: rolling back"
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
nsgen_preflight() {
  [[ $EUID -eq 0 ]] || nsgen_problem "must run as root (try: sudo $0)"
  command -v ip >/dev/null || nsgen_problem 'ip is not installed'
  command -v iptables >/dev/null || nsgen_problem 'iptables is not installed'
  if ((${#nsgen_problems[@]} == 0)); then
    if [[ -e $NSGEN_STATE ]]; then
      nsgen_problem "$NSGEN_TOPOLOGY is already set up, or being set up ($NSGEN_STATE exists); run teardown.sh first"
    fi
    if nsgen_has_netns web1; then nsgen_problem 'namespace web1 already exists'; fi
    if nsgen_has_netns web2; then nsgen_problem 'namespace web2 already exists'; fi
    if nsgen_has_netns router; then nsgen_problem 'namespace router already exists'; fi
    if nsgen_has_netns db; then nsgen_problem 'namespace db already exists'; fi
    if nsgen_has_netns backup; then nsgen_problem 'namespace backup already exists'; fi
    if nsgen_has_link br-front; then nsgen_problem 'link br-front already exists in the root namespace'; fi
    if nsgen_has_route 10.0.1.0/24; then nsgen_problem 'the root namespace already has a route to 10.0.1.0/24'; fi
    if nsgen_has_link br-back; then nsgen_problem 'link br-back already exists in the root namespace'; fi
    if nsgen_has_link veth-web1-br; then nsgen_problem 'link veth-web1-br already exists in the root namespace'; fi
    if nsgen_has_link veth-web2-br; then nsgen_problem 'link veth-web2-br already exists in the root namespace'; fi
    if nsgen_has_link router-front; then nsgen_problem 'link router-front already exists in the root namespace'; fi
    if nsgen_has_link router-back; then nsgen_problem 'link router-back already exists in the root namespace'; fi
    if nsgen_has_link veth-db-br; then nsgen_problem 'link veth-db-br already exists in the root namespace'; fi
    if iptables -w -t nat -C POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE 2>/dev/null; then nsgen_problem 'a masquerade rule tagged nsgen:two-tier for 10.0.1.0/24 out of eth0 is already present'; fi
    if [[ -e /etc/netns/db/hosts ]]; then nsgen_problem '/etc/netns/db/hosts already exists'; fi
    if ! nsgen_has_link eth0; then nsgen_problem 'external interface eth0 does not exist (the topology uses it; nsgen never creates it)'; fi
  fi
  if ((${#nsgen_problems[@]})); then
    nsgen_log "preflight refused, nothing was changed:"
    printf '[nsgen]   %s\n' "${nsgen_problems[@]}" >&2
    exit 1
  fi
}

nsgen_preflight
mkdir -p /run/nsgen
mkdir -- "$NSGEN_STATE"  # fails if another run claimed it in the meantime
trap 'nsgen_finish $?' EXIT
trap 'nsgen_signal=130; exit 130' INT
trap 'nsgen_signal=143; exit 143' TERM
printf '%s\n' "$NSGEN_DIGEST" >"$NSGEN_STATE/digest"

# ---- step 1/35: create namespace web1 --------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_1() {
  if nsgen_has_netns web1; then ip netns delete web1; fi
}
nsgen_begin 1 'create namespace web1'
ip netns add web1
ip netns exec web1 ip link set lo up
nsgen_end 1

# ---- step 2/35: create namespace web2 --------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_2() {
  if nsgen_has_netns web2; then ip netns delete web2; fi
}
nsgen_begin 2 'create namespace web2'
ip netns add web2
ip netns exec web2 ip link set lo up
nsgen_end 2

# ---- step 3/35: create namespace router ------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_3() {
  if nsgen_has_netns router; then ip netns delete router; fi
}
nsgen_begin 3 'create namespace router'
ip netns add router
ip netns exec router ip link set lo up
nsgen_end 3

# ---- step 4/35: create namespace db ----------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_4() {
  if nsgen_has_netns db; then ip netns delete db; fi
}
nsgen_begin 4 'create namespace db'
ip netns add db
ip netns exec db ip link set lo up
nsgen_end 4

# ---- step 5/35: create namespace backup ------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_5() {
  if nsgen_has_netns backup; then ip netns delete backup; fi
}
nsgen_begin 5 'create namespace backup'
ip netns add backup
ip netns exec backup ip link set lo up
nsgen_end 5

# ---- step 6/35: create bridge br-front -------------------------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch.
nsgen_undo_6() {
  if nsgen_has_link br-front; then ip link delete br-front; fi
}
nsgen_begin 6 'create bridge br-front'
ip link add br-front type bridge
ip link set br-front up
nsgen_end 6

# ---- step 7/35: assign 10.0.1.254/24 to bridge br-front --------------------
# With an address on br-front, the root namespace is a member of 10.0.1.0/24 and
# can be the gateway of everything attached to the bridge.
# Undo: nothing of its own; it goes away with the bridge br-front.
nsgen_begin 7 'assign 10.0.1.254/24 to bridge br-front'
ip addr add 10.0.1.254/24 dev br-front
nsgen_end 7

# ---- step 8/35: create bridge br-back --------------------------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch.
nsgen_undo_8() {
  if nsgen_has_link br-back; then ip link delete br-back; fi
}
nsgen_begin 8 'create bridge br-back'
ip link add br-back type bridge
ip link set br-back up
nsgen_end 8

# ---- step 9/35: create veth pair veth-web1 <-> veth-web1-br ----------------
# A veth pair is a virtual cable: what enters veth-web1 (namespace web1) comes
# out of veth-web1-br (the root namespace). Creating both ends where they belong
# in one command leaves no half-made pair behind.
nsgen_undo_9() {
  if nsgen_has_link veth-web1-br; then ip link delete veth-web1-br; fi
}
nsgen_begin 9 'create veth pair veth-web1 <-> veth-web1-br'
ip link add veth-web1 netns web1 type veth peer name veth-web1-br
nsgen_end 9

# ---- step 10/35: create veth pair veth-web2 <-> veth-web2-br ---------------
# A veth pair is a virtual cable: what enters veth-web2 (namespace web2) comes
# out of veth-web2-br (the root namespace). Creating both ends where they belong
# in one command leaves no half-made pair behind.
nsgen_undo_10() {
  if nsgen_has_link veth-web2-br; then ip link delete veth-web2-br; fi
}
nsgen_begin 10 'create veth pair veth-web2 <-> veth-web2-br'
ip link add veth-web2 netns web2 type veth peer name veth-web2-br
nsgen_end 10

# ---- step 11/35: create veth pair front <-> router-front -------------------
# A veth pair is a virtual cable: what enters front (namespace router) comes out
# of router-front (the root namespace). Creating both ends where they belong in
# one command leaves no half-made pair behind.
nsgen_undo_11() {
  if nsgen_has_link router-front; then ip link delete router-front; fi
}
nsgen_begin 11 'create veth pair front <-> router-front'
ip link add front netns router type veth peer name router-front
nsgen_end 11

# ---- step 12/35: create veth pair back <-> router-back ---------------------
# A veth pair is a virtual cable: what enters back (namespace router) comes out
# of router-back (the root namespace). Creating both ends where they belong in
# one command leaves no half-made pair behind.
nsgen_undo_12() {
  if nsgen_has_link router-back; then ip link delete router-back; fi
}
nsgen_begin 12 'create veth pair back <-> router-back'
ip link add back netns router type veth peer name router-back
nsgen_end 12

# ---- step 13/35: create veth pair veth-db <-> veth-db-br -------------------
# A veth pair is a virtual cable: what enters veth-db (namespace db) comes out
# of veth-db-br (the root namespace). Creating both ends where they belong in
# one command leaves no half-made pair behind.
nsgen_undo_13() {
  if nsgen_has_link veth-db-br; then ip link delete veth-db-br; fi
}
nsgen_begin 13 'create veth pair veth-db <-> veth-db-br'
ip link add veth-db netns db type veth peer name veth-db-br
nsgen_end 13

# ---- step 14/35: create veth pair repl <-> repl ----------------------------
# A veth pair is a virtual cable: what enters repl (namespace db) comes out of
# repl (namespace backup). Creating both ends where they belong in one command
# leaves no half-made pair behind.
# Undo: nothing of its own; it goes away with the namespace db.
nsgen_begin 14 'create veth pair repl <-> repl'
ip link add repl netns db type veth peer name repl netns backup
nsgen_end 14

# ---- step 15/35: assign 10.0.1.11/24 to veth-web1, bring veth-web1 up (in web1)
# The address makes namespace web1 a host on 10.0.1.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-web1 <-> veth-web1-br.
nsgen_begin 15 'assign 10.0.1.11/24 to veth-web1, bring veth-web1 up (in web1)'
ip netns exec web1 ip addr add 10.0.1.11/24 dev veth-web1
ip netns exec web1 ip link set veth-web1 up
nsgen_end 15

# ---- step 16/35: attach veth-web1-br to br-front, bring veth-web1-br up ----
# As a port of br-front, veth-web1-br joins the switch. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-web1 <-> veth-web1-br.
nsgen_begin 16 'attach veth-web1-br to br-front, bring veth-web1-br up'
ip link set veth-web1-br master br-front
ip link set veth-web1-br up
nsgen_end 16

# ---- step 17/35: assign 10.0.1.12/24 to veth-web2, bring veth-web2 up (in web2)
# The address makes namespace web2 a host on 10.0.1.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-web2 <-> veth-web2-br.
nsgen_begin 17 'assign 10.0.1.12/24 to veth-web2, bring veth-web2 up (in web2)'
ip netns exec web2 ip addr add 10.0.1.12/24 dev veth-web2
ip netns exec web2 ip link set veth-web2 up
nsgen_end 17

# ---- step 18/35: attach veth-web2-br to br-front, bring veth-web2-br up ----
# As a port of br-front, veth-web2-br joins the switch. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-web2 <-> veth-web2-br.
nsgen_begin 18 'attach veth-web2-br to br-front, bring veth-web2-br up'
ip link set veth-web2-br master br-front
ip link set veth-web2-br up
nsgen_end 18

# ---- step 19/35: assign 10.0.1.1/24 to front, bring front up (in router) ---
# The address makes namespace router a host on 10.0.1.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair front <-> router-front.
nsgen_begin 19 'assign 10.0.1.1/24 to front, bring front up (in router)'
ip netns exec router ip addr add 10.0.1.1/24 dev front
ip netns exec router ip link set front up
nsgen_end 19

# ---- step 20/35: attach router-front to br-front, bring router-front up ----
# As a port of br-front, router-front joins the switch. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair front <-> router-front.
nsgen_begin 20 'attach router-front to br-front, bring router-front up'
ip link set router-front master br-front
ip link set router-front up
nsgen_end 20

# ---- step 21/35: assign 10.0.2.1/24 to back, bring back up (in router) -----
# The address makes namespace router a host on 10.0.2.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair back <-> router-back.
nsgen_begin 21 'assign 10.0.2.1/24 to back, bring back up (in router)'
ip netns exec router ip addr add 10.0.2.1/24 dev back
ip netns exec router ip link set back up
nsgen_end 21

# ---- step 22/35: attach router-back to br-back, bring router-back up -------
# As a port of br-back, router-back joins the switch. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair back <-> router-back.
nsgen_begin 22 'attach router-back to br-back, bring router-back up'
ip link set router-back master br-back
ip link set router-back up
nsgen_end 22

# ---- step 23/35: assign 10.0.2.21/24 to veth-db, bring veth-db up (in db) --
# The address makes namespace db a host on 10.0.2.0/24. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-db <-> veth-db-br.
nsgen_begin 23 'assign 10.0.2.21/24 to veth-db, bring veth-db up (in db)'
ip netns exec db ip addr add 10.0.2.21/24 dev veth-db
ip netns exec db ip link set veth-db up
nsgen_end 23

# ---- step 24/35: attach veth-db-br to br-back, bring veth-db-br up ---------
# As a port of br-back, veth-db-br joins the switch. A new link is down until it
# is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-db <-> veth-db-br.
nsgen_begin 24 'attach veth-db-br to br-back, bring veth-db-br up'
ip link set veth-db-br master br-back
ip link set veth-db-br up
nsgen_end 24

# ---- step 25/35: assign 10.0.3.1/30 to repl, bring repl up (in db) ---------
# The address makes namespace db a host on 10.0.3.0/30. A new link is down until
# it is set up.
# Undo: nothing of its own; it goes away with the veth pair repl <-> repl.
nsgen_begin 25 'assign 10.0.3.1/30 to repl, bring repl up (in db)'
ip netns exec db ip addr add 10.0.3.1/30 dev repl
ip netns exec db ip link set repl up
nsgen_end 25

# ---- step 26/35: assign 10.0.3.2/30 to repl, bring repl up (in backup) -----
# The address makes namespace backup a host on 10.0.3.0/30. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair repl <-> repl.
nsgen_begin 26 'assign 10.0.3.2/30 to repl, bring repl up (in backup)'
ip netns exec backup ip addr add 10.0.3.2/30 dev repl
ip netns exec backup ip link set repl up
nsgen_end 26

# ---- step 27/35: add default route via 10.0.1.254 (in web1) ----------------
# Packets for any address without a more specific route go to the gateway.
# Undo: nothing of its own; it goes away with the namespace web1.
nsgen_begin 27 'add default route via 10.0.1.254 (in web1)'
ip netns exec web1 ip route add default via 10.0.1.254
nsgen_end 27

# ---- step 28/35: add route to 10.0.2.0/24 via 10.0.1.1 (in web1) -----------
# Packets for 10.0.2.0/24 go through the gateway instead of being dropped as
# unreachable.
# Undo: nothing of its own; it goes away with the namespace web1.
nsgen_begin 28 'add route to 10.0.2.0/24 via 10.0.1.1 (in web1)'
ip netns exec web1 ip route add 10.0.2.0/24 via 10.0.1.1
nsgen_end 28

# ---- step 29/35: add default route via 10.0.1.254 (in web2) ----------------
# Packets for any address without a more specific route go to the gateway.
# Undo: nothing of its own; it goes away with the namespace web2.
nsgen_begin 29 'add default route via 10.0.1.254 (in web2)'
ip netns exec web2 ip route add default via 10.0.1.254
nsgen_end 29

# ---- step 30/35: add route to 10.0.2.0/24 via 10.0.1.1 (in web2) -----------
# Packets for 10.0.2.0/24 go through the gateway instead of being dropped as
# unreachable.
# Undo: nothing of its own; it goes away with the namespace web2.
nsgen_begin 30 'add route to 10.0.2.0/24 via 10.0.1.1 (in web2)'
ip netns exec web2 ip route add 10.0.2.0/24 via 10.0.1.1
nsgen_end 30

# ---- step 31/35: add route to 10.0.1.0/24 via 10.0.2.1 (in db) -------------
# Packets for 10.0.1.0/24 go through the gateway instead of being dropped as
# unreachable.
# Undo: nothing of its own; it goes away with the namespace db.
nsgen_begin 31 'add route to 10.0.1.0/24 via 10.0.2.1 (in db)'
ip netns exec db ip route add 10.0.1.0/24 via 10.0.2.1
nsgen_end 31

# ---- step 32/35: masquerade 10.0.1.0/24 out of eth0 ------------------------
# Hosts outside do not know the way back to 10.0.1.0/24. Source NAT gives
# leaving packets the address of eth0, so replies come back and are translated
# back. The rule carries the comment nsgen:two-tier so teardown can find exactly
# this rule.
nsgen_undo_32() {
  if iptables -w -t nat -C POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE 2>/dev/null; then
    iptables -w -t nat -D POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE
  fi
}
nsgen_begin 32 'masquerade 10.0.1.0/24 out of eth0'
iptables -w -t nat -A POSTROUTING -s 10.0.1.0/24 -o eth0 -m comment --comment nsgen:two-tier -j MASQUERADE
nsgen_end 32

# ---- step 33/35: set net.ipv4.ip_forward=1 ---------------------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do. The previous value is saved
# and teardown puts it back.
nsgen_undo_33() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}
nsgen_begin 33 'set net.ipv4.ip_forward=1'
nsgen_save_sysctl net.ipv4.ip_forward
echo 1 > /proc/sys/net/ipv4/ip_forward
nsgen_end 33

# ---- step 34/35: set net.ipv4.ip_forward=1 (in router) ---------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do.
# Undo: nothing of its own; it goes away with the namespace router.
nsgen_begin 34 'set net.ipv4.ip_forward=1 (in router)'
ip netns exec router bash -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
nsgen_end 34

# ---- step 35/35: write /etc/netns/db/hosts ---------------------------------
# 'ip netns exec db' shows files in /etc/netns/db/ in place of the host's /etc
# files, so programs in the namespace resolve names with these.
nsgen_undo_35() {
  rm -f /etc/netns/db/hosts
  nsgen_remove_netns_dir db
}
nsgen_begin 35 'write /etc/netns/db/hosts'
nsgen_make_netns_dir db
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' '10.0.1.11 web1' '10.0.1.12 web2' '10.0.3.2 backup' > /etc/netns/db/hosts
nsgen_end 35

printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
