#!/usr/bin/env bash
# setup.sh for the nsgen topology seed
#   red and blue namespaces on bridge br0, masqueraded out of eth0
#
# Rendered by nsgen 0.1.0 from a topology whose sha256 is
# 78da0a31d87b55ffa88c15e2b7895eed1415e299accc84511141b02139087cc2.
# Do not edit: change the topology file and render again.
# Needs only bash, iproute2 and iptables, and root.
#
# It builds the network in 17 numbered steps, logging each one to stderr as
# "[nsgen] N/17 what". Before the first change it checks that nothing it would
# create exists already, and refuses (changing nothing) if anything does. If a step
# fails or the script is interrupted, it undoes the steps begun so far, newest first.
#
# Exit status: 0 built; 1 refused by preflight, nothing changed; 3 a step failed and
# everything was rolled back; 4 a step failed and some undo failed too (the leftovers
# are listed; teardown.sh retries them); 130/143 interrupted (SIGINT/SIGTERM), rolled back.
set -euo pipefail

readonly NSGEN_TOPOLOGY=seed
readonly NSGEN_DIGEST=78da0a31d87b55ffa88c15e2b7895eed1415e299accc84511141b02139087cc2
# What teardown needs to know (journal of steps begun, saved sysctl values) lives here.
readonly NSGEN_STATE=/run/nsgen/seed
readonly NSGEN_STEPS=17

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
    if nsgen_has_netns red; then nsgen_problem 'namespace red already exists'; fi
    if nsgen_has_netns blue; then nsgen_problem 'namespace blue already exists'; fi
    if nsgen_has_link br0; then nsgen_problem 'link br0 already exists in the root namespace'; fi
    if nsgen_has_route 192.168.15.0/24; then nsgen_problem 'the root namespace already has a route to 192.168.15.0/24'; fi
    if nsgen_has_link veth-red-br; then nsgen_problem 'link veth-red-br already exists in the root namespace'; fi
    if nsgen_has_link veth-blue-br; then nsgen_problem 'link veth-blue-br already exists in the root namespace'; fi
    if iptables -w -t nat -C POSTROUTING -s 192.168.15.0/24 -o eth0 -m comment --comment nsgen:seed -j MASQUERADE 2>/dev/null; then nsgen_problem 'a masquerade rule tagged nsgen:seed for 192.168.15.0/24 out of eth0 is already present'; fi
    if [[ -e /etc/netns/blue/resolv.conf ]]; then nsgen_problem '/etc/netns/blue/resolv.conf already exists'; fi
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

# ---- step 1/17: create namespace red ---------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_1() {
  if nsgen_has_netns red; then ip netns delete red; fi
}
nsgen_begin 1 'create namespace red'
ip netns add red
ip netns exec red ip link set lo up
nsgen_end 1

# ---- step 2/17: create namespace blue --------------------------------------
# A network namespace is a separate copy of the network stack: its own links,
# addresses, routes and firewall. This is what a container gets. Its loopback
# 'lo' starts down; bring it up so local traffic works.
nsgen_undo_2() {
  if nsgen_has_netns blue; then ip netns delete blue; fi
}
nsgen_begin 2 'create namespace blue'
ip netns add blue
ip netns exec blue ip link set lo up
nsgen_end 2

# ---- step 3/17: create bridge br0 ------------------------------------------
# A bridge is a virtual switch: every veth end attached to it can reach the
# others, like ports of one Ethernet switch.
nsgen_undo_3() {
  if nsgen_has_link br0; then ip link delete br0; fi
}
nsgen_begin 3 'create bridge br0'
ip link add br0 type bridge
ip link set br0 up
nsgen_end 3

# ---- step 4/17: assign 192.168.15.254/24 to bridge br0 ---------------------
# With an address on br0, the root namespace is a member of 192.168.15.0/24 and
# can be the gateway of everything attached to the bridge.
# Undo: nothing of its own; it goes away with the bridge br0.
nsgen_begin 4 'assign 192.168.15.254/24 to bridge br0'
ip addr add 192.168.15.254/24 dev br0
nsgen_end 4

# ---- step 5/17: create veth pair veth-red <-> veth-red-br ------------------
# A veth pair is a virtual cable: what enters veth-red (namespace red) comes out
# of veth-red-br (the root namespace). Creating both ends where they belong in
# one command leaves no half-made pair behind.
nsgen_undo_5() {
  if nsgen_has_link veth-red-br; then ip link delete veth-red-br; fi
}
nsgen_begin 5 'create veth pair veth-red <-> veth-red-br'
ip link add veth-red netns red type veth peer name veth-red-br
nsgen_end 5

# ---- step 6/17: create veth pair veth-blue <-> veth-blue-br ----------------
# A veth pair is a virtual cable: what enters veth-blue (namespace blue) comes
# out of veth-blue-br (the root namespace). Creating both ends where they belong
# in one command leaves no half-made pair behind.
nsgen_undo_6() {
  if nsgen_has_link veth-blue-br; then ip link delete veth-blue-br; fi
}
nsgen_begin 6 'create veth pair veth-blue <-> veth-blue-br'
ip link add veth-blue netns blue type veth peer name veth-blue-br
nsgen_end 6

# ---- step 7/17: assign 192.168.15.2/24 to veth-red, bring veth-red up (in red)
# The address makes namespace red a host on 192.168.15.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-red <-> veth-red-br.
nsgen_begin 7 'assign 192.168.15.2/24 to veth-red, bring veth-red up (in red)'
ip netns exec red ip addr add 192.168.15.2/24 dev veth-red
ip netns exec red ip link set veth-red up
nsgen_end 7

# ---- step 8/17: attach veth-red-br to br0, bring veth-red-br up ------------
# As a port of br0, veth-red-br joins the switch. A new link is down until it is
# set up.
# Undo: nothing of its own; it goes away with the veth pair veth-red <-> veth-red-br.
nsgen_begin 8 'attach veth-red-br to br0, bring veth-red-br up'
ip link set veth-red-br master br0
ip link set veth-red-br up
nsgen_end 8

# ---- step 9/17: assign 192.168.15.1/24 to veth-blue, bring veth-blue up (in blue)
# The address makes namespace blue a host on 192.168.15.0/24. A new link is down
# until it is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-blue <-> veth-blue-br.
nsgen_begin 9 'assign 192.168.15.1/24 to veth-blue, bring veth-blue up (in blue)'
ip netns exec blue ip addr add 192.168.15.1/24 dev veth-blue
ip netns exec blue ip link set veth-blue up
nsgen_end 9

# ---- step 10/17: attach veth-blue-br to br0, bring veth-blue-br up ---------
# As a port of br0, veth-blue-br joins the switch. A new link is down until it
# is set up.
# Undo: nothing of its own; it goes away with the veth pair veth-blue <-> veth-blue-br.
nsgen_begin 10 'attach veth-blue-br to br0, bring veth-blue-br up'
ip link set veth-blue-br master br0
ip link set veth-blue-br up
nsgen_end 10

# ---- step 11/17: add route to 192.168.1.0/24 via 192.168.15.254 (in red) ---
# Packets for 192.168.1.0/24 go through the gateway instead of being dropped as
# unreachable.
# Undo: nothing of its own; it goes away with the namespace red.
nsgen_begin 11 'add route to 192.168.1.0/24 via 192.168.15.254 (in red)'
ip netns exec red ip route add 192.168.1.0/24 via 192.168.15.254
nsgen_end 11

# ---- step 12/17: add default route via 192.168.15.254 (in red) -------------
# Packets for any address without a more specific route go to the gateway.
# Undo: nothing of its own; it goes away with the namespace red.
nsgen_begin 12 'add default route via 192.168.15.254 (in red)'
ip netns exec red ip route add default via 192.168.15.254
nsgen_end 12

# ---- step 13/17: add route to 192.168.1.0/24 via 192.168.15.254 (in blue) --
# Packets for 192.168.1.0/24 go through the gateway instead of being dropped as
# unreachable.
# Undo: nothing of its own; it goes away with the namespace blue.
nsgen_begin 13 'add route to 192.168.1.0/24 via 192.168.15.254 (in blue)'
ip netns exec blue ip route add 192.168.1.0/24 via 192.168.15.254
nsgen_end 13

# ---- step 14/17: add default route via 192.168.15.254 (in blue) ------------
# Packets for any address without a more specific route go to the gateway.
# Undo: nothing of its own; it goes away with the namespace blue.
nsgen_begin 14 'add default route via 192.168.15.254 (in blue)'
ip netns exec blue ip route add default via 192.168.15.254
nsgen_end 14

# ---- step 15/17: masquerade 192.168.15.0/24 out of eth0 --------------------
# Hosts outside do not know the way back to 192.168.15.0/24. Source NAT gives
# leaving packets the address of eth0, so replies come back and are translated
# back. The rule carries the comment nsgen:seed so teardown can find exactly
# this rule.
nsgen_undo_15() {
  if iptables -w -t nat -C POSTROUTING -s 192.168.15.0/24 -o eth0 -m comment --comment nsgen:seed -j MASQUERADE 2>/dev/null; then
    iptables -w -t nat -D POSTROUTING -s 192.168.15.0/24 -o eth0 -m comment --comment nsgen:seed -j MASQUERADE
  fi
}
nsgen_begin 15 'masquerade 192.168.15.0/24 out of eth0'
iptables -w -t nat -A POSTROUTING -s 192.168.15.0/24 -o eth0 -m comment --comment nsgen:seed -j MASQUERADE
nsgen_end 15

# ---- step 16/17: set net.ipv4.ip_forward=1 ---------------------------------
# Forwarding lets the kernel pass packets from one interface to another, which a
# router (here: the namespaces' gateway) must do. The previous value is saved
# and teardown puts it back.
nsgen_undo_16() {
  nsgen_restore_sysctl net.ipv4.ip_forward
}
nsgen_begin 16 'set net.ipv4.ip_forward=1'
nsgen_save_sysctl net.ipv4.ip_forward
echo 1 > /proc/sys/net/ipv4/ip_forward
nsgen_end 16

# ---- step 17/17: write /etc/netns/blue/resolv.conf -------------------------
# 'ip netns exec blue' shows files in /etc/netns/blue/ in place of the host's
# /etc files, so programs in the namespace resolve names with these.
nsgen_undo_17() {
  rm -f /etc/netns/blue/resolv.conf
  nsgen_remove_netns_dir blue
}
nsgen_begin 17 'write /etc/netns/blue/resolv.conf'
nsgen_make_netns_dir blue
printf '%s\n' 'nameserver 198.51.100.53' > /etc/netns/blue/resolv.conf
nsgen_end 17

printf 'complete\n' >>"$NSGEN_STATE/journal"
nsgen_log "$NSGEN_TOPOLOGY is up ($NSGEN_STEPS steps); teardown.sh removes it"
