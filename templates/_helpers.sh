# ---- helpers (the same in every nsgen script) -------------------------------
# Logging goes to stderr so that stdout stays free for the commands' own output.
nsgen_log() { printf '[nsgen] %s\n' "$*" >&2; }

# Existence tests. Undo steps use them so that undoing something that is not
# there (a partial setup, a second teardown) is a no-op instead of an error.
nsgen_has_netns() { [[ -e /run/netns/$1 ]]; }
nsgen_has_link() { ip link show dev "$1" >/dev/null 2>&1; }
nsgen_has_addr() { [[ -n $(ip -o addr show dev "$1" to "$2" 2>/dev/null) ]]; }
nsgen_has_route() { [[ -n $(ip route show exact "$1" 2>/dev/null) ]]; }

# A sysctl's previous value is kept in the state directory the first time it
# is changed, and written back (once) when the change is undone.
nsgen_save_sysctl() {
  local saved="$NSGEN_STATE/sysctl.$1"
  [[ -e $saved ]] || cat "/proc/sys/${1//.//}" >"$saved"
}
nsgen_restore_sysctl() {
  local saved="$NSGEN_STATE/sysctl.$1"
  if [[ -e $saved ]]; then
    cat "$saved" >"/proc/sys/${1//.//}"
    rm -f "$saved"
  fi
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
